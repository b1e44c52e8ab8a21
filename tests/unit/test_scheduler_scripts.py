"""Cluster backends without a cluster: rendered job scripts (golden), the exact sbatch / qsub /
squeue / qstat / scancel / qdel command lines (through an injected command runner with canned
replies), and the job scripts' own behaviour run under bash (SIGTERM, scratch, exit status).

The real Slurm path is exercised in test_slurm_cluster.py; PBS Pro and Torque, which cannot
run here, through an emulation in test_pbs_emulation.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcrun.container import dlcrun_command
from dlcrun.errors import ConfigError, SubmissionError
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest
from dlcrun.schedulers import scheduler_for
from dlcrun.schedulers.pbs import PRO, TORQUE, PbsScheduler, parse_qstat
from dlcrun.schedulers.scripts import JOBS, chunks, render
from dlcrun.schedulers.slurm import SlurmScheduler, parse_squeue
from dlcrun.settings import Resources, load_settings

DATA = Path(__file__).parent / "data" / "schedulers"
SOFTWARE = "PATH=/opt/dlc/bin:/usr/bin:/bin,VIRTUAL_ENV=/opt/dlc,RCLONE_CONFIG=/lab/rclone.conf"
RES = Resources(gpus=1, cpus=4, mem="16G", time="04:00:00", partition="gpu", account="lab")


class Recorder:
    """A command runner: records each argv and answers from canned (rc, stdout, stderr) by program."""

    def __init__(self, **replies: tuple[int, str, str] | list[tuple[int, str, str]]):
        self.replies = replies
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        reply = self.replies.get(argv[0], (0, "", ""))
        if isinstance(reply, list):
            reply = reply.pop(0)
        rc, stdout, stderr = reply
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)


def make_run(tmp_path: Path, n: int = 3, **overrides: object) -> Run:
    """A run directory named RUN (fixed, for golden files) over ``n`` made-up videos."""
    overrides.setdefault("resources", RES.model_dump())
    settings = load_settings(
        None, project=tmp_path / "project", dest=str(tmp_path / "out"), runs_dir=tmp_path / "runs", **overrides
    )
    manifest = Manifest(entries=[f"/videos/v{i}.mp4" for i in range(n)])
    made = Run.create(tmp_path / "runs", settings, manifest, {"scorer": "DLC_test"}, name="batch")
    return Run(made.path.rename(made.path.with_name("RUN")))


def golden(name: str, text: str, tmp_path: Path) -> None:
    """``text`` with the temp dir as <tmp> equals tests/unit/data/schedulers/<name>.

    After a deliberate change to a job script, DLCRUN_UPDATE_GOLDEN=1 rewrites the files; review the diff.
    """
    text = text.replace(str(tmp_path), "<tmp>").replace(dlcrun_command(None)[0], "<dlcrun>")
    if os.environ.get("DLCRUN_UPDATE_GOLDEN") == "1":
        (DATA / name).write_text(text)
    assert text == (DATA / name).read_text()


def add_submission(run: Run, scheduler: str, jobs: list[str], indices: list[int]) -> int:
    number = run.next_submission_number()
    run.write_indices(number, indices)
    run.add_submission(number, scheduler, jobs, indices, None)
    return number


# ---------------------------------------------------------------- Slurm


def test_slurm_submit_renders_script_and_exact_sbatch_line(tmp_path: Path) -> None:
    """Every resource is an #SBATCH line of the kept script; sbatch is given nothing else."""
    resources = RES.model_dump() | {"qos": "normal", "constraint": "h100|a100", "extra": ["--exclusive"]}
    run = make_run(tmp_path, scheduler="slurm", resources=resources, prelude="module load cuda/12.4\nsource act")
    runner = Recorder(
        scontrol=(0, "MaxArraySize            = 1001\nMinJobAge = 300 sec\n", ""), sbatch=(0, "4242\n", "")
    )
    jobs = SlurmScheduler(runner).submit(run, 1, 3, max_running=2)
    assert jobs == ["4242"]
    script = run.path / "submissions" / "001.slurm"
    assert runner.calls == [["scontrol", "show", "config"], ["sbatch", "--parsable", str(script)]]
    assert os.access(script, os.X_OK)
    text = script.read_text()
    r = str(run.path)
    assert [line for line in text.splitlines() if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name=dlcrun-RUN",
        "#SBATCH --array=0-2%2",
        f"#SBATCH --output={r}/logs/%A_%a.out",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=04:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=normal",
        "#SBATCH --constraint=h100|a100",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --export=ALL",
        "#SBATCH --exclusive",
    ]
    task = next(line for line in text.splitlines() if line.startswith("TASK=("))
    assert shlex.split(task[len("TASK=(") : -1])[:2] == [dlcrun_command(None)[0], "task"]
    assert Path(dlcrun_command(None)[0]).is_absolute(), "never a bare dlcrun from the node's PATH"
    golden("array.slurm.rendered", text, tmp_path)


def test_slurm_directives_are_what_sbatch_reads(tmp_path: Path) -> None:
    """sbatch stops reading #SBATCH lines at the first command: every directive comes before it."""
    run = make_run(tmp_path, scheduler="slurm", max_array_size=10)
    (plan,) = SlurmScheduler(Recorder()).plan(run, 1, 3, None)
    assert plan.script is not None
    lines = plan.script.splitlines()
    first_command = next(i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert sum(line.startswith("#SBATCH") for line in lines) == 12  # RES: with gres, partition, account


def test_a_value_with_a_space_cannot_be_a_directive(tmp_path: Path) -> None:
    spaced = tmp_path / "lab runs"
    spaced.mkdir()
    with pytest.raises(ConfigError, match="cannot go on a #SBATCH line"):
        SlurmScheduler(Recorder()).plan(make_run(spaced, scheduler="slurm", max_array_size=9), 1, 3, None)
    comma = tmp_path / "a,b"  # exported in the script body, quoted: no scheduler variable list to break
    comma.mkdir()
    (plan,) = PbsScheduler(PRO, Recorder()).plan(make_run(comma, scheduler="pbs", resources={}), 1, 3, None)
    assert plan.script is not None and f"export DLCRUN_RUN={comma}/runs/RUN\n" in plan.script


def test_slurm_splits_past_max_array_size_and_chains_the_throttled_arrays(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=5, scheduler="slurm")
    runner = Recorder(
        scontrol=(0, "MaxArraySize = 2\n", ""), sbatch=[(0, "10\n", ""), (0, "11;c\n", ""), (0, "12\n", "")]
    )
    assert SlurmScheduler(runner).submit(run, 1, 5, max_running=1) == ["10", "11", "12"]
    sbatch = [c for c in runner.calls if c[0] == "sbatch"]
    scripts = [Path(c[-1]) for c in sbatch]
    assert [p.name for p in scripts] == ["001.slurm", "001-2.slurm", "001-3.slurm"]
    texts = [p.read_text() for p in scripts]
    assert [next(x for x in t.splitlines() if "--array" in x) for t in texts] == ["#SBATCH --array=0-1%1"] * 2 + [
        "#SBATCH --array=0-0%1"
    ]
    assert [[x for x in t.splitlines() if "DLCRUN_ARRAY_OFFSET" in x and x.startswith("export")] for t in texts] == [
        [],
        ["export DLCRUN_ARRAY_OFFSET=2"],
        ["export DLCRUN_ARRAY_OFFSET=4"],
    ]
    assert [c[2:-1] for c in sbatch] == [[], ["--dependency=afterany:10"], ["--dependency=afterany:11"]]


def test_slurm_a_refused_later_array_cancels_the_earlier_ones(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=3, scheduler="slurm", max_array_size=2)
    runner = Recorder(sbatch=[(0, "10\n", ""), (1, "", "sbatch: error: QOSMaxSubmitJobPerUserLimit\n")])
    with pytest.raises(SubmissionError, match="sbatch failed: sbatch: error: QOSMaxSubmitJobPerUserLimit"):
        SlurmScheduler(runner).submit(run, 1, 3, None)
    assert runner.calls[-1] == ["scancel", "10"]


def test_slurm_states_from_squeue_map_array_tasks_to_submission_array_indices(tmp_path: Path) -> None:
    """squeue's rows become (submission, array index): which manifest lines those are, batch says
    (test_status.py); array index 1 of the resubmission is manifest index 4."""
    run = make_run(tmp_path, n=6, scheduler="slurm")
    add_submission(run, "slurm", ["100"], [0, 1, 2, 3, 4, 5])
    add_submission(run, "slurm", ["200"], [1, 4])  # a resubmission: array index k -> manifest index
    squeue = "100|3|RUNNING\n100|4|PENDING\n100|5|COMPLETING\n200|1|REQUEUED\n999|0|RUNNING\n7|N/A|RUNNING\n"
    runner = Recorder(squeue=(0, squeue, ""))
    subs = run.submissions()
    assert SlurmScheduler(runner).states(run, subs) == {(1, 3): "running", (1, 4): "pending", (2, 1): "pending"}
    assert runner.calls == [["squeue", "--noheader", "--array", "--jobs=100,200", "--format=%F|%K|%T"]]
    # every array purged from the controller: not an error, nothing is live
    gone = Recorder(squeue=(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    assert SlurmScheduler(gone).states(run, subs) == {}
    down = Recorder(squeue=(1, "", "slurm_load_jobs error: Unable to contact slurm controller\n"))
    with pytest.raises(SubmissionError, match="squeue failed: .*Unable to contact"):
        SlurmScheduler(down).states(run, subs[:1])
    assert down.calls[0][3] == "--jobs=100"


def test_slurm_states_apply_the_offset_of_a_split_submission(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=5, scheduler="slurm", max_array_size=2)
    runner = Recorder(
        sbatch=[(0, "10\n", ""), (0, "11\n", ""), (0, "12\n", "")], squeue=(0, "11|1|RUNNING\n12|0|PENDING\n", "")
    )
    sched = SlurmScheduler(runner)
    number = run.next_submission_number()
    run.write_indices(number, [0, 1, 2, 3, 4])
    run.add_submission(number, "slurm", sched.submit(run, number, 5, None), [0, 1, 2, 3, 4], None)
    assert sched.states(run, run.submissions()) == {(1, 3): "running", (1, 4): "pending"}
    assert runner.calls[-1][3] == "--jobs=10,11,12"


def test_slurm_states_of_a_submission_without_its_arrays_file_take_offset_0(tmp_path: Path) -> None:
    """A run submitted by an older dlcrun has no NNN.slurm.json: its one array starts at offset 0."""
    run = make_run(tmp_path, n=3, scheduler="slurm")
    add_submission(run, "slurm", ["300"], [0, 1, 2])
    runner = Recorder(squeue=(0, "300|2|RUNNING\n", ""))
    assert SlurmScheduler(runner).states(run, run.submissions()) == {(1, 2): "running"}
    (run.path / "submissions" / "001.slurm.json").write_text("{not json")
    assert SlurmScheduler(runner).states(run, run.submissions()) == {(1, 2): "running"}
    assert any("001.slurm.json: damaged" in w for w in run.warnings.values())


def test_slurm_cancel_and_training_lines(tmp_path: Path) -> None:
    run = make_run(tmp_path, scheduler="slurm")
    runner = Recorder(sbatch=(0, "77\n", ""))
    sched = SlurmScheduler(runner)
    sched.cancel(run, ["100", "200"])
    workdir = tmp_path / "runs" / "train" / "T"
    argv = [*dlcrun_command(None), "train-task", "--workdir", str(workdir)]
    job = sched.submit_training(workdir, argv, RES, ["module load cuda"])
    assert job == "77"
    assert runner.calls == [["scancel", "100", "200"], ["sbatch", "--parsable", f"{workdir}/train.slurm"]]
    golden("train.slurm.rendered", (workdir / "train.slurm").read_text(), tmp_path)


def test_slurm_unparsable_sbatch_reply_is_an_error(tmp_path: Path) -> None:
    run = make_run(tmp_path, scheduler="slurm", max_array_size=10)
    with pytest.raises(SubmissionError, match="sbatch printed no job id"):
        SlurmScheduler(Recorder(sbatch=(0, "Submitted batch job 5\n", ""))).submit(run, 1, 3, None)


def test_parse_squeue_skips_non_array_rows() -> None:
    assert parse_squeue("5|2|running\n6|N/A|RUNNING\ngarbage\n") == [("5", 2, "RUNNING")]


# ---------------------------------------------------------------- PBS Pro and Torque


@pytest.fixture(autouse=True)
def software_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A known submitting environment: PBS jobs get PATH and friends through -v, never -V."""
    for name in ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "RCLONE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/opt/dlc/bin:/usr/bin:/bin")
    monkeypatch.setenv("VIRTUAL_ENV", "/opt/dlc")
    monkeypatch.setenv("RCLONE_CONFIG", "/lab/rclone.conf")  # a path: travels
    monkeypatch.setenv("DROPBOX_TOKEN", "secret-must-not-travel")
    monkeypatch.setenv("RCLONE_CONFIG_LAB_PASS", "secret-must-not-travel")


def test_pbs_pro_exact_qsub_line_and_golden_script(tmp_path: Path) -> None:
    run = make_run(tmp_path, scheduler="pbs", resources=RES.model_dump() | {"constraint": "gpu_model=h100"})
    runner = Recorder(qsub=(0, "5001[].pbs01\n", ""))
    assert PbsScheduler(PRO, runner).submit(run, 1, 3, max_running=2) == ["5001[].pbs01"]
    script = run.path / "submissions" / "001.pbs"
    assert runner.calls == [["qsub", str(script)]]
    text = script.read_text()
    r = str(run.path)
    assert [line for line in text.splitlines() if line.startswith("#PBS")] == [
        "#PBS -N dlcrun-RUN",
        "#PBS -J 0-2%2",
        "#PBS -r y",
        "#PBS -j oe",
        f"#PBS -o {r}/logs/",
        "#PBS -l select=1:ncpus=4:mem=16gb:ngpus=1:gpu_model=h100",
        "#PBS -l walltime=04:00:00",
        "#PBS -q gpu",
        "#PBS -A lab",
    ]
    assert "secret" not in text, "only the variables that find the software are written, never -V"
    assert "export VIRTUAL_ENV=/opt/dlc" in text and "export RCLONE_CONFIG=/lab/rclone.conf" in text
    golden("array.pbs.rendered", text, tmp_path)


def test_torque_exact_qsub_line_and_golden_script(tmp_path: Path) -> None:
    resources = {"cpus": 2, "mem": "500M", "time": "01:00:00", "gpus": 1, "constraint": "h100"}
    run = make_run(tmp_path, scheduler="torque", resources=resources)
    runner = Recorder(qsub=(0, "88[].torque01.cluster\n", ""))
    assert PbsScheduler(TORQUE, runner).submit(run, 1, 3, max_running=1) == ["88[].torque01.cluster"]
    script = run.path / "submissions" / "001.torque"
    assert runner.calls == [["qsub", str(script)]]
    text = script.read_text()
    assert [line for line in text.splitlines() if line.startswith("#PBS")] == [
        "#PBS -N dlcrun-RUN",
        "#PBS -t 0-2%1",
        "#PBS -r y",
        "#PBS -j oe",
        f"#PBS -o {run.path}/logs/",
        "#PBS -l nodes=1:ppn=2:gpus=1:h100",
        "#PBS -l mem=500mb",
        "#PBS -l walltime=01:00:00",
    ]
    golden("array.torque.rendered", text, tmp_path)


def test_pbs_pro_single_index_is_a_plain_job_and_splits_chain(tmp_path: Path) -> None:
    """PBS Pro refuses -J 0-0: one index is a plain job whose script says its index."""
    run = make_run(tmp_path, n=5, scheduler="pbs", max_array_size=2, resources={})
    replies = [(0, "1[].s\n", ""), (0, "2[].s\n", ""), (0, "3.s\n", "")]
    runner = Recorder(qsub=replies)
    assert PbsScheduler(PRO, runner).submit(run, 1, 5, max_running=2) == ["1[].s", "2[].s", "3.s"]
    first, second, third = runner.calls
    texts = [Path(call[-1]).read_text() for call in runner.calls]
    assert "#PBS -J 0-1%2" in texts[0] and first[:-1] == ["qsub"]
    assert "#PBS -J 2-3%2" in texts[1] and second[1:-1] == ["-W", "depend=afterany:1[].s"]
    assert "#PBS -J" not in texts[2] and "export PBS_ARRAY_INDEX=4" in texts[2]
    assert third[1:-1] == ["-W", "depend=afterany:2[].s"]


def test_pbs_states_of_a_split_submission_keep_each_arrays_indices(tmp_path: Path) -> None:
    """The arrays of a split submission cover ranges 0-1, 2-3 and (a plain job) 4: a subjob's
    own index is the array index, a plain job stands for its range's first."""
    run = make_run(tmp_path, n=5, scheduler="pbs", max_array_size=2, resources={})
    qstat = "Job Id: 2[3].s\n    job_state = R\nJob Id: 3.s\n    job_state = Q\nJob Id: 2[].s\n    job_state = B\n"
    runner = Recorder(qsub=[(0, "1[].s\n", ""), (0, "2[].s\n", ""), (0, "3.s\n", "")], qstat=(0, qstat, ""))
    sched = PbsScheduler(PRO, runner)
    run.write_indices(1, [0, 1, 2, 3, 4])
    run.add_submission(1, "pbs", sched.submit(run, 1, 5, None), [0, 1, 2, 3, 4], None)
    assert sched.states(run, run.submissions()) == {(1, 3): "running", (1, 4): "pending"}
    assert runner.calls[-1] == ["qstat", "-f", "-t", "1[].s", "2[].s", "3.s"]


def test_pbs_states_from_canned_qstat(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=6, scheduler="pbs")
    add_submission(run, "pbs", ["1234[].pbs01"], [0, 1, 2, 3, 4])
    add_submission(run, "pbs", ["1240.pbs01"], [5])  # a single index: a plain job
    runner = Recorder(qstat=(0, (DATA / "qstat_pro.txt").read_text(), ""))
    states = PbsScheduler(PRO, runner).states(run, run.submissions())
    assert runner.calls == [["qstat", "-f", "-t", "1234[].pbs01", "1240.pbs01"]]
    # 0 expired, 4 exiting; the plain job 1240 is array index 0 of submission 2 (manifest index 5)
    assert states == {(1, 1): "running", (1, 2): "pending", (1, 3): "pending", (2, 0): "running"}


def test_torque_states_from_canned_qstat(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=3, scheduler="torque")
    add_submission(run, "torque", ["567[].torque01.cluster"], [0, 1, 2])
    runner = Recorder(qstat=(0, (DATA / "qstat_torque.txt").read_text(), ""))
    assert PbsScheduler(TORQUE, runner).states(run, run.submissions()) == {(1, 1): "running", (1, 2): "pending"}


def test_pbs_finished_jobs_are_not_errors_but_a_down_server_is(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=2, scheduler="pbs")
    add_submission(run, "pbs", ["9[].s"], [0, 1])
    gone = Recorder(
        qstat=(35, "", "qstat: 9[].s Job has finished, use -x or -H to obtain historical job information\n")
    )
    assert PbsScheduler(PRO, gone).states(run, run.submissions()) == {}
    unknown = Recorder(
        qstat=(153, "", "qstat: Unknown Job Id Error 9[].s\n"), qdel=(153, "", "qdel: Unknown Job Id 9[].s\n")
    )
    assert PbsScheduler(TORQUE, unknown).states(run, run.submissions()) == {}
    PbsScheduler(PRO, unknown).cancel(run, ["9[].s"])
    assert unknown.calls[-1] == ["qdel", "9[].s"]
    down = Recorder(qstat=(1, "", "Connection refused\nqstat: cannot connect to server s (errno=111)\n"))
    with pytest.raises(SubmissionError, match="qstat failed"):
        PbsScheduler(PRO, down).states(run, run.submissions())


def test_pbs_training_lines(tmp_path: Path) -> None:
    workdir = tmp_path / "runs" / "train" / "T"
    runner = Recorder(qsub=(0, "31.pbs01\n", ""))
    for flavor, resources in (
        (PRO, ["#PBS -l select=1:ncpus=4:mem=16gb:ngpus=1", "#PBS -l walltime=04:00:00"]),
        (TORQUE, ["#PBS -l nodes=1:ppn=4:gpus=1", "#PBS -l mem=16gb", "#PBS -l walltime=04:00:00"]),
    ):
        argv = [*dlcrun_command(None), "train-task", "--workdir", str(workdir)]
        assert PbsScheduler(flavor, runner).submit_training(workdir, argv, RES) == "31.pbs01"
        assert runner.calls[-1] == ["qsub", f"{workdir}/train.pbs"]
        text = (workdir / "train.pbs").read_text()
        assert [line for line in text.splitlines() if line.startswith("#PBS")] == [
            "#PBS -N dlcrun-train-T",
            "#PBS -j oe",
            f"#PBS -o {workdir}/logs/",
            *resources,
            "#PBS -q gpu",
            "#PBS -A lab",
        ]
    golden("train.pbs.rendered", text, tmp_path)


def test_parse_qstat_blocks() -> None:
    text = "Job Id: 1[2].s\n    Job_Name = x\n    job_state = R\n\nJob Id: 1[3].s\n    job_state = q\n"
    assert parse_qstat(text) == [("1[2].s", "R"), ("1[3].s", "Q")]


# ---------------------------------------------------------------- shared


def test_registry_names_every_backend() -> None:
    assert {scheduler_for(n).name for n in ("local", "slurm", "pbs", "torque")} == {"local", "slurm", "pbs", "torque"}


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resources.mem '16 gigs': not a memory size"):  # refused by the settings
        SlurmScheduler(Recorder()).plan(make_run(tmp_path, resources={"mem": "16 gigs"}, max_array_size=9), 1, 3, None)


def test_edited_template_without_task_line_is_refused(tmp_path: Path) -> None:
    assert render("array.slurm", ["echo", "a b"]).count("TASK=(echo 'a b')") == 1
    broken = tmp_path / "jobs"
    broken.mkdir()
    (broken / "x.slurm").write_text("#!/bin/bash\necho no task line\n")
    with pytest.raises(ConfigError, match="TASK"):
        render(str(broken / "x.slurm"), ["true"])  # an absolute name replaces the jobs folder


def test_chunks() -> None:
    assert chunks(5, 2) == [(0, 2), (2, 2), (4, 1)]
    assert chunks(3, 1001) == [(0, 3)]
    with pytest.raises(SubmissionError):
        chunks(0, 10)


def test_top_level_jobs_folder_is_the_packaged_one() -> None:
    top = Path(__file__).resolve().parents[2] / "jobs"
    assert top.resolve() == JOBS
    assert {p.name for p in JOBS.iterdir()} >= {"array.slurm", "array.pbs", "array.torque", "train.slurm", "train.pbs"}


# ---------------------------------------------------------------- the scripts themselves, under bash

# A stand-in task: writes where it ran, then waits; on SIGTERM notes it and exits 143 as dlcrun task does.
STANDIN = """
import os, signal, sys, time
out = sys.argv[1]
def stop(signum, frame):
    open(out + ".term", "w").write("1")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open(out, "w").write(" ".join([os.environ["TMPDIR"]] + [os.environ.get(v, "-") for v in sys.argv[2:]]))
time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))
"""


def _script(tmp_path: Path, template: str, variables: list[str]) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    script = tmp_path / template
    script.write_text(render(template, [sys.executable, "-c", STANDIN, str(marker), *variables]))
    return script, marker


@pytest.mark.parametrize(
    ("template", "env", "index_var"),
    [
        (
            "array.slurm",
            {"SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "9"},
            "SLURM_ARRAY_TASK_ID",
        ),
        ("array.pbs", {"PBS_JOBID": "7[3].pbs01", "PBS_ARRAY_INDEX": "3"}, "PBS_ARRAY_INDEX"),
        ("array.torque", {"PBS_JOBID": "7[3].torque01", "PBS_ARRAYID": "3"}, "PBS_ARRAYID"),
    ],
)
def test_array_script_passes_sigterm_on_and_cleans_scratch(
    tmp_path: Path, template: str, env: dict[str, str], index_var: str
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    scratch_root = tmp_path / "node-local"
    scratch_root.mkdir()
    script, marker = _script(tmp_path, template, [index_var])
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    environ |= env | {"DLCRUN_RUN": str(run_dir), "DLCRUN_SUBMISSION": "1", "TMPDIR": str(scratch_root)}
    environ["STANDIN_SLEEP"] = "60"
    proc = subprocess.Popen(["bash", str(script)], env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
        time.sleep(0.05)
    scratch, seen_index = marker.read_text().split()
    assert Path(scratch).parent == scratch_root and Path(scratch).is_dir() and seen_index == "3"
    proc.send_signal(signal.SIGTERM)  # to the batch shell only, as --signal=B:TERM does
    assert proc.wait(timeout=30) == 143
    assert Path(str(marker) + ".term").exists(), "the task got the SIGTERM"
    assert not list(scratch_root.iterdir()), "scratch removed on exit"
    if template != "array.slurm":  # PBS copies -o files at the end: the script logs to the run dir itself
        (log,) = (run_dir / "logs").iterdir()
        assert log.name == "7_3.out" and "dlcrun: job" in log.read_text()


def test_array_script_exit_status_is_the_tasks(tmp_path: Path) -> None:
    script, marker = _script(tmp_path, "array.slurm", [])
    environ = dict(os.environ, DLCRUN_RUN=str(tmp_path), DLCRUN_SUBMISSION="1", TMPDIR=str(tmp_path), STANDIN_EXIT="3")
    done = subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and marker.exists()
    missing = subprocess.run(["bash", str(script)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert missing.returncode != 0 and "DLCRUN_RUN" in missing.stderr


def test_pbs_pro_plain_job_script_runs_index_zero(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    script, marker = _script(tmp_path, "array.pbs", ["PBS_ARRAY_INDEX"])
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PBS_")}
    environ |= {"DLCRUN_RUN": str(tmp_path), "DLCRUN_SUBMISSION": "1", "PBS_JOBID": "12.pbs01", "TMPDIR": str(tmp_path)}
    subprocess.run(["bash", str(script)], env=environ, check=True, timeout=60)
    assert marker.read_text().split()[1] == "0"
    assert (tmp_path / "logs" / "12_0.out").is_file()


def test_render_quotes_every_word(tmp_path: Path) -> None:
    text = render("array.slurm", ["apptainer", "exec", "--bind", "/a b,/c", "img.sif", "dlcrun", "task"])
    line = next(line for line in text.splitlines() if line.startswith("TASK=("))
    assert shlex.split(line[len("TASK=(") : -1]) == [
        "apptainer",
        "exec",
        "--bind",
        "/a b,/c",
        "img.sif",
        "dlcrun",
        "task",
    ]


def test_cancel_marks_only_the_arrays_that_still_had_work(tmp_path: Path) -> None:
    """Index 0 died hard in submission 1 (lost); index 1 waits in submission 2, a live local job
    (a real process, its job id naming its PID, start time and boot as the local scheduler's do).
    `cancel` stops it: index 1 reads cancelled, index 0 stays lost."""
    from dlcrun import batch
    from dlcrun.files import write_json
    from dlcrun.ledger import Record
    from dlcrun.schedulers.local import job_id

    run = make_run(tmp_path, n=2)
    add_submission(run, "local", ["local-999999999"], [0])
    run.write_record(Record(index=0, video="/videos/v0.mp4", state="running", attempts=1))
    waiting = subprocess.Popen(["sleep", "60"], start_new_session=True)
    number = add_submission(run, "local", [job_id(waiting.pid)], [1])
    write_json(run.path / "submissions" / f"{number:03d}.local.json", {"0": "pending"})
    try:
        assert batch.status(run).states == {0: "lost", 1: "queued"}
        assert batch.cancel(run) == 1
        assert waiting.wait(timeout=10) == -signal.SIGTERM
        assert batch.status(run).states == {0: "lost", 1: "cancelled"}
        assert [s.cancelled is not None for s in run.submissions()] == [False, True]
    finally:
        waiting.kill()
