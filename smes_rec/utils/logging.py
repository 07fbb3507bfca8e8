"""Filters for the third-party messages that say nothing actionable to a user of smes-rec.

Each filter names one message (a regex matched at its start), where it comes from (the warning's category and
module, or the logger) and why it is harmless. Nothing else is filtered and no logger's level changes: any other
warning or log record still shows.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import NamedTuple

__all__ = ["FBGEMM_DENSE_LOOKUP_WARNING", "quiet_third_party"]

FBGEMM_DENSE_LOOKUP_WARNING = (
    "fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel was not registered to the Autograd key(s)"
)


class _KnownWarning(NamedTuple):
    message: str  # regex, matched at the start of the message
    category: type[Warning]
    module: str  # regex over the module the warning is attributed to


class _KnownRecord(NamedTuple):
    logger: str
    message: str  # regex, matched at the start of the formatted message
    module: str = ""  # the emitting module's name (record.module), for records logged on the root logger


_WARNINGS = (
    # The data-parallel embedding kernel (small tables under torchrun): fbgemm implements its backward with an
    # autograd Function inside the CPU kernel instead of on the Autograd key, so PyTorch's fallback warns on every
    # backward. The gradients are fbgemm's own and equal plain PyTorch's (README, Troubleshooting;
    # tests/utils/test_logging.py).
    _KnownWarning(re.escape(FBGEMM_DENSE_LOOKUP_WARNING), UserWarning, r"torch\.autograd\.graph"),
    # Renamed collectives (same semantics) that torchrec and torch's own wrappers still call.
    _KnownWarning(r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated",
                  FutureWarning, r"torch\.distributed\.c10d_logger"),
    # torchrec's DistributedModelParallel passes DDP's renamed `broadcast_buffers` argument; behaviour unchanged.
    _KnownWarning(r"`broadcast_buffers` is deprecated", FutureWarning, r"torchrec\.distributed\."),
    # torchrec's own keyed optimizer touching its sharded tables; a notice to torchrec, nothing we call.
    _KnownWarning(r"Please use DTensor instead and we are deprecating ShardedTensor", FutureWarning,
                  r"torchrec\.optim\.keyed"),
    # The planner's default storage reservation may over-estimate dense memory in dry runs; the plan is made on the
    # real devices, and an over-estimate only makes it conservative.
    _KnownWarning(r"HeuristicalStorageReservation is known to cause issues", FutureWarning,
                  r"torchrec\.distributed\.planner\."),
    # Evaluation, export and prediction load a checkpoint into an unsharded model in one process on purpose.
    _KnownWarning(r"torch\.distributed is disabled, unavailable or uninitialized, assuming the intent is to load in "
                  r"a single process", UserWarning, r"torch\.distributed\.checkpoint\."),
    # Scripting torchrec's quantized modules for export: TorchScript infers those attributes' types from their
    # values and treats dtype-annotated tensors as tensors; every export checks the package's scores against the
    # checkpoint's (serving/export.py).
    _KnownWarning(r"The TorchScript type system doesn't support instance-level annotations on empty non-base types",
                  UserWarning, r"ast$"),
    _KnownWarning(r"TorchScript will treat type annotations of Tensor dtype-specific subtypes as if they are normal "
                  r"Tensors", UserWarning, r"torch\.jit\.annotations"),
)

_RECORDS = (
    # Data-parallel tables are replicated dense tables: there is no cache for the caching parameters to configure.
    _KnownRecord("torchrec.distributed.utils", r"Sharding Type is data_parallel, caching params will be ignored"),
    # The planner's dry-run caveat (see HeuristicalStorageReservation above).
    _KnownRecord("torchrec.distributed.planner.storage_reservations",
                 r"There is a known issue with TorchRec's dense tensor size calculation in dry run"),
    # The planner's rank check finds no shard placement for data-parallel (replicated) tables, which have none.
    _KnownRecord("root", r"Sharding spec not found for ", module="planners"),
    # torchrec asks `is_fx_tracing()` in its forward; a notice about torch's API, printed once per process.
    _KnownRecord("torch.fx._symbolic_trace", r"is_fx_tracing will return true for both fx\.symbolic_trace and "),
)


class _DropKnownRecords(logging.Filter):
    """Drops the records of one logger that match a known-harmless message (and emitting module, if given)."""

    def __init__(self, records: list[_KnownRecord]):
        super().__init__()
        self.records = [(re.compile(r.message), r.module) for r in records]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) and module in ("", record.module) for pattern, module in self.records)


def quiet_third_party() -> None:
    """Filters the known-harmless third-party warnings and log records listed in this module (idempotent)."""
    for w in _WARNINGS:
        warnings.filterwarnings("ignore", message=w.message, category=w.category, module=w.module)
    for name in {r.logger for r in _RECORDS}:
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropKnownRecords)]:
            logger.removeFilter(old)
        logger.addFilter(_DropKnownRecords([r for r in _RECORDS if r.logger == name]))
