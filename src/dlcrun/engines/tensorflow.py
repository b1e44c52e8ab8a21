"""The TensorFlow engine (DeepLabCut 2.x shuffles): pin, analyse, train, without rewriting the project.

Labs that trained with DLC 2.x keep those networks for years: re-training on the PyTorch engine
changes every keypoint downstream. DLC 3 still runs them when TensorFlow is installed (the
TensorFlow image, ``make image ENGINE=tensorflow``), so dlcrun runs them through DLC's own
TensorFlow code: the same graph (``setup_GPUpose_prediction``, what ``analyze_videos`` uses by
default), the same frames (the decoder seam's OpenCV backend, as DLC reads them), and DLC's
``.h5``/``_meta.pickle``; the frame loop is dlcrun's so that a stride, the decoded-frame count
and a bounded memory work as they do for PyTorch models.

Training calls DLC's ``train_network``. It restores ``init_weights`` from the shuffle's
``train/pose_cfg.yaml``: dlcrun points it at the newest ``snapshot-N`` (DLC then resumes at
iteration N, so a requeued job continues), at weights the user names, or at randomly
initialised backbone weights written by :func:`random_init` when nothing else exists (DLC
would otherwise download ImageNet weights, which a compute node cannot).

TensorFlow (and DeepLabCut) are imported only inside the functions, and only when such a shuffle
is used: pinning one needs no TensorFlow, so a login node with the PyTorch install can submit it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from dlcrun.engines import ShuffleFolder, register
from dlcrun.errors import ConfigError, DlcrunError, InferenceError, one_line
from dlcrun.inference import TENSORFLOW, Analyzer, ModelSpec, installed, project_config, selected_snapshot

log = logging.getLogger(__name__)

_SNAPSHOT = re.compile(r"^snapshot-(\d+)$")
_BACKBONE_SCOPES = {"resnet": "resnet_v1"}


def _tensorflow() -> Any:
    """TensorFlow as DLC configures it (legacy Keras), or a ConfigError saying where to get it."""
    try:
        import deeplabcut.pose_estimation_tensorflow  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
        import tensorflow as tf
    except ImportError as exc:
        raise ConfigError(
            f"this shuffle is a TensorFlow-engine (DLC 2.x) model and TensorFlow is not importable here ({exc}); "
            "run it in the TensorFlow image (make image ENGINE=tensorflow, then --image) or `make install-tf`"
        ) from None
    return tf


def model_folder(project: Path, cfg: dict[str, Any], shuffle: int, trainingsetindex: int) -> Path:
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils import auxiliaryfunctions

    fraction = cfg["TrainingFraction"][trainingsetindex]
    return Path(project) / auxiliaryfunctions.get_model_folder(fraction, shuffle, cfg, engine=Engine.TF)


def snapshots(train_folder: Path) -> list[str]:
    """``snapshot-N`` names (checkpoint prefixes) by increasing iteration."""
    found = [
        (int(m.group(1)), m.group(0))
        for p in Path(train_folder).glob("snapshot-*.index")
        if (m := _SNAPSHOT.match(p.stem))
    ]
    return [name for _, name in sorted(found)]


def iterations(snapshot: str | Path) -> int:
    match = _SNAPSHOT.match(Path(snapshot).name)
    if not match:
        raise ConfigError(f"{snapshot}: not a TensorFlow snapshot name (snapshot-<iterations>)")
    return int(match.group(1))


def pin(project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec:
    """One snapshot of a TensorFlow shuffle, its scorer, frozen (see ``ModelEngine.pin``).

    Needs no TensorFlow: a login node with the PyTorch install pins the snapshot, and the array
    runs in the TensorFlow image (``batch.start_run`` checks that one of the two has TensorFlow).
    """
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils import auxiliaryfunctions
    from ruamel.yaml import YAML

    cfg = project_config(project)
    if cfg.get("multianimalproject"):
        raise ConfigError(
            f"{project}: a multi-animal DLC 2.x (TensorFlow) shuffle; dlcrun tracks multi-animal DLC 3 (PyTorch) "
            "models only (create_training_dataset(..., engine=Engine.PYTORCH), or deeplabcut.analyze_videos)"
        )
    folder = model_folder(project, cfg, shuffle, trainingsetindex)
    test_cfg = folder / "test" / "pose_cfg.yaml"
    if not test_cfg.is_file():
        raise ConfigError(f"{folder}: no test/pose_cfg.yaml; create_training_dataset for shuffle {shuffle} first")
    names = snapshots(folder / "train")
    if not names:
        raise ConfigError(f"{folder / 'train'}: no snapshot; train the network first (dlcrun train)")
    wanted = snapshot or selected_snapshot(folder / "train")
    chosen = _pick(names, wanted if wanted is not None else cfg.get("snapshotindex", -1))
    if chosen is None:
        raise ConfigError(
            f"{folder / 'train'}: snapshot '{wanted or cfg.get('snapshotindex')}' not found "
            f"(there are: {', '.join(names)})"
        )
    dlc_cfg = YAML(typ="safe").load(test_cfg.read_text())
    if int(cfg.get("num_outputs", dlc_cfg.get("num_outputs", 1)) or 1) > 1:
        raise ConfigError(f"{project}: num_outputs > 1 (several detections per bodypart) is not supported by dlcrun")
    fraction = cfg["TrainingFraction"][trainingsetindex]
    scorer, _ = auxiliaryfunctions.get_scorer_name(
        cfg, shuffle, fraction, trainingsiterations=iterations(chosen), engine=Engine.TF
    )
    return ModelSpec(
        project=str(project),
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        snapshot=str(folder / "train" / chosen),
        scorer=scorer,
        bodyparts=list(dlc_cfg["all_joints_names"]),
        net_type=str(dlc_cfg["net_type"]),
        default_batch_size=int(cfg.get("batch_size", 1) or 1),
        engine=TENSORFLOW,
    )


def _pick(names: list[str], wanted: str | int) -> str | None:
    """A snapshot by name (``snapshot-N``, ``.index`` allowed) or by position (config.yaml's
    ``snapshotindex``: -1 = newest, ``all`` taken as -1 as DLC's analyze_videos does)."""
    if wanted == "all":
        wanted = -1
    if isinstance(wanted, int) or str(wanted).lstrip("-").isdigit():
        index = int(wanted)
        return names[index] if -len(names) <= index < len(names) else None
    name = Path(str(wanted)).name.removesuffix(".index")
    return name if name in names else None


@register(TENSORFLOW)
class TensorflowEngine:
    name = TENSORFLOW
    title = "TensorFlow"

    def supports(self, precision: str, device: str) -> str | None:
        return None if precision == "fp32" else "runs fp32 only"

    def missing_here(self) -> str | None:
        if installed("tensorflow"):
            return None
        return (
            "is a TensorFlow-engine (DLC 2.x) model and neither this environment nor an image has TensorFlow: "
            "build the TensorFlow image (make image ENGINE=tensorflow) and pass --image, or run from .venv-tf "
            "(make install-tf)"
        )

    def pin(self, project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec:
        return pin(project, shuffle, trainingsetindex, snapshot)

    def open(
        self,
        spec: ModelSpec,
        batch_size: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        decoder: str = "opencv",
        detector_batch_size: int | None = None,  # DLC 2.x has no top-down models
    ) -> Analyzer:
        return TensorflowAnalyzer(spec, batch_size, device, threads, precision, decoder)

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
        return train(
            project, shuffle, trainingsetindex, epochs, batch_size, device, weights, workdir, iterations, abort
        )

    def evaluate(
        self, project: Path, shuffle: int, trainingsetindex: int, snapshot: Path, device: str
    ) -> ShuffleFolder:
        """DLC's TensorFlow evaluation runs where TensorFlow puts it (``device`` is for PyTorch)."""
        evaluate(project, shuffle, trainingsetindex, snapshot)
        cfg = project_config(project)
        return ShuffleFolder(
            snapshots=model_folder(project, cfg, shuffle, trainingsetindex) / "train",
            train_fraction=cfg["TrainingFraction"][trainingsetindex],
        )


class TensorflowAnalyzer(Analyzer):
    """A DLC 2.x network in a TensorFlow session, reused across the videos of one array index."""

    def __init__(
        self,
        spec: ModelSpec,
        batch_size: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        decoder: str = "opencv",
    ):
        reason = TensorflowEngine().supports(precision, device)
        if reason is not None:
            raise ConfigError(f"precision {precision}: the TensorFlow engine {reason}")
        if device.startswith("cuda") and os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            raise InferenceError(f"device '{device}' asked for, but CUDA_VISIBLE_DEVICES hides every GPU")
        if device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before TensorFlow first looks for GPUs
        tf = _tensorflow()
        from deeplabcut.pose_estimation_tensorflow.config import load_config
        from deeplabcut.pose_estimation_tensorflow.core import predict

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if not Path(f"{spec.snapshot}.index").is_file():
            raise InferenceError(f"{spec.snapshot}: pinned snapshot is gone; resubmit with a new --snapshot")
        super().__init__(spec, batch_size, device, precision, decoder)
        project = Path(spec.project)
        self._cfg = project_config(project)
        self._folder = model_folder(project, self._cfg, spec.shuffle, spec.trainingsetindex)
        dlc_cfg = load_config(str(self._folder / "test" / "pose_cfg.yaml"))
        dlc_cfg["init_weights"] = spec.snapshot
        dlc_cfg["num_outputs"] = 1
        dlc_cfg["batch_size"] = self.batch_size
        self._dlc_cfg = dlc_cfg
        self._sess, self._inputs, outputs = predict.setup_GPUpose_prediction(dlc_cfg, allow_growth=True)
        pose = tf.gather(predict.extract_GPUprediction(outputs, dlc_cfg), [1, 0, 2], axis=1)  # as GetPoseF_GTF
        self._pose = tf.reshape(pose, (self.batch_size, -1))

    @property
    def project_cfg(self) -> dict[str, Any]:
        return self._cfg

    @property
    def n_individuals(self) -> int:
        return 1

    def predict(self, stream: Any, stride: int, sink: Any, progress: Any) -> int:
        """DLC's batch loop (``GetPoseF_GTF``): a short last batch runs padded with the previous
        frames and keeps only its own rows, so every frame sees the same graph as in DLC."""
        frames: np.ndarray | None = None
        numbers: list[int] = []
        rows = 0

        def flush() -> None:
            nonlocal rows
            assert frames is not None
            pose = self._sess.run(self._pose, feed_dict={self._inputs: frames})[: len(numbers)]
            sink(list(numbers), [{"bodyparts": p.reshape(1, -1, 3)} for p in pose])
            rows += len(numbers)
            progress(rows)
            numbers.clear()

        for number, rgb in stream.frames(stride):
            if frames is None:
                frames = np.empty((self.batch_size, *rgb.shape), dtype=np.uint8)
            frames[len(numbers)] = rgb
            numbers.append(number)
            if len(numbers) == self.batch_size:
                flush()
        if numbers:
            flush()
        return rows

    def metadata(
        self, info: Any, cropping: list[int] | None, start: float, stop: float, decoded: int
    ) -> dict[str, Any]:
        """The ``_meta.pickle`` DLC's TensorFlow ``AnalyzeVideo`` writes."""
        cfg = self._cfg
        return {
            "data": {
                "start": start,
                "stop": stop,
                "run_duration": stop - start,
                "Scorer": self.spec.scorer,
                "DLC-model-config file": self._dlc_cfg,
                "fps": info.fps,
                "batch_size": self.batch_size,
                "frame_dimensions": (info.height, info.width),
                "nframes": decoded,
                "iteration (active-learning)": cfg["iteration"],
                "training set fraction": cfg["TrainingFraction"][self.spec.trainingsetindex],
                "cropping": bool(cfg.get("cropping", False)),
                "cropping_parameters": cropping if cropping else [0, info.width, 0, info.height],
            }
        }


def random_init(dlc_cfg: dict[str, Any], prefix: Path) -> Path:
    """Randomly initialised backbone weights of the shuffle's network, as a TF checkpoint.

    The last batch-norm scale of every residual unit starts at zero (each unit starts as the
    identity): DLC's ResNet runs batch norm frozen, and with random convolutions and unit
    scales the activations overflow and the first loss is NaN.
    """
    tf = _tensorflow()
    from deeplabcut.pose_estimation_tensorflow.nnets.factory import PoseNetFactory

    scope = next((s for key, s in _BACKBONE_SCOPES.items() if str(dlc_cfg["net_type"]).startswith(key)), None)
    if scope is None:
        raise ConfigError(
            f"net_type {dlc_cfg['net_type']}: dlcrun makes random initial weights for ResNets only; pass --weights"
        )
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, shape=[1, None, None, 3])
        PoseNetFactory.create(dict(dlc_cfg)).test(inputs)
        backbone = [v for v in tf.compat.v1.global_variables() if v.op.name.startswith(scope)]
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for var in backbone:
                if var.op.name.endswith("conv3/BatchNorm/gamma"):
                    sess.run(var.assign(tf.zeros_like(var)))
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.compat.v1.train.Saver(backbone).save(sess, str(prefix), write_meta_graph=False)
    return prefix


def _checkpoint_exists(prefix: str | Path) -> bool:
    return Path(f"{prefix}.index").is_file()


def train(
    project: Path,
    shuffle: int,
    trainingsetindex: int,
    epochs: int | None,
    batch_size: int | None,
    device: str,
    weights: Path | None,
    workdir: Path | None,
    iterations: int | None = None,
    abort: Callable[[str], NoReturn] | None = None,
) -> Path:
    """Train a TensorFlow-engine shuffle with DLC; return the newest ``train/snapshot-N`` prefix.

    ``iterations`` is DLC's ``maxiters``; without it ``epochs`` becomes one (epochs x training
    images / batch size). Either counts from where the shuffle's newest snapshot left off.
    ``abort`` ends the process when DLC's data loader dies (see :func:`loader_watch`).
    """
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    _tensorflow()
    import deeplabcut
    from deeplabcut.core.engine import Engine
    from deeplabcut.pose_estimation_tensorflow.config import load_config

    cfg = project_config(project)
    folder = model_folder(project, cfg, shuffle, trainingsetindex)
    pose_cfg_path = folder / "train" / "pose_cfg.yaml"
    if not pose_cfg_path.is_file():
        raise ConfigError(f"{folder}: no train/pose_cfg.yaml; create_training_dataset for shuffle {shuffle} first")
    dlc_cfg = load_config(str(pose_cfg_path))
    names = snapshots(folder / "train")
    if weights is not None:
        start = str(weights).removesuffix(".index")
        if not _checkpoint_exists(start):
            raise ConfigError(f"--weights {weights}: not a TensorFlow checkpoint (no {Path(start).name}.index)")
    elif names:
        start = str(folder / "train" / names[-1])  # DLC resumes at its iteration count
    elif _checkpoint_exists(dlc_cfg["init_weights"]):
        start = str(dlc_cfg["init_weights"])
    else:
        if workdir is None:
            raise ConfigError(f"{folder}: no snapshot or initial weights to start from; pass --weights")
        start = str(random_init(dlc_cfg, Path(workdir) / "random-init" / "backbone.ckpt"))
        log.info("no snapshot or ImageNet weights: random initial weights in %s", start)
    log.info("starting from %s", start)
    batch = batch_size or int(dlc_cfg.get("batch_size", 1) or 1)
    set_pose_cfg(pose_cfg_path, init_weights=start, batch_size=batch)
    maxiters = iterations
    if maxiters is None and epochs is not None:
        maxiters = max(1, math.ceil(epochs * _training_images(project, cfg, shuffle, trainingsetindex) / batch))
    before = time.time()
    with loader_watch(abort):
        deeplabcut.train_network(
            str(Path(project) / "config.yaml"),
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            maxiters=maxiters,
            saveiters=maxiters,
            displayiters=max(1, (maxiters or 1000) // 10),
            allow_growth=True,
            engine=Engine.TF,
        )
    written = [
        n for n in snapshots(folder / "train") if (folder / "train" / f"{n}.index").stat().st_mtime >= before - 1
    ]
    if not written:
        raise DlcrunError(f"{folder / 'train'}: training ended without writing a snapshot")
    return folder / "train" / written[-1]


@contextlib.contextmanager
def loader_watch(abort: Callable[[str], NoReturn] | None) -> Iterator[None]:
    """End training at once, through ``abort``, when DLC's TensorFlow data loader dies.

    DLC feeds its training queue from one thread (``load_and_enqueue``). If that thread raises
    (an unreadable image, one smaller than ``min_input_size``), the training loop waits on the
    empty queue forever and the job burns its whole walltime. The main thread is then blocked
    inside TensorFlow, so nothing can be raised there: ``abort`` must end the process. An error
    raised by the session itself is ignored: DLC closes the session under the loader when
    training ends, and the loader then fails in ``Session.run``.
    """
    if abort is None:
        yield
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        previous(args)
        frames = traceback.extract_tb(args.exc_traceback)
        names = [f.name for f in frames]
        if "load_and_enqueue" not in names:
            return
        called = frames[names.index("load_and_enqueue") + 1 :]
        if called and called[0].name == "run" and "tensorflow" in called[0].filename:
            return
        abort(f"DeepLabCut's TensorFlow data loader died: {args.exc_type.__name__}: {one_line(args.exc_value)}")

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def set_pose_cfg(path: Path, **values: Any) -> None:
    """Edit train/pose_cfg.yaml in place, comments kept, written atomically."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(path.read_text())
    data.update(values)
    tmp = path.with_name(f".{path.name}.dlcrun-tmp")
    with open(tmp, "w") as fh:
        yaml.dump(data, fh)
    os.replace(tmp, path)


def _training_images(project: Path, cfg: dict[str, Any], shuffle: int, trainingsetindex: int) -> int:
    from deeplabcut.utils import auxiliaryfunctions

    fraction = cfg["TrainingFraction"][trainingsetindex]
    folder = Path(project) / auxiliaryfunctions.get_training_set_folder(cfg)
    _, doc = auxiliaryfunctions.get_data_and_metadata_filenames(folder, fraction, shuffle, cfg)
    try:
        _, train_indices, _, _ = auxiliaryfunctions.load_metadata(str(Path(project) / doc))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{doc}: cannot read the shuffle's training split ({exc})") from None
    return max(1, len(train_indices))


def evaluate(project: Path, shuffle: int, trainingsetindex: int, snapshot: Path) -> None:
    """DLC's TensorFlow evaluate_network on one snapshot (results in evaluation-results/)."""
    _tensorflow()
    import deeplabcut
    from deeplabcut.core.engine import Engine

    deeplabcut.evaluate_network(
        str(Path(project) / "config.yaml"),
        shuffles=[shuffle],
        trainingsetindex=trainingsetindex,
        snapshots_to_evaluate=[Path(snapshot).name],
        show_errors=False,
        engine=Engine.TF,
    )
