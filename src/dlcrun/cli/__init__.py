"""Command line: parse, call one function, print. Logic lives in the use cases it calls.

One module per group of commands, each registering on the one Typer ``app`` (``cli/app.py``);
``cli/views.py`` turns what a use case returned into the text and tables that are printed.
"""

from __future__ import annotations

# Each registers its commands on app, under its --help panel (Batches, Models, Set up and check).
from dlcrun.cli import inputs, models, results, runs, setup  # noqa: F401
from dlcrun.cli.app import app, friendly


def main() -> None:
    app()


__all__ = ["app", "friendly", "main"]
