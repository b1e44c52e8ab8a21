"""The one place dlcrun touches DeepLabCut.

The model is loaded through DLC's own loader and inference runner, so pre- and
post-processing are DLC's and keypoints equal ``deeplabcut.analyze_videos``. Two things are
done differently on purpose (see shared notes on DLC in a job array):

- config.yaml is read as a plain dict with ``project_path`` set in memory; DLC's
  ``read_config`` would rewrite the file, and hundreds of array tasks racing on that write
  (or a read-only bind in a container) break the batch.
- the snapshot is pinned at submit time and recorded, so every index uses the same weights
  and output names do not drift while training continues.

``deeplabcut`` is imported lazily: it costs seconds, and ``status`` or ``manifest`` need none of it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlcrun.errors import ConfigError, InferenceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A pinned DLC model: enough to rebuild the runner on any node, frozen in model.json."""

    project: str
    shuffle: int
    trainingsetindex: int
    snapshot: str
    scorer: str
    bodyparts: list[str]
    net_type: str
    default_batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class Analysis:
    """Files written for one video (all in one folder) and what was decoded."""

    files: list[Path]
    frames: int
    header_frames: int
    seconds: float


def quiet_environment(scratch: Path | None = None) -> None:
    """Settings a headless array index needs before DLC, torch or matplotlib import."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    if scratch is not None:
        os.environ.setdefault("TORCH_HOME", str(scratch / "torch"))
        os.environ.setdefault("HF_HOME", str(scratch / "hf"))
        os.environ.setdefault("MPLCONFIGDIR", str(scratch / "mpl"))


def _loader(project: Path, shuffle: int, trainingsetindex: int) -> Any:
    from deeplabcut.core.config import read_config_as_dict
    from deeplabcut.pose_estimation_pytorch.data import DLCLoader

    config = project / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{project}: no config.yaml; --project must be a DeepLabCut project folder")
    cfg = read_config_as_dict(config)
    cfg["project_path"] = str(project)
    try:
        return DLCLoader(cfg, trainset_index=trainingsetindex, shuffle=shuffle)
    except (FileNotFoundError, IndexError) as exc:
        if list(project.glob(f"dlc-models/iteration-*/*shuffle{shuffle}/train")):
            raise ConfigError(
                f"{project}: shuffle {shuffle} is a TensorFlow-engine (DLC 2.x) model; dlcrun runs PyTorch-engine "
                "models: create a PyTorch shuffle (create_training_dataset(..., engine=Engine.PYTORCH)) and train it"
            ) from None
        raise ConfigError(
            f"{project}: shuffle {shuffle} / trainingsetindex {trainingsetindex} has no PyTorch model "
            f"({exc}); create_training_dataset and train it first"
        ) from None


SELECTED_FILE = "dlcrun-selected.json"


def selected_snapshot(model_folder: Path) -> str | None:
    """The snapshot ``dlcrun train`` chose after evaluation (lowest test error), if any."""
    try:
        name = json.loads((Path(model_folder) / SELECTED_FILE).read_text())["snapshot"]
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return name if (Path(model_folder) / name).is_file() else None


def pin_model(project: Path, shuffle: int = 1, trainingsetindex: int = 0, snapshot: str | None = None) -> ModelSpec:
    """Resolve which snapshot a run uses, once, on the submit host."""
    from deeplabcut.pose_estimation_pytorch.apis import utils

    project = Path(project).expanduser().resolve()
    loader = _loader(project, shuffle, trainingsetindex)
    if loader.project_cfg["multianimalproject"]:
        raise ConfigError(
            f"{project}: multi-animal projects need DLC's tracking step, which dlcrun does not run yet; "
            "use deeplabcut.analyze_videos for them"
        )
    if snapshot is None:
        snapshot = selected_snapshot(loader.model_folder)
    try:
        if snapshot and snapshot.endswith(".pt"):
            found = utils.get_model_snapshots(0, loader.model_folder, loader.pose_task, [Path(snapshot).stem])
        else:
            index: int | str | None = int(snapshot) if snapshot and snapshot.lstrip("-").isdigit() else snapshot
            index, _ = utils.parse_snapshot_index_for_analysis(loader.project_cfg, loader.model_cfg, index, None)
            found = utils.get_model_snapshots(index, loader.model_folder, loader.pose_task)
    except (ValueError, IndexError) as exc:
        found, reason = [], str(exc)
    else:
        reason = "no such snapshot"
    if not found:
        raise ConfigError(
            f"{loader.model_folder}: snapshot '{snapshot or 'from config.yaml'}' not usable ({reason}); "
            "train the network first (dlcrun train) or pass --snapshot"
        )
    snap = found[0]
    return ModelSpec(
        project=str(project),
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        snapshot=str(Path(snap.path).resolve()),
        scorer=loader.scorer(snap),
        bodyparts=list(loader.model_cfg["metadata"]["bodyparts"]),
        net_type=str(loader.model_cfg["net_type"]),
        default_batch_size=int(loader.project_cfg.get("batch_size", 1) or 1),
    )


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError(
            f"device '{device}' asked for, but torch sees no GPU (inside Apptainer, use --nv; check the driver)"
        )
    return device


class Analyzer:
    """A loaded model; reused across the videos of one array index."""

    def __init__(self, spec: ModelSpec, batch_size: int | None = None, device: str = "auto", threads: int | None = None):
        import torch
        from deeplabcut.pose_estimation_pytorch.apis import utils

        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.device = resolve_device(device)
        self.batch_size = batch_size or spec.default_batch_size
        self._loader = _loader(Path(spec.project), spec.shuffle, spec.trainingsetindex)
        if not Path(spec.snapshot).is_file():
            raise InferenceError(f"{spec.snapshot}: pinned snapshot is gone; resubmit with a new --snapshot")
        self._loader.model_cfg["device"] = self.device
        self.runner = utils.get_pose_inference_runner(
            model_config=self._loader.model_cfg,
            snapshot_path=spec.snapshot,
            max_individuals=len(self._loader.model_cfg["metadata"]["individuals"]),
            batch_size=self.batch_size,
            device=self.device,
        )

    def output_prefix(self, video_stem: str) -> str:
        return video_stem + self.spec.scorer

    def analyze(self, video: Path, out_dir: Path, save_csv: bool = False, stem: str | None = None) -> Analysis:
        """Write DLC's ``<stem><scorer>.h5`` and ``_meta.pickle`` (and ``.csv``) into ``out_dir``."""
        from deeplabcut.pose_estimation_pytorch.apis import videos as dlc_videos

        cfg = self._loader.project_cfg
        cropping = [cfg["x1"], cfg["x2"], cfg["y1"], cfg["y2"]] if cfg.get("cropping", False) else None
        try:
            frames = dlc_videos.VideoIterator(video, cropping=cropping)
        except (OSError, ValueError) as exc:
            raise InferenceError(f"{video.name}: cannot open as video ({exc})") from None
        header_frames = frames.get_n_frames()
        start = time.time()
        predictions = self.runner.inference(images=_progress(frames, header_frames, video.name))
        stop = time.time()
        if not predictions:
            raise InferenceError(f"{video.name}: no frame could be decoded; the file is corrupt or not a video")
        if len(predictions) < header_frames:
            raise InferenceError(
                f"{video.name}: decoded {len(predictions)} of the {header_frames} frames its header claims; "
                "the file is truncated or corrupt (re-encode or re-copy it)"
            )
        prefix = self.output_prefix(stem or video.stem)
        out_dir.mkdir(parents=True, exist_ok=True)
        metadata = dlc_videos._generate_metadata(
            cfg=cfg,
            pytorch_config=self._loader.model_cfg,
            dlc_scorer=self.spec.scorer,
            train_fraction=self._loader.train_fraction,
            batch_size=self.batch_size,
            cropping=cropping,
            runtime=(start, stop),
            video=frames,
        )
        meta_path = out_dir / f"{prefix}_meta.pickle"
        with open(meta_path, "wb") as fh:
            pickle.dump(metadata, fh, pickle.HIGHEST_PROTOCOL)
        dlc_videos.create_df_from_prediction(
            predictions=predictions,
            dlc_scorer=self.spec.scorer,
            multi_animal=False,
            model_cfg=self._loader.model_cfg,
            output_path=out_dir,
            output_prefix=prefix,
            save_as_csv=save_csv,
        )
        files = [out_dir / f"{prefix}.h5", meta_path]
        if save_csv:
            files.append(out_dir / f"{prefix}.csv")
        return Analysis(files=files, frames=len(predictions), header_frames=header_frames, seconds=stop - start)


def _progress(frames: Any, total: int, name: str, every: float = 60.0) -> Any:
    """Yield frames, logging a rate line at most once a minute: job logs stay short but alive."""
    start = last = time.monotonic()
    for count, frame in enumerate(frames, start=1):
        yield frame
        now = time.monotonic()
        if now - last >= every:
            last = now
            log.info("%s: %d/%d frames, %.1f frames/s", name, count, total, count / (now - start))


def count_rows(h5: Path) -> int:
    """Rows in a DLC .h5, read without loading the table."""
    import pandas as pd

    try:
        with pd.HDFStore(h5, mode="r") as store:
            storer = store.get_storer("df_with_missing")
            if storer is None:
                raise InferenceError(f"{h5.name}: no 'df_with_missing' table")
            return int(storer.nrows)
    except (OSError, KeyError) as exc:
        raise InferenceError(f"{h5.name}: unreadable .h5 ({exc})") from None
