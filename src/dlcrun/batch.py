"""Starting, inspecting, resubmitting and cancelling runs: what the CLI verbs call."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dlcrun.container import runs_here
from dlcrun.decoders import check_decoder
from dlcrun.engines import engine_for, pin_in_image, pin_model
from dlcrun.errors import ClientMissing, ConfigError, DlcrunError, RunError, StorageError, SubmissionError, one_line
from dlcrun.estimate import Estimate, estimate
from dlcrun.files import NAME_MAX, PART_NAME_EXTRA, write_text
from dlcrun.inference import ModelSpec, Sampling, installed
from dlcrun.ledger import DRY_RUN, DryRunMark, Record, Run, Submission, now
from dlcrun.locations import basename, output_folders, scheme_of
from dlcrun.manifest import Manifest, read_manifest
from dlcrun.outputs import output_names
from dlcrun.schedulers import PREVIOUS, JobPlan, scheduler_for, unreachable
from dlcrun.schedulers.scripts import write_script
from dlcrun.settings import Settings
from dlcrun.storage import StoredObject, storage_for

FINAL = ("done", "failed", "interrupted")


@dataclass
class Preflight:
    videos: int
    total_bytes: int
    sizes: list[int] = field(default_factory=list)  # bytes per manifest line, in order (a dry run's estimate)


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
    missing = [entry for entry, found in zip(manifest.entries, found_all) if found is None]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise StorageError(f"{len(missing)} manifest videos not found: {', '.join(missing[:3])}{more}")
    sizes = [found.size for found in found_all if found is not None]
    return Preflight(videos=len(manifest.entries), total_bytes=sum(sizes), sizes=sizes)


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


@dataclass
class _Checked:
    """What a run is made of once everything it needs has been validated."""

    manifest: Manifest
    settings: Settings  # paths made absolute
    spec: ModelSpec
    preflight: Preflight | None
    name: str  # of the run, after the manifest file


def start_run(manifest_path: Path, settings: Settings, check: bool = True) -> tuple[Run, Preflight | None]:
    """Validate everything a run needs, pin the snapshot and create the run directory."""
    ready = _check(manifest_path, settings, check)
    run = Run.create(ready.settings.runs_dir, ready.settings, ready.manifest, ready.spec.to_dict(), ready.name)
    return run, ready.preflight


def launch(manifest_path: Path, settings: Settings, check: bool = True) -> tuple[Run, Preflight | None, Submission]:
    """Start a run and queue its whole manifest as one array: what ``dlcrun submit`` and the demo do.

    A submission the scheduler refuses has queued nothing, so its run directory is removed too:
    no run is left behind that never ran (``status`` would show it as all pending forever).
    """
    run, preflight = start_run(manifest_path, settings, check)
    note_unreachable(run)
    try:
        return run, preflight, submit(run)
    except DlcrunError:
        shutil.rmtree(run.path, ignore_errors=True)
        raise


def note_unreachable(run: Run) -> None:
    """A warning on ``run`` when the cluster's nodes may not start the dlcrun its job scripts call."""
    if (found := unreachable(run)) is not None:
        run.warn(Path(found[0]), found[1])


@dataclass
class DryRun:
    """What ``submit --dry-run`` made: a run directory marked as a dry run, holding the job
    scripts and the commands that would queue them, and an estimate of what they would take."""

    run: Run
    preflight: Preflight | None  # None with --no-check
    plans: list[JobPlan]  # in the order they would be submitted
    commands: Path  # submissions/<n>.submit.sh: the submit commands, in that order
    estimate: Estimate


def dry_run(manifest_path: Path, settings: Settings, check: bool = True) -> DryRun:
    """Everything ``launch`` does but queue (``submit --dry-run``).

    After the same checks the run directory is created for real, marked as a dry run
    (``dry-run.json``), with the exact job scripts at the paths their commands name and the
    submit commands, in order, in ``submissions/<n>.submit.sh``: what a user reads is what
    would run, and stays to be read. ``status`` says it is a dry run; ``resubmit`` and ``cancel``
    refuse it. The estimate comes from an earlier run of the same model (``estimate.py``).
    Anything that fails on the way removes the directory again: no half-made dry run is left.
    """
    ready = _check(manifest_path, settings, check)
    mark = DryRunMark(made=now(), manifest=os.path.abspath(manifest_path))
    model = ready.spec.to_dict()
    run = Run.create(ready.settings.runs_dir, ready.settings, ready.manifest, model, ready.name, dry=mark)
    try:
        note_unreachable(run)
        plans = plan(run)
        for job in plans:
            if job.script is not None and job.script_path is not None:
                write_script(job.script_path, job.script)
        commands = run.path / "submissions" / f"{run.next_submission_number():03d}.submit.sh"
        write_text(commands, submit_commands(run, plans, mark))
        found = estimate(run, ready.preflight.sizes if ready.preflight is not None else None)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return DryRun(run=run, preflight=ready.preflight, plans=plans, commands=commands, estimate=found)


def submit_commands(run: Run, plans: list[JobPlan], mark: DryRunMark) -> str:
    """The submit commands of ``plans`` as a commented bash file, in order. An array that waits
    for the one before it (its plan holds ``PREVIOUS``) gets that one's job id through the shell
    variable ``$previous``, fed by the command before it, and explained once.

    The file refuses to run: arrays queued by hand would be unknown to the ledger (no job ids for
    ``status``, no ``.indices`` file for their tasks to read), so it is kept to be read."""
    chained = any(PREVIOUS in word for job in plans for word in job.argv)
    lines = [
        "#!/bin/bash",
        f"# dlcrun submit --dry-run ({mark.made}): the commands that would queue run {run.id}, in order.",
        "# Nothing was queued. To queue the run, submit its manifest again without --dry-run:",
        f"#   dlcrun submit {shlex.quote(mark.manifest)} ... (the same options)",
        "# dlcrun then records the job ids in the ledger; running these commands by hand would not.",
    ]
    if chained:
        lines += [
            "# An array that waits for the one before it names that array's job id as $previous: the id",
            "# the command before it printed (sbatch --parsable may add ';<cluster>', removed here).",
        ]
    lines += ["", 'echo "$0: a dry run\'s commands, kept to be read; dlcrun submit queues the run" >&2', "exit 1", ""]
    for k, job in enumerate(plans):
        words = " ".join(_shell_word(word) for word in job.argv)
        if k + 1 < len(plans) and any(PREVIOUS in word for word in plans[k + 1].argv):
            lines += [f"previous=$({words}) || exit", "previous=${previous%%;*}"]
        else:
            lines.append(words)
    return "\n".join(lines) + "\n"


def _shell_word(word: str) -> str:
    """``word`` quoted for bash, with the job id placeholder as ``"$previous"``."""
    if PREVIOUS not in word:
        return shlex.quote(word)
    return '"$previous"'.join(shlex.quote(part) if part else "" for part in word.split(PREVIOUS))


def dry_words(run: Run, mark: DryRunMark, verb: str = "") -> str:
    """One line: ``run`` is a dry run, nothing was submitted (so nothing to ``verb``), and how to submit it."""
    when = f" (made {mark.made[:16].replace('T', ' ')} UTC)" if mark.made else ""
    manifest = shlex.quote(mark.manifest) if mark.manifest else "MANIFEST"
    so = f", so there is nothing to {verb}" if verb else ""
    return (
        f"run {run.id} is a dry run{when}: nothing was submitted{so}; to queue it: dlcrun submit {manifest} "
        "with the same options, without --dry-run"
    )


def _refuse_dry(run: Run, verb: str) -> None:
    """A dry run has no arrays: resubmitting or cancelling one is a mistake, said in one line."""
    mark = run.dry
    if mark is not None:
        raise RunError(dry_words(run, mark, verb))


def _check(manifest_path: Path, settings: Settings, check: bool) -> _Checked:
    """Everything a run needs, checked before it exists: that a cluster is asked for the GPU the
    indices would use, the manifest, project and dest, that no two videos share an output, the
    videos themselves (``check``), the pinned snapshot."""
    if (reason := settings.cpu_on_a_cluster()) is not None:
        raise ConfigError(reason)
    manifest = read_manifest(manifest_path)
    if settings.project is None:
        raise ConfigError("no DeepLabCut project: pass --project or set project in dlcrun.toml")
    if not settings.dest:
        raise ConfigError("no destination for the keypoints: pass --dest or set dest in dlcrun.toml")
    if settings.dest.rstrip("/") in {os.path.dirname(e) for e in manifest.entries}:
        raise ConfigError(f"dest {settings.dest} is a video folder; keypoints go to a different folder")
    _check_unique_outputs(manifest, settings.dest)
    settings = _absolute(settings)
    preflight = check_sources(manifest) if check else None
    spec = pin(settings)
    _check_output_names(manifest, spec, settings)
    if runs_here(settings.image):
        check_decoder(settings.decoder)  # the indices run in this environment
    return _Checked(manifest, settings, spec, preflight, name=Path(manifest_path).stem)


def pin(settings: Settings) -> ModelSpec:
    """The snapshot every index will use: pinned here, or inside the image where DLC is not installed.

    Refused when the shuffle's engine cannot run at the run's precision or on its device, or
    lacks its libraries where the indices will run: every index would otherwise fail on it.
    """
    assert settings.project is not None
    args = (settings.project, settings.shuffle, settings.trainingsetindex, settings.snapshot)
    if installed("deeplabcut"):
        spec = pin_model(*args)
    elif not runs_here(settings.image):
        spec = pin_in_image(settings.image, *args, scratch=settings.scratch)
    else:
        raise ConfigError(
            "DeepLabCut is not installed here: set image (dlcrun.toml or --image) to pin the snapshot and run the "
            "indices in it, or install DeepLabCut (make install)"
        )
    engine = engine_for(spec.engine)
    reason = engine.supports(settings.precision, settings.device)
    if reason is not None:
        which = f"the {engine.title} engine (shuffle {settings.shuffle}) {reason}"
        if engine.supports("fp32", settings.device) is None:  # every engine runs fp32: the precision is at fault
            raise ConfigError(f"precision {settings.precision}: {which}; submit with --precision fp32")
        raise ConfigError(f"device {settings.device}: {which}")
    if runs_here(settings.image) and (missing := engine.missing_here()) is not None:
        raise ConfigError(f"{settings.project}: shuffle {settings.shuffle} {missing}")
    _check_model_settings(spec, settings)
    return spec


def _check_model_settings(spec: ModelSpec, settings: Settings) -> None:
    """What a multi-animal project or a top-down model cannot be run with, refused before
    anything is queued (each index would otherwise fail on it)."""
    shuffle = f"shuffle {settings.shuffle}"
    if spec.multi_animal:
        why = f"{shuffle} is a multi-animal project, whose animals DLC's tracker follows over every frame"
        if settings.stride > 1 or settings.every_seconds is not None:
            flag = f"--stride {settings.stride}" if settings.every_seconds is None else f"--every {settings.every}"
            raise ConfigError(f"{flag}: {why}; analyse every frame (no --stride/--every)")
        if settings.filter:
            raise ConfigError(f"--filter {settings.filter}: {why}; run deeplabcut.filterpredictions on the tracks")
        if settings.qc_clips:
            raise ConfigError(f"--qc-clips: {why}; dlcrun draws clips for single-animal projects only")
    if spec.top_down and settings.precision != "fp32":
        raise ConfigError(f"--precision {settings.precision}: {shuffle} is top-down; it runs in fp32 (DLC's runners)")
    if settings.detector_batch_size is not None and not spec.top_down:
        raise ConfigError(
            f"--detector-batch-size {settings.detector_batch_size}: {shuffle} is a bottom-up model (no detector)"
        )


def _check_unique_outputs(manifest: Manifest, dest: str = "") -> None:
    """Every video's keypoints land inside dest, under a name of their own, that fits.

    Names are compared without regard to case: Dropbox, macOS and SMB shares do not tell
    ``A.mp4`` from ``a.mp4``, so one would overwrite the other there. A name that would
    exceed the 255-byte limit once the hidden temporary suffix is added is refused here, not
    after its inference.
    """
    seen: dict[str, tuple[str, str]] = {}
    for entry, folder in zip(manifest.entries, output_folders(manifest.entries)):
        if folder.startswith("..") or folder.startswith("/"):
            raise ConfigError(f"{entry}: its keypoints would go to {folder}, outside dest {dest}; fix the manifest")
        name = basename(entry)
        _check_name_length(entry, name, "its file name")
        exact = posixpath.join(folder, Path(name).stem)
        if exact.casefold() in seen:
            other, other_exact = seen[exact.casefold()]
            case = " (the names differ only in case)" if other_exact != exact else ""
            raise ConfigError(f"{other} and {entry} would write the same keypoint file{case}; rename one")
        seen[exact.casefold()] = (entry, exact)


def _check_name_length(entry: str, name: str, what: str) -> None:
    size = len(name.encode("utf-8"))
    if size + PART_NAME_EXTRA > NAME_MAX:
        raise ConfigError(
            f"{entry}: {what} ({name[:40]}...) is {size} bytes; with the {PART_NAME_EXTRA}-byte hidden suffix used "
            f"while it is written it exceeds the {NAME_MAX}-byte limit of file names: rename the video"
        )


def _check_output_names(manifest: Manifest, spec: ModelSpec, settings: Settings) -> None:
    """The longest output name of each video must fit, scorer and all."""
    suffix = Sampling(stride=settings.stride, every=settings.every_seconds).suffix
    for entry in manifest.entries:
        prefix = f"{Path(basename(entry)).stem}{spec.scorer}{suffix}"
        names = output_names(spec, prefix, settings.save_csv, settings.filter)
        _check_name_length(entry, max(names, key=lambda n: len(n.encode("utf-8"))), "its keypoint file name")


def submit(run: Run, indices: list[int] | None = None, settings: Settings | None = None) -> Submission:
    """Queue one array over ``indices`` (all of the manifest by default).

    ``settings`` (a resubmission's new resources, already validated) are what the array asks
    for; settings.json gets them only once the array is queued. A refused submission leaves
    the run directory as it was: what was written for it (.indices, job script) is removed.
    """
    indices = list(range(len(run))) if indices is None else indices
    with run.proposing(settings):
        current = run.settings
        scheduler = scheduler_for(current.scheduler)
        number = run.next_submission_number()
        max_running = _max_running(current, scheduler.name)
        run.write_indices(number, indices)  # the array reads it: written before anything is queued
        try:
            job_ids = scheduler.submit(run, number, run.array_size(len(indices)), max_running)
        except Exception:
            run.discard_submission(number)
            raise
    sub = run.add_submission(number, scheduler.name, job_ids, indices, max_running)
    if settings is not None:
        run.write_settings(settings)
    return sub


def plan(run: Run, indices: list[int] | None = None) -> list[JobPlan]:
    """What ``submit`` would write and run (``--dry-run``); writes nothing."""
    scheduler = scheduler_for(run.settings.scheduler)
    size = run.array_size(len(run) if indices is None else len(indices))
    return scheduler.plan(run, run.next_submission_number(), size, _max_running(run.settings, scheduler.name))


def _max_running(settings: Settings, scheduler: str) -> int | None:
    return settings.max_running or (1 if scheduler == "local" else None)


@dataclass(frozen=True)
class Unseen:
    """A scheduler status could not ask: its client is missing here, or it did not answer."""

    scheduler: str
    said: str  # the error, one line
    missing: str = ""  # the client not found on PATH (squeue, qstat), when that was why

    @property
    def why(self) -> str:
        """A few words for the state's label: ``no squeue here``."""
        return f"no {self.missing} here" if self.missing else f"{self.scheduler} did not answer"


def live_states(run: Run, submissions: list[Submission], unseen: dict[str, Unseen] | None = None) -> dict[int, str]:
    """The schedulers' view by manifest index: each scheduler is asked once, about its own
    submissions; a live array index stands for the manifest lines it processes (its task group
    of the submission's indices). Where two arrays hold one index, the later submission's says.

    With ``unseen``, a scheduler that cannot be asked (SubmissionError: no ``squeue`` here, or it
    failed) is noted there and left out, instead of raising."""
    by_scheduler: dict[str, list[Submission]] = {}
    for sub in submissions:
        by_scheduler.setdefault(sub.scheduler, []).append(sub)
    indices = {sub.number: sub.indices for sub in submissions}
    live: dict[int, str] = {}
    for name, subs in by_scheduler.items():
        try:
            answered = scheduler_for(name).states(run, subs)
        except SubmissionError as exc:
            if unseen is None:
                raise
            unseen[name] = Unseen(name, one_line(str(exc), 300), exc.command if isinstance(exc, ClientMissing) else "")
            continue
        for (number, k), state in sorted(answered.items()):
            if number in indices and k >= 0:
                live.update((i, state) for i in run.task_group(indices[number], k))
    return live


@dataclass
class Status:
    run: Run
    settings: Settings  # the run's frozen settings, as status read them
    states: dict[int, str]
    records: dict[int, Record]
    counts: Counter[str] = field(default_factory=Counter)
    submissions: list[Submission] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line per damaged ledger file (and per unseen scheduler)
    # Schedulers that could not be asked, by name: their indices without a final record of their
    # latest array read "unknown"; one warning line each (also in ``warnings``).
    unseen: dict[str, Unseen] = field(default_factory=dict)
    unseen_warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Record]:
        return [r for i, r in sorted(self.records.items()) if self.states[i] in ("failed", "interrupted", "lost")]

    @property
    def finished(self) -> bool:
        return all(s not in ("pending", "running", "queued", "unknown") for s in self.states.values())

    def submission_for(self, index: int) -> Submission | None:
        """The submission whose array ran ``index``'s recorded attempt, else (no record, or one that
        cannot name its array) the last that queued it; None when neither is known."""
        subs = {sub.number: sub for sub in self.submissions}
        rec = None if index in self.run.damaged_records else self.records.get(index)  # not the stand-in record
        number = _submission_of(rec, _jobs_by_key(self.submissions)) if rec is not None else None
        if number in subs:
            return subs[number]
        if rec is not None and rec.submission is None and not rec.job_id:
            return None  # dlcrun task --index: no array ran it
        return last_submission(self.submissions).get(index)


def last_submission(submissions: list[Submission]) -> dict[int, Submission]:
    """Per manifest index, the submission that queued it last."""
    return {i: sub for sub in submissions for i in sub.indices}


def _job_key(job_id: str) -> str:
    """What ties an index's job id to its array's: Slurm 42_3 / 42, PBS 42[3].srv / 42[].srv,
    local local-42_3 / local-42-<start>-<boot>."""
    found = re.match(r"local-\d+|\d+", job_id)
    return found.group(0) if found else job_id


def _submission_of(record: Record, by_job: dict[str, int | None]) -> int | None:
    """The submission an attempt ran under: recorded by the task, else (a record of an older
    dlcrun) found from its job id; None for ``task --index`` or when it cannot be told."""
    if record.submission is not None:
        return record.submission
    return by_job.get(_job_key(record.job_id)) if record.job_id else None


def _jobs_by_key(submissions: list[Submission]) -> dict[str, int | None]:
    """Submission number by job key (``_job_key``); None for an id two submissions share."""
    by_job: dict[str, int | None] = {}
    for sub in submissions:
        for job in sub.job_ids:
            key = _job_key(job)
            by_job[key] = sub.number if by_job.get(key, sub.number) == sub.number else None  # a reused id: unknown
    return by_job


DAMAGED = "its record is damaged (see the warning); counted as not done, resubmit reruns it"


def status(run: Run, need_scheduler: bool = False) -> Status:
    """Merge the ledger (the truth for finished indices) with the scheduler's live view.

    Clocks are never compared (a compute node's clock is not the login node's): whether a
    record still counts while its index is queued again is decided by submission numbers.

    A scheduler that cannot be asked (no ``squeue`` on this machine, or it failed) leaves the
    ledger alone to say: an index of its arrays with a final record of the latest array that
    queued it counts as that record says; any other (queued, running or gone: nothing tells
    which) reads ``unknown``, and one warning line says why. ``need_scheduler`` (resubmit,
    cancel: they act on what is queued) raises the scheduler's error instead.
    """
    settings = run.settings  # first: what is wrong with it is warned about (or raised) like the ledger's files
    if (mark := run.dry) is not None:  # the newest run (Run.find) may be one: said once, above its pending counts
        run.warnings[str(run.path / DRY_RUN)] = dry_words(run, mark)
    records = run.records()
    submissions = run.submissions()
    unseen: dict[str, Unseen] = {}
    live = live_states(run, submissions, None if need_scheduler else unseen)
    last_sub = last_submission(submissions)
    by_job = _jobs_by_key(submissions)
    states: dict[int, str] = {}
    for i in range(len(run)):
        rec = records.get(i)
        sub = last_sub.get(i)
        if sub is not None and sub.scheduler in unseen and not sub.cancelled and i not in run.damaged_records:
            # Only a final record of its latest array can be trusted: anything else may be queued or running.
            ran_under = _submission_of(rec, by_job) if rec is not None else None
            final = rec is not None and rec.state in FINAL and ran_under is not None and ran_under >= sub.number
            states[i] = rec.state if final and rec is not None else "unknown"
            continue
        if rec is None and i in run.damaged_records:
            if i in live:  # its array index is coming; it writes a new record over the damaged one
                states[i] = "queued" if live[i] == "pending" else "running"
            else:
                states[i] = "failed"
                records[i] = Record(index=i, video=run.manifest.entries[i], state="failed", error=DAMAGED)
            continue
        # A final record counts unless its index is queued or running again: under a later
        # submission than the record's own (or one the record cannot name, e.g. task --index),
        # or requeued by the scheduler itself after an interruption (Slurm --requeue, preemption).
        again = False
        if rec is not None and i in live and i in last_sub:
            ran_under = _submission_of(rec, by_job)
            again = rec.state == "interrupted" or ran_under is None or ran_under < last_sub[i].number
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
    counts = Counter(states.values())
    unknown = Counter(last_sub[i].scheduler for i, state in states.items() if state == "unknown")
    blind = [
        f"{u.said}; status shows the ledger alone: {unknown[name]} videos of its arrays without a final record "
        "read unknown (queued, running or gone)"
        for name, u in unseen.items()
    ]
    return Status(
        run=run,
        settings=settings,
        states=states,
        records=records,
        counts=counts,
        submissions=submissions,
        warnings=[*run.warnings.values(), *blind],
        unseen=unseen,
        unseen_warnings=blind,
    )


def watch(run: Run, every: float = 1.0) -> Iterator[Status]:
    """``status`` every ``every`` seconds until every index has finished (the last one yielded),
    or until a scheduler cannot be asked (what it would say stays unknown)."""
    while True:
        current = status(run)
        yield current
        if current.finished or current.unseen:
            return
        time.sleep(every)


def resubmit(
    run: Run,
    resources: dict[str, object] | None = None,
    max_running: int | None = None,
    flags: dict[str, str] | None = None,
) -> Submission | None:
    """A new array of the indices that are not done and not queued or running.

    ``resources`` (e.g. ``{"time": "12:00:00"}``) and ``max_running`` change what this and later
    arrays ask for: the usual answer to indices interrupted by the time limit. They are validated
    before anything is written, and settings.json holds them only once the new array is queued:
    a refused resubmission changes nothing in the run directory. ``flags`` name the flag each
    setting came from (``resources.time`` -> ``--time``), for the error that refuses a value.
    """
    _refuse_dry(run, "resubmit")
    changed = resources or max_running is not None
    updated = run.scheduling(resources or {}, max_running, flags) if changed else None
    current = status(run, need_scheduler=True)
    todo = [i for i, s in sorted(current.states.items()) if s not in ("done", "running", "queued")]
    if not todo:
        return None
    return submit(run, todo, settings=updated)


def cancel(run: Run) -> int:
    """Stop the arrays of the run that still have queued or running indices; indices it stops
    before they start then read ``cancelled``. Finished arrays are left alone: not signalled
    (their job ids may belong to someone else by now) and not marked cancelled."""
    _refuse_dry(run, "cancel")
    current = status(run, need_scheduler=True)
    owner = last_submission(current.submissions)
    busy = {owner[i].number for i, state in current.states.items() if state in ("running", "queued") and i in owner}
    by_scheduler: dict[str, list[Submission]] = {}
    for sub in current.submissions:
        if sub.number in busy:
            by_scheduler.setdefault(sub.scheduler, []).append(sub)
    for name, subs in by_scheduler.items():
        scheduler_for(name).cancel(run, [j for sub in subs for j in sub.job_ids])
        for sub in subs:
            if sub.cancelled is None:
                run.mark_cancelled(sub)
    return sum(1 for s in current.states.values() if s in ("running", "queued"))
