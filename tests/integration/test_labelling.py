"""Sampled videos into a DLC project's labeled-data through DLC's own functions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.errors import ConfigError
from dlcrun.labelling import extract_for_labelling

pytestmark = pytest.mark.slow


def test_sample_extracts_frames_into_the_project(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    project = tmp_path / demo_project.name
    shutil.copytree(demo_project, project, symlinks=True)
    names = [f"cam{c}_2026-10-0{d}_10-00-00.mp4" for c in (1, 2) for d in (1, 2, 3)]
    videos = tiny_videos(tmp_path / "videos", names, frames=24)
    sheet = tmp_path / "videos.csv"
    sheet.write_text("video,camera\n" + "".join(f"{v},cam{v.name[3]}\n" for v in videos))
    result = CliRunner().invoke(
        app,
        [
            "sample",
            str(sheet),
            "--count",
            "2",
            "--per",
            "camera",
            "--seed",
            "7",
            "-o",
            str(tmp_path / "label.txt"),
            "--extract-to",
            str(project),
            "--frames",
            "4",
            "--copy-videos",
        ],
    )
    assert result.exit_code == 0, result.output
    sampled = [line for line in (tmp_path / "label.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(sampled) == 2 and {Path(s).name[:4] for s in sampled} == {"cam1", "cam2"}
    cfg = YAML(typ="safe").load((project / "config.yaml").read_text())
    assert cfg["numframes2pick"] == 4
    for video in sampled:
        stem = Path(video).stem
        assert str(project / "videos" / Path(video).name) in cfg["video_sets"]
        assert not (project / "videos" / Path(video).name).is_symlink(), "--copy-videos copies"
        assert len(list((project / "labeled-data" / stem).glob("*.png"))) == 4
    assert not (project / ".dlcrun-fetch").exists()


def test_same_names_from_two_folders_are_refused(tmp_path: Path, demo_project: Path) -> None:
    with pytest.raises(ConfigError, match="same file name cannot share a project: a.mp4"):
        extract_for_labelling(demo_project, ["/x/cam1/a.mp4", "/x/cam2/a.mp4"])
