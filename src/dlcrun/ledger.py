"""The run directory: the single source of truth about a batch.

``runs/<run-id>/`` lives on shared storage, so it holds plain files only, each written to a
temporary name and renamed (atomic on POSIX filesystems, NFS included); there is no database
to lock. Array indices write only their own record, so they never contend.

    settings.json        resolved settings, frozen at submit
    model.json           the pinned snapshot and scorer
    manifest.txt         the manifest as submitted
    records/<i>.json     one per manifest index once it has started
    submissions/<n>.json one per array submitted (job ids, the indices it covers)
    logs/                scheduler stdout/stderr per index
    dry-run.json         only in a run made by ``submit --dry-run``: nothing was queued for it
                         (its job scripts and ``submissions/<n>.submit.sh`` are kept to be read)

Every read tolerates damage (a file emptied by a full disk, truncated, edited by hand, or
written by a newer dlcrun with keys this one does not know): unknown keys are ignored, and a
record or submission that cannot be read is left out and noted in ``Run.warnings`` (one line
per file) for the CLI to show, never a traceback. Only settings.json and model.json are
indispensable: their damage is a one-line RunError naming the file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dlcrun.errors import RunError
from dlcrun.files import Damaged, read_object, why, write_json
from dlcrun.manifest import Manifest, read_manifest, write_manifest
from dlcrun.settings import Resources, Settings, explain

log = logging.getLogger(__name__)

SUBMISSION_GLOB = "[0-9][0-9][0-9].json"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Output:
    uri: str
    size: int
    sha256: str


@dataclass
class Record:
    """What happened to one manifest index, over all its attempts."""

    index: int
    video: str
    state: str = "running"
    attempts: int = 0
    job_id: str = ""
    host: str = ""
    started: str = ""
    finished: str = ""
    bytes_in: int = 0
    frames: int = 0
    stride: int = 1
    scorer: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    error: str = ""
    # The submission (array) this attempt ran under; None for `dlcrun task --index`. status
    # compares submission numbers, never the clocks of the login and compute nodes.
    submission: int | None = None
    # Where the video came from: location, size and content hash (see task.SourceIdentity).
    source: dict[str, Any] = field(default_factory=dict)
    # Every location (final and hidden part names) this attempt may have written at the
    # destination while publishing; a later attempt removes what a killed one left there.
    publishing: list[str] = field(default_factory=list)
    # How well the video was tracked (quality.QualityAccumulator.result(): per bodypart
    # likelihood percentiles, time under pcutoff, jumps, the worst window); {} before DLC ran.
    quality: dict[str, Any] = field(default_factory=dict)
    # The labelled clip of the worst stretch (--qc-clips), relative to the run directory
    # (clips/<index>-<stem>.mp4); "" when none was asked for or it could not be made.
    clip: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON; keys a newer dlcrun added are ignored, wrong types raise
        pydantic's ValidationError (a ValueError)."""
        return _RECORD.validate_python(data)


@dataclass
class Submission:
    number: int
    scheduler: str
    job_ids: list[str]
    indices: list[int]
    submitted: str
    max_running: int | None
    cancelled: str | None = None  # when `dlcrun cancel` stopped it


DRY_RUN = "dry-run.json"


@dataclass(frozen=True)
class DryRunMark:
    """What marks a run made by ``submit --dry-run``: when, and the manifest to submit for real.

    Written before settings.json, so no directory that is a run lacks it once it was a dry run."""

    made: str
    manifest: str  # the manifest file as given to submit, made absolute
    queued: bool = False  # always False: said in the file for whoever reads it by hand


# Validate what a file holds against the dataclass (types, nested outputs); unknown keys are dropped.
_RECORD = TypeAdapter(Record)
_SUBMISSION = TypeAdapter(Submission)
_DRY_RUN = TypeAdapter(DryRunMark)


class Run:
    """An existing run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / "settings.json").is_file():
            raise RunError(f"{self.path}: not a dlcrun run directory (no settings.json)")
        self._manifest: Manifest | None = None
        self._per_task: int | None = None
        self._proposed: Settings | None = None
        # One line per damaged or surprising ledger file, by path: what status/resubmit/cancel show.
        self.warnings: dict[str, str] = {}
        self._shown: set[str] = set()
        # Manifest indices whose record file is damaged: they count as not done.
        self.damaged_records: dict[int, str] = {}

    @property
    def id(self) -> str:
        return self.path.name

    @classmethod
    def create(
        cls,
        runs_dir: Path,
        settings: Settings,
        manifest: Manifest,
        model: dict[str, Any],
        name: str,
        dry: DryRunMark | None = None,
    ) -> Run:
        """A new run directory; with ``dry``, one marked as a dry run (nothing will be queued)."""
        path = _new_path(Path(runs_dir), name)
        (path / "records").mkdir(parents=True)
        (path / "logs").mkdir()
        (path / "submissions").mkdir()
        write_manifest(path / "manifest.txt", manifest)
        write_json(path / "model.json", model)
        if dry is not None:
            write_json(path / DRY_RUN, asdict(dry))
        write_json(path / "settings.json", settings.model_dump(mode="json"))
        return cls(path)

    @classmethod
    def find(cls, run: str | Path | None, runs_dir: Path) -> Run:
        """A run by path, by id under ``runs_dir``, or the newest there when ``run`` is None."""
        if run is not None:
            for candidate in (Path(run), Path(runs_dir) / str(run)):
                if (candidate / "settings.json").is_file():
                    return cls(candidate)
            raise RunError(f"{run}: no such run (looked in . and {runs_dir})")
        runs = sorted(p for p in Path(runs_dir).glob("*/settings.json")) if Path(runs_dir).is_dir() else []
        if not runs:
            raise RunError(f"{runs_dir}: no runs yet (dlcrun submit starts one)")
        return cls(runs[-1].parent)

    def warn(self, path: Path, message: str) -> None:
        """Note one line about ``path`` for the CLI to show (once per file)."""
        self.warnings[str(path)] = f"{path}: {message}"

    def new_warnings(self) -> list[str]:
        """The warnings not returned before (a status followed in a loop shows each once)."""
        fresh = [w for key, w in self.warnings.items() if key not in self._shown]
        self._shown.update(self.warnings)
        return fresh

    def _indispensable(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            return read_object(path)
        except FileNotFoundError:
            raise RunError(f"{path}: missing; nothing in this run can start without it") from None
        except Damaged as exc:
            raise RunError(f"{path}: damaged ({exc}); nothing in this run can start without it") from None

    @property
    def settings(self) -> Settings:
        """The frozen settings (or, while a resubmission is being made, the ones it proposes).

        Keys a newer dlcrun wrote are dropped with a warning; anything else wrong is a RunError."""
        if self._proposed is not None:
            return self._proposed
        path = self.path / "settings.json"
        data = self._indispensable("settings.json")
        known, unknown = _known_settings(data)
        if unknown:
            self.warn(path, f"ignoring {', '.join(unknown)} (written by a newer dlcrun?)")
        try:
            return Settings.model_validate(known)
        except ValidationError as exc:
            raise RunError(f"{path}: damaged ({why(exc)}); nothing in this run can start without it") from None

    def scheduling(
        self, resources: dict[str, Any], max_running: int | None = None, flags: dict[str, str] | None = None
    ) -> Settings:
        """The settings with what later arrays ask the scheduler for changed (more time, memory,
        another partition), validated; nothing is written (``write_settings`` does, once queued).

        Only scheduling changes: what decides the keypoints (snapshot, batch size, precision,
        sampling) stays as the run was submitted, so every index's output stays comparable.
        """
        current = self.settings
        merged = {**current.resources.model_dump(), **resources}
        changes: dict[str, Any] = {"resources": merged}
        if max_running is not None:
            changes["max_running"] = max_running
        try:
            return Settings.model_validate({**current.model_dump(mode="json"), **changes})
        except ValidationError as exc:
            raise RunError(f"{self.id}: {explain(exc, changes, flags)}") from None

    def write_settings(self, settings: Settings) -> None:
        """Replace settings.json, keeping any keys a newer dlcrun wrote there."""
        path = self.path / "settings.json"
        old = self._indispensable("settings.json")
        new = settings.model_dump(mode="json")
        _, unknown = _known_settings(old)
        for key in unknown:
            top, _, sub = key.partition(".")
            if sub:
                new[top][sub] = old[top][sub]
            else:
                new[top] = old[top]
        write_json(path, new)

    @contextmanager
    def proposing(self, settings: Settings | None) -> Iterator[None]:
        """While inside, ``settings`` reads ``settings`` (None: no change): a submission plans
        with the resources it asks for before settings.json holds them."""
        before = self._proposed
        self._proposed = settings if settings is not None else before
        try:
            yield
        finally:
            self._proposed = before

    @property
    def model(self) -> dict[str, Any]:
        return self._indispensable("model.json")

    @property
    def dry(self) -> DryRunMark | None:
        """How the run was made by ``submit --dry-run``; None for a run that was submitted. A
        damaged mark still marks it (with a warning): only its details are lost."""
        path = self.path / DRY_RUN
        try:
            return _DRY_RUN.validate_python(read_object(path))
        except FileNotFoundError:
            return None
        except (Damaged, ValidationError) as exc:
            self.warn(path, f"damaged ({why(exc)}); still a dry run")
            return DryRunMark(made="", manifest="")

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = read_manifest(self.path / "manifest.txt")
        return self._manifest

    def __len__(self) -> int:
        return len(self.manifest.entries)

    def record_path(self, index: int) -> Path:
        return self.path / "records" / f"{index:06d}.json"

    def _read_record(self, path: Path, index: int) -> Record:
        """The record in ``path`` (for manifest index ``index``); Damaged when it cannot be one."""
        try:
            record = Record.from_dict(read_object(path))
        except ValidationError as exc:
            raise Damaged(why(exc)) from None
        if record.index != index:
            raise Damaged(f"holds index {record.index}")
        return record

    def _damaged_record(self, path: Path, index: int, reason: str) -> None:
        self.damaged_records[index] = reason
        self.warn(path, f"damaged ({reason}); counted as not done")

    def record(self, index: int) -> Record | None:
        """The record of ``index``, or None when there is none yet, or when it is damaged (with a
        warning logged): the caller, an array index starting, writes a fresh one over it."""
        path = self.record_path(index)
        try:
            return self._read_record(path, index)
        except FileNotFoundError:
            return None
        except Damaged as exc:
            self._damaged_record(path, index, str(exc))
            log.warning("%s: damaged (%s); a new record replaces it", path, exc)
            return None

    def write_record(self, record: Record) -> None:
        write_json(self.record_path(record.index), asdict(record))

    def records(self) -> dict[int, Record]:
        """Every record that reads back, by index. A damaged one is left out: its index goes to
        ``damaged_records`` and a line to ``warnings``. Files not named like records are ignored."""
        out = {}
        folder = self.path / "records"
        try:
            names = sorted(os.listdir(folder))  # names, not Paths: ten times cheaper to sort at 5,000 records
        except FileNotFoundError:
            names = []
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if not (dot and suffix == "json" and stem.isdigit()):
                continue
            path, index = folder / name, int(stem)
            try:
                out[index] = self._read_record(path, index)
            except FileNotFoundError:  # removed since the listing
                continue
            except Damaged as exc:
                self._damaged_record(path, index, str(exc))
        return out

    def add_submission(
        self, number: int, scheduler: str, job_ids: list[str], indices: list[int], max_running: int | None
    ) -> Submission:
        sub = Submission(number, scheduler, job_ids, indices, now(), max_running)
        write_json(self.path / "submissions" / f"{number:03d}.json", asdict(sub))
        return sub

    def mark_cancelled(self, sub: Submission) -> Submission:
        """Record that ``sub`` was cancelled, so its never-started indices read as cancelled, not lost."""
        sub = replace(sub, cancelled=now())
        write_json(self.path / "submissions" / f"{sub.number:03d}.json", asdict(sub))
        return sub

    def write_indices(self, number: int, indices: list[int]) -> Path:
        """The array-index -> manifest-index map an array reads (line k is array index k)."""
        path = self.path / "submissions" / f"{number:03d}.indices"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{i}\n" for i in indices))
        os.replace(tmp, path)
        return path

    def discard_submission(self, number: int) -> None:
        """Remove what a refused submission ``number`` wrote (its .indices, job script, ...)."""
        for path in (self.path / "submissions").glob(f"{number:03d}.*"):
            if path.name != f"{number:03d}.json":
                path.unlink(missing_ok=True)

    def next_submission_number(self) -> int:
        numbers = [int(p.name[:3]) for p in (self.path / "submissions").glob(SUBMISSION_GLOB)]
        return max(numbers, default=0) + 1

    def submissions(self) -> list[Submission]:
        """Every submission that reads back, in order; a damaged one is left out with a warning."""
        out = []
        for path in sorted((self.path / "submissions").glob(SUBMISSION_GLOB)):
            try:
                sub = _SUBMISSION.validate_python(read_object(path))
            except FileNotFoundError:
                continue
            except (Damaged, ValidationError) as exc:
                reason = why(exc) if isinstance(exc, ValidationError) else str(exc)
                self.warn(path, f"damaged ({reason}); its array is left out (check the scheduler's queue)")
                continue
            out.append(sub)
        return out

    @property
    def videos_per_task(self) -> int:
        if self._per_task is None:  # settings are frozen at submit: read once
            self._per_task = self.settings.videos_per_task
        return self._per_task

    def array_size(self, n_indices: int) -> int:
        """Array indices for ``n_indices`` manifest lines: each takes ``videos_per_task`` of them."""
        return -(-n_indices // self.videos_per_task)

    def task_group(self, indices: list[int], array_index: int) -> list[int]:
        """The manifest indices array index ``array_index`` processes, of a submission's ``indices``."""
        k = self.videos_per_task
        return indices[array_index * k : (array_index + 1) * k]

    def manifest_indices(self, submission: int | None, array_index: int) -> list[int]:
        """What array index ``array_index`` of ``submission`` processes (read from its .indices file,
        which exists before the array is queued); without a submission, array index = manifest index."""
        if submission is None:
            return [array_index]
        path = self.path / "submissions" / f"{submission:03d}.indices"
        try:
            lines = [int(x) for x in path.read_text().split()]
        except FileNotFoundError:
            raise RunError(f"{path}: missing; was the submission interrupted?") from None
        except (ValueError, OSError) as exc:
            raise RunError(f"{path}: damaged ({why(exc)})") from None
        group = self.task_group(lines, array_index) if array_index >= 0 else []
        if not group:
            raise RunError(f"{path}: array index {array_index} out of range 0-{self.array_size(len(lines)) - 1}")
        return group


def _new_path(runs_dir: Path, name: str) -> Path:
    """A new run's folder: ``<runs_dir>/<date>-<time>-<name>``, suffixed when that one exists."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "run"
    path = runs_dir / f"{stamp}-{slug}"
    if path.exists():
        path = runs_dir / f"{stamp}-{slug}-{secrets.token_hex(2)}"
    return path


def _known_settings(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` without the keys this dlcrun's Settings (and Resources) do not know, and those keys."""
    known = {k: v for k, v in data.items() if k in Settings.model_fields}
    unknown = [k for k in data if k not in Settings.model_fields]
    resources = data.get("resources")
    if isinstance(resources, dict):
        known["resources"] = {k: v for k, v in resources.items() if k in Resources.model_fields}
        unknown += [f"resources.{k}" for k in resources if k not in Resources.model_fields]
    return known, unknown
