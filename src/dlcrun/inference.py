"""What analysing a video means whatever DeepLabCut engine runs the model.

The pinned model (:class:`ModelSpec`), the :class:`Analyzer` base whose ``analyze`` decodes a
video, runs the engine's network over it and writes DLC's own files (``.h5``, ``_meta.pickle``,
``.csv``), and the project reads both engines share. The engines themselves (PyTorch, TensorFlow)
are in ``dlcrun.engines``, which builds on this module; this module never imports them.

Things done differently from DLC on purpose (see shared notes on DLC in a job array):

- config.yaml is read as a plain dict with ``project_path`` set in memory; DLC's
  ``read_config`` would rewrite the file, and hundreds of array tasks racing on that write
  (or a read-only bind in a container) break the batch.
- the snapshot is pinned at submit time and recorded, so every index uses the same weights
  and output names do not drift while training continues.
- the frame loop is dlcrun's (the engine's ``predict``, rows written to the .h5 in chunks), so
  a long video's predictions are never all in RAM.

``deeplabcut`` is imported lazily: it costs seconds, and ``status`` or ``manifest`` need none of it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcrun.errors import ConfigError, InferenceError

if TYPE_CHECKING:
    from dlcrun.tracking import AnimalsTable

log = logging.getLogger(__name__)


# The trackers analyze_videos(auto_track=True) tracks with, and the suffix of their files (DLC's
# TRACK_METHODS, which also names "ctd" and "transformer": other steps than this one).
TRACKER_SUFFIXES = {"ellipse": "_el", "box": "_bx", "skeleton": "_sk"}


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
    engine: str = "pytorch"  # or "tensorflow": a DLC 2.x shuffle (engines/tensorflow.py)
    # A multi-animal project: its individuals (the model's), unique bodyparts and DLC's tracker
    # ("ellipse", "box", "skeleton"), which name the files analyze_videos(auto_track=True) writes.
    multi_animal: bool = False
    individuals: list[str] = field(default_factory=list)
    unique_bodyparts: list[str] = field(default_factory=list)
    track_method: str = ""
    # A top-down model ("TD"; bottom-up "BU") and its pinned detector snapshot.
    method: str = "BU"
    detector_snapshot: str = ""
    default_detector_batch_size: int = 1

    @property
    def top_down(self) -> bool:
        return self.method.upper() == "TD"

    @property
    def tracker_suffix(self) -> str:
        """``_el``, ``_bx``, ``_sk``: the tracks' file suffix (DLC's ``TRACK_METHODS``); "" single-animal."""
        return TRACKER_SUFFIXES.get(self.track_method, "") if self.multi_animal else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows_whole(self, rows: int, analysed: int) -> bool:
        """Whether an .h5 of ``rows`` rows holds all of ``analysed`` frames: one row each, or for
        stitched tracks one per frame up to the last tracked one (DLC's ``TrackletStitcher``)."""
        return 0 < rows <= analysed if self.multi_animal else rows == analysed

    @property
    def table_key(self) -> str:
        """The key of the last output's table: DLC's keypoints, or its stitched tracks."""
        return "tracks" if self.multi_animal else "df_with_missing"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Analysis:
    """Files written for one video (all in one folder), what was decoded and analysed."""

    files: list[Path]
    frames: int  # decoded
    header_frames: int
    seconds: float
    rows: int = 0  # analysed: one in ``stride`` of the decoded frames
    stride: int = 1
    quality: dict[str, Any] = field(default_factory=dict)  # quality.QualityAccumulator.result()
    clip: Path | None = None  # the labelled clip of the worst stretch, when asked (on scratch)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent filtering, drawing the clip


def quiet_environment(scratch: Path | None = None) -> None:
    """Settings a headless array index needs before DLC, torch or matplotlib import."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    if scratch is not None:
        os.environ.setdefault("TORCH_HOME", str(scratch / "torch"))
        os.environ.setdefault("HF_HOME", str(scratch / "hf"))
        os.environ.setdefault("MPLCONFIGDIR", str(scratch / "mpl"))


def project_config(project: Path) -> dict[str, Any]:
    """config.yaml as a dict with ``project_path`` set in memory (DLC's read_config would write it)."""
    from deeplabcut.core.config import read_config_as_dict

    config = Path(project) / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{project}: no config.yaml; --project must be a DeepLabCut project folder")
    cfg = read_config_as_dict(config)
    cfg["project_path"] = str(project)
    return cfg


SELECTED_FILE = "dlcrun-selected.json"
PYTORCH, TENSORFLOW = "pytorch", "tensorflow"


def selected_snapshot(model_folder: Path) -> str | None:
    """The snapshot ``dlcrun train`` chose after evaluation (lowest test error), if any."""
    try:
        name = json.loads((Path(model_folder) / SELECTED_FILE).read_text())["snapshot"]
    except (FileNotFoundError, KeyError, ValueError):
        return None
    folder = Path(model_folder)
    return name if (folder / name).is_file() or (folder / f"{name}.index").is_file() else None


def shuffle_engine(project: Path, shuffle: int = 1, trainingsetindex: int = 0) -> str:
    """Which DLC engine a shuffle was made for, read without DeepLabCut and without writing.

    DLC's own ``get_shuffle_engine`` writes ``metadata.yaml`` into the project when it is
    missing (a legacy project), which a read-only lab share or a container bind refuses. The
    shuffle's metadata entry decides when there is one; otherwise its model folder does
    (``dlc-models-pytorch/.../train/pytorch_config.yaml`` or ``dlc-models/.../train/pose_cfg.yaml``).
    """
    from ruamel.yaml import YAML, YAMLError

    project = Path(project).expanduser().resolve()
    try:
        cfg = YAML(typ="safe").load((project / "config.yaml").read_text())
        fraction = cfg["TrainingFraction"][trainingsetindex]
        iteration = f"iteration-{cfg.get('iteration', 0)}"
    except (FileNotFoundError, NotADirectoryError):  # a missing folder, or a file given for it
        raise ConfigError(f"{project}: no config.yaml; --project must be a DeepLabCut project folder") from None
    except (YAMLError, KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"{project / 'config.yaml'}: no TrainingFraction[{trainingsetindex}] ({exc})") from None
    name = f"trainset{int(100 * fraction)}shuffle{shuffle}"  # as DLC names it: int(), not round()
    for metadata in (project / "training-datasets" / iteration).glob("*/metadata.yaml"):
        try:
            entries = (YAML(typ="safe").load(metadata.read_text()) or {}).get("shuffles", {})
        except YAMLError:
            continue
        for key, entry in entries.items():
            if str(key).endswith(name) and entry.get("engine") in (PYTORCH, TENSORFLOW):
                return str(entry["engine"])
    if list(project.glob(f"dlc-models-pytorch/{iteration}/*-{name}/train/pytorch_config.yaml")):
        return PYTORCH
    if list(project.glob(f"dlc-models/{iteration}/*-{name}/train/pose_cfg.yaml")):
        return TENSORFLOW
    return PYTORCH  # DLC 3's default; the PyTorch loader then says what is missing


def installed(module: str) -> bool:
    """Whether ``module`` is installed here, without importing it (DLC and TensorFlow take seconds);
    a login node may have dlcrun alone (make install-login), and TensorFlow lives in its own venv."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError(
            f"device '{device}' asked for, but torch sees no GPU (inside Apptainer, use --nv; check the driver)"
        )
    return device


@dataclass(frozen=True)
class Sampling:
    """Which frames a run analyses: every ``stride``-th, or one every ``every`` seconds.

    Part of an output's identity: a strided .h5 gets its own name (``..._stride300.h5``) and
    its _meta.pickle records the stride, so it never passes for (or overwrites) a full one.
    """

    stride: int = 1
    every: float | None = None  # seconds; the stride then follows each video's frame rate

    @property
    def suffix(self) -> str:
        if self.every is not None:
            return f"_every{self.every:g}s"
        return f"_stride{self.stride}" if self.stride > 1 else ""

    def stride_for(self, fps: float) -> int:
        if self.every is None:
            return self.stride
        if not fps > 0:
            raise InferenceError(f"--every {self.every:g}s needs the video's frame rate, and its header has none")
        return max(1, round(self.every * fps))


FULL = Sampling()


class Analyzer(ABC):
    """A loaded model; reused across the videos of one array index.

    ``analyze`` is the same for every engine (decode, run, write DLC's files); an engine
    (``dlcrun.engines``) loads its network in ``__init__`` and supplies ``predict`` (its frame
    loop) and ``metadata`` (what its DLC writes into ``_meta.pickle``).
    """

    def __init__(self, spec: ModelSpec, batch_size: int | None, device: str, precision: str, decoder: str):
        from dlcrun.decoders import decoder_for

        self.spec = spec
        self.device = device
        self.batch_size = batch_size or spec.default_batch_size
        self.precision = precision
        self.decoder = decoder_for(decoder)

    @property
    @abstractmethod
    def project_cfg(self) -> dict[str, Any]:
        """The project's config.yaml (as :func:`project_config` reads it)."""

    @property
    @abstractmethod
    def n_individuals(self) -> int:
        """Individuals per frame in the model's predictions (the .h5 keeps them all)."""

    @abstractmethod
    def predict(self, stream: Any, stride: int, sink: Any, progress: Any) -> int:
        """Run the network on every ``stride``-th frame of ``stream``; ``sink(frames, predictions)``
        gets each batch in frame order, ``progress(rows)`` the count so far. Returns rows analysed."""

    @abstractmethod
    def metadata(
        self, info: Any, cropping: list[int] | None, start: float, stop: float, decoded: int
    ) -> dict[str, Any]:
        """DLC's ``_meta.pickle`` content for one video, as the engine's analyze_videos writes it."""

    def track(self, table: Any, out_dir: Path, prefix: str, save_csv: bool) -> list[Path]:
        """A multi-animal video's assemblies, tracklets and tracks from its predictions
        (``dlcrun.tracking``), in ``tracking.names`` order after ``_meta.pickle``."""
        raise InferenceError(f"{self.spec.project}: this engine does not track multi-animal projects")

    def output_prefix(self, video_stem: str, sampling: Sampling = FULL) -> str:
        return video_stem + self.spec.scorer + sampling.suffix

    def analyze(
        self,
        video: Path,
        out_dir: Path,
        save_csv: bool = False,
        stem: str | None = None,
        sampling: Sampling = FULL,
        provenance: dict[str, Any] | None = None,
        filtertype: str | None = None,
        clip: bool = False,
    ) -> Analysis:
        """Write DLC's ``<stem><scorer>.h5`` and ``_meta.pickle`` (and ``.csv``) into ``out_dir``.

        Rows go to the .h5 as they come (RAM holds one batch and one chunk, never the video);
        the .h5 index holds the original frame numbers, which a stride makes sparse. Each chunk
        also feeds the quality numbers (``dlcrun.quality``), kept in the ``dlcrun`` block.
        ``provenance`` (the source video's identity, the snapshot) joins the ``dlcrun`` block of
        ``_meta.pickle``, so the file itself says which video and model it came from.
        ``filtertype`` runs DLC's filterpredictions on the .h5 (``<prefix>_filtered.h5``, and
        ``.csv`` with ``save_csv``); ``clip`` draws the worst stretch into ``Analysis.clip``.
        """
        from dlcrun.quality import QualityAccumulator, window_rows
        from dlcrun.tracking import AnimalsTable, tracked_values

        cfg = self.project_cfg
        cropping = [cfg["x1"], cfg["x2"], cfg["y1"], cfg["y2"]] if cfg.get("cropping", False) else None
        stream = self.decoder.open(video, tuple(cropping) if cropping else None)
        info = stream.info
        stride = sampling.stride_for(info.fps)
        prefix = self.output_prefix(stem or video.stem, sampling)
        out_dir.mkdir(parents=True, exist_ok=True)
        h5 = out_dir / f"{prefix}.h5"
        expected_rows = -(-info.header_frames // stride) if info.header_frames > 0 else None
        pcutoff = float(cfg.get("pcutoff", 0.6))
        window = window_rows(info.fps, stride, expected_rows)
        quality = QualityAccumulator(self.spec.bodyparts, pcutoff, window)
        table: KeypointTable | AnimalsTable
        if self.spec.multi_animal:  # DLC's tracker writes the keypoints, once the video is analysed
            if stride != 1 or filtertype or clip:
                stream.close()
                raise InferenceError(f"{video.name}: a multi-animal project is tracked over every frame, unfiltered")
            table = AnimalsTable()
        else:
            table = KeypointTable(
                h5,
                self.spec.scorer,
                self.spec.bodyparts,
                self.n_individuals,
                expected_rows=expected_rows,
                quality=quality,
            )
        start = time.time()
        try:
            rows = self.predict(stream, stride, table.add, RateLog(video.name, expected_rows or 0))
        except InferenceError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:  # torch or TF, pandas/PyTables, the decoder
            raise InferenceError(f"{video.name}: inference failed ({type(exc).__name__}: {exc})") from exc
        finally:
            stream.close()
            table.close()
        stop = time.time()
        decoded = stream.decoded
        if decoded == 0:
            raise InferenceError(f"{video.name}: no frame could be decoded; the file is corrupt or not a video")
        if decoded < info.header_frames:
            raise InferenceError(
                f"{video.name}: decoded {decoded} of the {info.header_frames} frames its header claims; "
                "the file is truncated or corrupt (re-encode or re-copy it)"
            )
        tracked: list[Path] = []
        if isinstance(table, AnimalsTable):
            try:
                tracked = self.track(table, out_dir, prefix, save_csv)
            except InferenceError as exc:
                raise InferenceError(f"{video.name}: {exc}") from None
            h5 = tracked[-1]
            columns, frames, values = tracked_values(h5)
            quality = QualityAccumulator(columns, pcutoff, window)
            quality.add(frames, values)
        numbers = quality.result()
        metadata = self.metadata(info, cropping, start, stop, decoded)
        metadata["dlcrun"] = {  # beside DLC's "data", which stays exactly DLC's
            "stride": stride,
            "every": sampling.every,
            "frames_decoded": decoded,
            "rows": rows,
            "precision": self.precision,
            "decoder": self.decoder.name,
            "quality": numbers,
            "filter": filtertype,  # what made <prefix>_filtered.h5, if anything (outputs' done-check)
            **(provenance or {}),
        }
        meta_path = out_dir / f"{prefix}_meta.pickle"
        with open(meta_path, "wb") as fh:
            pickle.dump(metadata, fh, pickle.HIGHEST_PROTOCOL)
        files = [meta_path, *tracked] if tracked else [h5, meta_path]  # the tracks' .csv is DLC's
        if save_csv and not tracked:
            files.append(write_csv(h5))
        timings: dict[str, float] = {}
        if filtertype:  # never with tracks (refused above)
            files += self._filter(h5, stem or video.stem, filtertype, save_csv, timings)
        clip_path = None
        if clip and numbers["worst"] is not None:
            box = metadata.get("data", {}).get("cropping_parameters") if cropping else None
            out = out_dir / "clip" / f"{prefix}.mp4"
            clip_path = self._clip(video, h5, numbers["worst"], box, out, stride, timings)
        return Analysis(
            files=files,
            frames=decoded,
            header_frames=info.header_frames,
            seconds=stop - start,
            rows=rows,
            stride=stride,
            quality=numbers,
            clip=clip_path,
            timings=timings,
        )

    def _filter(self, h5: Path, stem: str, filtertype: str, save_csv: bool, timings: dict[str, float]) -> list[Path]:
        """DLC's filterpredictions on the .h5 just written (``dlcrun.filtering``)."""
        from dlcrun.filtering import filter_h5

        clock = time.monotonic()
        spec = self.spec
        config = Path(spec.project) / "config.yaml"
        files = filter_h5(
            h5, stem, spec.scorer, self.project_cfg, config, filtertype, save_csv, spec.shuffle, spec.trainingsetindex
        )
        timings["filter"] = round(time.monotonic() - clock, 3)
        return files

    def _clip(
        self,
        video: Path,
        h5: Path,
        worst: dict[str, Any],
        box: list[int] | None,
        out: Path,
        stride: int,
        timings: dict[str, float],
    ) -> Path | None:
        """The labelled clip of the worst stretch (``dlcrun.clips``); None, with a warning in the
        log, when it cannot be made: the keypoints stand without it."""
        from dlcrun.clips import write_clip

        clock = time.monotonic()
        try:
            return write_clip(video, h5, worst, self.project_cfg, tuple(box) if box else None, out, stride)
        except (InferenceError, OSError, ValueError, RuntimeError) as exc:
            log.warning("%s: no QC clip (%s: %s)", video.name, type(exc).__name__, exc)
            return None
        finally:
            timings["clip"] = round(time.monotonic() - clock, 3)


class KeypointTable:
    """DLC's keypoint .h5 (key ``df_with_missing``, table format, (scorer, bodyparts, coords)
    columns), appended in chunks so that a month-long video costs no more RAM than a minute."""

    def __init__(
        self,
        path: Path,
        scorer: str,
        bodyparts: list[str],
        n_individuals: int,
        expected_rows: int | None = None,
        chunk: int = 4096,
        quality: Any = None,
    ):
        """``quality`` (a ``quality.QualityAccumulator``) sees every chunk as it is written."""
        import pandas as pd

        self.path = path
        self.columns = pd.MultiIndex.from_product(
            [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
        )
        self.n_individuals = n_individuals
        self.expected_rows = expected_rows
        self.chunk = chunk
        self.rows = 0
        self.quality = quality
        self._frames: list[int] = []
        self._values: list[Any] = []
        path.unlink(missing_ok=True)
        self._store = pd.HDFStore(path, mode="w")

    def add(self, frames: list[int], predictions: list[dict[str, Any]]) -> None:
        for number, pred in zip(frames, predictions):
            # exactly what create_df_from_prediction keeps of a frame
            self._values.append(pred["bodyparts"][..., :3][: self.n_individuals].reshape(-1))
            self._frames.append(number)
        if len(self._frames) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        import numpy as np
        import pandas as pd

        if not self._frames:
            return
        values = np.stack(self._values)
        df = pd.DataFrame(values, columns=self.columns, index=pd.Index(self._frames, dtype="int64"))
        self._store.append("df_with_missing", df, format="table", expectedrows=self.expected_rows or len(df))
        if self.quality is not None:
            self.quality.add(df.index.to_numpy(), values)
        self.rows += len(df)
        self._frames, self._values = [], []

    def close(self) -> int:
        if self._store.is_open:
            try:
                self._flush()
            finally:
                self._store.close()
        return self.rows


def write_csv(h5: Path, chunk: int = 65536) -> Path:
    """DLC's .csv of the .h5 (``df.to_csv``), written chunk by chunk."""
    import pandas as pd

    csv = h5.with_suffix(".csv")
    with pd.HDFStore(h5, mode="r") as store, open(csv, "w", newline="") as fh:
        first = True
        for part in store.select("df_with_missing", chunksize=chunk):
            part.to_csv(fh, header=first)
            first = False
        if first:  # no rows: still the header
            store.select("df_with_missing").to_csv(fh)
    return csv


def count_rows(h5: Path, key: str = "df_with_missing") -> int:
    """Rows in a DLC .h5 (keypoints: ``df_with_missing``; a multi-animal video's stitched
    tracks: ``tracks``), read without loading the table."""
    import pandas as pd

    try:
        with pd.HDFStore(h5, mode="r") as store:
            storer = store.get_storer(key)
            if storer is None:
                raise InferenceError(f"{h5.name}: no '{key}' table")
            return int(storer.nrows)
    except (OSError, KeyError) as exc:
        raise InferenceError(f"{h5.name}: unreadable .h5 ({exc})") from None


class RateLog:
    """Logs progress at most once a minute: job logs stay short but show the task is alive."""

    def __init__(self, name: str, total: int, every: float = 60.0):
        self.name, self.total, self.every = name, total, every
        self.start = self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s: %d/%d frames, %.1f frames/s", self.name, count, self.total, count / (now - self.start))
