"""The image: definition files agree, `make image` says what it does, the OCI build really builds.

Apptainer cannot run here, so container/dlc.def is parsed (spython) and compared with
container/Dockerfile; the Dockerfile is then built for real with podman from a local Debian base
(registries of base images are unreachable here) with the full lock, and checks itself with
`dlcrun --version` and `dlcrun doctor` build steps (`podman run` cannot work here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from spython.main.parse.parsers import DockerParser, SingularityParser

ROOT = Path(__file__).resolve().parents[1]
DEF = ROOT / "container" / "dlc.def"
DOCKERFILE = ROOT / "container" / "Dockerfile"
DIGEST = re.compile(r"^docker\.io/nvidia/cuda:[\w.-]+@sha256:[0-9a-f]{64}$")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def render_def(tmp_path: Path) -> Path:
    """The def file as Apptainer builds it by default: {{ NAME }} replaced from %arguments."""
    text = DEF.read_text()
    section = re.search(r"^%arguments\n((?:[ \t]+.*\n|\n)+)", text, re.M)
    assert section, f"{DEF}: no %arguments section"
    args = dict(line.strip().split("=", 1) for line in section.group(1).splitlines() if "=" in line)
    rendered = re.sub(r"{{\s*(\w+)\s*}}", lambda m: args[m.group(1)], text)
    assert "{{" not in rendered, "a {{ NAME }} has no default in %arguments"
    out = tmp_path / "dlc.rendered.def"
    out.write_text(rendered)
    return out


def makefile_bases() -> dict[str, str]:
    return dict(re.findall(r"^BASE_(\w+)\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M))


def lock_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[\w.+!-]+", version), f"{path.name}: '{line}' is not an exact pin"
        key = canonicalize_name(name)
        assert key not in pins, f"{path.name}: {name} pinned twice"
        pins[key] = version
    return pins


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    singularity = SingularityParser(str(render_def(tmp_path_factory.mktemp("def")))).recipe["spython-base"]
    docker = DockerParser(str(DOCKERFILE)).recipe["spython-base"]
    return singularity, docker


def test_def_and_dockerfile_pin_the_same_base_by_digest(recipes: tuple) -> None:
    singularity, docker = recipes
    bases = makefile_bases()
    assert DIGEST.match(docker.fromHeader), docker.fromHeader
    # spython lower-cases the def's From:; digests and these tags are lower case anyway.
    assert singularity.fromHeader == docker.fromHeader.lower() == bases["pytorch"].lower()
    assert DIGEST.match(bases["tensorflow"]) and bases["tensorflow"] != bases["pytorch"]


def test_def_and_dockerfile_install_the_same_files_the_same_way(recipes: tuple) -> None:
    singularity, docker = recipes
    def_files = dict(line.split() for line in singularity.files)
    docker_files = {}
    for *sources, dest in docker.files:
        for src in sources:
            docker_files[src] = dest + Path(src).name if dest.endswith("/") else dest
    # install.sh lands at /opt/dlcrun-src/install.sh in both (the Dockerfile copies it with the locks).
    assert def_files == docker_files
    assert {"requirements.lock", "requirements-tensorflow.lock", "container/install.sh", "src"} <= set(def_files)

    def steps(lines: list[str]) -> list[str]:
        return [
            re.sub(r"\$\{(\w+)\}|\"", lambda m: m.group(1) or "", line).strip()
            for line in lines
            if "install.sh" in line
        ]

    assert steps(singularity.install) == [
        "sh /opt/dlcrun-src/install.sh deps pytorch gpu",
        f"DLCRUN_BASE={singularity.fromHeader} sh /opt/dlcrun-src/install.sh dlcrun pytorch gpu",
    ]
    assert steps(docker.install) == [
        "sh /opt/dlcrun-src/install.sh deps ENGINE VARIANT",
        "DLCRUN_BASE=BASE sh /opt/dlcrun-src/install.sh dlcrun ENGINE VARIANT",
    ]
    assert re.search(r"^ARG ENGINE=pytorch$", DOCKERFILE.read_text(), re.M)
    assert re.search(r"^ARG VARIANT=gpu$", DOCKERFILE.read_text(), re.M)

    def env(lines: list[str]) -> dict[str, str]:
        return dict(line.replace("${PATH}", "$PATH").split("=", 1) for line in lines)

    assert env(singularity.environ) == env(docker.environ)
    assert env(docker.environ)["DLCRUN_IMAGE_INFO"] == "/opt/dlcrun/image.json"
    assert docker.entrypoint == ["dlcrun"] and singularity.cmd == 'exec /opt/dlcrun/bin/dlcrun "$@"'
    selfcheck = "dlcrun --version && dlcrun doctor --scratch /tmp"
    assert selfcheck in DOCKERFILE.read_text() and selfcheck in DEF.read_text()


def test_install_script_installs_exactly_the_lock_of_each_engine() -> None:
    script = (ROOT / "container" / "install.sh").read_text()
    assert "pytorch) LOCK=$SRC/requirements.lock" in script
    assert "tensorflow) LOCK=$SRC/requirements-tensorflow.lock" in script
    assert re.search(r'pip install -q --no-deps --only-binary=:all: \$index -r "\$requirements"', script)
    assert "$pip check" in script
    script = str(ROOT / "container" / "install.sh")
    bad = subprocess.run(["sh", script, "deps", "caffe"], capture_output=True, text=True)
    assert bad.returncode == 2 and "ENGINE must be pytorch or tensorflow" in bad.stderr


def test_locks_are_exact_and_cover_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock in ("requirements.lock", "requirements-tensorflow.lock", "requirements-tensorflow-dev.lock"):
        pins = lock_pins(ROOT / lock)
        for spec in pyproject["dependencies"] + pyproject["optional-dependencies"]["dlc"]:
            req = Requirement(spec)
            version = pins.get(canonicalize_name(req.name))
            assert version is not None, f"{lock}: {req.name} (a dlcrun dependency) is not pinned"
            assert req.specifier.contains(version, prereleases=True), f"{lock}: {req.name}=={version} outside {spec}"
        assert pins["deeplabcut"] == "3.0.2" and "setuptools" in pins
    assert lock_pins(ROOT / "requirements.lock")["torch"] == "2.14.1"
    tf = lock_pins(ROOT / "requirements-tensorflow.lock")
    assert tf["tensorflow"].startswith("2.18.") and "tf-keras" in tf and "tensorpack" in tf


def test_the_tensorflow_image_pins_the_engine_the_tests_run() -> None:
    """The TensorFlow image (Python 3.12) cannot be built here; .venv-tf (Python 3.11), where the
    TensorFlow-engine tests run, must hold the same TensorFlow, Keras, NumPy and DLC."""
    image, dev = lock_pins(ROOT / "requirements-tensorflow.lock"), lock_pins(ROOT / "requirements-tensorflow-dev.lock")
    for name in ("deeplabcut", "tensorflow", "tf-keras", "keras", "numpy", "tensorpack", "tf-slim", "imgaug"):
        assert image.get(name) and image.get(name) == dev.get(name), (
            f"{name}: image {image.get(name)}, tested {dev.get(name)}"
        )
    assert int(image["numpy"].split(".")[0]) < 2, "imgaug (DLC's TensorFlow engine) fails on NumPy 2"


# ---- make image ---------------------------------------------------------------------------


def make_image(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(
        [shutil.which("make") or "make", "-s", "-C", str(ROOT), "image", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_make_image_dry_run_prints_each_builders_commands() -> None:
    bases = makefile_bases()
    apptainer = make_image("DRY_RUN=1", "BUILDER=apptainer")
    assert apptainer.returncode == 0, apptainer.stderr
    assert "+ apptainer build " in apptainer.stdout
    assert f"--build-arg BASE={bases['pytorch']} --build-arg ENGINE=pytorch" in apptainer.stdout
    assert apptainer.stdout.rstrip().endswith("dlc.sif container/dlc.def")

    for builder in ("docker", "podman"):
        oci = make_image("DRY_RUN=1", f"BUILDER={builder}", "ENGINE=tensorflow", "SIF=lab.sif")
        assert oci.returncode == 0, oci.stderr
        assert f"+ {builder} build -f container/Dockerfile -t localhost/dlcrun:tensorflow-gpu" in oci.stdout
        assert f"--build-arg BASE={bases['tensorflow']} --build-arg ENGINE=tensorflow" in oci.stdout
        if shutil.which("apptainer"):
            assert "+ apptainer build lab.sif" in oci.stdout
        else:  # the OCI image is saved for `apptainer build` on the cluster
            assert "lab.sif.oci.tar" in oci.stdout or "lab.sif.docker.tar" in oci.stdout


def test_make_image_without_apptainer_docker_or_podman_says_what_to_install(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "id"):
        (bare / tool).symlink_to(shutil.which(tool))
    result = make_image(path=str(bare))
    assert result.returncode != 0
    assert "needs apptainer" in result.stderr and "docker/podman" in result.stderr
    bad = make_image("ENGINE=caffe", "DRY_RUN=1")
    assert bad.returncode != 0 and "ENGINE must be pytorch or tensorflow" in bad.stderr


# ---- the OCI build ------------------------------------------------------------------------


def local_wheelhouse(folder: Path) -> Path:
    """Hard links to the lock's wheels that this machine's pip takes from local disk.

    Where pip is set up with local indexes (torch and the CUDA wheels here; nccl 2.30.7 is on
    no public index this machine reaches), the build gets the same files through WHEELS; the
    rest comes from PyPI. On a machine whose pip uses PyPI only, the folder stays empty.
    """
    folder.mkdir()
    report = folder.parent / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            "-q",
            "--only-binary=:all:",
            "--target",
            str(folder.parent / "unused"),
            "--report",
            str(report),
            "-r",
            str(ROOT / "requirements.lock"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for item in json.loads(report.read_text())["install"]:
        url = item["download_info"]["url"]
        if url.startswith("file://"):
            wheel = Path(url.removeprefix("file://"))
            try:
                (folder / wheel.name).hardlink_to(wheel)
            except OSError:  # another filesystem
                shutil.copy2(wheel, folder / wheel.name)
    return folder


# Measured: free disk fell by 28 GB during the build (the ~7 GB working container, the layer's tar
# blob and the committed layer), on a 2-core machine with overlay storage.
BUILD_DISK_GB = 30


def podman_free_gb() -> float:
    """Free space where the build writes: podman's graph root, and /var/tmp for the layer blob."""
    info = subprocess.run(
        ["podman", "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True, text=True, timeout=60
    )
    root = Path(info.stdout.strip() or "/var/lib/containers/storage")
    while not root.exists():
        root = root.parent
    return min(shutil.disk_usage(p).free for p in (root, Path("/var/tmp"))) / 1e9


@pytest.fixture(scope="module")
def debian_base() -> Iterator[str]:
    """A minimal Debian bookworm imported into podman: the stand-in for the CUDA base image."""
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install podman debootstrap; .ci/run does)")
    free = podman_free_gb()
    if free < BUILD_DISK_GB:
        pytest.skip(f"the image build needs ~{BUILD_DISK_GB} GB free for podman; {free:.1f} GB here")
    tag = f"localhost/dlcrun-test-base:{uuid.uuid4().hex[:8]}"
    root = Path(f"/var/tmp/dlcrun-debootstrap-{os.getpid()}")
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root)], check=True, capture_output=True, timeout=600
        )
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True, timeout=300)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)


@pytest.mark.container
@pytest.mark.slow
def test_oci_build_emulation_installs_the_lock_and_passes_doctor(debian_base: str, tmp_path: Path) -> None:
    """Emulation of the CUDA base by Debian bookworm; everything else is the real image build.

    ``make image BUILDER=podman`` with the full lock (torch 2.14.1 + CUDA wheels, DLC 3.0.2):
    pip check, then `dlcrun --version` and `dlcrun doctor` as build steps must pass.
    """
    tag = f"localhost/dlcrun-test:{uuid.uuid4().hex[:8]}"
    flags = ["--isolation", "chroot", "--network=host", "--layers=false", "--force-rm"]
    if HOST_CA.is_file():  # a proxy's CA for pip; mounted apart, since apt rewrites the base's bundle
        flags += ["-v", f"{HOST_CA}:/etc/dlcrun-build-ca.crt:ro", "--build-arg", "PIP_CERT=/etc/dlcrun-build-ca.crt"]
    wheels = local_wheelhouse(tmp_path / "wheels")
    start = time.monotonic()
    try:
        result = subprocess.run(
            [
                shutil.which("make") or "make",
                "-s",
                "-C",
                str(ROOT),
                "image",
                "BUILDER=podman",
                f"BASE={debian_base}",
                f"TAG={tag}",
                f"WHEELS={wheels}",
                "OCI_ONLY=1",
                f"BUILD_FLAGS={' '.join(flags)}",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        print(f"OCI build: {time.monotonic() - start:.0f} s")
        assert re.search(r"^dlcrun \d", log, re.M), log[-2000:]
        for line in (
            "ok   torch      2.14.1",
            "ok   deeplabcut 3.0.2",
            "ok   cudnn      9.",
            "ok   scratch",
            "ok   rclone",
        ):
            assert line in log, f"doctor did not report '{line}':\n{log[-3000:]}"
        assert re.search(r"ok   image +inside the dlcrun image \(pytorch, gpu build", log)
        inspect = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True)
        config = json.loads(inspect.stdout)[0]["Config"]
        assert config["Entrypoint"] == ["dlcrun"]
        assert "DLCRUN_IMAGE_INFO=/opt/dlcrun/image.json" in config["Env"]
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)
