"""A multi-animal video's files as ``analyze_videos(..., auto_track=True)`` writes them.

For a multi-animal project DLC 3's ``analyze_videos`` writes, beside ``_meta.pickle``:
``_full.pickle`` (every frame's detections), ``_assemblies.pickle`` (the animals assembled per
frame), the tracklets (``_el.pickle``: DLC's tracker, ``_bx``/``_sk`` for the box or skeleton
tracker) and the stitched tracks (``_el.h5``, key ``tracks``, columns (scorer, individuals,
bodyparts, coords); ``_el.csv`` too with ``save_as_csv``). No plain ``.h5``.

Each step here is DLC's own function on the predictions dlcrun's frame loop made:
``_generate_output_data`` and ``_generate_assemblies_file`` (from ``apis.videos``),
``build_tracklets`` (what ``convert_detections2tracklets`` runs per video) and
``TrackletStitcher`` (what ``stitch_tracklets`` runs per video). The glue those two wrappers
add is repeated here rather than called, because the wrappers would have to read the shared
config.yaml (which ``read_config`` rewrites when its ``project_path`` differs: hundreds of
indices racing on one file, or a read-only bind), write DLC's default tracker and
``inference_cfg.yaml`` into the project when they are missing, derive the scorer from the
project's snapshots as they are now (not as pinned at submit), and reopen the video for its
frame count. The project's config as the index read it, the pinned scorer and tracker are
given instead; ``tests/integration/test_multianimal.py`` holds every file equal to DLC's.

DLC's tracker needs the whole video's assemblies, so this is the one place where an index keeps a
video's predictions in RAM: a few hundred bytes per frame and individual (about 100 MB for an
hour at 30 frames/s with three animals).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from dlcrun.errors import InferenceError

MIN_LENGTH = 10  # stitch_tracklets' defaults
_KEEP = ("bodyparts", "unique_bodyparts", "identity_scores", "bboxes", "bbox_scores")


class AnimalsTable:
    """The predictions of every analysed frame, as DLC's post-processor gave them (what
    ``_generate_output_data`` reads; heads' features and other extras are not kept)."""

    def __init__(self) -> None:
        self.predictions: list[dict[str, Any]] = []
        self.frames: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def add(self, frames: list[int], predictions: list[dict[str, Any]]) -> None:
        for number, pred in zip(frames, predictions):
            self.predictions.append({k: pred[k] for k in _KEEP if k in pred})
            self.frames.append(number)

    def close(self) -> int:
        return self.rows


def names(prefix: str, suffix: str, save_csv: bool) -> list[str]:
    """The files analyze_videos(auto_track=True) leaves for ``<prefix>``, in the order dlcrun
    publishes them: the tracks' .h5 last (its presence implies the rest)."""
    return [
        f"{prefix}_meta.pickle",
        f"{prefix}_full.pickle",
        f"{prefix}_assemblies.pickle",
        f"{prefix}{suffix}.pickle",
        *[f"{prefix}{suffix}.csv"] * save_csv,
        f"{prefix}{suffix}.h5",
    ]


def write_tracks(
    table: AnimalsTable,
    out_dir: Path,
    prefix: str,
    scorer: str,
    bodyparts: int,
    unique_bodyparts: int,
    project_cfg: dict[str, Any],
    model_folder: Path,
    track_method: str,
    suffix: str,
    save_csv: bool,
) -> list[Path]:
    """``_full.pickle``, ``_assemblies.pickle``, the tracklets and the stitched tracks of one
    video into ``out_dir`` (the ``_meta.pickle`` is the caller's). Returns them in ``names``'
    order. ``bodyparts`` and ``unique_bodyparts`` count the model's. Raises InferenceError when DLC's stitcher finds no tracklet (no animal was assembled
    in enough consecutive frames): analyze_videos stops there too, with only the pickles."""
    from deeplabcut.core.trackingutils import TRACK_METHODS
    from deeplabcut.pose_estimation_pytorch.apis.tracklets import build_tracklets
    from deeplabcut.pose_estimation_pytorch.apis.videos import _generate_assemblies_file, _generate_output_data
    from deeplabcut.refine_training_dataset.stitch import TrackletStitcher
    from deeplabcut.utils import auxfun_multianimal, auxiliaryfunctions

    if TRACK_METHODS.get(track_method) != suffix:
        raise InferenceError(f"tracker '{track_method}' does not write {suffix} files")
    test = Path(model_folder).parent / "test"
    pose_cfg = auxiliaryfunctions.read_plainconfig(str(test / "pose_cfg.yaml"))

    full_path = out_dir / f"{prefix}_full.pickle"
    full = _generate_output_data(pose_cfg, table.predictions)
    with open(full_path, "wb") as fh:
        pickle.dump(full, fh, pickle.HIGHEST_PROTOCOL)
    assemblies_path = out_dir / f"{prefix}_assemblies.pickle"
    _generate_assemblies_file(
        full_data_path=full_path,
        output_path=assemblies_path,
        num_bodyparts=bodyparts,
        num_unique_bodyparts=unique_bodyparts,
    )

    # convert_detections2tracklets, for one video
    inference_path = test / "inference_cfg.yaml"
    if inference_path.is_file():
        inference_cfg = auxiliaryfunctions.read_plainconfig(str(inference_path))
    else:  # DLC would write this default into the project; it is used in memory here
        inference_cfg = auxfun_multianimal.form_default_inferencecfg(project_cfg)
    try:
        auxfun_multianimal.check_inferencecfg_sanity(project_cfg, inference_cfg)
    except KeyError as exc:
        raise InferenceError(f"{inference_path}: {exc.args[0]}") from None
    if len(project_cfg["multianimalbodyparts"]) == 1:
        inference_cfg["boundingboxslack"] = max(inference_cfg["boundingboxslack"], 40)
    with open(assemblies_path, "rb") as fh:
        assemblies = pickle.load(fh)
    tracklets = build_tracklets(
        assemblies_data=assemblies,
        track_method=track_method,
        inference_cfg=inference_cfg,
        joints=full["metadata"]["all_joints_names"],
        scorer=scorer,
        num_frames=full["metadata"]["nframes"],
        ignore_bodyparts=None,
        unique_bodyparts=project_cfg["uniquebodyparts"],
        identity_only=False,
    )
    tracklets_path = out_dir / f"{prefix}{suffix}.pickle"
    with open(tracklets_path, "wb") as fh:
        pickle.dump(tracklets, fh, pickle.HIGHEST_PROTOCOL)

    # stitch_tracklets, for one video (no transformer re-identification: a separate DLC step)
    individuals = list(project_cfg["individuals"])
    try:
        stitcher = TrackletStitcher.from_pickle(str(tracklets_path), len(individuals), MIN_LENGTH, True, True)
    except OSError as exc:  # "Tracklets are empty."
        raise InferenceError(
            f"no animal tracked: DLC's stitcher found no tracklet of {MIN_LENGTH}+ frames in "
            f"{full['metadata']['nframes']} frames ({exc}); analyze_videos writes no tracks either"
        ) from None
    weight_func = None
    if any(tracklet.identity != -1 for tracklet in stitcher):  # identity heads: weigh by them

        def weight_func(t1: Any, t2: Any) -> float:
            w = 0.01 if t1.identity == t2.identity else 1
            return w * stitcher.calculate_edge_weight(t1, t2)

    stitcher.build_graph(max_gap=None, weight_func=weight_func)
    stitcher.stitch()
    stitcher.write_tracks(output_name="", animal_names=individuals, suffix="", save_as_csv=save_csv)
    written = [out_dir / name for name in names(prefix, suffix, save_csv)[1:]]
    missing = [p.name for p in written if not p.is_file()]
    if missing:
        raise InferenceError(f"DLC's tracking wrote no {', '.join(missing)}")
    return written


def tracked_values(h5: Path) -> tuple[list[str], Any, Any]:
    """The tracks' columns as ``individual/bodypart`` names, their frame numbers and their
    (rows, 3 * columns) values, for the quality numbers."""
    import pandas as pd

    df = pd.read_hdf(h5, key="tracks")
    levels = df.columns.droplevel("scorer")
    pairs = list(dict.fromkeys((ind, bp) for ind, bp, _ in levels))
    return [f"{ind}/{bp}" for ind, bp in pairs], df.index.to_numpy(), df.to_numpy()
