"""What ``movement`` (neuroinformatics-unit) reads from a DeepLabCut output file, for the tests.

The README promises that dlcrun's outputs load in movement as DeepLabCut's do. movement does not
fit the main venv's pins (it wants pandas 3 and ~115 packages), so it lives in ``.venv-movement``
(``make install-movement``, ``requirements-movement.lock``) and runs in a subprocess: this file is
also the script that subprocess runs (standard library at the top, movement imported only there).

``load_with_movement(path)`` returns what movement made of the file as plain JSON values, so a
test can hold it against the same file read by pandas. ``requires_movement()`` is the skip mark
for a machine without that venv (``make test`` always installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
ENV_PYTHON = "DLCRUN_MOVEMENT_PYTHON"  # another interpreter with movement installed

Reader = Literal["file", "dataframe"]


class MovementError(RuntimeError):
    """movement refused the file (its own message), or the movement venv could not run."""


def movement_python() -> Path:
    """The interpreter of the movement venv: $DLCRUN_MOVEMENT_PYTHON, else .venv-movement's."""
    override = os.environ.get(ENV_PYTHON)
    return Path(override) if override else ROOT / ".venv-movement" / "bin" / "python"


def requires_movement() -> Any:
    """A skip mark for tests that need movement: ``pytestmark = requires_movement()`` or
    ``@requires_movement()`` (a mark, so calling it inside a test body does nothing)."""
    import pytest

    python = movement_python()
    where = f"${ENV_PYTHON}={python}" if os.environ.get(ENV_PYTHON) else str(python.relative_to(ROOT))
    return pytest.mark.skipif(
        not os.access(python, os.X_OK), reason=f"no movement venv here ({where} missing): make install-movement"
    )


def load_with_movement(
    path: Path, reader: Reader = "file", fps: float | None = None, full: bool = False, timeout: float = 300
) -> dict[str, Any]:
    """What movement reads from the DLC file ``path`` (.h5 or .csv).

    ``reader="file"``: ``movement.io.load_poses.from_dlc_file``, what a user calls. It takes an
    .h5 only under the key ``df_with_missing`` (DLC's per-video predictions), so it refuses the
    tracks DLC's stitch_tracklets writes (``..._el.h5``, key ``tracks``); their .csv it takes.
    ``reader="dataframe"``: ``pandas.read_hdf(path)`` (the file's one key, whatever its name) in
    movement's venv, then ``movement.io.load_poses.from_dlc_style_df``.

    Returns ``movement`` (its version), ``individuals``, ``keypoints``, ``space``, ``n_frames``
    (the time axis), ``time`` (its first and last coordinates: frames, or seconds with ``fps``),
    ``fps``, ``source_software``, ``finite`` and ``values`` (finite and all position values) and
    ``first_finite`` ({individual: {frame, keypoint, xy}}: the first frame, then keypoint, in which
    both x and y are finite; None for an individual with none). With ``full``, also ``position``
    and ``confidence`` as nested lists indexed [time][space][keypoints][individuals] and
    [time][keypoints][individuals] (NaN kept). Raises MovementError with movement's message when
    movement refuses the file.
    """
    python = movement_python()
    with tempfile.TemporaryDirectory(prefix="movement-") as tmp:
        result = Path(tmp) / "result.json"
        # movement logs to ~/.movement/movement.log and matplotlib caches under HOME: keep both here
        env = {**os.environ, "HOME": tmp, "MPLCONFIGDIR": tmp, "MPLBACKEND": "Agg", "HDF5_USE_FILE_LOCKING": "FALSE"}
        command = [str(python), "-I", str(Path(__file__).resolve()), str(Path(path).resolve()), reader]
        command += [str(result), "" if fps is None else repr(float(fps)), "full" if full else ""]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MovementError(f"{python}: {exc}") from exc
        if done.returncode != 0 or not result.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise MovementError(f"{python} exited {done.returncode} on {path}: {tail}")
        answer = json.loads(result.read_text())
    if "error" in answer:
        raise MovementError(f"{Path(path).name}: movement {answer['movement']} ({reader}): {answer['error']}")
    return answer


# ---- the subprocess, in the movement venv ---------------------------------------------------


def _read(path: str, reader: str, fps: float | None, full: bool) -> dict[str, Any]:
    import movement
    import numpy as np
    from movement.io import load_poses

    try:
        if reader == "file":
            ds = load_poses.from_dlc_file(path, fps=fps)
        else:
            import pandas as pd

            ds = load_poses.from_dlc_style_df(pd.read_hdf(path), fps=fps, source_software="DeepLabCut")
    except Exception as exc:  # movement's refusal, reported as one line to the test
        return {"movement": movement.__version__, "error": f"{type(exc).__name__}: {exc}"}

    position = ds["position"].transpose("time", "space", "keypoints", "individuals").to_numpy()
    individuals = [str(i) for i in ds["individuals"].to_numpy()]
    keypoints = [str(k) for k in ds["keypoints"].to_numpy()]
    finite = np.isfinite(position)
    first: dict[str, Any] = {}
    for i, name in enumerate(individuals):
        hits = np.argwhere(finite[:, :, :, i].all(axis=1))  # (frame, keypoint) pairs, frame-major
        if len(hits) == 0:
            first[name] = None
            continue
        t, k = (int(v) for v in hits[0])
        first[name] = {"frame": t, "keypoint": keypoints[k], "xy": [float(v) for v in position[t, :, k, i]]}
    time = ds["time"].to_numpy()
    out = {
        "movement": movement.__version__,
        "individuals": individuals,
        "keypoints": keypoints,
        "space": [str(s) for s in ds["space"].to_numpy()],
        "n_frames": int(ds.sizes["time"]),
        "time": [float(time[0]), float(time[-1])] if len(time) else [],
        "fps": ds.attrs.get("fps"),
        "source_software": ds.attrs.get("source_software"),
        "finite": int(finite.sum()),
        "values": int(position.size),
        "first_finite": first,
    }
    if full:
        out["position"] = position.tolist()
        out["confidence"] = ds["confidence"].transpose("time", "keypoints", "individuals").to_numpy().tolist()
    return out


if __name__ == "__main__":
    _path, _reader, _result, _fps, _full = sys.argv[1:6]
    _answer = _read(_path, _reader, float(_fps) if _fps else None, _full == "full")
    Path(_result).write_text(json.dumps(_answer))
