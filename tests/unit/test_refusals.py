"""What a new cluster user gets wrong first, refused through the real command line before it costs
anything: exit 1, one line on stderr starting ``error:`` that names the flag, variable or settings
file the value came from, no traceback, and nothing created (no run directory, no manifest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.manifest import Manifest, write_manifest

runner = CliRunner()
CHOICES = "(dlcrun has: local, pbs, slurm, torque)"
NOT_A_PROJECT = "not a DeepLabCut project (a folder with config.yaml, or that config.yaml)"


@pytest.fixture(autouse=True)
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a manifest, a project folder (config.yaml only) and no dlcrun.toml;
    only dlcrun's own schedulers known, whatever fakes other test modules registered."""
    from dlcrun import settings

    monkeypatch.setattr(settings, "SCHEDULERS", ["local", "pbs", "slurm", "torque"])
    for name in [k for k in __import__("os").environ if k.upper().startswith("DLCRUN_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path / "batch.txt", Manifest(entries=["/videos/a.mp4", "/videos/b.mp4"]))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.yaml").write_text("Task: x\n")
    return tmp_path


def before(lab: Path) -> set[Path]:
    return set(lab.rglob("*"))


def refused(args: list[str], message: str, lab: Path, exact: bool = True) -> str:
    """Run ``dlcrun args`` in ``lab``; it must be refused with ``message`` (the whole line after
    ``error: `` when ``exact``) and leave the folder as it was."""
    files = before(lab)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    line = lines[0].removeprefix("error: ")
    assert line == message if exact else message in line, line
    assert "Traceback" not in result.output
    assert set(lab.rglob("*")) == files, "nothing is created"
    assert not (lab / "runs").exists() and not (lab / "manifests").exists()
    return line


SUBMIT = ["submit", "batch.txt", "--dest", "keypoints"]


# ---------------------------------------------------------------- --project


def test_a_file_that_is_not_config_yaml_is_not_a_project(lab: Path) -> None:
    (lab / "y.txt").write_text("")
    refused([*SUBMIT, "--project", "y.txt"], f"--project y.txt: {NOT_A_PROJECT}", lab)


def test_a_folder_without_config_yaml_is_not_a_project(lab: Path) -> None:
    (lab / "videos").mkdir()
    refused([*SUBMIT, "--project", "videos"], f"--project videos: {NOT_A_PROJECT}", lab)


def test_a_project_in_dlcrun_toml_is_checked_too(lab: Path) -> None:
    (lab / "dlcrun.toml").write_text('project = "batch.txt"\n')
    refused([*SUBMIT], f"dlcrun.toml: project 'batch.txt': {NOT_A_PROJECT}", lab)


def test_config_yaml_stands_for_its_project_folder(lab: Path) -> None:
    """DLC's habit: the NotADirectoryError traceback this used to be is gone; the project's own
    problem (no trained shuffle in this bare config.yaml) is what is said, naming the folder."""
    args = [*SUBMIT, "--no-check", "--project", "proj/config.yaml"]
    line = refused(args, "no TrainingFraction[0]", lab, exact=False)
    assert line.startswith(f"{lab / 'proj' / 'config.yaml'}: ")  # the folder's config.yaml, not config.yaml/config.yaml
    shown = runner.invoke(app, ["models", "--project", "proj/config.yaml"])
    assert shown.exit_code == 0 and "no trained snapshot yet" in shown.stdout, shown.output


# ---------------------------------------------------------------- a spreadsheet for a manifest


@pytest.mark.parametrize("name", ["batch.csv", "batch.tsv", "Batch.XLSX", "batch.xls", "batch.ods", "batch.xlsm"])
def test_a_spreadsheet_is_not_a_manifest(lab: Path, name: str) -> None:
    (lab / name).write_text("video\n/videos/a.mp4\n")
    message = f"{name} is a spreadsheet: `dlcrun manifest {name}` writes the manifest to submit"
    refused(["submit", name, "--project", "proj", "--dest", "keypoints"], message, lab)


def test_a_workbook_under_any_name_is_not_a_manifest(lab: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["video"])
    book.active.append(["/videos/a.mp4"])
    book.save(lab / "sheet.xlsx")
    (lab / "sheet.xlsx").rename(lab / "my list.txt")
    message = "my list.txt is a spreadsheet: `dlcrun manifest 'my list.txt'` writes the manifest to submit"
    refused(["submit", "my list.txt", "--project", "proj", "--dest", "keypoints"], message, lab)


def test_a_binary_file_is_not_a_manifest(lab: Path) -> None:
    (lab / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00")
    message = "video.mp4: binary data, not a manifest (one video per line; `dlcrun manifest SHEET` writes one)"
    refused(["submit", "video.mp4", "--project", "proj", "--dest", "keypoints"], message, lab)


# ---------------------------------------------------------------- scheduler, device, time


def test_an_unknown_scheduler_is_refused_before_deeplabcut_is_imported(lab: Path) -> None:
    refused([*SUBMIT, "--project", "proj", "--scheduler", "slrum"], f"--scheduler slrum: unknown {CHOICES}", lab)
    code = (
        "import sys; from typer.testing import CliRunner; from dlcrun.cli import app; "
        "r = CliRunner().invoke(app, ['submit', 'batch.txt', '--project', 'proj', '--dest', 'k', '--scheduler', 'slrum']); "
        "heavy = sorted({'deeplabcut', 'torch', 'tensorflow'} & set(sys.modules)); "
        "print(r.exit_code, heavy)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert shown.stdout.strip() == "1 []", shown.stdout + shown.stderr


def test_the_scheduler_is_read_whatever_its_case(lab: Path) -> None:
    """SLURM is slurm: what refuses it next is the GPU rule, which names slurm."""
    refused([*SUBMIT, "--project", "proj", "--scheduler", "SLURM"], "scheduler slurm with gpus 0", lab, exact=False)


def test_an_unknown_device_is_refused(lab: Path) -> None:
    message = "--device tpu: not a device dlcrun runs on: auto, cpu, cuda or cuda:N (gpu means cuda)"
    refused([*SUBMIT, "--project", "proj", "--device", "tpu"], message, lab)


def test_a_wall_time_schedulers_do_not_take_is_refused_naming_the_variable(
    lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLCRUN_RESOURCES__TIME", "12 hours")
    message = (
        "DLCRUN_RESOURCES__TIME=12 hours: not a wall time; e.g. 12:00:00 (HH:MM:SS), 12h, 90m, 1d12h, "
        "or 1-12:00:00 (D-HH:MM:SS, Slurm only)"
    )
    refused([*SUBMIT, "--project", "proj"], message, lab)


def test_a_bad_flag_is_blamed_on_the_flag_even_with_a_settings_file(lab: Path) -> None:
    (lab / "dlcrun.toml").write_text('every = "10s"\n')
    message = "--every 10x: not a duration (examples: 10s, 2min, 500ms, 1h)"
    refused([*SUBMIT, "--project", "proj", "--every", "10x"], message, lab)
    (lab / "dlcrun.toml").write_text('every = "10x"\n')
    refused(
        [*SUBMIT, "--project", "proj"], "dlcrun.toml: every '10x': not a duration (examples: 10s, 2min, 500ms, 1h)", lab
    )


# ---------------------------------------------------------------- a cluster with no GPU asked


@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "torque"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_cluster_array_that_asks_for_no_gpu_is_refused_naming_both_ways_out(
    lab: Path, scheduler: str, dry_run: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlcrun import batch

    def must_not(*args: object, **kwargs: object) -> None:
        raise AssertionError("the GPU rule is checked before storage is read or the model pinned")

    monkeypatch.setattr(batch, "check_sources", must_not)
    monkeypatch.setattr(batch, "pin", must_not)
    message = (
        f"scheduler {scheduler} with gpus 0: every index would run on a CPU; "
        "ask for a GPU with --gpus 1, or say --device cpu to mean it"
    )
    refused([*SUBMIT, "--project", "proj", "--scheduler", scheduler, *dry_run], message, lab)
    refused(["submit", "missing.txt", "--project", "proj", "--scheduler", scheduler, "--device", "gpu"], message, lab)


@pytest.mark.parametrize("way_out", [["--gpus", "1"], ["--device", "cpu"]])
def test_either_way_out_gets_past_the_gpu_rule(lab: Path, way_out: list[str]) -> None:
    refused(
        ["submit", "missing.txt", "--project", "proj", "--scheduler", "slurm", *way_out],
        "no such manifest",
        lab,
        exact=False,
    )


def test_other_commands_read_a_cluster_dlcrun_toml_with_no_gpu(lab: Path) -> None:
    (lab / "dlcrun.toml").write_text('scheduler = "slurm"\n')
    (lab / "sheet.csv").write_text("video\n/videos/a.mp4\n")
    made = runner.invoke(app, ["manifest", "sheet.csv", "-o", "manifests/sheet.txt"])
    assert made.exit_code == 0 and (lab / "manifests" / "sheet.txt").is_file(), made.output
    status = runner.invoke(app, ["status"])
    assert "no runs yet" in status.output and "gpus" not in status.output, status.output


def test_every_flag_named_like_a_setting_is_spelled_as_errors_name_it() -> None:
    """settings_from tells load_settings each flag's spelling by rule (``--max-running``, and
    ``SPELLED_OTHERWISE``): every command's option that sets a setting must be spelled so."""
    from typer.main import get_command

    from dlcrun.cli.app import flag_spellings
    from dlcrun.settings import Resources, Settings

    def commands(group: object) -> list[object]:
        found = []
        for command in getattr(group, "commands", {}).values():
            found += [command, *commands(command)]
        return found

    checked = 0
    for command in commands(get_command(app)):
        for param in command.params:  # type: ignore[attr-defined]
            long = [o for o in param.opts if o.startswith("--")]
            if param.name in Settings.model_fields and long:
                assert flag_spellings([param.name])[param.name] == long[0], (command.name, param.name)  # type: ignore[attr-defined]
                checked += 1
            elif param.name in Resources.model_fields and long:
                assert flag_spellings([], {param.name: 1})[f"resources.{param.name}"] == long[0]
                checked += 1
    assert checked > 20
