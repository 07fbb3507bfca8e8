"""Model compositions: bottom, multi-task arch and towers (dense part); the TorchRec model adds embeddings."""

from smes_rec.models.multitask import MultiTaskModel, MultiTaskOutput

__all__ = ["MultiTaskModel", "MultiTaskOutput"]
