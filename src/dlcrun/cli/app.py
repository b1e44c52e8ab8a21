"""The command line's common ground: the Typer app, its consoles, one-line errors, shared options.

Every command module registers on ``app`` from here; ``friendly`` turns a ``DlcrunError`` (and a
missing heavy library on a login node) into one red line and exit status 1, never a traceback.
``setting`` makes the option for a flag that overrides a setting, its help and shown default
taken from the setting itself; ``RENAMED`` keeps a release's old flag spellings working.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from dlcrun import __version__
from dlcrun.errors import DlcrunError, install_redaction, redact
from dlcrun.settings import Resources, Settings

# Old flag spellings that still work for one release, with a warning naming the new one: by
# command ("project unpack" for a sub-command), old -> new. Hidden from --help; README lists them.
RENAMED: dict[str, dict[str, str]] = {
    "manifest": {"--from": "--folder"},
    "sample": {"--from": "--since", "--to": "--until", "--n": "--count"},
    "submit": {"--csv": "--save-csv", "--no-csv": "--no-save-csv"},
    "demo": {"--videos": "--count"},
}


class Commands(TyperGroup):
    """The app's command groups: each command's help reflowed for the terminal (``reflowed``), and a
    command's old flag spellings (``RENAMED``) replaced by the new ones before it parses them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflowed(self.help)
        for command in self.commands.values():
            command.help = reflowed(command.help)

    # Typer ships its own copy of click: its types are private, hence Any.
    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        path, here = [name or ""], ctx
        while here.parent is not None:  # the groups above, without the program's own name
            path.insert(0, here.info_name or "")
            here = here.parent
        renames = RENAMED.get(" ".join(path))
        if command is not None and renames:
            rest = renamed(command, rest, renames)
        return name, command, rest


def reflowed(doc: str | None) -> str | None:
    """A command's docstring as Typer's rich help shows it well: each prose paragraph joined into
    one line (the terminal wraps it; rich mode would keep the source's line breaks), and a
    paragraph whose lines are all indented (an example) kept line by line."""
    if not doc:
        return doc
    paragraphs = [
        p if all(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split())
        for p in re.split(r"\n\s*\n", inspect.cleandoc(doc))
        if p.strip()
    ]
    # Typer dedents the text after the first paragraph as a docstring (its first line apart): were
    # that text only "Example:" and its indented lines, they would lose their indent. A blank first
    # line keeps it; the blank is dropped when shown.
    return "\n\n\n".join(paragraphs[:2]) + "".join("\n\n" + p for p in paragraphs[2:])


def renamed(command: Any, args: list[str], renames: Mapping[str, str]) -> list[str]:
    """``args`` with each old spelling in ``renames`` replaced by its new one (``--n=5`` too), and
    one warning per old spelling used. The value of an option (``--column --from``) and anything
    after ``--`` are left as they are."""
    valued = {
        opt
        for p in command.params
        if p.param_type_name == "option" and not p.is_flag and not p.count
        for opt in p.opts + p.secondary_opts
    }
    result: list[str] = []
    told: set[str] = set()
    value_next = False
    for i, arg in enumerate(args):
        if value_next:
            result.append(arg)
            value_next = False
            continue
        if arg == "--":
            result += args[i:]
            break
        flag, eq, value = arg.partition("=")
        if flag in renames:
            if flag not in told:
                told.add(flag)
                warn([f"{flag} is now {renames[flag]}; the old name goes in the next release"])
            flag = renames[flag]
            arg = flag + eq + value
        value_next = flag in valued and not eq
        result.append(arg)
    return result


app = typer.Typer(
    cls=Commands,
    help="""DeepLabCut over thousands of videos: spreadsheet -> manifest -> one job array -> keypoints.

    Every command has an example in its --help; an option not given comes from ./dlcrun.toml
    (dlcrun init), else the default shown.

    Example:

        dlcrun manifest batch.xlsx -o manifests/batch.txt
        dlcrun submit manifests/batch.txt --project ~/dlc/proj --dest dropbox:/Keypoints \\
            --scheduler slurm --gpus 1 --time 12h
        dlcrun status --watch
    """,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setting(
    field: str, *flags: str, help: str | None = None, default: str | None = None, **more: Any
) -> Any:  # a typer.Option
    """The option for a flag that overrides setting ``field`` (``batch_size``, ``resources.gpus``).

    Its help is the setting's description, the text dlcrun.toml's comments show too, and --help
    shows where the value comes from when the flag is not given: ``[default: (dlcrun.toml, else
    4)]``. A description's ``; empty: X`` part (what an unset value means) is the ``else``; a
    ``help`` or ``default`` given replaces the description's where this command means more.
    """
    model: type[Any] = Settings
    name = field
    if field.startswith("resources."):
        model, name = Resources, field.removeprefix("resources.")
    info = model.model_fields[name]
    words, _, empty = (info.description or "").partition("; empty: ")
    if default is None:
        default = empty or _shown(info.default, flags)
    fallback = f"dlcrun.toml, else {default}" if default else "dlcrun.toml"
    return typer.Option(*flags, help=escape(help or words), show_default=fallback, **more)


def _shown(value: Any, flags: tuple[str, ...]) -> str:
    """A setting's default as --help shows it; a switch's by the flag that gives it (``no-save-csv``)."""
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, bool) and flags and "/" in flags[0]:
        on, off = flags[0].split("/")
        return (on if value else off).lstrip("-")
    return str(value)


ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="settings file", show_default="./dlcrun.toml if there")
]
RunArg = Annotated[Optional[str], typer.Argument(help="run id or directory", show_default="the newest run")]
RunsDirOpt = Annotated[Optional[Path], setting("runs_dir", "--runs-dir")]
ImageOpt = Annotated[
    Optional[str],
    setting(
        "image",
        help="Apptainer image (.sif) the jobs run in; on a login node without DLC, pins there too",
        default="none: DLC as installed here",
    ),
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


# Libraries that log at INFO when imported; shown with --verbose only.
QUIET_LOGGERS = ("numexpr", "numexpr.utils", "matplotlib", "PIL", "h5py", "tables")

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
    if not verbose:  # libraries' start-up chatter ("NumExpr defaulting to 2 threads") is not news
        for chatty in QUIET_LOGGERS:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    install_redaction()  # every log line and traceback, and uncaught ones, with secrets masked


def settings_from(config: Path | None, options: dict[str, Any], **more: Any) -> Any:
    """Settings from the file and environment, overridden by a command's ``options`` (its
    ``locals()``) that are named like a setting and were given; ``more`` for any spelled otherwise.
    A bad value is blamed on the flag that gave it (``--every 10x: ...``)."""
    from dlcrun.settings import Settings, load_settings

    given = {k: v for k, v in options.items() if k in Settings.model_fields}
    return load_settings(config, flags=flag_spellings([*given, *more], more.get("resources")), **given, **more)


# Flags not spelled after their setting: none now (one name per idea; ``--csv`` became
# ``--save-csv``, see RENAMED). tests/unit/test_refusals.py checks every command's flags.
SPELLED_OTHERWISE: dict[str, str] = {}


def flag_spellings(names: list[str], resources: dict[str, Any] | None = None) -> dict[str, str]:
    """Setting (``every``, ``resources.gpus``) -> the flag that gives it (``--every``, ``--gpus``)."""
    spelled = {name: SPELLED_OTHERWISE.get(name, "--" + name.replace("_", "-")) for name in names}
    spelled.update({f"resources.{name}": "--" + name.replace("_", "-") for name in resources or {}})
    return spelled


def warn(warnings: list[str]) -> None:
    for line in warnings:
        err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
