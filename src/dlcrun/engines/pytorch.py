"""The PyTorch engine (DeepLabCut 3): pin a snapshot, run it, train and evaluate a shuffle.

The model is loaded through DLC's own loader and inference runner, so pre- and post-processing
are DLC's and keypoints equal ``deeplabcut.analyze_videos``; the frame loop is dlcrun's
(``pytorch_pipeline.py``: a decoder thread, batches, the .h5 written in chunks) so a long
video's predictions are never all in RAM and the model does not wait for the decoder.

Training calls DLC's ``train_network`` with a snapshot to start from, always: the newest one of
the shuffle (training continues), weights the user names, or a randomly initialised network
(:func:`random_init`); DLC would otherwise download ImageNet weights, which a compute node cannot.

torch and DeepLabCut are imported inside the functions: they cost seconds, and ``dlcrun submit``
on a login node has neither. Pinning reads the shuffle's files (``pytorch_snapshots.py``) and
imports DeepLabCut only where they do not suffice.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from dlcrun.engines import ShuffleFolder, register
from dlcrun.engines.pytorch_snapshots import pin_from_files
from dlcrun.errors import ConfigError, DlcrunError, InferenceError
from dlcrun.inference import (
    PYTORCH,
    TRACKER_SUFFIXES,
    Analyzer,
    ModelSpec,
    installed,
    project_config,
    resolve_device,
    selected_snapshot,
)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")  # what pytorch_pipeline.Pipeline autocasts to
_SNAPSHOT = re.compile(r"snapshot-(\d+)\.pt$")


def shuffle_loader(project: Path, shuffle: int, trainingsetindex: int) -> Any:
    """DLC's ``DLCLoader`` for the shuffle (its model folder, configs, scorer), or a ConfigError
    saying the shuffle has no PyTorch model yet."""
    from deeplabcut.pose_estimation_pytorch.data import DLCLoader

    cfg = project_config(project)
    try:
        return DLCLoader(cfg, trainset_index=trainingsetindex, shuffle=shuffle)
    except (FileNotFoundError, IndexError) as exc:
        raise ConfigError(
            f"{project}: shuffle {shuffle} / trainingsetindex {trainingsetindex} has no PyTorch model "
            f"({exc}); create_training_dataset and train it first"
        ) from None


@register(PYTORCH)
class PytorchEngine:
    name = PYTORCH
    title = "PyTorch"

    def supports(self, precision: str, device: str) -> str | None:
        return None if precision in PRECISIONS else f"knows precisions {', '.join(PRECISIONS)} only"

    def missing_here(self) -> str | None:
        # Pinning reads files now, so it no longer proves torch is here (DeepLabCut is: batch.pin).
        if installed("torch"):
            return None
        return (
            "is a PyTorch-engine (DLC 3) model and torch is not installed here: make install, or run the "
            "indices in the image (--image)"
        )

    def pin(self, project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec:
        """From the shuffle's files where they suffice (no DeepLabCut import: seconds saved at
        every submit), else through DeepLabCut's own loader; the same spec either way."""
        spec = pin_from_files(project, shuffle, trainingsetindex, snapshot)
        return spec if spec is not None else pin_with_dlc(project, shuffle, trainingsetindex, snapshot)

    def open(
        self,
        spec: ModelSpec,
        batch_size: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        decoder: str = "opencv",
        detector_batch_size: int | None = None,
    ) -> Analyzer:
        return PytorchAnalyzer(
            spec, batch_size, device, threads, precision, decoder, detector_batch_size=detector_batch_size
        )

    def train(
        self,
        project: Path,
        shuffle: int,
        trainingsetindex: int,
        epochs: int | None,
        batch_size: int | None,
        device: str,
        weights: Path | None,
        workdir: Path | None,
        iterations: int | None,
        abort: Callable[[str], NoReturn] | None,
    ) -> Path:
        """Training from a ``snapshot-*.pt``; ``abort`` is not needed (DLC's PyTorch loop raises)."""
        if iterations is not None:
            raise ConfigError(
                "--iterations is for TensorFlow-engine (DLC 2.x) shuffles; PyTorch ones train by --epochs"
            )
        import deeplabcut
        from deeplabcut.pose_estimation_pytorch.task import Task

        loader = shuffle_loader(project, shuffle, trainingsetindex)
        if Task(loader.model_cfg.get("method", "bu")) != Task.BOTTOM_UP:
            raise ConfigError(
                f"{loader.model_folder}: top-down models also train a detector, which would need downloaded "
                "weights; dlcrun trains bottom-up models"
            )
        start = weights or latest_snapshot(loader.model_folder)
        if start is None:
            if workdir is None:
                raise ConfigError(f"{loader.model_folder}: no snapshot to start from; pass weights or a workdir")
            start = random_init(loader, Path(workdir) / "init.pt")
            log.info("no snapshot to start from: random initial weights in %s", start)
        else:
            log.info("starting from %s", start)
        before = time.time()
        deeplabcut.train_network(
            str(project / "config.yaml"),
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            device=resolve_device(device),
            snapshot_path=str(start),
            epochs=epochs,
            batch_size=batch_size,
        )
        written = [p for p in loader.model_folder.glob("snapshot-*.pt") if p.stat().st_mtime >= before - 1]
        if not written:
            raise DlcrunError(f"{loader.model_folder}: training ended without writing a snapshot (epochs 0?)")
        return max(written, key=lambda p: p.stat().st_mtime)

    def evaluate(
        self, project: Path, shuffle: int, trainingsetindex: int, snapshot: Path, device: str
    ) -> ShuffleFolder:
        import deeplabcut

        loader = shuffle_loader(project, shuffle, trainingsetindex)
        deeplabcut.evaluate_network(
            str(project / "config.yaml"),
            shuffles=[shuffle],
            trainingsetindex=trainingsetindex,
            snapshots_to_evaluate=[snapshot.stem],
            device=resolve_device(device),
            show_errors=False,
        )
        return ShuffleFolder(snapshots=loader.model_folder, train_fraction=loader.train_fraction)


def pin_with_dlc(project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec:
    """``PytorchEngine.pin`` through DeepLabCut's loader: what ``pin_from_files`` is held equal to,
    and what answers where the files do not suffice (multi-animal projects, top-down models)."""
    from deeplabcut.pose_estimation_pytorch.apis import utils
    from deeplabcut.pose_estimation_pytorch.task import Task

    loader = shuffle_loader(project, shuffle, trainingsetindex)
    task = loader.pose_task
    if task not in (Task.BOTTOM_UP, Task.TOP_DOWN):
        raise ConfigError(
            f"{loader.model_config_path}: a {task.value} (conditional top-down) model takes its conditions "
            "from a second, bottom-up model; dlcrun runs bottom-up and top-down models (use "
            "deeplabcut.analyze_videos for this one)"
        )
    if snapshot is None:
        snapshot = selected_snapshot(loader.model_folder)
    detector = None
    try:
        if snapshot and snapshot.endswith(".pt"):
            found = utils.get_model_snapshots(0, loader.model_folder, task, [Path(snapshot).stem])
            detector_index = utils.parse_snapshot_index_for_analysis(loader.project_cfg, loader.model_cfg, None, None)[
                1
            ]
        else:
            index: int | str | None = int(snapshot) if snapshot and snapshot.lstrip("-").isdigit() else snapshot
            index, detector_index = utils.parse_snapshot_index_for_analysis(
                loader.project_cfg, loader.model_cfg, index, None
            )
            found = utils.get_model_snapshots(index, loader.model_folder, task)
        if found and task == Task.TOP_DOWN:
            if detector_index is None:
                raise ValueError("config.yaml has no detector_snapshotindex")
            detectors = utils.get_model_snapshots(detector_index, loader.model_folder, Task.DETECT)
            if not detectors:
                raise ValueError("no detector snapshot (snapshot-detector-*.pt); train the detector first")
            detector = detectors[0]
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
    cfg = loader.project_cfg
    metadata = loader.model_cfg["metadata"]
    multi = bool(cfg["multianimalproject"])
    return ModelSpec(
        project=str(project),
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        snapshot=str(Path(snap.path).resolve()),
        scorer=loader.scorer(snap, detector),
        bodyparts=list(metadata["bodyparts"]),
        net_type=_plain_name(loader.model_cfg["net_type"]),
        default_batch_size=int(cfg.get("batch_size", 1) or 1),
        multi_animal=multi,
        individuals=list(metadata["individuals"]) if multi else [],
        unique_bodyparts=list(metadata["unique_bodyparts"]) if multi else [],
        track_method=track_method(cfg, loader.model_config_path) if multi else "",
        method="TD" if task == Task.TOP_DOWN else "BU",
        detector_snapshot=str(Path(detector.path).resolve()) if detector is not None else "",
        default_detector_batch_size=int(cfg.get("detector_batch_size", 1) or 1),
    )


def track_method(cfg: dict[str, Any], where: Path) -> str:
    """DLC's tracker for the project (``auxfun_multianimal.get_track_method``, and
    ``convert_detections2tracklets``' switch to ``box`` for a single multi-animal bodypart),
    decided without DLC writing its default into config.yaml as it does."""
    method = cfg.get("default_track_method") or "ellipse"
    if method not in TRACKER_SUFFIXES:
        raise ConfigError(
            f"{Path(cfg['project_path']) / 'config.yaml'}: default_track_method '{method}' is not one "
            f"analyze_videos tracks with ({', '.join(TRACKER_SUFFIXES)})"
        )
    if len(cfg.get("multianimalbodyparts") or []) == 1:
        return "box"
    return method


def _plain_name(net_type: Any) -> str:
    """``resnet_50`` as pytorch_config.yaml spells it: DLC 3.0.2's config gives an enum (``NetType``),
    whose ``str()`` is ``NetType.RESNET_50``."""
    return str(getattr(net_type, "value", net_type))


def latest_snapshot(model_folder: Path) -> Path | None:
    """The regular snapshot with the most epochs (``snapshot-best-*`` may be older)."""
    found = [(int(m.group(1)), p) for p in model_folder.glob("snapshot-*.pt") if (m := _SNAPSHOT.search(p.name))]
    return max(found)[1] if found else None


def random_init(loader: Any, path: Path) -> Path:
    """A randomly initialised network of the shuffle's architecture, saved as a DLC snapshot."""
    import torch
    from deeplabcut.core.config import read_config_as_dict
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    model_cfg = read_config_as_dict(loader.model_config_path)
    model = PoseModel.build(model_cfg["model"], pretrained_backbone=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


class PytorchAnalyzer(Analyzer):
    """A DLC 3 model: DLC's own model, pre- and post-processing (from
    ``get_pose_inference_runner``) in dlcrun's pipelined batches (``pytorch_pipeline.Pipeline``)."""

    def __init__(
        self,
        spec: ModelSpec,
        batch_size: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        decoder: str = "opencv",
        channels_last: bool = True,
        detector_batch_size: int | None = None,
    ):
        import torch
        from deeplabcut.pose_estimation_pytorch.apis import utils

        from dlcrun.engines.pytorch_pipeline import Pipeline

        if threads:
            torch.set_num_threads(threads)
        super().__init__(spec, batch_size, resolve_device(device), precision, decoder)
        if spec.top_down and precision != "fp32":
            raise InferenceError(f"--precision {precision}: top-down models run in fp32 only (DLC's own runners)")
        self.loader = shuffle_loader(Path(spec.project), spec.shuffle, spec.trainingsetindex)
        for path in (spec.snapshot, spec.detector_snapshot):
            if path and not Path(path).is_file():
                raise InferenceError(f"{path}: pinned snapshot is gone; resubmit with a new --snapshot")
        self.loader.model_cfg["device"] = self.device
        individuals = len(self.loader.model_cfg["metadata"]["individuals"])
        # As analyze_videos builds them: the pose runner, and for a top-down model the detector's.
        self.runner = utils.get_pose_inference_runner(
            model_config=self.loader.model_cfg,
            snapshot_path=spec.snapshot,
            max_individuals=individuals,
            batch_size=self.batch_size,
            device=self.device,
        )
        self.pipeline: Any
        if spec.top_down:
            from dlcrun.engines.pytorch_topdown import TopDownPipeline

            self.detector_batch_size = detector_batch_size or spec.default_detector_batch_size
            detector = utils.get_detector_inference_runner(
                model_config=self.loader.model_cfg,
                snapshot_path=spec.detector_snapshot,
                max_individuals=individuals,
                batch_size=self.detector_batch_size,
                device=self.device,
            )
            self.pipeline = TopDownPipeline(detector, self.runner, self.detector_batch_size)
        else:
            self.pipeline = Pipeline(
                self.runner, self.device, self.batch_size, precision=precision, channels_last=channels_last
            )

    @property
    def project_cfg(self) -> dict[str, Any]:
        return self.loader.project_cfg

    @property
    def n_individuals(self) -> int:
        return len(self.loader.model_cfg["metadata"]["individuals"])

    def predict(self, stream: Any, stride: int, sink: Any, progress: Any) -> int:
        return self.pipeline.run(stream, stride, sink, progress)

    def track(self, table: Any, out_dir: Path, prefix: str, save_csv: bool) -> list[Path]:
        from dlcrun.tracking import write_tracks

        spec = self.spec
        return write_tracks(
            table,
            out_dir,
            prefix,
            spec.scorer,
            len(spec.bodyparts),
            len(spec.unique_bodyparts),
            self.project_cfg,
            self.loader.model_folder,
            spec.track_method,
            spec.tracker_suffix,
            save_csv,
        )

    def metadata(
        self, info: Any, cropping: list[int] | None, start: float, stop: float, decoded: int
    ) -> dict[str, Any]:
        """DLC's ``_meta.pickle`` content, as its PyTorch analyze_videos writes it."""
        from deeplabcut.pose_estimation_pytorch.apis import videos as dlc_videos

        return dlc_videos._generate_metadata(
            cfg=self.project_cfg,
            pytorch_config=self.loader.model_cfg,
            dlc_scorer=self.spec.scorer,
            train_fraction=self.loader.train_fraction,
            batch_size=self.batch_size,
            cropping=cropping,
            runtime=(start, stop),
            video=_MetaVideo(info),
        )


class _MetaVideo:
    """What DLC's ``_generate_metadata`` reads from a ``VideoReader``."""

    def __init__(self, info: Any):
        self.dimensions = (info.width, info.height)
        self.fps = info.fps
        self._frames = info.header_frames

    def get_n_frames(self, robust: bool = False) -> int:
        return self._frames
