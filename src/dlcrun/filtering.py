"""DLC's own ``filterpredictions`` on one index's .h5, on scratch, without touching the project.

``deeplabcut.filterpredictions(config, video, filtertype=...)`` reads a video's .h5 beside it
and writes ``<stem><scorer>_filtered.h5`` (and ``.csv``). Its body is run as DLC ships it, so the
filtered keypoints are DLC's for the same .h5; two of its lookups are answered from the pinned
model instead of the project folder, for the reasons the array index avoids them elsewhere:

- ``read_config`` rewrites the shared config.yaml when its ``project_path`` differs from where
  it sits (hundreds of indices racing on one file, or a read-only bind); the project's config
  as this index already read it (``inference.project_config``) is given instead.
- ``get_scorer_name`` derives the scorer from the project's current snapshots, which may have
  moved on since submit; the pinned scorer is what the .h5 is named after.

DLC finds the .h5 by the video's name only (it never opens the video), so an empty stand-in
named like the video, in a folder of its own on scratch, is what it is given.
"""

from __future__ import annotations

import contextlib
import types
from pathlib import Path
from typing import Any

from dlcrun.errors import InferenceError

FILTERS = ("median", "arima", "spline")


def filtered_names(prefix: str, save_csv: bool) -> list[str]:
    """The files DLC's filterpredictions writes for ``<prefix>.h5``: ``.csv`` first, .h5 last."""
    return [f"{prefix}_filtered.csv"] * save_csv + [f"{prefix}_filtered.h5"]


def filter_h5(
    h5: Path,
    stem: str,
    scorer: str,
    project_cfg: dict[str, Any],
    config: Path,
    filtertype: str,
    save_csv: bool,
    shuffle: int = 1,
    trainingsetindex: int = 0,
) -> list[Path]:
    """Run ``deeplabcut.filterpredictions`` (DLC's defaults for windowlength, p_bound, ARdegree,
    MAdegree) on ``h5``, the keypoints of video ``stem`` by ``scorer``; returns the files it wrote
    beside it (``.csv`` first, .h5 last). Raises InferenceError when it wrote nothing."""
    if filtertype not in FILTERS:
        raise InferenceError(f"--filter {filtertype}: DLC's filterpredictions has {', '.join(FILTERS)}")
    from deeplabcut.post_processing import filtering
    from deeplabcut.utils import auxiliaryfunctions

    stand_in = h5.parent / ".dlcrun-filter" / f"{stem}.mp4"  # DLC reads the name, never the file
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.touch()
    pinned = types.SimpleNamespace(**vars(auxiliaryfunctions))
    pinned.read_config = lambda *_a, **_k: project_cfg
    pinned.get_scorer_name = lambda *_a, **_k: (scorer, scorer)
    try:
        with _module_global(filtering, "auxiliaryfunctions", pinned):
            filtering.filterpredictions(
                str(config),
                str(stand_in),
                shuffle=shuffle,
                trainingsetindex=trainingsetindex,
                filtertype=filtertype,
                save_as_csv=save_csv,
                destfolder=str(h5.parent),
            )
    except (ValueError, OSError, KeyError, IndexError, ArithmeticError) as exc:
        raise InferenceError(
            f"{h5.name}: filterpredictions ({filtertype}) failed ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        stand_in.unlink(missing_ok=True)
        stand_in.parent.rmdir()
    written = [h5.parent / name for name in filtered_names(h5.stem, save_csv)]
    missing = [p.name for p in written if not p.is_file()]
    if missing:
        raise InferenceError(f"{h5.name}: filterpredictions ({filtertype}) wrote no {', '.join(missing)}")
    return written


@contextlib.contextmanager
def _module_global(module: Any, name: str, value: Any) -> Any:
    """``module.name`` is ``value`` while the block runs: only that module's functions see it."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)
