"""The image: definition files agree, `make image` says what it does, the OCI build really builds.

Apptainer cannot run here, so container/dlc.def is parsed (spython) and compared with
container/Dockerfile; the Dockerfile is then built for real with podman from a local Debian base
(registries of base images are unreachable here) with the full lock, and checks itself with
`dlcrun --version` and `dlcrun doctor` build steps (`podman run` cannot work here).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from spython.main.parse.parsers import DockerParser, SingularityParser

ROOT = Path(__file__).resolve().parents[2]
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


HASH_NOTE = re.compile(r"^# --- hashes .*?\n(.*?)^# --- end of hashes note ---$", re.M | re.S)


def lock_pins(path: Path) -> dict[str, str]:
    """name -> version; each pin exact and with the sha256 of its files (make lock-hashes)."""
    pins: dict[str, str] = {}
    for line in re.sub(r"\\\n[ \t]*", " ", path.read_text()).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        assert sep and re.fullmatch(r"[\w.+!-]+", version), f"{path.name}: '{requirement}' is not an exact pin"
        assert options and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options), (
            f"{path.name}: {requirement} carries no sha256 hashes (make lock-hashes)"
        )
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
    assert re.search(
        r'pip install -q --require-hashes --no-deps --only-binary=:all: --no-binary=filterpy -r "\$requirements"',
        script,
    )
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
    assert {"pytest", "ruff", "trustme"} <= set(lock_pins(ROOT / "requirements-test.txt"))
    tf = lock_pins(ROOT / "requirements-tensorflow.lock")
    assert tf["tensorflow"].startswith("2.18.") and "tf-keras" in tf and "tensorpack" in tf


def test_every_install_of_a_lock_checks_its_hashes() -> None:
    """make install/install-tf/install-login and both image recipes (install.sh) install in pip's
    hash-checking mode; the lock targets refresh the hashes; a pin hashed from a local wheel store
    alone (not on PyPI) is named in the README."""
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"pip install .*-r ", line)]
    assert len(installs) == 4 and all("--require-hashes" in line for line in installs), installs
    assert "--require-hashes -r requirements.lock -r requirements-test.txt" in makefile
    assert "--require-hashes -r requirements-movement.lock" in makefile
    assert "--require-hashes -r requirements-tensorflow-dev.lock -r requirements-test.txt" in makefile
    assert "--require-hashes --no-deps -r $(LOGIN_VENV)/login.lock" in makefile
    assert not re.search(r"^\t.*-c requirements\.lock", makefile, re.M)  # hashed constraints refuse `-e .`
    recipes = dict(re.findall(r"^([\w-]+):[^\n]*\n((?:\t.*\n)+)", makefile, re.M))
    for target, lock in (
        ("lock", "requirements.lock"),
        ("lock-tf-dev", "requirements-tensorflow-dev.lock"),
        ("lock-tensorflow", "requirements-tensorflow.lock"),
        ("lock-movement", "requirements-movement.lock"),
    ):
        assert f"container/hash_lock.py {lock}" in recipes[target], target
    assert "container/hash_lock.py" in recipes["lock-hashes"]
    script = (ROOT / "container" / "install.sh").read_text()
    assert len(re.findall(r"pip install .*--require-hashes", script)) == 1

    readme = (ROOT / "README.md").read_text()
    for lock in (
        "requirements.lock",
        "requirements-test.txt",
        "requirements-tensorflow.lock",
        "requirements-tensorflow-dev.lock",
        "requirements-movement.lock",
    ):
        note = HASH_NOTE.search((ROOT / lock).read_text())
        assert note, f"{lock}: no hashes note (make lock-hashes)"
        for pin in re.findall(r"^#   (\S+==\S+): ", note.group(1), re.M):
            assert pin in readme, f"{lock}: {pin} is hashed from a local wheel store only; the README must say why"


def test_hash_lock_hashes_pypi_files_and_local_ones(tmp_path: Path) -> None:
    """container/hash_lock.py against a loopback PyPI JSON API and a local wheel folder."""
    releases = {
        ("demo-pkg", "2.0"): [
            {
                "filename": "demo_pkg-2.0-py3-none-any.whl",
                "packagetype": "bdist_wheel",
                "digests": {"sha256": "a" * 64},
            },
            {"filename": "demo_pkg-2.0.tar.gz", "packagetype": "sdist", "digests": {"sha256": "b" * 64}},
            {"filename": "demo_pkg-2.0-py3.6.egg", "packagetype": "bdist_egg", "digests": {"sha256": "e" * 64}},
        ],
        ("old-pkg", "1.0"): [  # only in the project's JSON (a mirror that answers no per-release JSON)
            {"filename": "old_pkg-1.0-py3-none-any.whl", "packagetype": "bdist_wheel", "digests": {"sha256": "c" * 64}},
        ],
    }

    class PyPI(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")  # pypi/NAME/[VERSION/]json
            body = None
            if len(parts) == 4 and (parts[1], parts[2]) in releases and parts[1] != "old-pkg":
                body = {"urls": releases[(parts[1], parts[2])]}
            elif len(parts) == 3 and any(name == parts[1] for name, _ in releases):
                body = {"releases": {v: files for (n, v), files in releases.items() if n == parts[1]}}
            self.send_response(200 if body else 404)
            self.end_headers()
            if body:
                self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PyPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo_pkg-2.0-py3-none-any.whl").write_bytes(b"a local build")  # differs from PyPI's
    (wheels / "localonly_pkg-1.0-py3-none-any.whl").write_bytes(b"only here")
    (wheels / "localonly_pkg-1.1-py3-none-any.whl").write_bytes(b"another version")
    lock = tmp_path / "x.lock"
    lock.write_text("# the lock's own header\ndemo-pkg==2.0\nlocalonly-pkg==1.0\nold-pkg==1.0\n")
    script = str(ROOT / "container" / "hash_lock.py")
    env = {**os.environ, "HASH_LOCK_PYPI": f"http://127.0.0.1:{server.server_port}/pypi"}

    def hash_lock(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, "--no-pip-config", *args], capture_output=True, text=True, env=env, timeout=60
        )

    try:
        first = hash_lock("--local", str(wheels), str(lock))
        assert first.returncode == 0, first.stderr
        text = lock.read_text()
        assert hash_lock("--local", str(wheels), str(lock)).returncode == 0
        assert lock.read_text() == text  # idempotent
        missing = tmp_path / "missing.lock"
        missing.write_text("nowhere-pkg==1.0\n")
        failed = hash_lock(str(missing))
        assert failed.returncode != 0 and "nowhere-pkg==1.0" in failed.stderr
        assert missing.read_text() == "nowhere-pkg==1.0\n"
    finally:
        server.shutdown()

    assert text.startswith("# the lock's own header\n# --- hashes")
    note = HASH_NOTE.search(text).group(1)
    assert "#   localonly-pkg==1.0: not on PyPI" in note and "localonly_pkg-1.0-" in note
    assert "localonly_pkg-1.1" not in note
    assert re.search(r"#   demo-pkg==2.0: .*demo_pkg-2.0-py3-none-any.whl differs from PyPI", note)
    assert "old-pkg" not in note
    local = hashlib.sha256(b"a local build").hexdigest()
    demo = re.search(r"^demo-pkg==2\.0 ((?:\\\n    --hash=sha256:\w+ ?)+)$", text, re.M)
    assert demo and re.findall(r"sha256:(\w+)", demo.group(1)) == sorted(["a" * 64, "b" * 64, local])  # no egg
    assert f"localonly-pkg==1.0 \\\n    --hash=sha256:{hashlib.sha256(b'only here').hexdigest()}\n" in text
    assert f"old-pkg==1.0 \\\n    --hash=sha256:{'c' * 64}\n" in text
    assert lock_pins(lock) == {"demo-pkg": "2.0", "localonly-pkg": "1.0", "old-pkg": "1.0"}

    # make install-login: the pins without hashes to resolve against, then the hashed ones pip picked
    stripped = hash_lock("--strip", str(lock))
    assert stripped.stdout == "demo-pkg==2.0\nlocalonly-pkg==1.0\nold-pkg==1.0\n"
    report = tmp_path / "report.json"
    project = {
        "metadata": {"name": "dlcrun", "version": "0.1.0"},
        "download_info": {"url": "file:///x", "dir_info": {}},
    }
    picked = {"metadata": {"name": "Old_Pkg", "version": "1.0"}, "download_info": {"url": "https://x"}}
    report.write_text(json.dumps({"install": [project, picked]}))
    subset = hash_lock("--subset", str(report), str(lock))
    assert subset.returncode == 0 and subset.stdout == f"old-pkg==1.0 \\\n    --hash=sha256:{'c' * 64}\n"
    picked["metadata"]["version"] = "1.1"
    report.write_text(json.dumps({"install": [project, picked]}))
    subset = hash_lock("--subset", str(report), str(lock))
    assert subset.returncode != 0 and "does not pin Old_Pkg==1.1" in subset.stderr


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
    # Without the hashes: in hash-checking mode pip downloads every wheel in full even for --dry-run.
    pins = folder.parent / "pins.txt"
    strip = [sys.executable, str(ROOT / "container" / "hash_lock.py"), "--strip", str(ROOT / "requirements.lock")]
    pins.write_text(subprocess.run(strip, check=True, capture_output=True, text=True).stdout)
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
            "--no-binary=filterpy",  # an sdist only (see requirements.lock's note)
            "--target",
            str(folder.parent / "unused"),
            "--report",
            str(report),
            "-r",
            str(pins),
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
