"""Settings precedence (defaults < dlcrun.toml < DLCRUN_* < flags) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcrun.errors import ConfigError
from dlcrun.settings import Settings, load_settings, render_template


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text('dest = "/from/file"\nshuffle = 3\nmax_running = 4\n[resources]\ngpus = 1\n')
    monkeypatch.delenv("DLCRUN_SHUFFLE", raising=False)
    s = load_settings(toml)
    assert (s.dest, s.shuffle, s.max_running, s.resources.gpus, s.scheduler) == ("/from/file", 3, 4, 1, "local")
    monkeypatch.setenv("DLCRUN_SHUFFLE", "5")
    assert load_settings(toml).shuffle == 5
    assert load_settings(toml, shuffle=7, dest=None).shuffle == 7  # None flags do not override
    assert load_settings(toml, shuffle=7, dest=None).dest == "/from/file"


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text("destination = '/x'\n")
    with pytest.raises(ConfigError, match=r"dlcrun.toml: unknown setting 'destination' \(known: .*dest,"):
        load_settings(toml)


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text("max_running = 0\n")
    with pytest.raises(ConfigError, match="max_running"):
        load_settings(toml)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml")


def test_init_template_loads_back_to_the_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text(render_template())
    assert load_settings(toml) == load_settings(None)


# ---------------------------------------------------------------- checked when the settings load


@pytest.fixture(autouse=True)
def builtin_schedulers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only dlcrun's own schedulers, whatever fakes other test modules registered."""
    from dlcrun import settings

    monkeypatch.setattr(settings, "SCHEDULERS", ["local", "pbs", "slurm", "torque"])


def test_project_may_be_its_config_yaml_and_must_be_a_project(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.yaml").write_text("Task: x\n")
    assert load_settings(None, project=project).project == project
    assert load_settings(None, project=project / "config.yaml").project == project  # DLC's habit
    other = tmp_path / "y.txt"
    other.write_text("")
    flags = {"project": "--project"}
    with pytest.raises(
        ConfigError,
        match=r"^--project .*y.txt: not a DeepLabCut project \(a folder with config.yaml, or that config.yaml\)$",
    ):
        load_settings(None, flags, project=other)
    with pytest.raises(ConfigError, match=r"^project '.*empty': not a DeepLabCut project"):
        (tmp_path / "empty").mkdir()
        load_settings(None, project=tmp_path / "empty")
    # Not seen here (a share this machine does not mount): left for submit, which says so.
    assert load_settings(None, project=tmp_path / "elsewhere").project == tmp_path / "elsewhere"
    # A run's frozen settings are not checked against the disk again: the project may have moved.
    assert Settings.model_validate({"project": str(tmp_path / "empty")}).project == tmp_path / "empty"


@pytest.mark.parametrize(("given", "stored"), [("slurm", "slurm"), ("SLURM", "slurm"), (" Torque ", "torque")])
def test_scheduler_is_case_insensitive(given: str, stored: str) -> None:
    assert load_settings(None, scheduler=given).scheduler == stored


def test_an_unknown_scheduler_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"^scheduler 'slrum': unknown \(dlcrun has: local, pbs, slurm, torque\)$"):
        load_settings(None, scheduler="slrum")


def test_a_registered_scheduler_backend_is_a_known_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcrun import schedulers

    monkeypatch.setattr(schedulers, "_REGISTRY", dict(schedulers._REGISTRY))  # left as it was for other tests
    schedulers.register("lsf")(lambda: None)  # type: ignore[arg-type,return-value]
    assert load_settings(None, scheduler="LSF").scheduler == "lsf"


@pytest.mark.parametrize(
    ("given", "stored"),
    [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("gpu", "cuda"), ("GPU:2", "cuda:2")],
)
def test_device_takes_gpu_for_cuda(given: str, stored: str) -> None:
    assert load_settings(None, device=given).device == stored


@pytest.mark.parametrize("device", ["tpu", "mps", "cuda:", "cuda:x", "cpu:0", "gpus", ""])
def test_other_devices_are_refused(device: str) -> None:
    with pytest.raises(ConfigError, match=r"^device '.*': not a device dlcrun runs on: auto, cpu, cuda or cuda:N"):
        load_settings(None, device=device)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("04:00:00", "04:00:00"),  # Slurm's and PBS's own forms, as they were
        ("1-12:00:00", "1-12:00:00"),
        ("90:00", "90:00"),
        ("120", "120"),
        ("12h", "12:00:00"),
        ("90m", "01:30:00"),
        ("45min", "00:45:00"),
        ("1d", "24:00:00"),
        ("1d12h", "36:00:00"),  # past 24 hours as HHH:MM:SS: PBS has no D-HH:MM:SS
        ("2d 3h 15m", "51:15:00"),
        ("100H", "100:00:00"),
    ],
)
def test_wall_times_people_write_become_one_both_schedulers_take(given: str, stored: str) -> None:
    assert load_settings(None, resources={"time": given}).resources.time == stored


@pytest.mark.parametrize("given", ["12x", "1.5h", "12h30", "h", "0h", "", "1w"])
def test_other_wall_times_are_refused_with_examples(given: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^resources.time '.*': (not a wall time; e.g. 12:00:00 .*12h, 90m, 1d12h|a wall time must be)",
    ):
        load_settings(None, resources={"time": given})


def test_resubmit_time_takes_the_same_forms(tmp_path: Path) -> None:
    from dlcrun.errors import RunError
    from dlcrun.ledger import Run
    from dlcrun.manifest import Manifest

    settings = load_settings(None, dest=str(tmp_path / "k"), runs_dir=tmp_path / "runs")
    run = Run.create(tmp_path / "runs", settings, Manifest(entries=["/v/a.mp4"]), {"scorer": "DLC_x"}, name="t")
    assert run.scheduling({"time": "1d12h"}).resources.time == "36:00:00"
    with pytest.raises(RunError, match=r"resources.time '12x': not a wall time"):
        run.scheduling({"time": "12x"})


@pytest.mark.parametrize(
    ("scheduler", "gpus", "device", "refused"),
    [
        ("slurm", 0, "auto", True),
        ("pbs", 0, "cuda", True),
        ("torque", 0, "gpu:1", True),
        ("slurm", 0, "cpu", False),  # said: CPU is what is meant
        ("slurm", 1, "auto", False),
        ("local", 0, "auto", False),  # this machine: whatever it has
    ],
)
def test_a_cluster_with_no_gpu_asked_is_a_refusal_held_by_the_settings(
    scheduler: str, gpus: int, device: str, refused: bool
) -> None:
    settings = load_settings(None, scheduler=scheduler, device=device, resources={"gpus": gpus})  # loads either way
    reason = settings.cpu_on_a_cluster()
    if refused:
        assert reason == (
            f"scheduler {scheduler} with gpus 0: every index would run on a CPU; "
            "ask for a GPU with --gpus 1, or say --device cpu to mean it"
        )
    else:
        assert reason is None


# ---------------------------------------------------------------- errors name where a value came from


def test_a_bad_flag_is_blamed_on_the_flag_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dlcrun.toml").write_text('every = "10s"\n')
    flags = {"every": "--every", "resources.time": "--time"}
    with pytest.raises(ConfigError, match=r"^--every 10x: not a duration \(examples: 10s, 2min, 500ms, 1h\)$"):
        load_settings(None, flags, every="10x")
    with pytest.raises(ConfigError, match=r"^--time 12x: not a wall time"):
        load_settings(None, flags, resources={"time": "12x"})
    with pytest.raises(ConfigError, match=r"^every '10x': not a duration"):  # no flags given: the setting's name
        load_settings(None, every="10x")


def test_a_bad_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dlcrun.toml").write_text('every = "10s"\n[resources]\ntime = "01:00:00"\n')
    monkeypatch.setenv("DLCRUN_EVERY", "10x")
    with pytest.raises(ConfigError, match=r"^DLCRUN_EVERY=10x: not a duration"):
        load_settings(None)
    monkeypatch.delenv("DLCRUN_EVERY")
    monkeypatch.setenv("DLCRUN_RESOURCES__TIME", "forever")
    with pytest.raises(ConfigError, match=r"^DLCRUN_RESOURCES__TIME=forever: not a wall time"):
        load_settings(None)
    monkeypatch.setenv("dlcrun_scheduler", "slrum")  # read whatever its case, named as written
    monkeypatch.delenv("DLCRUN_RESOURCES__TIME")
    with pytest.raises(ConfigError, match=r"^DLCRUN_SCHEDULER=slrum: unknown"):
        load_settings(None)
    monkeypatch.delenv("dlcrun_scheduler")
    monkeypatch.setenv("DLCRUN_RESOURCES__GPU", "1")
    with pytest.raises(ConfigError, match=r"^DLCRUN_RESOURCES__GPU: unknown setting 'resources.gpu' \(known: account,"):
        load_settings(None)


def test_a_bad_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text('scheduler = "slrum"\n[resources]\ntime = "12x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(toml, {"every": "--every"}, every="10s")  # a good flag changes nothing in the blame
    assert str(caught.value) == (
        f"{toml}: scheduler 'slrum': unknown (dlcrun has: local, pbs, slurm, torque); "
        f"{toml}: resources.time '12x': not a wall time; e.g. 12:00:00 (HH:MM:SS), 12h, 90m, 1d12h, "
        "or 1-12:00:00 (D-HH:MM:SS, Slurm only)"
    )


def test_an_unknown_resources_key_lists_the_resources(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text("[resources]\ngpu = 1\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'resources.gpu' \(known: account, constraint, cpus, extra, gpus, mem"
    ):
        load_settings(toml)
