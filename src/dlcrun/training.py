"""Training a DeepLabCut shuffle as one scheduler job, offline.

``dlcrun train`` writes a training directory, ``<runs_dir>/train/<id>/``, holding the request
(``train.json``), the job's log (``logs/``) and, once the job ends, ``result.json`` naming the
new snapshot. The job runs ``dlcrun train-task --workdir <dir>``, which calls :func:`train`.

Nothing is downloaded. DLC's ``train_network`` fetches ImageNet backbone weights unless it is
given a snapshot to start from, so the shuffle's engine (``dlcrun.engines``) always gives it
one: the newest snapshot of the shuffle (training continues), weights the user names, or, when
there are none, a randomly initialised network saved into the training directory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from dlcrun.container import dlcrun_command, image_prefix
from dlcrun.engines import engine_of
from dlcrun.errors import ConfigError, DlcrunError, one_line
from dlcrun.files import read_json, write_json
from dlcrun.inference import SELECTED_FILE, quiet_environment
from dlcrun.ledger import now
from dlcrun.schedulers import scheduler_for
from dlcrun.settings import Settings

log = logging.getLogger(__name__)

REQUEST = "train.json"
RESULT = "result.json"


@dataclass
class TrainRequest:
    """What a training job does; frozen in ``train.json`` before it is submitted."""

    project: str
    shuffle: int = 1
    trainingsetindex: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    weights: str | None = None
    iterations: int | None = None  # TensorFlow-engine shuffles: DLC's maxiters (else from epochs)
    evaluate: bool = True
    scheduler: str = "local"
    job_id: str = ""
    submitted: str = ""


@dataclass
class Training:
    workdir: Path
    request: TrainRequest


def start_training(
    settings: Settings,
    epochs: int | None = None,
    weights: Path | None = None,
    evaluate: bool = True,
    iterations: int | None = None,
) -> Training:
    """Create a training directory and submit its job to ``settings.scheduler``."""
    if settings.project is None:
        raise ConfigError("no DeepLabCut project: pass --project or set project in dlcrun.toml")
    project = settings.project.expanduser().resolve()
    if not (project / "config.yaml").is_file():
        raise ConfigError(f"{project}: no config.yaml; --project must be a DeepLabCut project folder")
    if weights is not None and not (weights.is_file() or Path(f"{weights}.index").is_file()):
        raise ConfigError(f"--weights {weights}: no such file")
    runs_dir = settings.runs_dir.expanduser().resolve()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = runs_dir / "train" / f"{stamp}-{project.name}"
    suffix = 1
    while workdir.exists():
        suffix += 1
        workdir = runs_dir / "train" / f"{stamp}-{project.name}-{suffix}"
    (workdir / "logs").mkdir(parents=True)
    request = TrainRequest(
        project=str(project),
        shuffle=settings.shuffle,
        trainingsetindex=settings.trainingsetindex,
        epochs=epochs,
        batch_size=settings.batch_size,
        device=settings.device,
        weights=str(weights.resolve()) if weights is not None else None,
        iterations=iterations,
        evaluate=evaluate,
        scheduler=settings.scheduler,
    )
    write_json(workdir / REQUEST, asdict(request))
    argv = image_prefix(settings.image, [str(runs_dir), str(project)])
    argv += dlcrun_command(settings.image) + ["train-task", "--workdir", str(workdir)]
    scheduler = scheduler_for(settings.scheduler)
    request.job_id = scheduler.submit_training(workdir, argv, settings.resources, settings.prelude)
    request.submitted = now()
    write_json(workdir / REQUEST, asdict(request))
    return Training(workdir, request)


def result(workdir: Path) -> dict[str, Any] | None:
    """The job's ``result.json``, or None while it has not finished."""
    try:
        return read_json(Path(workdir) / RESULT)
    except FileNotFoundError:
        return None


def wait(workdir: Path, every: float = 2.0) -> dict[str, Any]:
    """The job's result once it has finished; a one-line DlcrunError, naming the log, unless done."""
    while (outcome := result(workdir)) is None:
        time.sleep(every)
    if outcome["state"] != "done":
        logs = Path(workdir) / "logs"
        raise DlcrunError(f"training {outcome['state']}: {outcome.get('error', '')} (log in {logs})")
    return outcome


def run_training_task(workdir: Path) -> dict[str, Any]:
    """What the training job runs: train as ``train.json`` says, then write ``result.json``."""
    from dlcrun.runtime import Interrupted, job_id_from_environment, sigterm_unwinds

    workdir = Path(workdir)
    request = TrainRequest(**read_json(workdir / REQUEST))
    outcome: dict[str, Any] = {"state": "running", "host": socket.gethostname(), "job_id": job_id_from_environment()}
    outcome["started"] = now()
    clock = time.monotonic()

    def finish() -> None:
        outcome.update(finished=now(), seconds=round(time.monotonic() - clock, 1))
        write_json(workdir / RESULT, outcome)

    def abort(reason: str) -> NoReturn:
        """A failure no exception can carry out of DLC: record it and end the process now."""
        log.error("training failed: %s", reason)
        outcome.update(state="failed", error=reason)
        finish()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    try:
        with sigterm_unwinds():
            snapshot = train(
                Path(request.project),
                shuffle=request.shuffle,
                trainingsetindex=request.trainingsetindex,
                epochs=request.epochs,
                batch_size=request.batch_size,
                device=request.device,
                weights=Path(request.weights) if request.weights else None,
                workdir=workdir,
                iterations=request.iterations,
                abort=abort,
            )
            if request.evaluate:
                outcome["selected"] = evaluate_and_select(
                    Path(request.project), request.shuffle, request.trainingsetindex, snapshot, request.device
                )
        outcome.update(state="done", snapshot=str(snapshot))
    except Interrupted as exc:
        outcome.update(state="interrupted", error=str(exc))
    except DlcrunError as exc:
        outcome.update(state="failed", error=one_line(exc, None))
    except Exception as exc:  # the job must always leave a result; the traceback goes to its log
        log.exception("training failed")
        outcome.update(state="failed", error=f"{type(exc).__name__}: {one_line(exc)}")
    finish()
    return outcome


def train(
    project: Path,
    shuffle: int = 1,
    trainingsetindex: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    weights: Path | None = None,
    workdir: Path | None = None,
    iterations: int | None = None,
    abort: Callable[[str], NoReturn] | None = None,
) -> Path:
    """Train ``shuffle`` of ``project`` with DeepLabCut and return the newest snapshot.

    Starts from ``weights``, else the shuffle's newest snapshot, else random weights saved in
    ``workdir`` (never ImageNet weights: they would be downloaded), by the shuffle's engine.
    """
    project = Path(project).resolve()
    quiet_environment(Path(workdir) if workdir is not None else None)
    engine = engine_of(project, shuffle, trainingsetindex)
    return engine.train(
        project, shuffle, trainingsetindex, epochs, batch_size, device, weights, workdir, iterations, abort
    )


def evaluate_and_select(
    project: Path, shuffle: int, trainingsetindex: int, snapshot: Path, device: str = "auto"
) -> dict[str, Any]:
    """DLC's evaluate_network on the new snapshot, then record the shuffle's best evaluated one.

    The choice (lowest test RMSE; the newer on a tie) goes to ``dlcrun-selected.json`` beside the
    snapshots, which ``submit`` uses when no --snapshot is given: later batches get the best
    network without anyone editing config.yaml's positional ``snapshotindex``.
    """
    from dlcrun.project import list_models

    project = Path(project)
    folder = engine_of(project, shuffle, trainingsetindex).evaluate(
        project, shuffle, trainingsetindex, snapshot, device
    )
    fraction, model_folder = folder.train_fraction, folder.snapshots
    scored = [
        m
        for m in list_models(project)
        if m.shuffle == shuffle and abs(m.train_fraction - fraction) < 1e-6 and m.test_rmse is not None
    ]
    if not scored:
        raise DlcrunError(f"{model_folder}: evaluate_network wrote no test error for {snapshot.name}")
    best = min(scored, key=lambda m: (m.test_rmse, -(m.epochs or 0)))
    choice = {
        "snapshot": best.snapshot,
        "epochs": best.epochs,
        "test_rmse": best.test_rmse,
        "train_rmse": best.train_rmse,
        "selected": now(),
    }
    write_json(model_folder / SELECTED_FILE, choice)
    log.info("selected %s (test RMSE %.2f px) for later batches", best.snapshot, best.test_rmse)
    return choice
