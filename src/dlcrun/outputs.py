"""One index's outputs at the destination: where they go, which video they came from, whether
what is already there counts as done.

A re-run costs GPU hours, so an index whose outputs are already at the destination is not
analysed again, but only when they provably came from this video (size and a shared content
hash, recorded in their ``_meta.pickle`` as a ``SourceIdentity``) and this snapshot and sampling,
and the ``.h5`` has one row per analysed frame. A publish cut short lists what it may have left
in the record (``publishing``); the next attempt removes it here before writing anything.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcrun.errors import DlcrunError, InferenceError, StorageError
from dlcrun.filtering import filtered_names
from dlcrun.inference import ModelSpec, Sampling, count_rows
from dlcrun.ledger import Output, Record, Run
from dlcrun.locations import basename, join, output_folders
from dlcrun.storage import StoredObject, storage_for
from dlcrun.tracking import names as tracked_names

log = logging.getLogger(__name__)


class Plan:
    """Where one index's inputs come from and its outputs go, derived from the run alone."""

    def __init__(self, run: Run, index: int):
        settings = run.settings
        entries = run.manifest.entries
        if not 0 <= index < len(entries):
            raise DlcrunError(f"{run.path}: index {index} out of range 0-{len(entries) - 1}")
        if not settings.dest:
            raise DlcrunError(f"{run.path}: the run has no destination (dest)")
        self.index = index
        self.video = entries[index]
        self.stem = Path(basename(self.video)).stem
        self.spec = ModelSpec.from_dict(run.model)
        self.sampling = Sampling(stride=settings.stride, every=settings.every_seconds)
        folder = output_folders(entries)[index]
        if folder.startswith("..") or folder.startswith("/"):  # a manifest edited by hand
            raise DlcrunError(f"{self.video}: its outputs would go to {folder}, outside dest {settings.dest}")
        self.dest_dir = join(settings.dest, folder)
        prefix = self.stem + self.spec.scorer + self.sampling.suffix
        self.filter = settings.filter  # DLC's filterpredictions outputs join the set (dlcrun.filtering)
        names = output_names(self.spec, prefix, settings.save_csv, self.filter)
        self.outputs = [join(self.dest_dir, n) for n in names]  # .h5 last: its presence implies the rest


def output_names(spec: ModelSpec, prefix: str, save_csv: bool, filtertype: str | None) -> list[str]:
    """The files one video's run leaves, named as DLC names them, ``_meta.pickle`` first and the
    .h5 last: DLC's keypoints (and filterpredictions' files), or for a multi-animal project what
    analyze_videos(auto_track=True) writes (``dlcrun.tracking``: tracks, no plain .h5)."""
    if spec.multi_animal:
        return tracked_names(prefix, spec.tracker_suffix, save_csv)
    filtered = filtered_names(prefix, save_csv) if filtertype else []
    return [f"{prefix}_meta.pickle"] + [f"{prefix}.csv"] * save_csv + filtered + [f"{prefix}.h5"]


@dataclass(frozen=True)
class SourceIdentity:
    """Which video an output came from: its location as given, its size, and content hashes
    (``sha256`` always once downloaded; the storage's own, e.g. ``dropbox``, where it has one).

    Two identities are the same video when the sizes agree and every hash kind both know
    agrees (at least one must be shared): the location alone proves nothing (``trial1.mp4`` of
    two mice), and the same bytes under another name are the same video.
    """

    location: str
    size: int
    hashes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"location": self.location, "size": self.size, "hashes": dict(self.hashes)}

    @classmethod
    def from_dict(cls, data: object) -> SourceIdentity | None:
        try:
            assert isinstance(data, dict)
            hashes = {str(k): str(v) for k, v in dict(data["hashes"]).items()}
            return cls(location=str(data["location"]), size=int(data["size"]), hashes=hashes)
        except (AssertionError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def matches(self, size: int, hashes: dict[str, str]) -> bool | None:
        """True/False when the hashes tell; None when no hash kind is shared (a download will)."""
        if size != self.size:
            return False
        shared = set(hashes) & set(self.hashes)
        if not shared:
            return None
        return all(hashes[k] == self.hashes[k] for k in shared)


def tagged_hash(content_hash: str | None) -> dict[str, str]:
    """``"dropbox:ab12"`` -> ``{"dropbox": "ab12"}``."""
    if not content_hash or ":" not in content_hash:
        return {}
    kind, value = content_hash.split(":", 1)
    return {kind: value}


@dataclass
class Claim:
    """What the outputs already at the destination say about themselves (their _meta.pickle)."""

    source: SourceIdentity | None
    snapshot: str | None
    frames: int
    stride: int
    fps: float
    found: list[StoredObject | None]  # plan.outputs as stat'ed at the destination
    filter: str | None = None  # the filter that made the _filtered files published with it, if any
    quality: dict[str, Any] = field(default_factory=dict)  # the quality numbers it carries


def still_published(record: Record) -> bool:
    """A done record counts only while every output it lists is still there, same size."""
    if not record.outputs:
        return False
    for out in record.outputs:
        found = storage_for(out.uri).stat(out.uri)
        if found is None or found.size != out.size:
            return False
    return True


def remove_leftovers(plan: Plan, record: Record) -> None:
    """What an earlier attempt of this index listed while publishing and did not finish: its
    hidden parts always; its final names too unless the whole set is there (which the identity
    check may then accept)."""
    if not record.publishing:
        return
    finals = set(plan.outputs)
    present = {uri for uri in record.publishing if storage_for(uri).stat(uri) is not None}
    complete = finals <= present
    for uri in sorted(present):
        if uri not in finals or not complete:
            log.info("index %d: removing %s, left by an interrupted publish", plan.index, uri)
            storage_for(uri).delete(uri)
    record.publishing = []


def claim_at_destination(plan: Plan, workdir: Path) -> Claim | None:
    """None when none of this video's output names is taken at the destination; else what the
    outputs there say about their source (``source`` None: they do not say, or cannot be read)."""
    dest = storage_for(plan.dest_dir)
    found = [dest.stat(uri) for uri in plan.outputs]
    if all(f is None for f in found):
        return None
    meta_uri = plan.outputs[0]
    check = workdir / "check"
    try:
        if found[0] is None:  # an .h5 (or .csv) without its _meta.pickle: nobody vouches for it
            return Claim(source=None, snapshot=None, frames=0, stride=0, fps=0.0, found=found)
        meta = check / basename(meta_uri)
        dest.fetch(meta_uri, meta)
        try:
            with open(meta, "rb") as fh:
                metadata = _MetaUnpickler(fh).load()
            data = metadata["data"]
            ours = metadata.get("dlcrun", {})  # no "dlcrun": DLC wrote it
            source = SourceIdentity.from_dict(ours.get("source"))
            snapshot = (ours.get("model") or {}).get("snapshot")
            frames = int(ours.get("frames_decoded", data["nframes"]))
            stride = int(ours.get("stride", 1))
            fps = float(data.get("fps") or 0)
            used = ours.get("filter")
            quality = ours.get("quality") if isinstance(ours.get("quality"), dict) else {}
        except Exception as exc:  # noqa: BLE001 - any damage means: not provably this video's
            log.warning("%s: unreadable (%s: %s); not taken as this video's", meta_uri, type(exc).__name__, exc)
            return Claim(source=None, snapshot=None, frames=0, stride=0, fps=0.0, found=found)
        return Claim(
            source=source,
            snapshot=snapshot,
            frames=frames,
            stride=stride,
            fps=fps,
            found=found,
            filter=used or None,
            quality=quality,
        )
    finally:
        shutil.rmtree(check, ignore_errors=True)


class _Foreign:
    """Whatever a _meta.pickle names outside the standard library and numpy (DLC's ``NetType``
    and ``MethodType`` enums in its ``data`` block), kept as its arguments, unimported."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _MetaUnpickler(pickle.Unpickler):
    """Reads a _meta.pickle without importing the classes it names beyond the standard library
    and numpy. Only its plain values are read here, and importing DeepLabCut for its enums costs
    seconds, needs DLC where a check may not have it, and in the download thread, while the main
    thread imports DLC to load the model, fails with Python's import deadlock error."""

    SAFE = ("builtins", "copyreg", "_codecs", "collections", "datetime", "pathlib", "numpy")

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in self.SAFE:
            return super().find_class(module, name)
        return _Foreign


def complete_at_destination(plan: Plan, claim: Claim, workdir: Path) -> tuple[list[Output], int, int] | None:
    """(outputs, frames in the video, stride) when this video's outputs there are whole and of
    this snapshot and sampling: every file present, the .h5 one row per analysed frame (a short
    or unreadable file is analysed again; DLC itself would skip it forever, issue 3101). With
    ``--filter``, the ``_filtered`` files are among them, and the _meta.pickle published with
    them must name that filter: a ``_filtered.h5`` left by another filter, or by an earlier run
    of another snapshot, is not this run's."""
    if claim.snapshot != plan.spec.snapshot or claim.stride != plan.sampling.stride_for(claim.fps):
        return None
    if plan.filter and claim.filter != plan.filter:
        return None
    found = claim.found
    if any(f is None for f in found):
        return None
    dest = storage_for(plan.dest_dir)
    h5 = workdir / "check" / basename(plan.outputs[-1])
    try:
        dest.fetch(plan.outputs[-1], h5)
        rows = count_rows(h5, plan.spec.table_key)
    except (InferenceError, StorageError, OSError):
        return None
    finally:
        shutil.rmtree(h5.parent, ignore_errors=True)
    if not plan.spec.rows_whole(rows, -(-claim.frames // claim.stride)):
        return None
    outputs = [Output(uri=f.uri, size=f.size, sha256=f.sha256 or "") for f in found if f is not None]
    return outputs, claim.frames, claim.stride
