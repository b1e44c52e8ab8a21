"""What a job script calls, and whether the nodes can: the absolute dlcrun, the reach check,
and the resource settings a scheduler has no directive for (refused when settings load)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlcrun.container import dlcrun_command, reach
from dlcrun.errors import ConfigError
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest
from dlcrun.schedulers import task_argv, unreachable
from dlcrun.settings import load_settings

FLAGS = {"resources.qos": "--qos", "resources.constraint": "--constraint", "scheduler": "--scheduler"}


def test_jobs_call_this_dlcrun_by_absolute_path_or_the_image_s() -> None:
    (program,) = dlcrun_command(None)
    assert os.path.isabs(program) and os.access(program, os.X_OK)
    assert dlcrun_command("/lab/dlc.sif") == ["dlcrun"], "inside the image, the image's own"


def _run(tmp_path: Path, **overrides: object) -> Run:
    settings = load_settings(None, project=tmp_path / "p", dest=str(tmp_path / "out"), **overrides)
    return Run.create(tmp_path / "runs", settings, Manifest(entries=["/v/a.mp4"]), {"scorer": "DLC_x"}, "b")


def test_the_task_line_starts_with_the_absolute_dlcrun(tmp_path: Path) -> None:
    run = _run(tmp_path, scheduler="slurm", device="cpu")
    assert task_argv(run, 1)[:2] == [dlcrun_command(None)[0], "task"]


@pytest.mark.parametrize(("fstype", "shared"), [("nfs4", True), ("lustre", True), ("ext4", False), ("xfs", False)])
def test_reach_by_the_filesystem_the_program_is_on(tmp_path: Path, fstype: str, shared: bool) -> None:
    """A real program; the mount table is the one given (this machine has no NFS or Lustre),
    mounting tmp_path with ``fstype`` over a local root. (tmp_path is under /tmp, which is
    node-local on a cluster whatever its filesystem: that rule is left out here.)"""
    program = tmp_path / "venv" / "bin" / "dlcrun"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    mounts = tmp_path / "mountinfo"
    mounts.write_text(
        "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"40 22 0:35 / {tmp_path} rw,relatime shared:20 - {fstype} server:/export rw\n"
    )
    said = reach(str(program), mounts=mounts, node_local=())
    if shared:
        assert said is None
    else:
        assert said == (
            f"cannot tell whether compute nodes see it ({tmp_path} is a local {fstype} filesystem here); "
            "if they do not, install dlcrun on shared storage or set image"
        )


def test_reach_refuses_what_is_missing_and_warns_of_node_local_folders(tmp_path: Path) -> None:
    assert reach(str(tmp_path / "missing" / "dlcrun")) == "does not exist here; the jobs could not start it"
    in_tmp = Path("/tmp") / f"dlcrun-reach-{os.getpid()}"
    in_tmp.write_text("#!/bin/sh\n")
    try:
        in_tmp.chmod(0o755)
        assert reach(str(in_tmp)) == "is in this machine's own /tmp; compute nodes have their own and will not find it"
    finally:
        in_tmp.unlink()
    assert reach("dlcrun") is None, "a bare name is the image's to find"


def test_an_image_missing_here_is_said_at_submit(tmp_path: Path) -> None:
    run = _run(tmp_path, scheduler="slurm", device="cpu", image=str(tmp_path / "dlc.sif"))
    assert unreachable(run) == (str(tmp_path / "dlc.sif"), "does not exist here; the jobs could not start it")
    assert unreachable(_run(tmp_path / "local", image=str(tmp_path / "dlc.sif"))) is None, "local: runs here"


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"scheduler": "pbs", "resources": {"qos": "gold"}}, "--qos gold: pbs has no quality of service"),
        ({"scheduler": "TORQUE", "resources": {"qos": "gold"}}, "--qos gold: torque has no quality of service"),
        ({"scheduler": "pbs", "resources": {"constraint": "h100"}}, "--constraint h100: PBS Pro selects nodes"),
    ],
)
def test_a_resource_the_scheduler_has_no_word_for_is_refused_naming_the_flag(
    overrides: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, flags=FLAGS, **overrides)
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)


def test_a_rule_across_settings_blames_the_file_key(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text('scheduler = "pbs"\n[resources]\nqos = "gold"\n')
    with pytest.raises(ConfigError, match=r"^.*dlcrun.toml: resources.qos 'gold': pbs has no quality of service"):
        load_settings(toml)


def test_resources_each_scheduler_has_are_taken() -> None:
    assert load_settings(None, scheduler="torque", resources={"constraint": "h100"}).resources.constraint == "h100"
    assert load_settings(None, scheduler="pbs", resources={"constraint": "gpu_model=h100"}).resources.constraint
    assert load_settings(None, scheduler="slurm", resources={"qos": "long"}).resources.qos == "long"


def test_prelude_is_lines_from_a_list_or_a_multi_line_string(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text('prelude = """\nmodule load cuda/12.4\n\nsource ~/venvs/dlc/bin/activate\n"""\n')
    assert load_settings(toml).prelude == ["module load cuda/12.4", "source ~/venvs/dlc/bin/activate"]
    assert load_settings(None, prelude=["module load x"]).prelude == ["module load x"]
