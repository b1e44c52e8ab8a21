"""The command line's common ground: the Typer app, its consoles, one-line errors, shared options.

Every command module registers on ``app`` from here; ``friendly`` turns a ``DlcrunError`` (and a
missing heavy library on a login node) into one red line and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dlcrun import __version__
from dlcrun.errors import DlcrunError, install_redaction, redact

app = typer.Typer(
    help="DeepLabCut over thousands of videos: spreadsheet -> manifest -> one job array -> keypoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings file (default ./dlcrun.toml)")]
RunArg = Annotated[Optional[str], typer.Argument(help="run id or directory (default: the newest)")]
RunsDirOpt = Annotated[Optional[Path], typer.Option("--runs-dir", help="where run directories live")]
ImageOpt = Annotated[
    Optional[str],
    typer.Option(help="Apptainer image (.sif) the jobs run in; on a login node without DLC, pins there too"),
]


def friendly(fn: F) -> F:
    """DlcrunError -> one red line on stderr and exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DlcrunError as exc:
            # The message as it is: a value the user gave may read as markup ([x]) or an emoji code (:x:).
            err.print(f"[red]error:[/red] {escape(redact(exc))}", highlight=False, soft_wrap=True, emoji=False)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in HEAVY:
                raise
            err.print(
                f"[red]error:[/red] this needs {HEAVY[top]}, which is not installed here (a login-node install?): "
                "run it where DeepLabCut is (make install), or in the image: apptainer exec dlc.sif dlcrun ...",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# What make install-login leaves out, by the module name an import fails on.
HEAVY = {"deeplabcut": "DeepLabCut", "torch": "PyTorch", "cv2": "OpenCV", "av": "PyAV", "tables": "PyTables"}


def _version(value: bool) -> None:
    if value:
        out.print(f"dlcrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()  # every log line and traceback, and uncaught ones, with secrets masked


def settings_from(config: Path | None, options: dict[str, Any], **more: Any) -> Any:
    """Settings from the file and environment, overridden by a command's ``options`` (its
    ``locals()``) that are named like a setting and were given; ``more`` for any spelled otherwise.
    A bad value is blamed on the flag that gave it (``--every 10x: ...``)."""
    from dlcrun.settings import Settings, load_settings

    given = {k: v for k, v in options.items() if k in Settings.model_fields}
    return load_settings(config, flags=flag_spellings([*given, *more], more.get("resources")), **given, **more)


# Flags not spelled after their setting (``--save-csv``); tests/unit/test_refusals.py checks every command's.
SPELLED_OTHERWISE = {"save_csv": "--csv"}


def flag_spellings(names: list[str], resources: dict[str, Any] | None = None) -> dict[str, str]:
    """Setting (``every``, ``resources.gpus``) -> the flag that gives it (``--every``, ``--gpus``)."""
    spelled = {name: SPELLED_OTHERWISE.get(name, "--" + name.replace("_", "-")) for name in names}
    spelled.update({f"resources.{name}": "--" + name.replace("_", "-") for name in resources or {}})
    return spelled


def warn(warnings: list[str]) -> None:
    for line in warnings:
        err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
