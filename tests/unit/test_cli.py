"""The CLI as a user meets it: exit codes, one-line errors, files written or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun import __version__
from dlcrun.cli import app
from dlcrun.settings import load_settings

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_init_writes_a_loadable_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "dlcrun.toml"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    assert "# where keypoint files go" in target.read_text()
    assert load_settings(target).scheduler == "local"
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1 and "exists; pass --force" in again.output


def test_manifest_command_and_bad_row(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("video\n/v/a.mp4\n/v/b.mp4\n")
    out = tmp_path / "m" / "good.txt"
    result = runner.invoke(app, ["manifest", str(good), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 videos from 2 rows" in result.output
    assert out.read_text().splitlines()[-2:] == ["/v/a.mp4", "/v/b.mp4"]

    bad = tmp_path / "bad.csv"
    bad.write_text("video\n/v/a.mp4\n/v/a.mp4\n")
    target = tmp_path / "m" / "bad.txt"
    result = runner.invoke(app, ["manifest", str(bad), "-o", str(target)])
    assert result.exit_code == 1
    assert "error:" in result.output and "row 3: duplicate of row 2" in result.output
    assert "Traceback" not in result.output
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--runs-dir", "{tmp}/runs"], "no runs yet"),
        (["status", "nope", "--runs-dir", "{tmp}"], "nope: no such run"),
        (["submit", "{tmp}/missing.txt", "--project", "{tmp}", "--dest", "{tmp}/k"], "no such manifest"),
    ],
)
def test_errors_are_one_line_with_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "config.yaml").write_text("Task: x\n")  # --project {tmp} is a project, as far as settings look
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_submit_without_project_says_how_to_fix(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("/v/a.mp4\n")
    result = runner.invoke(app, ["submit", str(manifest), "--dest", str(tmp_path / "k")])
    assert result.exit_code == 1 and "pass --project or set project in dlcrun.toml" in result.output


def test_submit_refuses_a_project_without_snapshot(tmp_path: Path, tiny_videos) -> None:
    videos = tiny_videos()
    manifest = tmp_path / "m.txt"
    manifest.write_text("\n".join(map(str, videos)) + "\n")
    project = tmp_path / "proj"
    project.mkdir()
    args = ["submit", str(manifest), "--project", str(project), "--dest", str(tmp_path / "k")]
    result = runner.invoke(app, [*args, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1 and f"--project {project}: not a DeepLabCut project" in result.output
    (project / "config.yaml").write_text("Task: x\n")  # a project's config, with no shuffle trained
    result = runner.invoke(app, [*args, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "no TrainingFraction[0]" in result.output, result.output
    assert not (tmp_path / "runs").exists(), "nothing is created for a run that cannot start"
