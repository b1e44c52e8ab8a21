"""What the CLI shows: text and tables, built here from what a use case returned, printed there.

Nothing here prints or touches the ledger: each function turns what a use case returned (a
Status, a started run, a dry run's plans, the project's models) into the lines and rich tables
the CLI prints, so the CLI stays parse, call, print, and what a user reads can be tested.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from dlcrun.errors import redact
from dlcrun.schedulers import PREVIOUS, JobPlan
from dlcrun.settings import CLUSTERS

if TYPE_CHECKING:
    from dlcrun.batch import DryRun, Preflight, Status
    from dlcrun.doctor import Check
    from dlcrun.estimate import Estimate
    from dlcrun.ledger import Record, Run, Submission
    from dlcrun.report import Example, Group, Report
    from dlcrun.sampling import Sample
    from dlcrun.videos import Selection

STATES = ("done", "running", "queued", "pending", "failed", "interrupted", "lost", "cancelled", "unknown")
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


GROUPS_SHOWN = 8  # reasons printed; --json lists them all


def status(report: Report) -> list[RenderableType]:
    """Counts by state, failures grouped by reason (a few examples each, with job id and log),
    what to do about them, throughput and an ETA: a few dozen lines at most, whatever the run's size."""
    current = report.status
    run, settings, counts = current.run, current.settings, current.counts
    shown: list[RenderableType] = [f"run [bold]{run.id}[/bold]: {len(run)} videos -> {escape(str(settings.dest))}"]
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("state")
    table.add_column("videos", justify="right")
    for state in STATES:
        if counts[state]:
            table.add_row(_state_label(current, state), str(counts[state]))
    shown.append(table)
    shown += _groups(report.groups)
    if report.groups or counts["cancelled"]:
        shown.append(f"rerun them with: dlcrun resubmit {run.id}")
    if counts["interrupted"] and settings.scheduler != "local":
        limit = settings.resources.time
        shown.append(f"  stopped by the time limit ({limit})? resubmit with --time to ask for more")
    return shown + _throughput(report)


def _state_label(current: Status, state: str) -> str:
    if state != "unknown" or not current.unseen:
        return state
    return f"unknown ({', '.join(u.why for u in current.unseen.values())})"


def _groups(groups: Sequence[Group]) -> list[RenderableType]:
    """Each reason once, largest group first: its count, the first example's words, up to three
    videos with their job id and log; once, the scheduler's command for a job (Slurm: ``sacct -j``)."""
    if not groups:
        return []
    total = sum(g.count for g in groups)
    many = f", {len(groups)} reasons" if len(groups) > 1 else ""
    lines: list[RenderableType] = [f"[bold]failures by reason[/bold] ({_videos(total)}{many}):"]
    for group in groups[:GROUPS_SHOWN]:
        lines.append(f"  [red]{group.state}[/red] {group.count}: {escape(group.reason)}")
        folder = None  # where the logs named above are: the next one in it is named without its folder
        for e in group.examples:
            lines.append(f"    {escape(_example(e, folder))}")
            folder = e.log.parent if e.log is not None else folder
    if len(groups) > GROUPS_SHOWN:
        rest = groups[GROUPS_SHOWN:]
        lines.append(
            f"  ... and {len(rest)} more reasons ({_videos(sum(g.count for g in rest))}): dlcrun status --json lists all"
        )
    inspect = next((e.inspect for g in groups for e in g.examples if e.inspect), None)
    if inspect:
        lines.append(f"  how the scheduler saw a job (exit code, memory, node): {escape(inspect)}")
    return lines


def _example(e: Example, folder: Path | None) -> str:
    """``#index video  (job ID, log PATH)``: the log's name alone when it is in ``folder``."""
    if not e.scheduler:
        where = "no array (dlcrun task --index): its output went to that terminal"
    else:
        job = f"job {e.job_id}" if e.job_id else "job id unknown"
        if e.log is None:
            where = f"{job}, log: cannot tell where"
        else:
            where = f"{job}, log {e.log.name if e.log.parent == folder else e.log}"
            where += "" if e.log_found else " (not there)"
    said = f"; its log ends: {e.last_words}" if e.last_words else ""
    return f"#{e.index} {e.video}  ({where}){said}"


def _throughput(report: Report) -> list[RenderableType]:
    t, eta = report.throughput, report.eta
    if not t.done:
        return ["throughput: nothing done yet"]
    speed = f"{t.frames_per_second:.1f} frames/s of inference" if t.frames_per_second else "no inference timed"
    rate = f"; {t.videos_per_hour:.1f} videos/h since the first start" if t.videos_per_hour else ""
    since = f" ({t.first_start:%Y-%m-%d %H:%M} UTC)" if t.first_start and rate else ""
    found = f", {t.done - t.inferred} found done already" if t.inferred < t.done else ""
    lines: list[RenderableType] = [
        f"throughput: {speed} ({_videos(t.done)} done{found}, {t.frames:,} frames analysed){rate}{since}"
    ]
    if t.stage_seconds:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(t.stage_seconds.items(), key=_stage_order))
        lines.append(f"  per analysed video: {stages}")
    if eta is not None:
        lines.append(
            f"ETA: about {_duration(eta.seconds)} for the {_videos(eta.videos)} running or queued "
            f"(an estimate: {eta.videos_per_hour:.1f} videos/h so far, since the first start)"
        )
    return lines


def _videos(n: int) -> str:
    return f"{n} video" if n == 1 else f"{n} videos"


_STAGES = ("fetch", "load", "infer", "upload")


def _stage_order(item: tuple[str, float]) -> tuple[int, str]:
    return (_STAGES.index(item[0]) if item[0] in _STAGES else len(_STAGES), item[0])


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


JSON_SCHEMA = 1  # bumped only when a key changes meaning or goes away


def status_json(report: Report) -> str:
    """``dlcrun status --json``: one object with stable keys (documented in the README)."""
    current = report.status
    run, t, eta = current.run, report.throughput, report.eta
    data = {
        "schema": JSON_SCHEMA,
        "run": run.id,
        "path": str(run.path),
        "dest": current.settings.dest,
        "videos": len(run),
        "counts": {state: current.counts[state] for state in STATES},
        "finished": current.finished,
        "failures": [
            {
                "state": g.state,
                "reason": g.reason,
                "count": g.count,
                "examples": [
                    {
                        "index": e.index,
                        "video": e.video,
                        "error": e.error,
                        "scheduler": e.scheduler or None,
                        "job_id": e.job_id or None,
                        "log": None if e.log is None else str(e.log),
                        "log_found": e.log_found,
                        "last_words": e.last_words,
                    }
                    for e in g.examples
                ],
            }
            for g in report.groups
        ],
        "throughput": {
            "done": t.done,
            "analysed": t.inferred,
            "frames": t.frames,
            "infer_seconds": round(t.infer_seconds, 3),
            "frames_per_second": _rounded(t.frames_per_second),
            "videos_per_hour": _rounded(t.videos_per_hour),
            "first_start": t.first_start.isoformat() if t.first_start else None,
            "wall_hours": _rounded(t.wall_hours, 4),
            "stage_seconds": {k: round(v, 3) for k, v in t.stage_seconds.items()},
        },
        "eta": None
        if eta is None
        else {
            "seconds": round(eta.seconds),
            "videos": eta.videos,
            "videos_per_hour": round(eta.videos_per_hour, 2),
            "basis": eta.basis,
        },
        "unseen": {name: {"reason": u.said, "missing": u.missing or None} for name, u in current.unseen.items()},
        "warnings": current.warnings,
    }
    return json.dumps(data, indent=2)


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def progress(current: Status) -> tuple[int, str]:
    """How many indices have ended, and the progress bar's words for it."""
    counts = current.counts
    failed = sum(counts[s] for s in FAILED)
    return sum(counts[s] for s in ENDED), f"done {counts['done']} failed {failed}"


def dry_run(made: DryRun) -> list[str]:
    """A dry run in about fifteen lines whatever the batch's size: where it was kept, the model
    and videos, the array's layout, the files to read (job scripts, submit commands), the
    dependency between chained arrays said once, and the estimate with its source."""
    run, settings, plans = made.run, made.run.settings, made.plans
    model = run.model
    lines = [f"dry run: nothing was queued; run {run.id} kept in {run.path} (marked by dry-run.json)"]
    lines.append(f"  model     {model['scorer']} ({Path(model['snapshot']).name})")
    if made.preflight is not None:
        lines.append(f"  videos    {made.preflight.videos}, {made.preflight.total_bytes / 1e9:.2f} GB to stage")
    else:
        lines.append(f"  videos    {len(run)} (not checked: --no-check)")
    lines.append(f"  array     {_layout(run, plans)}")
    chained = next((w for p in plans[1:] for w in p.argv if PREVIOUS in w), None)
    if chained is not None:
        lines.append(
            f"  chained   each array waits for the one before it ({chained.replace(PREVIOUS, '$previous')}, "
            "$previous being the job id its command printed)"
        )
    scripts = list(dict.fromkeys(p.script_path for p in plans if p.script_path is not None))
    if len(scripts) == 1:
        lines.append(f"  script    {scripts[0]}")
    elif scripts:
        names = [s.name for s in scripts]
        shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]}"
        lines.append(f"  scripts   {len(names)} in {scripts[0].parent}: {shown} (one per array)")
    else:
        lines.append(f"  script    none: the {settings.scheduler} scheduler runs each index's dlcrun task itself")
    lines.append(f"  commands  {made.commands} (in order; kept to be read)")
    lines += _estimate(made.estimate, run)
    manifest = shlex.quote(run.dry.manifest) if run.dry is not None and run.dry.manifest else "MANIFEST"
    return [*lines, f"to queue it: dlcrun submit {manifest} with the same options, without --dry-run"]


def _layout(run: Run, plans: Sequence[JobPlan]) -> str:
    """``N indices of K videos (scheduler)``, the split into arrays and the throttle."""
    settings, videos = run.settings, len(run)
    size = run.array_size(videos)
    per = f"{run.videos_per_task} videos" if run.videos_per_task > 1 else "1 video"
    text = f"{size} {'index' if size == 1 else 'indices'} of {per} ({settings.scheduler})"
    if len(plans) > 1:
        limit = f" of at most {settings.max_array_size}" if settings.max_array_size else ""
        text += f"; split into {len(plans)} arrays{limit} by the scheduler's array size limit"
    running = settings.max_running or (1 if settings.scheduler == "local" else None)
    return text + (f"; at most {running} at once" if running else "; no limit on how many run at once")


def _longest(found: Estimate, run: Run) -> str:
    """The videos of the longest index, by manifest line as status numbers them: ``video #12``."""
    first = found.longest_index * run.videos_per_task
    last = min(first + run.videos_per_task, len(run)) - 1
    return f"video #{first}" if first == last else f"videos #{first}-#{last}"


def _estimate(found: Estimate, run: Run) -> list[str]:
    """The estimate's lines: its source, wall time per index and the hours held in all, a warning
    when the longest index would pass the time limit; or why there is none."""
    rate = found.rate
    if rate is None:
        return [f"  estimate  none: {found.missing}"]
    hosts = rate.hosts[0] if rate.hosts else "an unnamed host"
    if len(rate.hosts) > 1:
        hosts += f" and {len(rate.hosts) - 1} other host{'s' if len(rate.hosts) > 2 else ''}"
    load = f", model load {rate.load_seconds:.0f} s per index" if rate.load_seconds else ""
    source = (
        f"  estimate  from run {rate.run}: {_videos(rate.videos)} on {hosts}, median "
        f"{rate.seconds_per_gb:.1f} s per GB of video{load}"
    )
    if found.missing:
        return [source, f"            none yet: {found.missing}"]
    each = f"{found.per_index} {found.unit}{'s' if found.per_index > 1 else ''} each"
    if found.scheduler not in CLUSTERS:  # the local scheduler: this machine's hours, at its pace
        held = f"about {_duration(found.index_hours * 3600 / found.max_running)} in all, {found.max_running} at a time"
    else:
        held = f"{found.charged_hours:,.1f} {found.unit}-hours ({each})"
    per_index = (
        f"            per index about {_duration(found.index_seconds)} (longest {_duration(found.longest_seconds)}, "
        f"{_longest(found, run)}); {found.indices} {'index' if found.indices == 1 else 'indices'}: {held}"
    )
    lines = [source, per_index]
    if found.over_limit:
        lines.append(
            f"  warning   {_longest(found, run)}: about {_duration(found.longest_seconds)}, past the time limit "
            f"{found.limit}; raise --time to {found.suggested_time}"
        )
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
