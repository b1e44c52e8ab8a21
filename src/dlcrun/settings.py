"""Typed settings: defaults < dlcrun.toml < DLCRUN_* environment < command-line flags.

A run freezes the resolved settings into its run directory, and array tasks read only that
copy, so editing dlcrun.toml while a batch is queued cannot change what the batch does.
"""

from __future__ import annotations

import os
import re
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
# What sbatch --mem and PBS mem= both take once spelled their way (16G -> 16G / 16gb); not 16GiB.
MEMORY = re.compile(r"\s*(\d+)\s*([kmgt]?)b?\s*", re.IGNORECASE)
# sbatch --time / PBS walltime: [D-]H[:MM[:SS]] (minutes alone for Slurm, seconds for PBS).
WALL_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}")


class Resources(BaseModel):
    """What one array index asks the scheduler for."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="GPUs per array index")
    cpus: int = Field(4, ge=1, description="CPU cores per array index")
    mem: str = Field("16G", description="memory per array index, e.g. 16G")
    time: str = Field("04:00:00", description="wall time per array index, HH:MM:SS")
    partition: str = Field("", description="Slurm partition / PBS queue; empty: the default")
    account: str = Field("", description="account or allocation to charge; empty: the default")
    extra: list[str] = Field(default_factory=list, description="extra scheduler arguments")

    # Refused here, before a resubmission writes anything, rather than by sbatch/qsub later.
    @field_validator("mem")
    @classmethod
    def _memory_schedulers_take(cls, value: str) -> str:
        if not MEMORY.fullmatch(value):
            raise ValueError(
                f"'{value}' is not a memory size schedulers take: a whole number and K, M, G or T, e.g. 32G"
            )
        return value

    @field_validator("time")
    @classmethod
    def _wall_time(cls, value: str) -> str:
        if not WALL_TIME.fullmatch(value):
            raise ValueError(f"'{value}' is not a wall time: HH:MM:SS (e.g. 12:00:00), or D-HH:MM:SS on Slurm")
        return value


class Settings(BaseSettings):
    """Everything a run needs, validated once at submit time."""

    model_config = SettingsConfigDict(
        env_prefix="DLCRUN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    project: Path | None = Field(None, description="DeepLabCut project folder (holds config.yaml)")
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
    scheduler: str = Field("local", description="local, slurm, pbs or torque")
    max_running: int | None = Field(
        None, ge=1, description="array indices running at once; empty: 1 locally, unlimited on a cluster"
    )
    max_array_size: int | None = Field(
        None, ge=1, description="largest job array the cluster takes; empty: Slurm's MaxArraySize, 10000 on PBS/Torque"
    )
    batch_size: int | None = Field(None, ge=1, description="frames per forward pass; empty: the project's")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
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
    image: str | None = Field(None, description="Apptainer image that array indices run inside")
    engine: Literal["auto", "pytorch", "tensorflow"] = Field(
        "auto", description="DeepLabCut engine of the shuffle (auto: read from the project; for doctor)"
    )
    resources: Resources = Field(default_factory=Resources)

    @field_validator("every")
    @classmethod
    def _every_is_a_duration(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str) -> str:
        if value not in DECODERS:  # a typo; whether it is installed is checked where indices run
            raise ValueError(f"unknown decoder '{value}' (dlcrun has: {', '.join(DECODERS)})")
        return value

    @model_validator(mode="after")
    def _one_sampling(self) -> Settings:
        if self.every is not None and self.stride != 1:
            raise ValueError("stride and every both set; give one of them")
        return self

    @property
    def every_seconds(self) -> float | None:
        return parse_duration(self.every) if self.every is not None else None

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


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Resolve settings from the file, the environment and flags (None flags do not override).

    ``path`` None means ``./dlcrun.toml`` when it exists; a path given explicitly must exist.
    """
    if path is None:
        path = DEFAULT_FILE if DEFAULT_FILE.is_file() else None
    elif not Path(path).is_file():
        raise ConfigError(f"{path}: settings file not found (dlcrun init writes one)")
    given = {k: v for k, v in overrides.items() if v is not None}
    cls: type[Settings] = Settings
    if path is not None:
        cls = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        loaded = cls(**given)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None
    except ValueError as exc:  # malformed TOML
        raise ConfigError(f"{path}: {exc}") from None
    return Settings.model_validate(loaded.model_dump())


def _one_line(exc: ValidationError, path: Path | None) -> str:
    where = f"{path}: " if path else ""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(Settings.model_fields))
            parts.append(f"unknown setting '{field}' (known: {known})")
        else:
            parts.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
    return where + "; ".join(parts)


_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'10s', '2.5 min', '500ms', '1h' -> seconds (a bare number is seconds)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in {"", *_UNITS}:
        raise ValueError(f"'{text}' is not a duration (examples: 10s, 2min, 500ms, 1h)")
    seconds = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    if seconds <= 0:
        raise ValueError(f"'{text}': the duration must be positive")
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
