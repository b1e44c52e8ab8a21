"""``dlcrun train``, ``models`` and ``project``: the network a lab trains once and moves to the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcrun.cli import views
from dlcrun.cli.app import Commands, ConfigOpt, ImageOpt, RunsDirOpt, app, err, friendly, out, setting, settings_from
from dlcrun.cli.resources import (
    AccountOpt,
    ConstraintOpt,
    CpusOpt,
    MemOpt,
    PartitionOpt,
    QosOpt,
    TimeOpt,
    TrainGpusOpt,
    resources_given,
)
from dlcrun.errors import DlcrunError, redact

PANEL = "Models"  # where --help lists these commands


@app.command(rich_help_panel=PANEL)
@friendly
def train(
    project: Annotated[Optional[Path], setting("project")] = None,
    shuffle: Annotated[Optional[int], setting("shuffle")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs to train", show_default="the shuffle's config")] = None,
    iterations: Annotated[
        Optional[int],
        typer.Option(
            help="TensorFlow-engine (DLC 2.x) shuffles: training iterations (DLC's maxiters)",
            show_default="from --epochs",
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            help="snapshot (.pt, or a TensorFlow checkpoint prefix) to start from",
            show_default="the shuffle's newest, else random weights",
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int], setting("batch_size", help="images per training batch", default="the shuffle's config")
    ] = None,
    device: Annotated[Optional[str], setting("device")] = None,
    scheduler: Annotated[Optional[str], setting("scheduler")] = None,
    image: ImageOpt = None,
    evaluate: Annotated[
        bool, typer.Option(help="evaluate the new snapshot and select the best for later batches")
    ] = True,
    runs_dir: RunsDirOpt = None,
    wait: Annotated[
        Optional[bool],
        typer.Option(
            "--wait/--no-wait", help="wait for the snapshot", show_default="wait with the local scheduler, else not"
        ),
    ] = None,
    config: ConfigOpt = None,
    time_limit: TimeOpt = None,
    mem: MemOpt = None,
    cpus: CpusOpt = None,
    gpus: TrainGpusOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    constraint: ConstraintOpt = None,
) -> None:
    """Train the project's network as one scheduler job (offline); logs go in a training directory.

    The job asks for the resource flags given, else dlcrun.toml's \\[resources], with at least one
    GPU. The training directory (under --runs-dir) keeps the job script, its log and result.json.

    Examples:

        dlcrun train --project ~/dlc/octopus-2026 --epochs 200
        dlcrun train --project ~/dlc/octopus-2026 --scheduler slurm --gpus 1 --time 12h --no-wait
    """
    from dlcrun import training
    from dlcrun.schedulers import follows

    given = resources_given(locals())
    settings = settings_from(config, locals(), resources=given or None)
    wanted = gpus if gpus is not None else max(1, settings.resources.gpus)
    settings = settings.model_copy(update={"resources": settings.resources.model_copy(update={"gpus": wanted})})
    job = training.start_training(settings, epochs=epochs, weights=weights, evaluate=evaluate, iterations=iterations)
    out.print(f"training job {job.request.job_id} ({job.request.scheduler}) in {job.workdir}")
    out.print(f"  log     {job.workdir / 'logs'}")
    if not follows(job.request.scheduler, wait):
        out.print(f"  result  {job.workdir / 'result.json'} once it ends")
        return
    with err.status("training..."):
        outcome = training.wait(job.workdir)
    out.print(f"  snapshot {outcome['snapshot']}")
    if outcome.get("selected"):
        chosen = outcome["selected"]
        out.print(f"  selected {chosen['snapshot']} (test RMSE {chosen['test_rmse']:.2f} px) for later batches")


@app.command(hidden=True)
@friendly
def pin(
    project: Annotated[Path, typer.Argument(help="DeepLabCut project folder")],
    shuffle: Annotated[int, typer.Option(help="shuffle")] = 1,
    trainingsetindex: Annotated[int, typer.Option(help="training-set index")] = 0,
    snapshot: Annotated[Optional[str], typer.Option(help="snapshot (default: selected, else config.yaml's)")] = None,
) -> None:
    """The model a run would pin, as JSON: how a submit host without DeepLabCut asks the image."""
    from dlcrun.engines import pin_model

    spec = pin_model(project, shuffle, trainingsetindex, snapshot)
    print(json.dumps(spec.to_dict()))


@app.command("train-task", hidden=True)
@friendly
def train_task(workdir: Annotated[Path, typer.Option(help="training directory (holds train.json)")]) -> None:
    """What a training job runs: train as train.json says, write result.json."""
    from dlcrun.training import run_training_task

    outcome = run_training_task(workdir)
    if outcome["state"] != "done":
        err.print(f"training {outcome['state']}: {redact(outcome.get('error', ''))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"training done: {outcome['snapshot']}")


@app.command(rich_help_panel=PANEL)
@friendly
def models(
    project: Annotated[Optional[Path], setting("project")] = None,
    config: ConfigOpt = None,
) -> None:
    """Snapshots of the project's shuffles, with DLC's evaluation error where evaluated.

    Example:

        dlcrun models --project ~/dlc/octopus-2026
    """
    from dlcrun.project import list_models

    folder = settings_from(config, locals()).project  # a config.yaml given stands for its folder
    if folder is None:
        raise DlcrunError("no project: pass --project or set project in dlcrun.toml")
    found = list_models(folder)
    if not found:
        out.print(f"{folder}: no trained snapshot yet (dlcrun train)")
        return
    out.print(views.models(found))


project_app = typer.Typer(
    cls=Commands, help="Move a DeepLabCut project between machines (paths rewritten).", no_args_is_help=True
)
app.add_typer(project_app, name="project", rich_help_panel=PANEL)


@project_app.command("pack")
@friendly
def project_pack(
    project: Annotated[Path, typer.Argument(help="DeepLabCut project folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="archive to write (.tar.gz)")],
    with_snapshots: Annotated[bool, typer.Option(help="include trained snapshots (.pt)")] = False,
) -> None:
    """config.yaml, labelled data and shuffle definitions; no videos, no old models.

    Example:

        dlcrun project pack ~/dlc/octopus-2026 -o octopus.tar.gz --with-snapshots
    """
    from dlcrun.project import pack

    archive = pack(project, output, with_snapshots=with_snapshots)
    out.print(f"packed {project} -> {archive} ({archive.stat().st_size / 1e6:.1f} MB)")


@project_app.command("unpack")
@friendly
def project_unpack(
    archive: Annotated[Path, typer.Argument(help="archive from dlcrun project pack")],
    to: Annotated[Path, typer.Option("--to", help="folder to unpack into")],
    videos: Annotated[
        Optional[Path], typer.Option(help="where the project's videos will live", show_default="<project>/videos")
    ] = None,
) -> None:
    """Unpack and rewrite project_path, video_sets and the shuffles' paths; never overwrites.

    Example:

        dlcrun project unpack octopus.tar.gz --to /dartfs/lab/dlc
    """
    from dlcrun.project import unpack

    target = unpack(archive, to, videos=videos)
    out.print(f"unpacked -> {target}")
    out.print(f"use it with: dlcrun submit MANIFEST --project {target}")
