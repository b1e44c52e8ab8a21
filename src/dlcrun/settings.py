"""Typed settings: defaults < dlcrun.toml < DLCRUN_* environment < command-line flags.

A run freezes the resolved settings into its run directory, and array tasks read only that
copy, so editing dlcrun.toml while a batch is queued cannot change what the batch does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dlcrun.errors import ConfigError
from dlcrun.names import ISPY_PATTERN, NamePattern

DEFAULT_FILE = Path("dlcrun.toml")
# Every video decoder dlcrun has, installed here or not (the decoders seam registers those that
# are): a name outside this is a typo, refused when the settings are read.
DECODERS = ("opencv", "pyav")
# Every scheduler dlcrun has (lower case; a value is lower-cased first): a name outside this is a
# typo, refused when the settings load, before DLC is imported. A backend registered under
# another name (``schedulers.register``) is added by ``known_scheduler``.
SCHEDULERS = ["local", "pbs", "slurm", "torque"]
# What sbatch --mem and PBS mem= both take once spelled their way (16G -> 16G / 16gb); not 16GiB.
MEMORY = re.compile(r"\s*(\d+)\s*([kmgt]?)b?\s*", re.IGNORECASE)
# sbatch --time / PBS walltime: [D-]H[:MM[:SS]] (minutes alone for Slurm, seconds for PBS).
WALL_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}")
# A duration a person writes: 12h, 90m, 1d, 1d12h (d, h, m or min, in that order), stored as HH:MM:SS.
SPOKEN_TIME = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?", re.IGNORECASE)
# torch devices dlcrun runs on; gpu and gpu:N are taken as cuda and cuda:N.
DEVICE = re.compile(r"auto|cpu|(?:cuda|gpu)(?::\d+)?")
CLUSTERS = ("slurm", "pbs", "torque")  # schedulers that place indices on other machines
# True while load_settings validates what a user gave: only then are paths checked against the disk
# and the scheduler against the backends this process knows. A run's frozen settings.json was
# checked at submit; an array index reading it may not have a test's or plugin's backend loaded.
# (pydantic passes no validation context through a BaseSettings' __init__.)
_USER_INPUT: ContextVar[bool] = ContextVar("user_input", default=False)


def known_scheduler(name: str) -> None:
    """A scheduler backend registered under ``name`` (a plugin's, a test's) is a valid setting."""
    if name not in SCHEDULERS:
        SCHEDULERS.append(name)


class Resources(BaseModel):
    """What one array index asks the scheduler for."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="GPUs per array index")
    cpus: int = Field(4, ge=1, description="CPU cores per array index")
    mem: str = Field("16G", description="memory per array index, e.g. 16G")
    time: str = Field("04:00:00", description="wall time per array index: HH:MM:SS, or 12h, 90m, 1d12h")
    partition: str = Field("", description="Slurm partition / PBS queue; empty: the default")
    account: str = Field("", description="account or allocation to charge; empty: the default")
    qos: str = Field("", description="Slurm quality of service; empty: the default (PBS and Torque have none)")
    constraint: str = Field(
        "",
        description="node features: Slurm --constraint (e.g. a100|h100), a Torque node property, or a PBS Pro "
        "host resource as name=value; empty: any node",
    )
    extra: list[str] = Field(default_factory=list, description="extra scheduler arguments, one per directive line")

    # Refused here, before a resubmission writes anything, rather than by sbatch/qsub later.
    @field_validator("mem")
    @classmethod
    def _memory_schedulers_take(cls, value: str) -> str:
        if not MEMORY.fullmatch(value):
            raise ValueError("not a memory size schedulers take: a whole number and K, M, G or T, e.g. 32G")
        return value

    @field_validator("time")
    @classmethod
    def _wall_time(cls, value: str) -> str:
        """Slurm's and PBS's own forms as they are; 12h, 90m, 1d12h as HH:MM:SS (hours past 24 too:
        PBS has no D-HH:MM:SS, and both read 36:00:00)."""
        text = value.strip()
        if WALL_TIME.fullmatch(text):
            return text
        spoken = SPOKEN_TIME.fullmatch(text.replace(" ", ""))
        if not text or not spoken:
            raise ValueError(
                "not a wall time; e.g. 12:00:00 (HH:MM:SS), 12h, 90m, 1d12h, or 1-12:00:00 (D-HH:MM:SS, Slurm only)"
            )
        days, hours, minutes = (int(g or 0) for g in spoken.groups())
        total = (days * 24 + hours) * 60 + minutes
        if total == 0:
            raise ValueError("a wall time must be longer than zero")
        return f"{total // 60:02d}:{total % 60:02d}:00"


class Settings(BaseSettings):
    """Everything a run needs, validated once at submit time."""

    model_config = SettingsConfigDict(
        env_prefix="DLCRUN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    project: Path | None = Field(None, description="DeepLabCut project folder (holds config.yaml), or its config.yaml")
    shuffle: int = Field(1, ge=0, description="training shuffle of the DLC project")
    trainingsetindex: int = Field(0, ge=0, description="index into TrainingFraction")
    snapshot: str | None = Field(
        None,
        description="snapshot to use: a file name (snapshot-200.pt), 'best', or an index "
        "(-1 = last); empty: the project's snapshotindex. Pinned at submit time.",
    )
    source: str = Field("", description="root that relative manifest lines and selection-sheet folders are under")
    name_pattern: str = Field(
        ISPY_PATTERN,
        description="video file names (without extension) with their start time, for selection sheets; "
        "{start:FORMAT} in strftime codes, other {fields} match any text (default: iSpy's names)",
    )
    dest: str | None = Field(None, description="where keypoint files go (path or URI)")
    runs_dir: Path = Field(Path("runs"), description="run directories (the ledger), shared storage")
    scratch: Path | None = Field(None, description="node-local scratch; empty: $TMPDIR")
    scheduler: str = Field("local", description="local, slurm, pbs or torque (any case)")
    max_running: int | None = Field(
        None, ge=1, description="array indices running at once; empty: 1 locally, unlimited on a cluster"
    )
    max_array_size: int | None = Field(
        None, ge=1, description="largest job array the cluster takes; empty: Slurm's MaxArraySize, 10000 on PBS/Torque"
    )
    batch_size: int | None = Field(None, ge=1, description="frames per forward pass; empty: the project's")
    detector_batch_size: int | None = Field(
        None, ge=1, description="frames per detector pass of a top-down model; empty: the project's"
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (gpu means cuda)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per index; empty: cores/max_running")
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="model arithmetic: fp32 (keypoints equal DLC's), or bf16/fp16 autocast (faster)"
    )
    decoder: str = Field(
        "opencv", description="video decoder: opencv (what DLC uses) or pyav (same frames, FFmpeg's threads)"
    )
    videos_per_task: int = Field(
        1, ge=1, description="manifest lines per array index: one model load, next video prefetched"
    )
    stride: int = Field(1, ge=1, description="analyse one frame in N (the .h5 keeps the original frame numbers)")
    every: str | None = Field(None, description="analyse one frame every DURATION (e.g. 10s, 2min); instead of stride")
    save_csv: bool = Field(False, description="also write DLC's .csv next to the .h5")
    filter: Literal["median", "arima", "spline"] | None = Field(
        None,
        description="also write DLC's filterpredictions output (<video><scorer>_filtered.h5) with this "
        "filter: median, arima or spline; empty: none",
    )
    qc_clips: bool = Field(
        False, description="write a labelled clip of each video's worst-tracked seconds into the run's clips/"
    )
    image: str | None = Field(None, description="Apptainer image that array indices run inside")
    engine: Literal["auto", "pytorch", "tensorflow"] = Field(
        "auto", description="DeepLabCut engine of the shuffle (auto: read from the project; for doctor)"
    )
    prelude: list[str] = Field(
        default_factory=list,
        description="shell lines every job script runs before dlcrun (module load ..., conda activate ...); "
        "a string is split into lines",
    )
    resources: Resources = Field(default_factory=Resources)

    @field_validator("prelude", mode="before")
    @classmethod
    def _prelude_lines(cls, value: Any) -> Any:
        """A TOML multi-line string or an environment variable holds lines too."""
        if isinstance(value, str):
            return [line for line in value.splitlines() if line.strip()]
        return value

    @model_validator(mode="after")
    def _resources_the_scheduler_has(self) -> Settings:
        """Words a scheduler has no directive for, refused before anything else happens."""
        res = self.resources
        if res.qos and self.scheduler in ("pbs", "torque"):
            raise ValueError(
                f"resources.qos: {self.scheduler} has no quality of service; ask for a queue with --partition instead"
            )
        if res.constraint and self.scheduler == "pbs" and not re.fullmatch(r"[A-Za-z_][\w.-]*=\S+", res.constraint):
            raise ValueError(
                "resources.constraint: PBS Pro selects nodes by host resources; give name=value (e.g. gpu_model=h100)"
            )
        return self

    @field_validator("project")
    @classmethod
    def _project_folder(cls, value: Path | None) -> Path | None:
        """The project folder; its config.yaml (what every DLC function takes) stands for it.

        Settings a user gives (``load_settings``) are also checked against the disk: a file, or a
        folder without config.yaml, is refused. A path that does not exist here is left for
        submit to refuse (a dlcrun.toml may name a share this machine does not mount), and a
        run's frozen settings are not checked again (the project may have moved since).
        """
        if value is None:
            return None
        here = value.expanduser()
        if value.name == "config.yaml" and not here.is_dir():
            value, here = value.parent, here.parent
        if _USER_INPUT.get() and here.exists():
            if not here.is_dir() or not (here / "config.yaml").is_file():
                raise ValueError("not a DeepLabCut project (a folder with config.yaml, or that config.yaml)")
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        name = value.strip().lower()
        if _USER_INPUT.get() and name not in SCHEDULERS:
            raise ValueError(f"unknown (dlcrun has: {', '.join(sorted(SCHEDULERS))})")
        return name

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        device = value.strip().lower()
        if not DEVICE.fullmatch(device):
            raise ValueError("not a device dlcrun runs on: auto, cpu, cuda or cuda:N (gpu means cuda)")
        return device.replace("gpu", "cuda")

    @field_validator("every")
    @classmethod
    def _every_is_a_duration(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("filter", mode="before")
    @classmethod
    def _no_filter(cls, value: Any) -> Any:
        """``""`` (what dlcrun init writes for unset) and ``none`` mean no filter, so a flag can say it."""
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str) -> str:
        if value not in DECODERS:  # a typo; whether it is installed is checked where indices run
            raise ValueError(f"unknown (dlcrun has: {', '.join(DECODERS)})")
        return value

    @model_validator(mode="after")
    def _one_sampling(self) -> Settings:
        if self.every is not None and self.stride != 1:
            raise ValueError("stride and every both set; give one of them")
        return self

    @property
    def every_seconds(self) -> float | None:
        return parse_duration(self.every) if self.every is not None else None

    def cpu_on_a_cluster(self) -> str | None:
        """Why a batch with these settings would waste a cluster allocation, or None.

        A cluster scheduler asked for no GPU places every index on a node's CPU, which ``device
        auto`` (or ``cuda``) would then use without a word. Asked at submit, not when settings
        load: ``dlcrun manifest`` and ``status`` read the same dlcrun.toml.
        """
        if self.scheduler in CLUSTERS and self.resources.gpus == 0 and self.device != "cpu":
            return (
                f"scheduler {self.scheduler} with gpus 0: every index would run on a CPU; "
                "ask for a GPU with --gpus 1, or say --device cpu to mean it"
            )
        return None

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            NamePattern.compile(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(path: Path | None = None, flags: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from the file, the environment and flags (None flags do not override).

    ``path`` None means ``./dlcrun.toml`` when it exists; a path given explicitly must exist.
    ``flags`` maps a setting (``every``, ``resources.gpus``) to the command-line flag that set it
    (``--every``, ``--gpus``), so that a bad value is blamed on the flag; an override it does
    not name is called by the setting's name. A value from the environment is blamed on its
    variable, one from the file on the file and key.
    """
    if path is None:
        path = DEFAULT_FILE if DEFAULT_FILE.is_file() else None
    elif not Path(path).is_file():
        raise ConfigError(f"{path}: settings file not found (dlcrun init writes one)")
    given = {k: v for k, v in overrides.items() if v is not None}
    cls: type[Settings] = Settings
    if path is not None:
        cls = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    checking = _USER_INPUT.set(True)
    try:
        loaded = cls(**given)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, _Sources(path, given, flags or {}))) from None
    except ValueError as exc:  # malformed TOML
        raise ConfigError(f"{path}: {exc}") from None
    finally:
        _USER_INPUT.reset(checking)
    return Settings.model_validate(loaded.model_dump())


def explain(exc: ValidationError, given: dict[str, Any], flags: Mapping[str, str] | None = None) -> str:
    """One line for settings that ``given`` changed and the model refused (a resubmission's
    resources), each value named as ``load_settings`` names it; no file or environment involved."""
    return _one_line(exc, _Sources(None, given, flags or {}, env=False))


class _Sources:
    """Where each setting's value came from: a flag (or a caller's keyword), the environment, the file."""

    def __init__(self, path: Path | None, given: dict[str, Any], flags: Mapping[str, str], env: bool = True):
        self.path, self.given, self.flags = path, given, flags
        self.env = {k.upper(): v for k, v in os.environ.items() if env and k.upper().startswith("DLCRUN_")}
        self.file: dict[str, Any] = {}
        if path is not None:
            try:  # as pydantic-settings read it (tomllib, or tomli before Python 3.11)
                self.file = TomlConfigSettingsSource(Settings, toml_file=path).toml_data
            except (OSError, ValueError):
                pass

    def blame(self, loc: tuple[str | int, ...], fallback: Any) -> str:
        """``--every 10x``, ``DLCRUN_EVERY=10x``, ``dlcrun.toml: every '10x'`` or ``every '10x'``."""
        field = ".".join(str(p) for p in loc)
        found, value = _lookup(self.given, loc)
        if found:
            flag = self.flags.get(field)
            return f"{flag} {value}" if flag else f"{field} {_shown(value)}"
        if (name := self.variable(loc)) is not None:
            return f"{name}={self.env[name]}"
        found, value = _lookup(self.file, loc)
        if found:
            return f"{self.path}: {field} {_shown(value)}"
        return f"{field} {_shown(fallback)}"

    def variable(self, loc: tuple[str | int, ...]) -> str | None:
        """The environment variable that gave ``loc``: DLCRUN_RESOURCES__TIME, else DLCRUN_RESOURCES (JSON)."""
        for depth in range(len(loc), 0, -1):
            name = "DLCRUN_" + "__".join(str(p) for p in loc[:depth]).upper()
            if name in self.env:
                return name
        return None

    def unknown(self, loc: tuple[str | int, ...]) -> str:
        """Where a key no setting has was found, as a prefix: a variable, else the file."""
        if (name := self.variable(loc)) is not None:
            return f"{name}: "
        return f"{self.path}: " if self.path else ""


def _lookup(data: Any, loc: tuple[str | int, ...]) -> tuple[bool, Any]:
    for part in loc:
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False, None
    return True, data


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, (str, Path)) else str(value)


def _one_line(exc: ValidationError, sources: _Sources) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model: type[BaseModel] = Resources if len(loc) > 1 and loc[0] == "resources" else Settings
            parts.append(
                f"{sources.unknown(loc)}unknown setting '{field}' (known: {', '.join(sorted(model.model_fields))})"
            )
        elif not loc:  # a rule across settings: blamed on the setting its message names first, if any
            named = _NAMED.match(message)
            if named:
                path = tuple(named.group(1).split("."))
                parts.append(f"{sources.blame(path, _lookup(sources.given, path)[1])}: {named.group(2)}")
            else:
                parts.append(message)
        else:
            parts.append(f"{sources.blame(loc, err.get('input'))}: {message}")
    return "; ".join(parts)


# "resources.qos: ..." - a cross-setting rule's message that starts with the setting to blame.
_NAMED = re.compile(r"((?:resources\.)?[a-z_]+): (.*)", re.DOTALL)

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'10s', '2.5 min', '500ms', '1h' -> seconds (a bare number is seconds)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in {"", *_UNITS}:
        raise ValueError("not a duration (examples: 10s, 2min, 500ms, 1h)")
    seconds = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


def default_scratch() -> Path:
    """Node-local scratch as schedulers expose it; /tmp last."""
    for var in ("SLURM_TMPDIR", "TMPDIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path("/tmp")


def render_template() -> str:
    """A commented dlcrun.toml with every setting at its default, for ``dlcrun init``."""
    lines = ["# dlcrun settings. Flags override these; DLCRUN_<NAME> environment variables too.", ""]

    def emit(model: type[BaseModel], prefix: str = "") -> None:
        for name, field in model.model_fields.items():
            if name == "resources":
                continue
            default = field.get_default(call_default_factory=True)
            lines.append(f"# {field.description}")
            if default is None:
                lines.append(f'# {name} = ""')
            else:
                lines.append(f"{name} = {_toml_value(default)}")
            lines.append("")

    emit(Settings)
    lines.append("[resources]")
    emit(Resources)
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
