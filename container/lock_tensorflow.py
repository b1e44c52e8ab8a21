"""Re-resolve requirements-tensorflow.lock: DLC 3.0.2's TensorFlow engine plus dlcrun's dependencies.

pip resolves for the image's interpreter (CPython 3.12, manylinux x86_64) without installing
anything (``--dry-run --report``), so this runs on any machine that reaches PyPI. Run through
``make lock-tensorflow``, which then adds the pins' hashes (container/hash_lock.py); commit the result.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-tensorflow.lock"
PYTHON = "3.12"
PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in (39, 35, 34, 28, 27, 26, 25, 24, 17, 12, 5)]
PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def requirements() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    deps = [d for d in deps if not d.startswith("deeplabcut")]
    # numpy<2: imgaug 0.4.0, which DLC's TensorFlow engine imports, uses np.sctypes (gone in NumPy 2);
    # the tf-cu12 extra does not say so, and NumPy 2 breaks `import deeplabcut.pose_estimation_tensorflow`.
    return ["deeplabcut[tf-cu12]==3.0.2", "numpy<2", "setuptools>=77", *deps]


def main() -> int:
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            PYTHON,
            "--target",
            str(Path(tmp) / "t"),
            "--report",
            str(report),
            "-q",
        ]
        cmd += [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run(cmd + requirements(), check=True)
        installs = json.loads(report.read_text())["install"]
    pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in installs)
    LOCK.write_text("\n".join(header + [f"{n}=={v}" for n, v in sorted(pins, key=lambda p: p[0].lower())]) + "\n")
    print(f"{LOCK.name}: {len(pins)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
