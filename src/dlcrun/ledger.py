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
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dlcrun.errors import RunError
from dlcrun.manifest import Manifest, read_manifest, write_manifest
from dlcrun.settings import Settings

SUBMISSION_GLOB = "[0-9][0-9][0-9].json"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def write_json(path: Path, data: Any, mode: int | None = None) -> None:
    """Temp file + fsync + rename: readers see the old or the new file, never a torn one.

    ``mode`` creates the file with those permissions from the start (0o600 for secrets), so
    there is no moment at which others could read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        if mode is not None:
            os.fchmod(fd, mode)  # the umask cannot widen what was asked
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        data["outputs"] = [Output(**o) for o in data.get("outputs", [])]
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Submission:
    number: int
    scheduler: str
    job_ids: list[str]
    indices: list[int]
    submitted: str
    max_running: int | None
    cancelled: str | None = None  # when `dlcrun cancel` stopped it


class Run:
    """An existing run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / "settings.json").is_file():
            raise RunError(f"{self.path}: not a dlcrun run directory (no settings.json)")
        self._manifest: Manifest | None = None
        self._per_task: int | None = None

    @property
    def id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, runs_dir: Path, settings: Settings, manifest: Manifest, model: dict[str, Any], name: str) -> Run:
        runs_dir = Path(runs_dir)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "run"
        path = runs_dir / f"{stamp}-{slug}"
        if path.exists():
            path = runs_dir / f"{stamp}-{slug}-{secrets.token_hex(2)}"
        (path / "records").mkdir(parents=True)
        (path / "logs").mkdir()
        (path / "submissions").mkdir()
        write_manifest(path / "manifest.txt", manifest)
        write_json(path / "model.json", model)
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

    @property
    def settings(self) -> Settings:
        return Settings.model_validate(read_json(self.path / "settings.json"))

    def update_scheduling(self, resources: dict[str, Any], max_running: int | None = None) -> Settings:
        """Change what later arrays ask the scheduler for (more time, memory, another partition).

        Only scheduling changes: what decides the keypoints (snapshot, batch size, precision,
        sampling) stays as the run was submitted, so every index's output stays comparable.
        """
        current = self.settings
        merged = {**current.resources.model_dump(), **resources}
        changes: dict[str, Any] = {"resources": merged}
        if max_running is not None:
            changes["max_running"] = max_running
        try:
            updated = Settings.model_validate({**current.model_dump(mode="json"), **changes})
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RunError(f"{self.id}: {reasons}") from None
        write_json(self.path / "settings.json", updated.model_dump(mode="json"))
        return updated

    @property
    def model(self) -> dict[str, Any]:
        return read_json(self.path / "model.json")

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = read_manifest(self.path / "manifest.txt")
        return self._manifest

    def __len__(self) -> int:
        return len(self.manifest.entries)

    def record_path(self, index: int) -> Path:
        return self.path / "records" / f"{index:06d}.json"

    def record(self, index: int) -> Record | None:
        try:
            return Record.from_dict(read_json(self.record_path(index)))
        except FileNotFoundError:
            return None

    def write_record(self, record: Record) -> None:
        write_json(self.record_path(record.index), asdict(record))

    def records(self) -> dict[int, Record]:
        out = {}
        for path in sorted((self.path / "records").glob("*.json")):
            rec = Record.from_dict(read_json(path))
            out[rec.index] = rec
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

    def next_submission_number(self) -> int:
        return len(list((self.path / "submissions").glob(SUBMISSION_GLOB))) + 1

    def submissions(self) -> list[Submission]:
        return [Submission(**read_json(p)) for p in sorted((self.path / "submissions").glob(SUBMISSION_GLOB))]

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
        group = self.task_group(lines, array_index) if array_index >= 0 else []
        if not group:
            raise RunError(f"{path}: array index {array_index} out of range 0-{self.array_size(len(lines)) - 1}")
        return group

    def manifest_index(self, submission: int | None, array_index: int) -> int:
        """The first (with videos_per_task 1, the only) manifest index of an array index."""
        return self.manifest_indices(submission, array_index)[0]
