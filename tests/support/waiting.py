"""Helpers shared by tests that run whole batches."""

from __future__ import annotations

import time
from collections.abc import Callable

from dlcrun import batch
from dlcrun.ledger import Run


def wait_for(run: Run, timeout: float = 600, each: Callable[[batch.Status], None] | None = None) -> batch.Status:
    """Poll ``dlcrun status`` logic until every index of ``run`` has finished.

    ``each`` sees every status on the way, for tests that check what was shown meanwhile.
    A run that does not finish in ``timeout`` seconds is cancelled before the test fails, so
    that no array outlives it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = batch.status(run)
        if each is not None:
            each(current)
        if current.finished:
            return current
        time.sleep(0.5)
    counts = batch.status(run).counts
    batch.cancel(run)
    raise AssertionError(f"run {run.path} not finished after {timeout}s: {counts}")
