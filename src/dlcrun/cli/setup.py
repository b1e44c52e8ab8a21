"""``dlcrun init``, ``auth``, ``doctor`` and ``demo``: setting a machine up, and checking it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcrun.cli import views
from dlcrun.cli.app import Commands, ConfigOpt, app, friendly, out, setting, settings_from
from dlcrun.cli.runs import follow
from dlcrun.errors import DlcrunError

PANEL = "Set up and check"  # where --help lists these commands


@app.command(rich_help_panel=PANEL)
@friendly
def init(
    path: Annotated[Path, typer.Argument(help="file to write")] = Path("dlcrun.toml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented dlcrun.toml with every setting at its default.

    Every command reads ./dlcrun.toml (or --config FILE); DLCRUN_* variables and flags override it.

    Example:

        dlcrun init && $EDITOR dlcrun.toml
    """
    from dlcrun.settings import render_template

    if path.exists() and not force:
        raise DlcrunError(f"{path} exists; pass --force to overwrite")
    path.write_text(render_template() + "\n")
    out.print(f"wrote {path}")


auth_app = typer.Typer(cls=Commands, help="Store credentials for remote storage, once per user.", no_args_is_help=True)
app.add_typer(auth_app, name="auth", rich_help_panel=PANEL)


@auth_app.command("dropbox")
@friendly
def auth_dropbox(
    app_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="DLCRUN_DROPBOX_APP_KEY", help="your Dropbox app's key (App Console -> your app -> Settings)"
        ),
    ] = None,
) -> None:
    """Authorize dlcrun for your Dropbox (PKCE, offline access); stores a refresh token, mode 0600.

    Once per user. Array tasks find the token in your home directory where the nodes share it;
    elsewhere give them DLCRUN_DROPBOX_REFRESH_TOKEN.

    Example:

        dlcrun auth dropbox --app-key abc123xyz
    """
    from dlcrun.storage.dropbox_auth import authorize

    key = app_key or typer.prompt("Dropbox app key")

    def ask(url: str) -> str:
        out.print("1. Open this URL (log in to Dropbox if asked) and click Allow:")
        out.print(f"   {url}", markup=False, highlight=False, soft_wrap=True)
        return str(typer.prompt("2. Paste the authorization code here"))

    path, account = authorize(key, ask)
    out.print(f"saved a refresh token for {account} in {path} (mode 0600); access tokens are refreshed from it")


@app.command(rich_help_panel=PANEL)
@friendly
def doctor(
    scratch: Annotated[Optional[Path], setting("scratch", help="scratch to check")] = None,
    gpu: Annotated[
        Optional[bool],
        typer.Option("--gpu/--no-gpu", help="require a visible GPU", show_default="when the settings ask for one here"),
    ] = None,
    min_free: Annotated[float, typer.Option(help="GB that scratch must have free")] = 1.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for Dropbox")] = 3.0,
    config: ConfigOpt = None,
) -> None:
    """Check this machine or image: GPU, CUDA/cuDNN, torch/DLC, scratch, Dropbox. Exit 1 if one is missing.

    Run it where the jobs run: on a GPU node, or inside the image.

    Examples:

        dlcrun doctor
        srun --gres=gpu:1 apptainer exec --nv dlc.sif dlcrun doctor --gpu
    """
    from dlcrun.doctor import failed, run_doctor

    checks = run_doctor(settings_from(config, locals()), require_gpu=gpu, min_free_gb=min_free, timeout=timeout)
    for line in views.checks(checks):
        out.print(line, highlight=False, soft_wrap=True)
    if failed(checks):
        raise typer.Exit(1)


@app.command(rich_help_panel=PANEL)
@friendly
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo project, videos and outputs go")] = Path("demo"),
    count: Annotated[int, typer.Option("--count", "-n", help="synthetic videos in the batch")] = 3,
) -> None:
    """Build a tiny DLC project and videos offline, then run manifest -> submit -> status.

    Nothing is downloaded: the network is a randomly initialised ResNet-50, so the keypoints are
    real files but not real predictions.

    Example:

        dlcrun demo --workdir demo --count 3
    """
    from dlcrun.demo import run_demo

    run = run_demo(workdir, n_videos=count, say=out.print)
    try:
        follow(run)
    finally:
        out.print(f"keypoints in {run.settings.dest}:")
        for h5 in sorted(Path(run.settings.dest or "").glob("*.h5")):
            out.print(f"  {h5.name}")
