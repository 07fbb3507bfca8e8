"""Fixtures of the fault-injection suite: the evaluation tests' tiny trained run (8 steps on 1 process,
checkpoints at steps 4 and 8) and its data cache. Tests that damage a run work on a copy (``copy_run``)."""

from __future__ import annotations

from tests.evaluation.conftest import eval_cache, tiny_run

__all__ = ["eval_cache", "tiny_run"]
