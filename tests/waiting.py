"""Helpers shared by tests that run whole batches."""

from __future__ import annotations

import time

from dlcrun import batch
from dlcrun.ledger import Run


def wait_for(run: Run, timeout: float = 600) -> batch.Status:
    """Poll ``dlcrun status`` logic until every index of ``run`` has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = batch.status(run)
        if current.finished:
            return current
        time.sleep(0.5)
    raise AssertionError(f"run {run.path} not finished after {timeout}s: {batch.status(run).counts}")
