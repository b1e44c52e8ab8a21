"""A real Slurm: a single-node cluster on localhost, started for this session, runs real arrays.

slurmctld, slurmd and a private munged (its own key and socket) run from a fresh temporary
directory with a minimal slurm.conf (no accounting database: status must not need one) and are
stopped by PID at the end. Each array index runs DeepLabCut through jobs/array.slurm exactly as
on a cluster. Skips, saying why, where slurm-wlm/munge are missing or not root
(``make system-deps`` installs them as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import waiting
from typer.testing import CliRunner

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.settings import load_settings

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
SMALL = {"cpus": 1, "mem": "700M", "time": "00:15:00"}  # fits the one 2-CPU node twice


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory_mb() -> int:
    """A little under this machine's memory: slurmd drains a node that has less than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 2000


def _pids(paths: list[Path]) -> list[int]:
    return [int(p.read_text().split()[0]) for p in paths if p.is_file() and p.read_text().strip()]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """slurm.conf of a running one-node cluster; SLURM_CONF and PATH set for clients and jobs."""
    missing = [b for b in DAEMONS + CLIENTS if _which(b) is None]
    if missing:
        pytest.skip(f"slurm-wlm/munge not installed ({', '.join(missing)} missing); as root: make system-deps")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster runs its daemons as root; run the tests as root")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "munge-key"):
        (d / sub).mkdir()
    (d / "munge-key").chmod(0o700)
    key = d / "munge-key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge.sock"
    conf = d / "slurm.conf"
    conf.write_text(
        f"""ClusterName=dlcruntest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=10
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxArraySize=1001
NodeName=localhost CPUs={os.cpu_count() or 1} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    )
    pid_files = [d / "munged.pid", d / "slurmctld.pid", d / "slurmd.pid"]
    env = {**os.environ, "SLURM_CONF": str(conf)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        # Jobs inherit this environment (--export=ALL), without any `dlcrun` on PATH (a venv used
        # without activating it): the job scripts call the one under test by its absolute path.
        mp.setenv("PATH", os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not _has_dlcrun(d)))
        try:
            subprocess.run(
                [
                    _which("munged"),
                    "--force",
                    f"--socket={sock}",
                    f"--key-file={key}",
                    f"--pid-file={d}/munged.pid",
                    f"--log-file={d}/log/munged.log",
                    f"--seed-file={d}/munged.seed",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            subprocess.run([_which("slurmctld"), "-f", str(conf)], check=True, env=env, capture_output=True, timeout=30)
            subprocess.run([_which("slurmd"), "-f", str(conf)], check=True, env=env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 60
            while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout:
                if time.monotonic() > deadline:
                    logs = "\n".join(
                        (d / "log" / n).read_text()[-2000:]
                        for n in ("slurmctld.log", "slurmd.log")
                        if (d / "log" / n).exists()
                    )
                    pytest.fail(f"local Slurm node not idle after 60 s:\n{logs}")
                time.sleep(0.5)
            yield conf
        finally:
            subprocess.run(["scancel", "--full", "--partition=debug"], capture_output=True)
            _wait_empty(timeout=30)
            pids = _pids(pid_files)
            for pid in reversed(pids):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 20
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_empty(timeout: float, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    argv = ["squeue", "--noheader"] + ([f"--name={name}"] if name else [])
    while time.monotonic() < deadline:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or not done.stdout.strip():
            return
        time.sleep(0.5)


def start(tmp_path: Path, project: Path, videos: list[Path], **overrides: object) -> Run:
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=project,
        dest=str(tmp_path / "keypoints"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        scheduler="slurm",
        resources=SMALL,
        device="cpu",  # the test node has no GPU: said, or submit refuses a cluster array asking for none
        **overrides,
    )
    run, _ = batch.start_run(manifest, settings)
    return run


def follow(run: Run, timeout: float = 600) -> tuple[batch.Status, int]:
    """Poll until every index has ended; also the most indices squeue ever showed running."""
    most = 0

    def count_running(current: batch.Status) -> None:
        nonlocal most
        most = max(most, sum(s == "running" for s in batch.live_states(run, run.submissions()).values()))

    return waiting.wait_for(run, timeout, each=count_running), most


def _has_dlcrun(folder: str) -> bool:
    return bool(folder) and os.access(os.path.join(folder, "dlcrun"), os.X_OK)


def test_array_throttled_failure_in_status_resubmit_reruns_only_it(
    slurm_cluster: Path, tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4", "c.mp4"])
    videos[2].write_bytes(os.urandom(4096))  # c.mp4: corrupt
    prelude = ["export DLCRUN_TEST_PRELUDE=1", 'echo "prelude ran with ${UNSET_IN_PRELUDE} unset allowed"']
    run = start(tmp_path, demo_project, videos, max_running=1, prelude=prelude)
    first_settings, first_model = run.settings, run.model
    sub = batch.submit(run)
    assert len(sub.job_ids) == 1 and sub.job_ids[0].isdigit() and sub.scheduler == "slurm"
    # The directive-style script was submitted as it is: what Slurm holds came from its #SBATCH lines.
    assert shutil.which("dlcrun") is None, "no dlcrun on PATH: the script names its own"
    held = subprocess.run(["scontrol", "show", "job", sub.job_ids[0]], capture_output=True, text=True, check=True)
    assert f"JobName=dlcrun-{run.id}"[:60] in held.stdout and "TimeLimit=00:15:00" in held.stdout, held.stdout
    final, most_running = follow(run)
    assert final.states == {0: "done", 1: "done", 2: "failed"}
    assert "cannot open as video" in final.records[2].error

    # Throttle %1 on a node with room for two: never two at once, by squeue and by the records.
    assert most_running <= 1
    spans = sorted((r.started, r.finished) for r in final.records.values())
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:])), spans
    job = sub.job_ids[0]
    assert {r.job_id for r in final.records.values()} == {f"{job}_{k}" for k in range(3)}
    for k in range(3):
        log = (run.path / "logs" / f"{job}_{k}.out").read_text()
        assert "dlcrun: job" in log and "prelude ran with  unset allowed" in log
    assert not list((tmp_path / "scratch").iterdir())

    shown = CliRunner().invoke(app, ["status", str(run.path)])
    assert shown.exit_code == 0, shown.output
    assert "failed" in shown.output and "#2" in shown.output and "c.mp4" in shown.output

    before = {i: run.record(i) for i in (0, 1)}
    shutil.copy(videos[0], videos[2])  # the user replaces the broken file
    bad = CliRunner().invoke(app, ["resubmit", str(run.path), "--gpus", "-1"])
    assert bad.exit_code == 1 and "--gpus -1" in bad.output and len(run.submissions()) == 1, bad.output
    again = CliRunner().invoke(app, ["resubmit", str(run.path), "--time", "00:20:00", "--max-running", "2"])
    assert again.exit_code == 0, again.output
    (first, second) = run.submissions()
    assert second.indices == [2] and second.job_ids != first.job_ids
    shown = subprocess.run(["scontrol", "show", "job", second.job_ids[0]], capture_output=True, text=True, check=True)
    assert "TimeLimit=00:20:00" in shown.stdout, shown.stdout  # what Slurm itself holds for the new array
    assert run.settings.resources.time == "00:20:00" and run.settings.max_running == 2
    assert run.settings.batch_size == first_settings.batch_size and run.model == first_model
    final, _ = follow(run)
    assert final.counts["done"] == 3
    assert {i: run.record(i) for i in (0, 1)} == before
    assert run.record(2).attempts == 2 and run.record(2).job_id == f"{second.job_ids[0]}_0"


def test_videos_per_task_array(slurm_cluster: Path, tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """--videos-per-task 2 over 3 videos: an array of 2 indices; index 0 analyses lines 0 and 1
    with one model load; squeue's state of an array index covers both of its lines."""
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4", "c.mp4"], frames=30)
    run = start(tmp_path, demo_project, videos, max_running=1, videos_per_task=2)
    sub = batch.submit(run)
    job = sub.job_ids[0]
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 300
    while not seen and time.monotonic() < deadline:
        seen = {i: s for i, s in batch.live_states(run, run.submissions()).items() if s == "running"}
        time.sleep(0.2)
    assert set(seen) in ({0, 1}, {2}), seen
    final, _ = follow(run)
    assert final.counts["done"] == 3
    assert [final.records[i].job_id for i in range(3)] == [f"{job}_0", f"{job}_0", f"{job}_1"]
    assert final.records[0].seconds["load"] > 0 and final.records[1].seconds["load"] == 0
    assert not list((tmp_path / "scratch").iterdir())


def test_cancel_stops_a_running_array(
    slurm_cluster: Path, tmp_path: Path, demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlcrun.demo import write_video

    node_local = tmp_path / "node-local"  # what the job script takes as $TMPDIR
    node_local.mkdir()
    monkeypatch.setenv("TMPDIR", str(node_local))
    long = write_video(tmp_path / "videos" / "long.mp4", frames=600)
    short = write_video(tmp_path / "videos" / "short.mp4", frames=8)
    run = start(tmp_path, demo_project, [long, short], max_running=1)
    sub = batch.submit(run)
    deadline = time.monotonic() + 180
    while not list((tmp_path / "scratch").glob("*/long.mp4")):  # staged: inference is next
        assert time.monotonic() < deadline, batch.status(run).counts
        time.sleep(0.2)
    time.sleep(2)
    assert batch.status(run).states == {0: "running", 1: "queued"}

    cancelled = CliRunner().invoke(app, ["cancel", str(run.path)])
    assert cancelled.exit_code == 0 and "2 indices were queued or running" in cancelled.output
    _wait_empty(timeout=60, name=f"dlcrun-{run.id}")
    final = batch.status(run)
    assert final.states[0] == "interrupted" and "signal 15" in final.records[0].error
    assert final.states[1] == "cancelled" and 1 not in final.records  # cancelled before it started
    shown = CliRunner().invoke(app, ["status", str(run.path)]).output
    assert re.search(r"^ *cancelled +1 *$", shown, re.M) and "rerun them with" in shown, shown
    assert not (tmp_path / "keypoints").exists() or not any((tmp_path / "keypoints").iterdir())
    assert not list((tmp_path / "scratch").iterdir())
    deadline = time.monotonic() + 20
    while list(node_local.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(node_local.iterdir()), "the job script removes its scratch on exit"
    assert "CANCELLED" in (run.path / "logs" / f"{sub.job_ids[0]}_0.out").read_text()


def test_dry_run_keeps_script_and_sbatch_line_and_submits_nothing(
    slurm_cluster: Path, tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4"])
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    args = [
        "submit",
        str(manifest),
        "--project",
        str(demo_project),
        "--dest",
        str(tmp_path / "out"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--scheduler",
        "slurm",
        "--max-running",
        "5",
        "--gpus",
        "2",
        "--dry-run",
    ]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    (kept,) = (tmp_path / "runs").glob("*/dry-run.json")
    script = (kept.parent / "submissions" / "001.slurm").read_text()
    assert "#SBATCH --array=0-1%5" in script and "#SBATCH --gres=gpu:2" in script and " task --run " in script
    commands = (kept.parent / "submissions" / "001.submit.sh").read_text()
    assert commands.rstrip().endswith(f"sbatch --parsable {kept.parent / 'submissions' / '001.slurm'}")
    assert f"  script    {kept.parent / 'submissions' / '001.slurm'}" in shown.output
    assert not list((kept.parent / "submissions").glob("*.json")), "nothing was queued"
    # Another test's array may still be ending: only this run's job name counts.
    queue = subprocess.run(["squeue", "--noheader", "--format=%j"], capture_output=True, text=True, check=True)
    assert f"dlcrun-{kept.parent.name}" not in queue.stdout.split()


def test_multi_animal_array_writes_dlcs_tracks(
    slurm_cluster: Path, tmp_path: Path, multianimal_project: Path, animals_clip: Path
) -> None:
    """A multi-animal project through a real Slurm array: each index writes what
    analyze_videos(auto_track=True) writes (tracks last) at dest, and movement reads the tracks
    with both individuals."""
    from movement_check import load_with_movement, movement_python

    from dlcrun.tracking import names

    videos = [tmp_path / "videos" / n for n in ("cage1.mp4", "cage2.mp4")]
    for video in videos:
        video.parent.mkdir(exist_ok=True)
        shutil.copy(animals_clip, video)
    run = start(tmp_path, multianimal_project, videos, max_running=2)
    batch.submit(run)
    final, _ = follow(run)
    assert final.counts["done"] == 2, {i: r.error for i, r in final.records.items()}
    scorer = run.model["scorer"]
    for i, video in enumerate(videos):
        record = final.records[i]
        assert [Path(o.uri).name for o in record.outputs] == names(video.stem + scorer, "_el", False)
        assert set(record.quality["bodyparts"]) == {
            f"{a}/{b}" for a in ("mouse1", "mouse2") for b in run.model["bodyparts"]
        }
    if not movement_python().is_file():
        pytest.skip("no movement venv here: make install-movement (the tracks were checked above)")
    # movement's from_dlc_file reads key df_with_missing only; DLC's tracks go through its DataFrame reader
    loaded = load_with_movement(Path(final.records[0].outputs[-1].uri), reader="dataframe")
    assert loaded["individuals"] == ["mouse1", "mouse2"] and loaded["n_frames"] > 0


def test_train_job_writes_a_snapshot(
    slurm_cluster: Path, tmp_path: Path, demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / demo_project.name
    shutil.copytree(demo_project, project)
    for snapshot in project.glob("dlc-models-pytorch/*/*/train/snapshot-*.pt"):
        snapshot.unlink()  # nothing to start from: random initial weights, nothing downloaded
    for key, value in SMALL.items():
        monkeypatch.setenv(f"DLCRUN_RESOURCES__{key.upper()}", str(value))
    shown = CliRunner().invoke(
        app,
        [
            "train",
            "--project",
            str(project),
            "--scheduler",
            "slurm",
            "--epochs",
            "1",
            "--gpus",
            "0",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert shown.exit_code == 0, shown.output
    (workdir,) = (tmp_path / "runs" / "train").iterdir()
    deadline = time.monotonic() + 600
    while not (workdir / "result.json").exists():
        assert time.monotonic() < deadline, "training job did not finish"
        time.sleep(1)
    import json

    result = json.loads((workdir / "result.json").read_text())
    assert result["state"] == "done", result
    snapshot = Path(result["snapshot"])
    assert snapshot.name == "snapshot-001.pt" and snapshot.is_relative_to(project)
    assert (workdir / "init.pt").is_file()
    (log,) = (workdir / "logs").glob("train_*.out")
    assert "Epoch 1/1" in log.read_text()
    assert result["job_id"] == log.stem.removeprefix("train_")
    assert result["selected"]["snapshot"] == snapshot.name, "the job evaluated and selected its snapshot"
    from dlcrun.engines import pin_model

    assert Path(pin_model(project).snapshot) == snapshot.resolve(), "submit pins the trained snapshot"
