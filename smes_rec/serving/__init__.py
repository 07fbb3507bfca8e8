"""Serving: export a trained ranker as a self-contained TorchScript package and score files with it.

``module`` wraps a ranker behind plain tensors; ``checkpoint`` loads a checkpoint of any world size unsharded;
``export`` quantizes and scripts the ranker and writes a package; ``package`` reads and verifies one;
``transform`` is the frozen feature transform; ``rows`` turns raw rows into request tensors; ``scorer`` loads a
package or a checkpoint; ``predict`` streams files through a scorer. See docs/serving.md.
"""
