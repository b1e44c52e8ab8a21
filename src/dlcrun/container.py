"""The pinned image: knowing when dlcrun runs inside it, and putting each array index into it.

Built from ``container/dlc.def`` (Apptainer) or ``container/Dockerfile``; both write
``/opt/dlcrun/image.json`` and point ``DLCRUN_IMAGE_INFO`` at it, which is how dlcrun tells that
it runs inside the image (whatever the runtime: Apptainer on a cluster, Docker or Podman).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from dlcrun.ledger import Run
from dlcrun.locations import scheme_of

IMAGE_INFO_ENV = "DLCRUN_IMAGE_INFO"
# Mirrors settings.default_scratch(), evaluated by the shell on the node that runs the index.
NODE_SCRATCH = "${SLURM_TMPDIR:-${TMPDIR:-/tmp}}"


@dataclass(frozen=True)
class ImageInfo:
    """What the image recorded about itself when it was built."""

    engine: str
    variant: str
    base: str
    lock_sha256: str
    python: str
    built: str


def image_info() -> ImageInfo | None:
    """The build record of the image this process runs in; None outside the image."""
    path = os.environ.get(IMAGE_INFO_ENV)
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return ImageInfo(**{k: str(data.get(k, "")) for k in ImageInfo.__dataclass_fields__})


def runs_here(image: str | None) -> bool:
    """Whether what runs "in the image" runs in this environment: no image is set, or this
    process is already inside one."""
    return not image or image_info() is not None


def container_runtime() -> str | None:
    """'apptainer', 'podman' or 'docker' when this process runs in a container of that kind."""
    if any(v in os.environ for v in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")):
        return "apptainer"
    if Path("/.singularity.d").is_dir():
        return "apptainer"
    if Path("/run/.containerenv").exists():
        return "podman"
    if Path("/.dockerenv").exists():
        return "docker"
    return None


def bind_paths(run: Run) -> list[str]:
    """Host folders an index reads or writes, each bound at the same path inside the image.

    The runs folder (records, logs), the DLC project (config and the pinned snapshot), the
    local source videos and destination, and ``$RCLONE_CONFIG``'s folder for rclone: locations.
    Paths that do not exist yet (a destination created by the first upload) are bound through
    their nearest existing parent, since Apptainer refuses to bind a missing source; the
    filesystem root is never bound.
    """
    settings = run.settings
    runs = str(run.path.resolve().parent)  # the runs folder, which holds the run directory
    wanted: list[str | Path] = []
    if settings.project is not None:
        wanted.append(Path(settings.project))
        wanted.append(Path(run.model.get("snapshot", settings.project)).parent)
    locations = [*_video_roots(run.manifest.entries), settings.source, settings.dest or ""]
    wanted += [_local_path(uri) for uri in locations if uri and scheme_of(uri) == "file"]
    rclone_config = os.environ.get("RCLONE_CONFIG", "")
    if os.path.isfile(rclone_config) and any(
        scheme_of(u) == "rclone" for u in [*run.manifest.entries, *locations] if u
    ):
        wanted.append(os.path.dirname(os.path.abspath(rclone_config)))  # outside $HOME, Apptainer would not see it
    return _outermost([runs, *_mountable(wanted)])


def exec_prefix(run: Run) -> list[str]:
    """The words that run an array index inside ``settings.image``; empty when no image is set.

    Already inside the image (``dlcrun`` started from it) nothing is added. Otherwise the
    index runs as ``apptainer exec --nv --bind <scratch>,<folders> IMAGE dlcrun task ...``
    through ``sh -c``, so that the node's scratch (``$SLURM_TMPDIR``/``$TMPDIR`` unless
    ``scratch`` is set) is expanded where the index runs. Caches that would otherwise land in
    the home quota (Apptainer's, torch/Hugging Face/numba/matplotlib via ``XDG_CACHE_HOME``
    and ``MPLCONFIGDIR``) go to scratch, and the host's user site-packages and PYTHONPATH are
    kept out of the image's Python.
    """
    settings = run.settings
    if runs_here(settings.image):
        return []
    return image_prefix(settings.image, bind_paths(run), settings.scratch, settings.device)


def image_prefix(image: str | None, binds: list[str], scratch: Path | None = None, device: str = "auto") -> list[str]:
    """The words that run a command inside ``image`` with ``binds`` (training jobs use it too).

    Empty without an image or when already inside it. ``binds`` are reduced to existing,
    outermost folders; ``scratch`` None means the node's, found when the command runs.
    """
    if runs_here(image):
        return []
    where = shlex.quote(str(scratch)) if scratch else NODE_SCRATCH
    bind = ",".join(['"$s"', *map(shlex.quote, _mountable(binds))])
    gpu = "" if device == "cpu" else "--nv "
    script = (
        f's={where}; c="$s/dlcrun-cache"; mkdir -p "$c"; '
        'export APPTAINER_CACHEDIR="$c/apptainer"; '
        f"exec apptainer exec {gpu}--bind {bind} "
        '--env "XDG_CACHE_HOME=$c" --env "MPLCONFIGDIR=$c/matplotlib" '
        f'--env PYTHONNOUSERSITE=1 --env PYTHONPATH= {shlex.quote(image)} "$@"'
    )
    return ["sh", "-c", script, "dlcrun-image"]


def dlcrun_command(image: str | None) -> list[str]:
    """How a job starts dlcrun: the image's (on its PATH) when the job runs in an image, else
    this very dlcrun by absolute path, never whatever ``dlcrun`` a compute node's PATH finds.

    A venv that is not activated where the job runs (``.venv/bin/dlcrun submit``) is still
    found this way. The console script next to this Python is used as it is spelled, not
    resolved: a venv's ``python`` is a symlink out of the venv.
    """
    if not runs_here(image):
        return ["dlcrun"]
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "dlcrun")
    if os.access(script, os.X_OK):
        return [script]
    return [os.path.abspath(sys.executable), "-m", "dlcrun"]


# Filesystems a cluster's nodes share; a program on one of these is seen by the compute nodes
# if they mount it at the same path, which is the usual layout (home, project, software trees).
SHARED_FILESYSTEMS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "cephfs", "ceph", "panfs",
    "wekafs", "fuse.sshfs", "fuse.glusterfs", "glusterfs", "pvfs2", "orangefs", "fuse.beegfs", "afs", "cvmfs",
    "fuse.cvmfs", "9p", "virtiofs", "quobyte", "fuse.quobyte", "vast",
}  # fmt: skip
# Places every machine has its own of: a program there is never the one a compute node sees.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")


def reach(
    program: str,
    executable: bool = True,
    mounts: Path = Path("/proc/self/mountinfo"),
    node_local: tuple[str, ...] = NODE_LOCAL,
) -> str | None:
    """Why jobs on other nodes may not find ``program`` (a path; an image when not
    ``executable``), or None when they should: it must exist here, and live on a filesystem the
    nodes share. A local disk may be mounted on the nodes too, which cannot be told from here:
    that is said, not refused. A bare name (the image's dlcrun) is the image's to find."""
    if os.sep not in program:
        return None
    program = os.path.abspath(program)
    if not (os.access(program, os.X_OK) if executable else os.path.isfile(program)):
        return "does not exist here; the jobs could not start it"
    real = os.path.realpath(program)
    if any(real == top or real.startswith(top + "/") for top in node_local):
        return f"is in this machine's own /{real.split('/')[1]}; compute nodes have their own and will not find it"
    point, fstype = _mount_of(real, mounts)
    if fstype is None or fstype in SHARED_FILESYSTEMS:
        return None
    return (
        f"cannot tell whether compute nodes see it ({point} is a local {fstype} filesystem here); "
        "if they do not, install dlcrun on shared storage or set image"
    )


def _mount_of(path: str, mounts: Path) -> tuple[str, str | None]:
    """The mount point holding ``path`` and its filesystem type, from a mountinfo file."""
    best, fstype = "", None
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, right.split()[0]
    return best, fstype


def _video_roots(entries: list[str]) -> list[str]:
    """One folder per top-level directory the local videos live under (their common path)."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        if scheme_of(entry) != "file":
            continue
        path = os.path.abspath(_local_path(entry))
        top = path.split(os.sep)[1] if path.count(os.sep) > 1 else path
        groups.setdefault(top, []).append(os.path.dirname(path))
    return [os.path.commonpath(folders) for folders in groups.values()]


def _local_path(uri: str) -> str:
    from dlcrun.storage.local import to_path

    return str(to_path(uri))


def _mountable(paths: list[str] | list[Path]) -> list[str]:
    """Each path's nearest existing folder (never the root), outermost ones only."""
    found = [_existing(Path(os.path.abspath(p))) for p in paths]
    return _outermost([str(p) for p in found if p is not None])


def _existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate == Path(candidate.anchor) else candidate
    return None


def _outermost(paths: list[str]) -> list[str]:
    """Drop duplicates and folders inside another bound folder (one bind covers them)."""
    unique = sorted(set(paths))
    keep: list[str] = []
    for path in unique:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(path)
    return keep
