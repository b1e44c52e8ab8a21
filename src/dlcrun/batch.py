"""Starting, inspecting, resubmitting and cancelling runs: what the CLI verbs call."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dlcrun.container import runs_here
from dlcrun.decoders import check_decoder
from dlcrun.errors import ConfigError, StorageError
from dlcrun.inference import (
    TENSORFLOW,
    ModelSpec,
    installed,
    pin_in_image,
    pin_model,
)
from dlcrun.ledger import Record, Run, Submission
from dlcrun.manifest import Manifest, output_folders, read_manifest
from dlcrun.schedulers import JobPlan, scheduler_for
from dlcrun.settings import Settings
from dlcrun.storage import StoredObject, basename, scheme_of, storage_for

FINAL = ("done", "failed", "interrupted")


@dataclass
class Preflight:
    videos: int
    total_bytes: int


# A folder holding this many of a manifest's videos is listed once instead of asked about each.
LIST_AT = 4


def check_sources(manifest: Manifest) -> Preflight:
    """Every manifest line must exist before a single GPU hour is spent on it.

    A month of hourly video is hundreds of files per camera folder, and for a cloud backend
    each question is a round trip (for rclone, a process too): folders holding several of the
    videos are listed once, the rest are asked about a few at a time.
    """
    groups: dict[str, list[str]] = {}
    for entry in manifest.entries:
        folder, _, name = entry.rpartition("/")
        if folder and name:
            groups.setdefault(folder, []).append(entry)
    listed: dict[str, StoredObject] = {}
    for folder, entries in groups.items():
        if len(entries) < LIST_AT:
            continue
        try:
            names = {o.uri.rpartition("/")[2]: o for o in storage_for(folder).list(folder)}
        except StorageError:  # a missing folder, or one the backend cannot list: ask per file
            continue
        # Only hits count: a name the listing leaves out (hidden, another case on Dropbox) is asked.
        listed.update((e, names[n]) for e in entries if (n := e.rpartition("/")[2]) in names)
    todo = [e for e in manifest.entries if e not in listed]
    with ThreadPoolExecutor(max_workers=8) as pool:
        asked = dict(zip(todo, pool.map(lambda entry: storage_for(entry).stat(entry), todo)))
    found_all = [listed.get(e) or asked[e] for e in manifest.entries]
    missing, total = [], 0
    for entry, found in zip(manifest.entries, found_all):
        if found is None:
            missing.append(entry)
        else:
            total += found.size
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise StorageError(f"{len(missing)} manifest videos not found: {', '.join(missing[:3])}{more}")
    return Preflight(videos=len(manifest.entries), total_bytes=total)


def _absolute(settings: Settings) -> Settings:
    """Freeze paths as absolute: array indices run in other working directories."""
    updates: dict[str, object] = {"runs_dir": settings.runs_dir.expanduser().resolve()}
    if settings.project is not None:
        updates["project"] = settings.project.expanduser().resolve()
    if settings.dest and scheme_of(settings.dest) == "file" and not settings.dest.startswith("file:"):
        updates["dest"] = os.path.abspath(os.path.expanduser(settings.dest))
    if settings.scratch is not None:
        updates["scratch"] = settings.scratch.expanduser()
    return settings.model_copy(update=updates)


def start_run(manifest_path: Path, settings: Settings, check: bool = True) -> tuple[Run, Preflight | None]:
    """Validate everything a run needs, pin the snapshot and create the run directory."""
    manifest = read_manifest(manifest_path)
    if settings.project is None:
        raise ConfigError("no DeepLabCut project: pass --project or set project in dlcrun.toml")
    if not settings.dest:
        raise ConfigError("no destination for the keypoints: pass --dest or set dest in dlcrun.toml")
    if settings.dest.rstrip("/") in {os.path.dirname(e) for e in manifest.entries}:
        raise ConfigError(f"dest {settings.dest} is a video folder; keypoints go to a different folder")
    _check_unique_outputs(manifest)
    settings = _absolute(settings)
    preflight = check_sources(manifest) if check else None
    spec = pin(settings)
    if runs_here(settings.image):
        check_decoder(settings.decoder)  # the indices run in this environment
    if spec.engine == TENSORFLOW and runs_here(settings.image) and not installed("tensorflow"):
        raise ConfigError(
            f"{settings.project}: shuffle {settings.shuffle} is a TensorFlow-engine (DLC 2.x) model and neither this "
            "environment nor an image has TensorFlow: build the TensorFlow image (make image ENGINE=tensorflow) and "
            "pass --image, or run from .venv-tf (make install-tf)"
        )
    run = Run.create(settings.runs_dir, settings, manifest, spec.to_dict(), name=Path(manifest_path).stem)
    return run, preflight


def pin(settings: Settings) -> ModelSpec:
    """The snapshot every index will use: pinned here, or inside the image where DLC is not installed."""
    assert settings.project is not None
    args = (settings.project, settings.shuffle, settings.trainingsetindex, settings.snapshot)
    if installed("deeplabcut"):
        return pin_model(*args)
    if not runs_here(settings.image):
        return pin_in_image(settings.image, *args, scratch=settings.scratch)
    raise ConfigError(
        "DeepLabCut is not installed here: set image (dlcrun.toml or --image) to pin the snapshot and run the "
        "indices in it, or install DeepLabCut (make install)"
    )


def _check_unique_outputs(manifest: Manifest) -> None:
    seen: dict[tuple[str, str], str] = {}
    for entry, folder in zip(manifest.entries, output_folders(manifest.entries)):
        key = (folder, Path(basename(entry)).stem)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {entry} would write the same keypoint file; rename one")
        seen[key] = entry


def submit(run: Run, indices: list[int] | None = None) -> Submission:
    """Queue one array over ``indices`` (all of the manifest by default)."""
    settings = run.settings
    indices = list(range(len(run))) if indices is None else indices
    scheduler = scheduler_for(settings.scheduler)
    number = run.next_submission_number()
    run.write_indices(number, indices)
    max_running = _max_running(settings, scheduler.name)
    job_ids = scheduler.submit(run, number, run.array_size(len(indices)), max_running)
    return run.add_submission(number, scheduler.name, job_ids, indices, max_running)


def plan(run: Run, indices: list[int] | None = None) -> list[JobPlan]:
    """What ``submit`` would write and run (``--dry-run``); writes nothing."""
    scheduler = scheduler_for(run.settings.scheduler)
    size = len(run) if indices is None else len(indices)
    return scheduler.plan(run, run.next_submission_number(), size, _max_running(run.settings, scheduler.name))


def _max_running(settings: Settings, scheduler: str) -> int | None:
    return settings.max_running or (1 if scheduler == "local" else None)


@dataclass
class Status:
    run: Run
    states: dict[int, str]
    records: dict[int, Record]
    counts: Counter[str] = field(default_factory=Counter)
    submissions: list[Submission] = field(default_factory=list)

    @property
    def failures(self) -> list[Record]:
        return [r for i, r in sorted(self.records.items()) if self.states[i] in ("failed", "interrupted", "lost")]

    @property
    def finished(self) -> bool:
        return all(s not in ("pending", "running", "queued") for s in self.states.values())


def last_submission(submissions: list[Submission]) -> dict[int, Submission]:
    """Per manifest index, the submission that queued it last."""
    return {i: sub for sub in submissions for i in sub.indices}


def status(run: Run) -> Status:
    """Merge the ledger (the truth for finished indices) with the scheduler's live view."""
    records = run.records()
    submissions = run.submissions()
    live: dict[int, str] = {}
    by_scheduler: dict[str, list[str]] = {}
    for sub in submissions:
        by_scheduler.setdefault(sub.scheduler, []).extend(sub.job_ids)
    for name, jobs in by_scheduler.items():
        live.update(scheduler_for(name).states(run, jobs))
    last_sub = last_submission(submissions)
    last_submitted = {i: sub.submitted for i, sub in last_sub.items()}
    states: dict[int, str] = {}
    for i in range(len(run)):
        rec = records.get(i)
        # A final record counts unless a later submission has the index queued or running again,
        # or the scheduler requeued an interrupted index itself (Slurm --requeue after preemption).
        again = (
            rec is not None and i in live and (rec.state == "interrupted" or rec.finished < last_submitted.get(i, ""))
        )
        if rec is not None and rec.state in FINAL and not again:
            states[i] = rec.state
        elif i in live:
            states[i] = "queued" if live[i] == "pending" else "running"
        elif i in last_sub and last_sub[i].cancelled and (rec is None or rec.state not in FINAL):
            states[i] = "cancelled"  # by dlcrun cancel, before it could record a result
        elif rec is not None and rec.state not in FINAL:  # running, but its job is gone: it died hard
            states[i] = "lost"
            rec.error = rec.error or "the task stopped without recording a result (killed?)"
        elif rec is not None:
            states[i] = rec.state
        else:
            states[i] = "lost" if i in last_sub else "pending"
    return Status(run=run, states=states, records=records, counts=Counter(states.values()), submissions=submissions)


def resubmit(run: Run, resources: dict[str, object] | None = None, max_running: int | None = None) -> Submission | None:
    """A new array of the indices that are not done and not queued or running.

    ``resources`` (e.g. ``{"time": "12:00:00"}``) and ``max_running`` change what this and later
    arrays ask for: the usual answer to indices interrupted by the time limit.
    """
    current = status(run)
    todo = [i for i, s in sorted(current.states.items()) if s not in ("done", "running", "queued")]
    if not todo:
        return None
    if resources or max_running is not None:
        run.update_scheduling(resources or {}, max_running)
    return submit(run, todo)


def cancel(run: Run) -> int:
    """Stop every array of the run; indices it stops before they start then read ``cancelled``."""
    current = status(run)
    by_scheduler: dict[str, list[Submission]] = {}
    for sub in current.submissions:
        by_scheduler.setdefault(sub.scheduler, []).append(sub)
    owner = last_submission(current.submissions)
    busy = {owner[i].number for i, state in current.states.items() if state in ("running", "queued") and i in owner}
    for name, subs in by_scheduler.items():
        scheduler_for(name).cancel(run, [j for sub in subs for j in sub.job_ids])
        for sub in subs:  # only arrays that still had work: an older array's losses stay "lost"
            if sub.cancelled is None and sub.number in busy:
                run.mark_cancelled(sub)
    return sum(1 for s in current.states.values() if s in ("running", "queued"))
