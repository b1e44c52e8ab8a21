"""Project pack/unpack on the real openfield project: paths rewritten, comments kept."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.engines import pin_model
from dlcrun.errors import ConfigError
from dlcrun.project import list_models, pack, unpack


def test_pack_unpack_round_trip(tmp_path: Path, openfield_project: Path) -> None:
    archive = pack(openfield_project, tmp_path / "openfield.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    top = openfield_project.name
    assert f"{top}/config.yaml" in names
    assert f"{top}/labeled-data/m4s1/CollectedData_Pranav.h5" in names
    assert any(n.endswith("train/pytorch_config.yaml") for n in names)
    assert not any(n.endswith(".pt") for n in names), "old models stay behind by default"

    target = unpack(archive, tmp_path / "cluster")
    assert target == (tmp_path / "cluster" / top).resolve()
    config = (target / "config.yaml").read_text()
    assert f"project_path: {target}\n" in config
    assert "# Project definitions (do not edit)" in config, "comments survive the rewrite"
    assert f"{target}/videos/m4s1.mp4:" in config
    for yaml_file in target.rglob("*.yaml"):
        assert str(openfield_project) not in yaml_file.read_text(), yaml_file
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == [top], "no staging folder left"

    with pytest.raises(ConfigError, match="exists; unpack elsewhere"):
        unpack(archive, tmp_path / "cluster")
    with pytest.raises(ConfigError, match="exists; remove it"):
        pack(openfield_project, archive)


def test_packed_snapshot_gives_the_same_pinned_model(tmp_path: Path, openfield_project: Path) -> None:
    archive = pack(openfield_project, tmp_path / "p.tar.gz", with_snapshots=True)
    target = unpack(archive, tmp_path / "elsewhere")
    before = (openfield_project / "config.yaml").read_text()
    moved, original = pin_model(target), pin_model(openfield_project)
    assert moved.scorer == original.scorer
    assert moved.snapshot.startswith(str(target)) and Path(moved.snapshot).name == Path(original.snapshot).name
    assert (openfield_project / "config.yaml").read_text() == before, "pinning never rewrites config.yaml"
    assert [m.snapshot for m in list_models(target)] == [Path(original.snapshot).name]


def test_cli_pack_unpack_and_models(tmp_path: Path, openfield_project: Path) -> None:
    runner = CliRunner()
    archive = tmp_path / "a.tar.gz"
    assert runner.invoke(app, ["project", "pack", str(openfield_project), "-o", str(archive)]).exit_code == 0
    result = runner.invoke(app, ["project", "unpack", str(archive), "--to", str(tmp_path / "u")])
    assert result.exit_code == 0 and "unpacked" in result.output
    result = runner.invoke(app, ["models", "--project", str(openfield_project)])
    assert result.exit_code == 0 and "snapshot-005.pt" in result.output
    bad = runner.invoke(app, ["project", "unpack", str(tmp_path / "none.tar.gz"), "--to", str(tmp_path)])
    assert bad.exit_code == 1 and "no such archive" in bad.output
