"""The DeepLabCut-engine seam: a shuffle is a PyTorch (DLC 3) or a TensorFlow (DLC 2.x) model.

Everything that differs between the two (pinning a snapshot, loading and running the network,
training, evaluation) sits behind one :class:`ModelEngine` per engine, registered under DLC's own
name for it (config value ``engine``: ``pytorch``, ``tensorflow``). Callers ask for the engine
once (:func:`engine_for`, :func:`engine_of`) or use :func:`pin_model` and :func:`open_analyzer`,
which do that for them; what is the same for both (the analyse loop, DLC's output files) stays
in ``inference.py``.

Importing this package imports neither torch, TensorFlow nor DeepLabCut: a login node without
them runs ``dlcrun submit``, and the engines import them only when a model is pinned, loaded or
trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

from dlcrun.errors import ConfigError
from dlcrun.inference import Analyzer, ModelSpec, shuffle_engine


@dataclass(frozen=True)
class ShuffleFolder:
    """Where a shuffle's snapshots live, and its training fraction (to find its evaluation rows)."""

    snapshots: Path
    train_fraction: float


class ModelEngine(Protocol):
    name: str  # DLC's name for the engine: "pytorch" or "tensorflow"
    title: str  # as messages spell it: "PyTorch", "TensorFlow"

    def supports(self, precision: str, device: str) -> str | None:
        """None when this engine runs at ``precision`` on ``device``; else why not, in a few words.

        Asked at submit, so it must not import the engine's libraries: the array would otherwise
        fail on every index for a setting known to be unusable before anything is queued.
        """
        ...

    def missing_here(self) -> str | None:
        """None when this environment has what the engine's indices need; else what is missing
        and how to get it, in a few words. Asked at submit when the indices run here (no image)."""
        ...

    def pin(self, project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec:
        """The snapshot a run uses (``snapshot``, else the one ``dlcrun train`` selected, else
        config.yaml's ``snapshotindex``) and its scorer, frozen for every index."""
        ...

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
        """The loaded network, reused across the videos of one array index (a top-down model's
        detector runs ``detector_batch_size`` frames at a time)."""
        ...

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
        """Train with DLC from ``weights``, else the newest snapshot, else random weights saved in
        ``workdir`` (never downloaded ones); return the snapshot written."""
        ...

    def evaluate(
        self, project: Path, shuffle: int, trainingsetindex: int, snapshot: Path, device: str
    ) -> ShuffleFolder:
        """DLC's evaluate_network on ``snapshot`` (results in the project's evaluation folder)."""
        ...


_REGISTRY: dict[str, Callable[[], ModelEngine]] = {}


def register(name: str) -> Callable[[Callable[[], ModelEngine]], Callable[[], ModelEngine]]:
    def wrap(factory: Callable[[], ModelEngine]) -> Callable[[], ModelEngine]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def engine_for(name: str) -> ModelEngine:
    """The engine DLC calls ``name``."""
    from dlcrun.engines import pytorch, tensorflow  # noqa: F401  (each registers itself on import)

    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ConfigError(f"unknown DeepLabCut engine '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None


def engine_of(project: Path, shuffle: int = 1, trainingsetindex: int = 0) -> ModelEngine:
    """The engine the project's shuffle was made for (read from the project, nothing written)."""
    return engine_for(shuffle_engine(project, shuffle, trainingsetindex))


def pin_model(project: Path, shuffle: int = 1, trainingsetindex: int = 0, snapshot: str | None = None) -> ModelSpec:
    """Resolve which snapshot a run uses, once, on the submit host."""
    project = Path(project).expanduser().resolve()
    return engine_of(project, shuffle, trainingsetindex).pin(project, shuffle, trainingsetindex, snapshot)


def open_analyzer(
    spec: ModelSpec,
    batch_size: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    decoder: str = "opencv",
    detector_batch_size: int | None = None,
) -> Analyzer:
    """The loaded model for ``spec``, by the engine it was pinned with."""
    return engine_for(spec.engine).open(spec, batch_size, device, threads, precision, decoder, detector_batch_size)


def pin_in_image(
    image: str,
    project: Path,
    shuffle: int = 1,
    trainingsetindex: int = 0,
    snapshot: str | None = None,
    scratch: Path | None = None,
) -> ModelSpec:
    """``pin_model`` run by the image's dlcrun, for a submit host without DeepLabCut.

    The image's DLC is the one every index will load the snapshot with, so pinning there also
    names the scorer exactly as the indices' DLC does. ``dlcrun pin`` prints the spec as the
    last line of its stdout (DLC prints its banner before it).
    """
    import subprocess

    from dlcrun.container import image_prefix

    project = Path(project).expanduser().resolve()
    argv = image_prefix(image, [str(project)], scratch, device="cpu")
    argv += ["dlcrun", "pin", str(project), "--shuffle", str(shuffle), "--trainingsetindex", str(trainingsetindex)]
    if snapshot is not None:
        argv += ["--snapshot", snapshot]
    where = f"pinning the snapshot inside {image}"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: no answer in 15 minutes") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
        reason = (errors or lines or [f"exit status {done.returncode}"])[-1]
        raise ConfigError(f"{where}: {reason}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    try:
        return ModelSpec.from_dict(json.loads(last))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: unexpected answer '{last[:200]}' ({exc})") from None
