"""``dlcrun doctor``: can array indices run here? One line per fact.

Runs on a login node, on a compute node and inside the image (the image runs it on itself while
it is built). A check is ``ok``, ``fail`` (something an index needs is missing: the command
exits non-zero) or ``note`` (worth knowing, not needed here, e.g. no GPU on a login node).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from dlcrun.container import container_runtime, image_info, runs_here
from dlcrun.errors import ConfigError
from dlcrun.locations import scheme_of
from dlcrun.settings import Settings, default_scratch

DROPBOX_API = ("api.dropboxapi.com", 443)
GB = 1e9


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "fail", "note"]
    detail: str


def run_doctor(
    settings: Settings,
    require_gpu: bool | None = None,
    min_free_gb: float = 1.0,
    dropbox_endpoint: tuple[str, int] | None = None,
    timeout: float = 3.0,
) -> list[Check]:
    """Every check, in a fixed order. ``require_gpu`` None: required when the settings ask for
    a GPU (device cuda*, or resources.gpus > 0) and indices run in this environment."""
    info = image_info()
    tasks_here = runs_here(settings.image)
    if require_gpu is None:
        require_gpu = tasks_here and (settings.device.startswith("cuda") or settings.resources.gpus > 0)
    engine = info.engine if info is not None else _engine(settings)
    checks = [check_image(settings)]
    torch, torch_check = _import("torch")
    stack = [torch_check, _import("deeplabcut", quiet=True)[1]]
    if engine == "tensorflow":
        stack.append(_import("tensorflow", quiet=True)[1])
    if not tasks_here:  # a login node: the image brings them, and submit pins the snapshot there
        stack = [
            Check(c.name, "note", f"{c.detail}; not needed here: the image has its own") if c.status == "fail" else c
            for c in stack
        ]
    checks += stack
    checks += check_gpu(torch, require_gpu)
    checks.append(check_scratch(settings.scratch or default_scratch(), min_free_gb))
    dropbox = check_dropbox(settings, dropbox_endpoint, timeout)
    if dropbox is not None:
        checks.append(dropbox)
    rclone = check_rclone(settings, in_image=info is not None)
    if rclone is not None:
        checks.append(rclone)
    return checks


def _engine(settings: Settings) -> str:
    """The engine the indices need: as set, else the project's shuffle's (TensorFlow needs checking)."""
    if settings.engine != "auto":
        return settings.engine
    if settings.project is None:
        return "pytorch"
    from dlcrun.inference import shuffle_engine

    try:
        return shuffle_engine(settings.project, settings.shuffle, settings.trainingsetindex)
    except ConfigError:
        return "pytorch"


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def check_image(settings: Settings) -> Check:
    """Inside the image, or, outside, whether indices can get into the configured one."""
    info = image_info()
    if info is not None:
        runtime = container_runtime() or "a container"
        return Check(
            "image",
            "ok",
            f"inside the dlcrun image ({info.engine}, {info.variant} build, Python {info.python}, "
            f"built {info.built}) under {runtime}",
        )
    if not settings.image:
        return Check("image", "note", "no image set: array indices run in this Python environment")
    apptainer = shutil.which("apptainer")
    if "://" in settings.image:
        where = f"{settings.image} (pulled by each index; a local .sif starts faster)"
    elif not Path(settings.image).is_file():
        return Check("image", "fail", f"{settings.image}: no such file (copy the built dlc.sif there)")
    else:
        size = Path(settings.image).stat().st_size / GB
        where = f"{settings.image} ({size:.1f} GB)"
    if apptainer is None:
        return Check("image", "fail", f"{where}, but apptainer is not on PATH (module load apptainer?)")
    return Check("image", "ok", f"indices run in {where} via {apptainer}")


def check_gpu(torch: Any, required: bool) -> list[Check]:
    """GPU visibility, the CUDA torch was built for (and the driver), and cuDNN."""
    missing = "fail" if required else "note"
    if torch is None:
        return [Check("gpu", missing, "unknown: torch is not importable")]
    driver = _nvidia_driver()
    built_for = torch.version.cuda
    if not built_for:
        gpu = Check("gpu", missing, "torch is a CPU-only build: no GPU can be used")
    elif torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        gpu = Check("gpu", "ok", f"{torch.cuda.device_count()} visible: {', '.join(names)}")
    else:
        gpu = Check("gpu", missing, "none visible" + _no_gpu_hint(driver))
    cuda = Check(
        "cuda",
        "ok" if built_for else "note",
        (f"{built_for} (torch build)" if built_for else "none (CPU build)")
        + (f"; driver {driver}" if driver else "; no NVIDIA driver found"),
    )
    cudnn_version = torch.backends.cudnn.version() if built_for else None
    cudnn = Check(
        "cudnn",
        "ok" if cudnn_version else missing if built_for else "note",
        _cudnn_text(cudnn_version) if cudnn_version else "not available",
    )
    return [gpu, cuda, cudnn]


def check_scratch(path: Path, min_free_gb: float) -> Check:
    """Scratch must exist, take a written file, and have room for a video."""
    path = Path(path)
    if not path.is_dir():
        return Check("scratch", "fail", f"{path}: no such folder (set scratch in dlcrun.toml or TMPDIR)")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".dlcrun-doctor-") as fh:
            fh.write(b"x")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return Check("scratch", "fail", f"{path}: not writable ({exc.strerror or exc})")
    free = shutil.disk_usage(path).free / GB
    if free < min_free_gb:
        return Check("scratch", "fail", f"{path}: {free:.1f} GB free, below {min_free_gb:g} GB")
    return Check("scratch", "ok", f"{path}: writable, {free:.1f} GB free")


def check_dropbox(settings: Settings, endpoint: tuple[str, int] | None, timeout: float) -> Check | None:
    """Credentials present and a TCP connection to the API (or the HTTPS proxy), when Dropbox is used.

    ``endpoint`` None: ``DLCRUN_DROPBOX_API_HOST`` (``host:port``) if set, else Dropbox's API host.
    """
    if not any(uri and scheme_of(uri) == "dropbox" for uri in (settings.source, settings.dest)):
        return None
    from dlcrun.storage.dropbox_auth import ENV_API_HOST, load_credentials

    try:
        credentials = load_credentials()
    except ConfigError as exc:  # its message names the file or variables, never a secret
        return Check("dropbox", "fail", str(exc))
    if endpoint is None:
        override = os.environ.get(ENV_API_HOST, "")
        name, _, port_text = override.rpartition(":")
        endpoint = (name, int(port_text)) if name and port_text.isdigit() else DROPBOX_API
    host, port = endpoint
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    via = ""
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port, via = parsed.hostname or host, parsed.port or 3128, " via the HTTPS proxy"
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return Check(
            "dropbox",
            "fail",
            f"{host}:{port}{via} unreachable within {timeout:g} s ({exc.strerror or exc}); "
            "compute nodes often have no internet: ask for an HTTPS proxy or stage videos elsewhere",
        )
    took = (time.monotonic() - start) * 1000
    return Check(
        "dropbox", "ok", f"{host}:{port}{via} reachable ({took:.0f} ms); credentials from {credentials.source}"
    )


def check_rclone(settings: Settings, in_image: bool = False) -> Check | None:
    """The rclone binary, and every remote the settings name configured and answering, when
    rclone: locations are used; always inside the image, which ships rclone."""
    used = [uri for uri in (settings.source, settings.dest) if uri and scheme_of(uri) == "rclone"]
    if not used and not in_image:
        return None
    if shutil.which("rclone") is None:
        return Check("rclone", "fail", "not installed (apt-get install rclone); rclone: locations need it")
    from dlcrun.errors import StorageError
    from dlcrun.storage import rclone as backend

    try:
        version = (backend.run(["version"], timeout=60).stdout.splitlines() or ["rclone (version unknown)"])[0]
        names = {backend.to_remote(uri).split(":", 1)[0] for uri in used} - {""}  # "" : an on-the-fly :type:
        listed = backend.run(["listremotes"], timeout=60)
    except StorageError as exc:
        return Check("rclone", "fail", str(exc))
    missing = sorted(names - {line.strip().rstrip(":") for line in listed.stdout.splitlines()})
    if missing:
        return Check(
            "rclone",
            "fail",
            f"remote {', '.join(missing)} not configured (rclone config, or RCLONE_CONFIG_<NAME>_TYPE and friends)",
        )
    for name in sorted(names):  # reachable from here: compute nodes often have no internet
        start = time.monotonic()
        try:
            probe = backend.run([*_RCLONE_PROBE, f"{name}:"], timeout=120)
        except StorageError:
            return Check("rclone", "fail", f"remote {name} did not answer from here within 120 s")
        if probe.returncode != 0:
            reason = backend.last_error(probe.stderr) or f"exit status {probe.returncode}"
            return Check("rclone", "fail", f"remote {name} unreachable from here: {reason}")
        took = (time.monotonic() - start) * 1000
        version += f"; remote {name} answered in {took:.0f} ms"
    return Check("rclone", "ok", version)


# One listing, given up quickly; placed after dlcrun's own rclone flags, so these win.
_RCLONE_PROBE = ["lsf", "--max-depth", "1", "--dirs-only", "--contimeout", "10s", "--timeout", "20s"]
_RCLONE_PROBE += ["--retries", "1", "--low-level-retries", "1"]


def _import(module: str, quiet: bool = False) -> tuple[Any, Check]:
    """Import for real: a wheel present but broken (a missing system library) must fail here."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            mod = importlib.import_module(module)
    except Exception as exc:  # any error while importing means the install is broken
        return None, Check(module, "fail", f"not importable: {type(exc).__name__}: {_first_line(exc)}")
    return mod, Check(module, "ok", str(getattr(mod, "__version__", "?")))


def _nvidia_driver() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def _no_gpu_hint(driver: str) -> str:
    if container_runtime() == "apptainer" and not driver:
        return " (inside Apptainer: run with --nv)"
    if driver:
        return f" though driver {driver} is loaded (CUDA/driver mismatch? is a GPU allocated to this job?)"
    if Path("/dev/nvidia0").exists():
        return " (/dev/nvidia0 exists but no driver tools: check the driver install)"
    return ""


def _cudnn_text(version: int) -> str:
    # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 used major*1000.
    major, rest = (version // 10000, version % 10000) if version >= 10000 else (version // 1000, version % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
