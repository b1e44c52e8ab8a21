"""``dlcrun report``: the run's results as one self-contained web page with its images.

``<run>/report/index.html`` and PNGs beside it (matplotlib's Agg backend, drawn from
``results.gather``), linked by relative paths, so the folder can be copied anywhere (``--dest``
puts a copy next to the keypoints, through the storage seam) and opened from disk: no
JavaScript, no fonts or scripts from the network. Every video is in the aggregates (the
likelihood distribution per bodypart, the score histogram and the score of each video by
manifest line) and in ``scores.csv``; only the ``worst`` lowest scores get a section each, so
5,000 videos make a page of the same size as 50.

A shown video's section has its numbers (from the record), a likelihood histogram per bodypart
(from the record too), and, where its ``.h5`` can be read here, its trajectories and likelihood
over time; a labelled clip the run made (``Record.clip``) is copied in and played by a
``<video>`` tag. The page is written to a fresh folder that replaces the old one whole: images
of an earlier report never linger beside a new page.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcrun.errors import DlcrunError, one_line
from dlcrun.ledger import Run
from dlcrun.locations import basename, join
from dlcrun.results import BINS, WORST, Bodypart, Ranked, Results, Track, gather, number, track
from dlcrun.storage import storage_for

FOLDER = "report"
PAGE = "index.html"
COLORMAP = "rainbow"  # DeepLabCut's default, when the project's config.yaml cannot be read here
MAX_POINTS = 4000  # per line in a time plot: a 100,000-frame video is binned to this many points
DPI = 96


@dataclass
class Written:
    """What ``write`` made: the page, its images, and where a copy went."""

    folder: Path
    page: Path
    images: list[Path]
    shown: int  # videos in detail
    ranked: int  # videos with numbers
    copied_to: str = ""  # the location of the copy next to the keypoints (--dest); "" when none
    warnings: list[str] = field(default_factory=list)


def write(run: Run, worst: int = WORST, dest: bool = False, now: dt.datetime | None = None) -> Written:
    """Write ``run``'s report into ``<run>/report/`` (replacing an earlier one); with ``dest``,
    copy it to ``<dest>/report-<run id>/`` next to the keypoints as well."""
    results = gather(run, worst, now)
    target = run.path / FOLDER
    building = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=run.path))
    try:
        images = _build(run, results, building, now or dt.datetime.now(dt.timezone.utc))
        old = run.path / f".{FOLDER}-old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(building, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    written = Written(
        folder=target,
        page=target / PAGE,
        images=[target / p for p in images],
        shown=len(results.shown),
        ranked=len(results.ranking),
        warnings=results.warnings,
    )
    if dest:
        written.copied_to = copy_to_dest(run, target)
    return written


def copy_to_dest(run: Run, folder: Path) -> str:
    """Copy the report folder to ``<dest>/report-<run id>/`` with the run's storage; its location."""
    base = run.settings.dest
    if not base:
        raise DlcrunError(f"--dest: the run {run.id} has no dest to copy the report next to")
    where = join(base, f"{FOLDER}-{run.id}")
    storage = storage_for(where)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        storage.put(path, join(where, path.relative_to(folder).as_posix()))
    return where


# ------------------------------------------------------------------ the page


def _build(run: Run, results: Results, folder: Path, now: dt.datetime) -> list[str]:
    """Figures, clips, scores.csv and index.html into ``folder``; the images' relative paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a login node; before anything draws
    images: list[str] = []
    if results.bodyparts:
        images.append(_save(_likelihood_figure(results.bodyparts, results.pcutoff), folder, "likelihood.png"))
    if results.ranking:
        images.append(_save(_scores_figure(results, len(run)), folder, "scores.png"))
    _scores_csv(results, folder / "scores.csv")
    colormap = _colormap(run)
    sections = []
    with tempfile.TemporaryDirectory(prefix="dlcrun-report-") as workdir:
        for rank, shown in enumerate(results.shown, 1):
            section, made = _detail(run, results, shown, rank, folder, Path(workdir), colormap)
            sections.append(section)
            images += made
    (folder / PAGE).write_text(_page(results, sections, images, now), encoding="utf-8")
    return images


def _save(fig: Any, folder: Path, name: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return name


def _colormap(run: Run) -> str:
    """The project's ``colormap`` (config.yaml), as DeepLabCut's plots use it; else its default."""
    from matplotlib import colormaps

    try:
        from ruamel.yaml import YAML

        project = run.settings.project
        config = (
            project
            if project is not None and project.suffix in (".yaml", ".yml")
            else Path(str(project)) / "config.yaml"
        )
        name = str((YAML(typ="safe").load(config.read_text()) or {}).get("colormap") or COLORMAP)
    except Exception:  # unreadable, absent, not YAML: the page is still worth having
        return COLORMAP
    return name if name in colormaps else COLORMAP


def _detail(
    run: Run, results: Results, shown: Ranked, rank: int, folder: Path, workdir: Path, colormap: str
) -> tuple[str, list[str]]:
    """One shown video's section and the images it links."""
    stem = f"videos/{shown.index:06d}"
    hists = [
        Bodypart(name=name, hist=[int(v) for v in q["hist"]], rows=shown.frames, below=number(q.get("below")), mean=0.0)
        for name, q in shown.bodyparts([bp.name for bp in results.bodyparts])
    ]
    images = [_save(_likelihood_figure(hists, results.pcutoff, compact=True), folder, f"{stem}-hist.png")]
    keypoints = track(shown.record, workdir)
    if isinstance(keypoints, Track):
        images.append(_save(_trajectory_figure(keypoints, results.pcutoff, colormap), folder, f"{stem}-trajectory.png"))
        images.append(
            _save(
                _over_time_figure(keypoints, results.pcutoff, shown.worst, colormap), folder, f"{stem}-likelihood.png"
            )
        )
        note = ""
    else:
        note = keypoints
    clip = _clip(run, shown, folder)
    return _section(shown, rank, results, images, note, clip), images


def _clip(run: Run, shown: Ranked, folder: Path) -> tuple[str, str]:
    """(relative path of the copied clip, "") or ("", why there is none to play)."""
    if not shown.clip:
        return "", ""
    source = Path(shown.clip)
    source = source if source.is_absolute() else run.path / source
    if not source.is_file():
        return "", f"its labelled clip {shown.clip} is not in the run directory"
    name = f"clips/{shown.index:06d}-{source.name}"
    (folder / "clips").mkdir(exist_ok=True)
    shutil.copyfile(source, folder / name)
    return name, ""


def _scores_csv(results: Results, path: Path) -> None:
    """Every ranked video, worst first: what the page shows only in aggregate."""
    order = [bp.name for bp in results.bodyparts]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["rank", "index", "video", "score", "frames", "weakest_bodypart", "worst_start", "worst_end"])
        for rank, r in enumerate(results.ranking, 1):
            worst = r.worst
            out.writerow(
                [
                    rank,
                    r.index,
                    r.video,
                    f"{r.score:.4f}",
                    r.frames,
                    r.weakest(order),
                    worst.get("start", ""),
                    worst.get("end", ""),
                ]
            )


# ------------------------------------------------------------------ figures


def _figure(width: float, height: float, margins: tuple[float, float, float, float] | None = None) -> Any:
    """A figure (no pyplot: nothing global, nothing to close). ``margins`` (left, right, bottom,
    top, in inches) place the axes at once; without them matplotlib's constrained layout fits
    them, at about twice the drawing time: worth it only for the run's few figures."""
    from matplotlib.figure import Figure

    if margins is None:
        return Figure(figsize=(width, height), layout="constrained")
    fig = Figure(figsize=(width, height))
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig


def _likelihood_figure(parts: list[Bodypart], pcutoff: float, compact: bool = False) -> Any:
    """Each bodypart's likelihood distribution as one row of a heat map (fraction of its frames
    per bin of 0.05), the pcutoff marked, the fraction under it written at the right."""
    from matplotlib.colors import PowerNorm

    rows = np.array([bp.hist for bp in parts], dtype=float)
    totals = rows.sum(axis=1, keepdims=True)
    fractions = np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)
    height = 0.8 + 0.26 * len(parts)
    if compact:  # one per shown video: margins from the longest name (8 pt: ~0.07 in a character)
        fig = _figure(7.0, height, (0.2 + 0.07 * max(len(bp.name) for bp in parts), 0.9, 0.55, 0.1))
    else:
        fig = _figure(9.0, height + 0.6)
    ax = fig.add_subplot()
    shown = ax.imshow(
        fractions,
        aspect="auto",
        cmap="YlGnBu",
        norm=PowerNorm(0.4, vmin=0, vmax=1),
        extent=(0, 1, len(parts) - 0.5, -0.5),
        interpolation="nearest",
    )
    ax.axvline(pcutoff, color="#d33", linewidth=1.5, linestyle="--")
    ax.set_yticks(range(len(parts)), [bp.name for bp in parts], fontsize=8)
    ax.set_xlabel(f"likelihood (bins of {1 / BINS:g}); dashed: pcutoff {pcutoff:g}", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(len(parts)), [f"{bp.below:.0%} under" for bp in parts], fontsize=8)
    if not compact:
        ax.set_title("Likelihood by bodypart, every video with numbers", fontsize=10)
        fig.colorbar(shown, ax=ax, label="fraction of frames", shrink=0.8, pad=0.12, ticks=[0, 0.01, 0.05, 0.2, 0.5, 1])
    return fig


def _scores_figure(results: Results, lines: int) -> Any:
    """Every video's score: their histogram, and each by manifest line (the shown ones in red),
    so a camera or a day that failed stands out without listing 5,000 names."""
    fig = _figure(9.0, 3.0)
    hist_ax, line_ax = fig.subplots(1, 2, width_ratios=(1, 2))
    scores = np.array([r.score for r in results.ranking])
    hist_ax.hist(scores, bins=np.linspace(0, 1, BINS + 1), color="#4a7ab5")
    hist_ax.set_xlabel("score (fraction of frames at or above pcutoff)", fontsize=8)
    hist_ax.set_ylabel("videos", fontsize=8)
    shown = {r.index for r in results.shown}
    index = np.array([r.index for r in results.ranking])
    mask = np.array([i in shown for i in index], dtype=bool)
    size = 4 if len(scores) > 500 else 12
    line_ax.scatter(index[~mask], scores[~mask], s=size, color="#4a7ab5", linewidths=0)
    line_ax.scatter(index[mask], scores[mask], s=size * 3, color="#d33", linewidths=0, label="shown below")
    line_ax.set_xlim(-0.5, max(lines, 1) - 0.5)
    line_ax.set_ylim(-0.02, 1.02)
    line_ax.set_xlabel("manifest line", fontsize=8)
    line_ax.set_ylabel("score", fontsize=8)
    if mask.any():
        line_ax.legend(fontsize=8, loc="lower right")
    for ax in (hist_ax, line_ax):
        ax.tick_params(labelsize=8)
    return fig


def _colors(colormap: str, n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps[colormap]
    return [cmap(k / max(n - 1, 1)) for k in range(n)]


def _binned(frames: np.ndarray, values: np.ndarray, reduce: str) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: each bin's first frame and its min (a dip stays visible) or mean."""
    if len(values) <= MAX_POINTS:
        return frames, values
    edges = np.linspace(0, len(values), MAX_POINTS + 1).astype(int)
    starts = edges[:-1]
    with np.errstate(all="ignore"):
        if reduce == "min":
            reduced = np.fmin.reduceat(values, starts)
        else:
            sums = np.add.reduceat(np.nan_to_num(values), starts)
            counts = np.add.reduceat((~np.isnan(values)).astype(float), starts)
            reduced = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
    return frames[starts], reduced


def _trajectory_figure(keypoints: Track, pcutoff: float, colormap: str) -> Any:
    """x and y of each bodypart over the video's frames, frames under pcutoff left out (as
    DeepLabCut's plot_trajectories leaves them out)."""
    fig = _figure(9.0, 4.2, (0.75, 0.2, 0.5, 0.5))
    x_ax, y_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.08})
    names = list(keypoints.likelihood)
    for name, color in zip(names, _colors(colormap, len(names))):
        sure = keypoints.likelihood[name] >= pcutoff
        for ax, coord in ((x_ax, keypoints.x), (y_ax, keypoints.y)):
            if name in coord:
                values = np.where(sure, coord[name], np.nan)
                ax.plot(*_binned(keypoints.frames, values, "mean"), color=color, linewidth=0.8, label=name)
    if len(keypoints.frames):
        x_ax.set_xlim(keypoints.frames[0], max(keypoints.frames[-1], keypoints.frames[0] + 1))
    if not any((p >= pcutoff).any() for p in keypoints.likelihood.values()):
        for ax in (x_ax, y_ax):
            ax.text(0.5, 0.5, f"every point is under pcutoff {pcutoff:g}", transform=ax.transAxes, ha="center")
    x_ax.set_ylabel("x (px)", fontsize=8)
    y_ax.set_ylabel("y (px)", fontsize=8)
    y_ax.invert_yaxis()  # image rows grow downwards
    y_ax.set_xlabel(f"frame (points under pcutoff {pcutoff:g} left out)", fontsize=8)
    fig.text(0.75 / 9.0, 1 - 0.12 / 4.2, "Trajectories", fontsize=10, va="top")
    if len(names) <= 16:  # above the plots, right of the title
        x_ax.legend(fontsize=7, ncols=min(len(names), 8), loc="lower right", bbox_to_anchor=(1, 1), frameon=False)
    for ax in (x_ax, y_ax):
        ax.tick_params(labelsize=8)
    return fig


def _over_time_figure(keypoints: Track, pcutoff: float, worst: dict[str, Any], colormap: str) -> Any:
    """Each bodypart's likelihood over the video (binned by the minimum, so no dip hides), the
    pcutoff, and the worst stretch the record names shaded."""
    fig = _figure(9.0, 2.8, (0.75, 0.2, 0.5, 0.3))
    ax = fig.add_subplot()
    names = list(keypoints.likelihood)
    for name, color in zip(names, _colors(colormap, len(names))):
        ax.plot(*_binned(keypoints.frames, keypoints.likelihood[name], "min"), color=color, linewidth=0.8, alpha=0.8)
    ax.axhline(pcutoff, color="#333", linewidth=1, linestyle="--")
    start, end = worst.get("start"), worst.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        ax.axvspan(start, max(end, start + 1), color="#d33", alpha=0.2, linewidth=0)
    if len(keypoints.frames):
        ax.set_xlim(keypoints.frames[0], max(keypoints.frames[-1], keypoints.frames[0] + 1))
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("likelihood", fontsize=8)
    ax.set_xlabel(f"frame; dashed: pcutoff {pcutoff:g}; shaded: the worst stretch", fontsize=8)
    ax.set_title("Likelihood over time", fontsize=10)
    ax.tick_params(labelsize=8)
    return fig


# ------------------------------------------------------------------ HTML

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta, .note { color: #666; } .note { font-style: italic; }
table { border-collapse: collapse; margin: 0.6em 0; }
td, th { padding: 0.2em 0.7em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
article { border-top: 1px dashed #ccc; margin-top: 1.5em; padding-top: 0.5em; }
.bad { color: #b00; } code { font-size: 0.92em; } video { max-width: 100%; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"


def _page(results: Results, sections: list[str], images: list[str], now: dt.datetime) -> str:
    s = results.summary
    shown_images = set(images)
    head = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>dlcrun report: {_e(s.run_id)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>Run {_e(s.run_id)}</h1>\n"
        f'<p class="meta">model {_e(s.scorer or "?")}, snapshot {_e(basename(s.snapshot) or "?")}; '
        f"pcutoff {results.pcutoff:g}; report made {now.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
        f"{'' if s.finished else ' while the run was still going'}.</p>\n"
    )
    parts = [head, _summary_html(results), _failures_html(results)]
    parts.append('<section id="likelihood">\n<h2>Likelihood by bodypart</h2>\n')
    if "likelihood.png" in shown_images:
        parts.append(
            f"<p>Every done video with quality numbers ({len(results.ranking):,}): each row is one bodypart's "
            "frames by likelihood, darker where more of them fall; the dashed line is the project's pcutoff, "
            "under which DeepLabCut's plots and labelled videos leave a keypoint out.</p>\n"
            '<img src="likelihood.png" alt="likelihood distribution per bodypart">\n'
        )
    else:
        parts.append('<p class="note">No done video has quality numbers yet.</p>\n')
    parts.append(_numbers_note(results) + "</section>\n")
    parts.append(_ranking_html(results, "scores.png" in shown_images))
    parts.append(f'<section id="worst">\n<h2>The worst {len(results.shown)} in detail</h2>\n')
    parts += sections or ['<p class="note">No video to show.</p>\n']
    parts.append("</section>\n</body>\n</html>\n")
    return "".join(parts)


def _summary_html(results: Results) -> str:
    s = results.summary
    t = s.throughput
    counts = ", ".join(f"{n:,} {state}" for state, n in sorted(s.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    fps = t.frames_per_second
    rows = [
        ("videos", f"{s.videos:,} ({counts})" if counts else f"{s.videos:,}"),
        ("frames", f"{s.frames:,} in the done videos' keypoints"),
        (
            "wall time",
            f"{_hours(s.wall_seconds)} from the first start to the {'last finish' if s.finished else 'report'}",
        ),
        (
            "frames/s",
            f"{fps:,.1f} (frames over inference seconds, {t.inferred:,} videos analysed by this run)" if fps else "-",
        ),
        ("index hours", f"{s.index_hours:,.2f} (each record's start to finish, summed)"),
        ("GPU-hours", f"{s.gpu_hours:,.2f} ({s.gpus} GPU per array index)" if s.gpus else "0 (no GPU asked for)"),
        ("CPU-hours", f"{s.cpu_hours:,.2f} ({s.cpus} CPU cores per array index)"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>\n" for k, v in rows)
    warnings = "".join(f'<p class="note">{_e(one_line(w, 300))}</p>\n' for w in results.warnings)
    return f'<section id="summary">\n<h2>Summary</h2>\n<table>\n{body}</table>\n{warnings}</section>\n'


def _failures_html(results: Results) -> str:
    failed = sum(g.count for g in results.groups)
    out = [f'<section id="failures">\n<h2>Failures: {failed:,}</h2>\n']
    if not results.groups:
        out.append('<p class="note">None.</p>\n</section>\n')
        return "".join(out)
    out.append('<table>\n<tr><th class="n">videos</th><th>state</th><th>reason</th><th>examples</th></tr>\n')
    for g in results.groups:
        examples = "<br>".join(
            f"#{x.index} {_e(basename(x.video))}"
            + (f" (job {_e(x.job_id)})" if x.job_id else "")
            + (f"<br><code>{_e(x.log)}</code>" if x.log is not None else "")
            for x in g.examples
        )
        out.append(
            f'<tr><td class="n">{g.count:,}</td><td>{_e(g.state)}</td>'
            f"<td>{_e(one_line(g.reason, 400))}</td><td>{examples}</td></tr>\n"
        )
    out.append("</table>\n</section>\n")
    return "".join(out)


def _numbers_note(results: Results) -> str:
    if not results.without_numbers:
        return ""
    n = len(results.without_numbers)
    damaged = len(results.damaged_numbers)
    why = (
        f" ({damaged:,} with numbers this dlcrun cannot read, e.g. #{next(iter(results.damaged_numbers))}: "
        f"{_e(next(iter(results.damaged_numbers.values())))})"
        if damaged
        else ""
    )
    return (
        f'<p class="note">{n:,} done videos have no numbers{why}: analysed by an older dlcrun (here, or '
        "in the outputs found done at the destination). They are counted above but not ranked.</p>\n"
    )


def _ranking_html(results: Results, figure: bool) -> str:
    ranked = len(results.ranking)
    out = [f'<section id="ranking">\n<h2>Videos by score, worst first: {ranked:,}</h2>\n']
    if figure:
        out.append(
            "<p>A video's score is the fraction of its frames at or above pcutoff, averaged over bodyparts "
            "(1 is best). Left: how the scores spread; right: each video's by manifest line, the ones shown "
            "in detail in red.</p>\n"
            '<img src="scores.png" alt="score histogram and score by manifest line">\n'
        )
    order = [bp.name for bp in results.bodyparts]
    if results.shown:
        out.append(
            '<table>\n<tr><th class="n">rank</th><th class="n">#</th><th>video</th><th class="n">score</th>'
            '<th class="n">frames</th><th>most often under pcutoff</th><th>worst stretch (frames)</th></tr>\n'
        )
        for rank, r in enumerate(results.shown, 1):
            worst = r.worst
            stretch = f"{worst.get('start')}-{worst.get('end')}" if worst else "-"
            out.append(
                f'<tr><td class="n">{rank}</td><td class="n">{r.index}</td>'
                f'<td><a href="#video-{r.index}">{_e(basename(r.video))}</a></td>'
                f'<td class="n">{r.score:.3f}</td><td class="n">{r.frames:,}</td>'
                f"<td>{_e(r.weakest(order))}</td><td>{_e(stretch)}</td></tr>\n"
            )
        out.append("</table>\n")
    rest = ranked - len(results.shown)
    if rest:
        out.append(
            f'<p class="note">The other {rest:,} are in the figure above and, ranked, in '
            '<a href="scores.csv">scores.csv</a>.</p>\n'
        )
    out.append("</section>\n")
    return "".join(out)


def _f(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _cells(n: dict[str, Any]) -> str:
    """One bodypart's numbers as table cells; its fraction under pcutoff in red past a half."""
    below = n.get("below")
    bad = " bad" if isinstance(below, (int, float)) and below > 0.5 else ""
    cells = [
        ("n", _f(n.get("mean"), ".2f")),
        ("n", _f(n.get("p05"), ".2f")),
        ("n", _f(n.get("median"), ".2f")),
        ("n" + bad, _f(below, ".1%")),
        ("n", _f(n.get("longest_below"), ",")),
        ("n", _f(n.get("jump_median"), ".1f")),
        ("n", _f(n.get("jump_p95"), ".1f")),
        ("n", _f(n.get("jump_max"), ".1f")),
    ]
    return "".join(f'<td class="{c}">{v}</td>' for c, v in cells)


def _section(shown: Ranked, rank: int, results: Results, images: list[str], note: str, clip: tuple[str, str]) -> str:
    worst = shown.worst
    where = (
        f"; worst stretch: frames {_e(worst.get('start'))}-{_e(worst.get('end'))}, "
        f"mean likelihood {_f(worst.get('mean'), '.2f')}"
        if worst
        else ""
    )
    head = (
        f'<article id="video-{shown.index}">\n<h3>{rank}. #{shown.index} {_e(basename(shown.video))}: '
        f"score {shown.score:.3f}</h3>\n"
        f'<p class="meta"><code>{_e(shown.video)}</code>, {shown.frames:,} frames{where}</p>\n'
    )
    order = [bp.name for bp in results.bodyparts]
    rows = "".join(f"<tr><td>{_e(name)}</td>{_cells(n)}</tr>\n" for name, n in shown.bodyparts(order))
    table = (
        '<table>\n<tr><th>bodypart</th><th class="n">mean</th><th class="n">p05</th><th class="n">median</th>'
        f'<th class="n">under {results.pcutoff:g}</th><th class="n">longest under (rows)</th>'
        '<th class="n">jump median</th><th class="n">jump p95</th><th class="n">jump max (px)</th></tr>\n'
        f"{rows}</table>\n"
    )
    figures = "".join(f'<img src="{_e(p)}" alt="{_e(Path(p).stem)}">\n' for p in images)
    extra = f'<p class="note">No trajectory or likelihood-over-time plot: {_e(note)}.</p>\n' if note else ""
    source, missing = clip
    if source:
        extra += f'<video controls muted preload="metadata" src="{_e(source)}"></video>\n'
    elif missing:
        extra += f'<p class="note">No clip: {_e(missing)}.</p>\n'
    return head + table + figures + extra + "</article>\n"
