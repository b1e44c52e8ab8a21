"""What the CLI shows: text and tables, built here from what a use case returned, printed there.

Nothing here prints or touches the ledger: each function turns what a use case returned (a
Status, a started run, a dry run's plans, the project's models) into the lines and rich tables
the CLI prints, so the CLI stays parse, call, print, and what a user reads can be tested.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from dlcrun.errors import redact
from dlcrun.schedulers import PREVIOUS, JobPlan

if TYPE_CHECKING:
    from dlcrun.batch import Preflight, Status
    from dlcrun.doctor import Check
    from dlcrun.ledger import Record, Run, Submission
    from dlcrun.sampling import Sample
    from dlcrun.videos import Selection

STATES = ("done", "running", "queued", "pending", "failed", "interrupted", "lost", "cancelled")
FAILED = ("failed", "interrupted", "lost")
ENDED = ("done", *FAILED, "cancelled")


def array(run: Run, sub: Submission) -> str:
    """``<scheduler> array of <size>: <job ids>``; the size says when an index takes several videos."""
    size = run.array_size(len(sub.indices))
    many = f" ({len(sub.indices)} videos, {run.videos_per_task} per index)" if size != len(sub.indices) else ""
    return f"{sub.scheduler} array of {size}{many}: {', '.join(sub.job_ids)}"


def started(run: Run, preflight: Preflight | None, sub: Submission) -> list[str]:
    """A new run: where it is, the pinned model, what will be staged, the array queued."""
    model = run.model
    lines = [f"run [bold]{run.id}[/bold] in {escape(str(run.path))}"]
    lines.append(f"  model   {model['scorer']}  ({Path(model['snapshot']).name})")
    if preflight:
        lines.append(f"  videos  {preflight.videos}, {preflight.total_bytes / 1e9:.2f} GB to stage")
    return [*lines, f"  {array(run, sub)}"]


def status(current: Status) -> list[RenderableType]:
    """Counts by state, every failure with its reason, and what to do about them."""
    run, settings, counts = current.run, current.settings, current.counts
    shown: list[RenderableType] = [f"run [bold]{run.id}[/bold]: {len(run)} videos -> {escape(str(settings.dest))}"]
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("state")
    table.add_column("videos", justify="right")
    for state in STATES:
        if counts[state]:
            table.add_row(state, str(counts[state]))
    shown.append(table)
    for rec in current.failures:
        shown.append(f"  [red]{current.states[rec.index]}[/red] #{rec.index} {escape(rec.video)}: {escape(rec.error)}")
    if current.failures or counts["cancelled"]:
        shown.append(f"rerun them with: dlcrun resubmit {run.id}")
    if counts["interrupted"] and settings.scheduler != "local":
        limit = settings.resources.time
        shown.append(f"  stopped by the time limit ({limit})? resubmit with --time to ask for more")
    return shown


def progress(current: Status) -> tuple[int, str]:
    """How many indices have ended, and the progress bar's words for it."""
    counts = current.counts
    failed = sum(counts[s] for s in FAILED)
    return sum(counts[s] for s in ENDED), f"done {counts['done']} failed {failed}"


def plans(found: Sequence[JobPlan]) -> list[str]:
    """A dry run as plain text: each job script (once: the arrays of a split submission share
    it), then the exact command that submits each array."""
    lines: list[str] = []
    shown = set()
    for plan in found:
        if plan.script is not None and plan.script_path not in shown:
            shown.add(plan.script_path)
            lines += [f"# ---- {plan.script_path} ----", plan.script.rstrip("\n"), "# ----"]
        if any(PREVIOUS in a for a in plan.argv):
            lines.append(f"# {PREVIOUS}: the job id the command above prints (this array waits for that one)")
        lines.append(shlex.join(plan.argv))
    return lines


def task(records: Sequence[Record]) -> list[str]:
    """One line per video an array index ran: its frames and keypoint file, or why not (redacted)."""
    return [
        f"index {r.index} done: {r.frames} frames -> {escape(r.outputs[-1].uri)}"
        if r.state == "done"
        else f"index {r.index} {r.state}: {escape(redact(r.error))}"
        for r in records
    ]


def checks(found: Sequence[Check]) -> list[str]:
    """``dlcrun doctor``'s findings, one coloured line each."""
    style = {"ok": "green", "fail": "red", "note": "yellow"}
    return [f"[{style[c.status]}]{c.status:<4}[/] {c.name:<10} {escape(c.detail)}" for c in found]


def models(found: Sequence[Any]) -> Table:
    """The project's snapshots (project.list_models), with DLC's evaluation error where evaluated."""
    table = Table(box=None, header_style="bold")
    for col in ("shuffle", "train %", "snapshot", "epochs/iters", "train rmse", "test rmse", "engine", "selected"):
        table.add_column(col, no_wrap=col in ("snapshot", "engine"))
    for m in found:
        table.add_row(
            str(m.shuffle),
            f"{m.train_fraction:.0%}",
            m.snapshot,
            str(m.epochs or "-"),
            _rmse(m.train_rmse),
            _rmse(m.test_rmse),
            m.engine,
            "yes" if m.selected else "",
        )
    return table


def _rmse(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def selection(found: Selection, probed: bool) -> list[RenderableType]:
    """Rows, videos, hours (where known) and GB: the scratch and quota impact before a submit."""
    table = Table(show_header=True, header_style="bold", box=None, show_footer=True)
    hours, known = found.known_hours
    table.add_column("row", footer="total")
    table.add_column("folder", footer=f"{len(found.rows)} rows")
    table.add_column("window")
    table.add_column("videos", justify="right", footer=str(len(found.videos)))
    table.add_column("hours", justify="right", footer=_hours(hours, known, len(found.videos)))
    table.add_column("GB", justify="right", footer=f"{found.total_bytes / 1e9:.2f}")
    for r in found.rows:
        durations = [v.duration for v in r.videos if v.duration is not None]
        table.add_row(
            str(r.number),
            escape(r.folder),
            f"{r.start:%Y-%m-%d} .. {r.end:%Y-%m-%d}",
            str(len(r.videos)),
            _hours(sum(durations) / 3600, len(durations), len(r.videos)),
            f"{r.bytes / 1e9:.2f}",
        )
    if probed:
        return [table]
    return [table, "[dim]hours: unknown without --probe (reads local videos' headers)[/dim]"]


def _hours(hours: float, known: int, total: int) -> str:
    if not known:
        return "-"
    return f"{hours:.1f}" + (f" ({known}/{total})" if known < total else "")


def strata(drawn: Sample, per: str | None) -> Table:
    """Per stratum, the videos available and how many were drawn: an even spread, or why not."""
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column(per or "all")
    table.add_column("available", justify="right")
    table.add_column("sampled", justify="right")
    for s in drawn.strata:
        table.add_row(escape(s.key or "(blank)"), str(s.available), str(s.chosen))
    return table
