"""``dlcrun report``: a run's results as a web page with plots (``report_page.write``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dlcrun.cli.app import ConfigOpt, RunArg, RunsDirOpt, app, err, friendly, out
from dlcrun.cli.runs import PANEL, find_run, print_warnings

WORST = 12  # results.WORST, spelled here so that the CLI starts without importing the report's modules

if TYPE_CHECKING:
    from dlcrun.report_page import Written


@app.command(rich_help_panel=PANEL)
@friendly
def report(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    worst: Annotated[int, typer.Option("--worst", min=0, help="videos shown in detail, lowest scores first")] = WORST,
    dest: Annotated[
        bool, typer.Option("--dest", help="also copy the report next to the keypoints: <dest>/report-<run id>/")
    ] = False,
) -> None:
    """Write the run's report: summary, failures, likelihood per bodypart, videos ranked worst first.

    A page with its images in <run>/report/ (open index.html in a browser; no network needed). Every
    video counts in the figures and in scores.csv; the worst few get their own plots. Works on a
    login node: the numbers come from the records, and the trajectory plots need PyTables.

    Examples:

        dlcrun report
        dlcrun report 20261002-141200-batch --worst 20 --dest
    """
    from dlcrun.report_page import write

    target = find_run(run, runs_dir, config)
    with err.status("reading the records and drawing the report..."):
        try:
            written = write(target, worst, dest)
        finally:
            print_warnings(target)
    for line in lines(written):
        out.print(line, highlight=False, soft_wrap=True)


def lines(written: Written) -> list[str]:
    """What ``report`` prints: where the page is, what it shows, where its copy went."""
    said = [
        f"report: {written.page}",
        f"{written.ranked:,} videos ranked by score, {written.shown} shown in detail, {len(written.images)} images",
    ]
    if written.copied_to:
        said.append(f"copied to {written.copied_to}")
    return said
