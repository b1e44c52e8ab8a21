"""The resource flags ``submit``, ``resubmit`` and ``train`` share: one spelling for each thing a
job asks the scheduler for, each also settable in dlcrun.toml's ``[resources]``.

A command declares them with these ``Annotated`` types (help text from the ``Resources`` field
descriptions, as ``dlcrun init`` writes them) and passes its ``locals()`` to
``resources_given``, which keeps the ones given, keyed by their setting name. ``resubmit``'s
change what the run's later arrays ask for, so their default is the run's own.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from dlcrun.cli.app import setting
from dlcrun.settings import Resources

PANEL = "Resources per array index"


def _option(name: str, flag: str, **more: Any) -> Any:
    return setting(f"resources.{name}", flag, rich_help_panel=PANEL, **more)


def _later(name: str, flag: str) -> Any:
    """The option of ``resubmit``: for this and later arrays; unset, the run's own value."""
    words = (Resources.model_fields[name].description or "").partition("; empty: ")[0]
    return typer.Option(
        flag, help=escape(f"{words}, for this and later arrays"), show_default="the run's", rich_help_panel=PANEL
    )


TimeOpt = Annotated[Optional[str], _option("time", "--time")]
MemOpt = Annotated[Optional[str], _option("mem", "--mem")]
CpusOpt = Annotated[Optional[int], _option("cpus", "--cpus")]
GpusOpt = Annotated[Optional[int], _option("gpus", "--gpus")]
PartitionOpt = Annotated[Optional[str], _option("partition", "--partition")]
AccountOpt = Annotated[Optional[str], _option("account", "--account")]
QosOpt = Annotated[Optional[str], _option("qos", "--qos")]
ConstraintOpt = Annotated[Optional[str], _option("constraint", "--constraint")]
TrainGpusOpt = Annotated[Optional[int], _option("gpus", "--gpus", default="at least 1")]

LaterTimeOpt = Annotated[Optional[str], _later("time", "--time")]
LaterMemOpt = Annotated[Optional[str], _later("mem", "--mem")]
LaterCpusOpt = Annotated[Optional[int], _later("cpus", "--cpus")]
LaterGpusOpt = Annotated[Optional[int], _later("gpus", "--gpus")]
LaterPartitionOpt = Annotated[Optional[str], _later("partition", "--partition")]
LaterAccountOpt = Annotated[Optional[str], _later("account", "--account")]
LaterQosOpt = Annotated[Optional[str], _later("qos", "--qos")]
LaterConstraintOpt = Annotated[Optional[str], _later("constraint", "--constraint")]

# The command's parameter name -> the resources setting it gives (``time_limit``: ``time`` is a module).
NAMES = {
    "time_limit": "time",
    "mem": "mem",
    "cpus": "cpus",
    "gpus": "gpus",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "constraint": "constraint",
}


def resources_given(options: dict[str, Any]) -> dict[str, Any]:
    """The resource flags a command was given (its ``locals()``), by setting name."""
    return {setting: options[param] for param, setting in NAMES.items() if options.get(param) is not None}
