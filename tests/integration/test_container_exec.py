"""exec_prefix: how an array index gets into the image (Apptainer emulated by a recording stand-in)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from dlcrun.container import IMAGE_INFO_ENV, dlcrun_command, exec_prefix, image_info, image_prefix
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest
from dlcrun.schedulers import task_argv
from dlcrun.settings import Settings

# Records what it was called with, as Apptainer would receive it on a node, and exits.
FAKE_APPTAINER = """#!/bin/sh
python3 - "$@" <<'PY'
import json, os, sys
json.dump({"argv": sys.argv[1:], "cachedir": os.environ.get("APPTAINER_CACHEDIR")},
          open(os.environ["APPTAINER_RECORD"], "w"))
PY
"""


def make_run(tmp_path: Path, **settings: object) -> Run:
    project = tmp_path / "lab share" / "project"
    (project / "dlc-models").mkdir(parents=True)
    snapshot = project / "dlc-models" / "snapshot-5.pt"
    snapshot.write_bytes(b"")
    videos = [tmp_path / "videos" / "2024" / "a.mp4", tmp_path / "videos" / "2025" / "b.mp4"]
    for v in videos:
        v.parent.mkdir(parents=True, exist_ok=True)
        v.write_bytes(b"")
    (tmp_path / "out").mkdir(exist_ok=True)
    entries = [str(v) for v in videos] + ["dropbox:/lab/c.mp4"]
    base = Settings(project=project, dest=str(tmp_path / "out" / "keypoints"), runs_dir=tmp_path / "runs")
    model = {"snapshot": str(snapshot)}
    return Run.create(base.runs_dir, base.model_copy(update=settings), Manifest(entries), model, "t")


def run_emulated(tmp_path: Path, argv: list[str], scratch: Path) -> dict:
    """Run the index's command line in a shell, as a job script would, with the stand-in apptainer."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "apptainer").write_text(FAKE_APPTAINER)
    (fake_bin / "apptainer").chmod(0o755)
    record = tmp_path / "apptainer.json"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "TMPDIR": str(scratch),
        "APPTAINER_RECORD": str(record),
    }
    env.pop("SLURM_TMPDIR", None)
    subprocess.run(["sh", "-c", shlex.join(argv)], env=env, check=True, timeout=60)
    return json.loads(record.read_text())


def binds_of(argv: list[str]) -> list[str]:
    return argv[argv.index("--bind") + 1].split(",")


def test_no_image_means_no_prefix(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert exec_prefix(run) == []
    # Without an image, the jobs call this dlcrun by absolute path, never one their PATH finds.
    assert task_argv(run, 2) == [*dlcrun_command(None), "task", "--run", str(run.path), "--submission", "2"]
    assert os.path.isabs(task_argv(run, 2)[0])


def test_inside_the_image_indices_need_no_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "image.json"
    info.write_text(json.dumps({"engine": "pytorch", "variant": "gpu", "python": "3.12.3"}))
    monkeypatch.setenv(IMAGE_INFO_ENV, str(info))
    assert image_info() is not None and image_info().engine == "pytorch"
    assert exec_prefix(make_run(tmp_path, image=str(tmp_path / "dlc.sif"))) == []


def test_emulation_index_runs_in_apptainer_with_node_scratch_binds_and_caches(tmp_path: Path) -> None:
    """Emulation: a stand-in `apptainer` records the call that a node's shell makes."""
    image = tmp_path / "images" / "dlc 3.0.2.sif"
    run = make_run(tmp_path, image=str(image))
    node_scratch = tmp_path / "node-tmp"
    node_scratch.mkdir()

    got = run_emulated(tmp_path, task_argv(run, 1), node_scratch)
    argv = got["argv"]
    assert argv[:2] == ["exec", "--nv"]
    binds = binds_of(argv)
    project = tmp_path / "lab share" / "project"
    assert binds[0] == str(node_scratch)  # expanded on the node, not at submit
    # keypoints/ does not exist yet: its existing parent is bound (Apptainer refuses missing sources)
    expected = [run.path.parent, project, tmp_path / "videos", tmp_path / "out"]
    assert sorted(binds[1:]) == sorted(map(str, expected))
    cache = node_scratch / "dlcrun-cache"
    envs = [argv[i + 1] for i, word in enumerate(argv) if word == "--env"]
    assert envs == [f"XDG_CACHE_HOME={cache}", f"MPLCONFIGDIR={cache}/matplotlib", "PYTHONNOUSERSITE=1", "PYTHONPATH="]
    assert got["cachedir"] == f"{cache}/apptainer" and cache.is_dir()
    at = argv.index(str(image))
    assert argv[at + 1 :] == ["dlcrun", "task", "--run", str(run.path), "--submission", "1"]


def test_emulation_fixed_scratch_and_cpu_device(tmp_path: Path) -> None:
    """Emulation: a set ``scratch`` is used as is; ``device = "cpu"`` drops --nv (no GPU warnings)."""
    scratch = tmp_path / "scratch dir"
    scratch.mkdir()
    (tmp_path / "out" / "keypoints").mkdir(parents=True)
    run = make_run(tmp_path, image="/images/dlc.sif", scratch=scratch, device="cpu")
    argv = run_emulated(tmp_path, task_argv(run, 3), tmp_path)["argv"]
    assert "--nv" not in argv
    assert binds_of(argv)[0] == str(scratch)
    assert str(tmp_path / "out" / "keypoints") in binds_of(argv)
    assert argv[argv.index("/images/dlc.sif") + 1 :][:2] == ["dlcrun", "task"]


def test_emulation_training_jobs_share_the_wrapper(tmp_path: Path) -> None:
    """Emulation: image_prefix (what `dlcrun train` jobs use) binds what exists, scratch included."""
    (tmp_path / "runs").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    argv = image_prefix("/images/dlc.sif", [str(tmp_path / "runs" / "train" / "new"), str(project)])
    argv += ["dlcrun", "train-task", "--workdir", str(tmp_path / "runs" / "train" / "new")]
    node_scratch = tmp_path / "node-tmp"
    node_scratch.mkdir()
    got = run_emulated(tmp_path, argv, node_scratch)["argv"]
    assert binds_of(got) == [str(node_scratch), str(project), str(tmp_path / "runs")]
    assert got[got.index("/images/dlc.sif") + 1 :][:2] == ["dlcrun", "train-task"]
    assert image_prefix(None, [str(project)]) == []


def test_rclone_config_outside_home_is_bound_when_rclone_locations_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlcrun.container import bind_paths

    config = tmp_path / "site" / "rclone" / "rclone.conf"
    config.parent.mkdir(parents=True)
    config.write_text("[lab]\ntype = local\n")
    monkeypatch.setenv("RCLONE_CONFIG", str(config))
    assert str(config.parent) not in bind_paths(make_run(tmp_path / "a", image="/i.sif"))
    assert str(config.parent) in bind_paths(make_run(tmp_path / "b", image="/i.sif", dest="rclone:lab:keypoints"))
