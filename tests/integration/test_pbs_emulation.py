"""PBS Pro and Torque through an emulation: no PBS server can run here.

``EmulatedPbs`` stands in for the qsub/qstat/qdel clients (it is the command runner the PBS
backend is given) and plays the server and MoM: qsub reads the script's ``#PBS`` directives as
qsub does (up to the first command; the command line's options after them), then runs the
rendered job script under bash once per array index, as pbs_mom does, in a login shell's
environment (not the test's: the script must find dlcrun itself), with ``PBS_ARRAY_INDEX`` (PBS
Pro) or ``PBS_ARRAYID`` (Torque), ``PBS_JOBID``, a per-job ``TMPDIR`` and any ``-v``/``-V``
environment, at most ``%N`` at a time; qstat answers in
``qstat -f -t`` form. Everything on dlcrun's side is real: the registry, batch.submit/status/
resubmit, the job scripts and DeepLabCut in every index.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import waiting

from dlcrun import batch
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.schedulers import register
from dlcrun.schedulers.pbs import PRO, TORQUE, Flavor, PbsScheduler
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow

VALUED = {"-N", "-J", "-t", "-r", "-j", "-o", "-e", "-v", "-l", "-q", "-A", "-W"}


class EmulatedPbs:
    """Emulation of a PBS Pro or Torque server and its MoM, driven through qsub/qstat/qdel argv."""

    def __init__(self, torque: bool, node: Path):
        self.torque = torque
        self.node = node  # where MoM makes each job's TMPDIR
        self.sequence = 700
        self.calls: list[list[str]] = []
        self.states: dict[str, str] = {}  # subjob id -> Q / R / F
        self.lock = threading.Lock()

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        handler = {"qsub": self.qsub, "qstat": self.qstat, "qdel": self.qdel}[argv[0]]
        rc, out, err = handler(argv[1:])
        return subprocess.CompletedProcess(argv, rc, out, err)

    def qsub(self, args: list[str]) -> tuple[int, str, str]:
        opts: dict[str, list[str]] = {}
        it = iter([*directives(Path(args[-1])), *args])
        script = ""
        for word in it:
            if word in VALUED:
                opts.setdefault(word, []).append(next(it))
            elif word == "-V":
                opts["-V"] = []
            else:
                script = word
        array_flag = "-t" if self.torque else "-J"
        if (self.torque and "-J" in opts) or (not self.torque and "-t" in opts):
            return 2, "", f"qsub: invalid option -- '{'J' if self.torque else 't'}'\n"
        spec = opts.get(array_flag, [None])[0]
        indices: list[int | None] = [None]
        limit = 0
        if spec is not None:
            span, _, most = spec.partition("%")
            first, _, last = span.partition("-")
            if not self.torque and not last:
                return 2, "", "qsub: illegal -J value\n"
            indices = list(range(int(first), int(last or first) + 1))
            limit = int(most or 0)
        self.sequence += 1
        seq = self.sequence
        job = f"{seq}[].emu" if spec is not None else f"{seq}.emu"
        variables = dict(v.split("=", 1) for v in ",".join(opts.get("-v", [])).split(",") if v)
        login = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}  # a login shell's
        env = {**(os.environ if "-V" in opts else login), **variables}
        ids = [f"{seq}[{i}].emu" if i is not None else job for i in indices]
        with self.lock:
            self.states.update((i, "Q") for i in ids)
        out_dir = Path(opts["-o"][0])
        thread = threading.Thread(
            target=self._run, args=(script, indices, ids, env, out_dir, opts["-N"][0], limit or len(ids)), daemon=True
        )
        thread.start()
        return 0, job + "\n", ""

    def _run(
        self,
        script: str,
        indices: list[int | None],
        ids: list[str],
        env: dict[str, str],
        out_dir: Path,
        name: str,
        limit: int,
    ) -> None:
        pending = list(zip(indices, ids))
        running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        while pending or running:
            while pending and len(running) < limit:
                index, job = pending.pop(0)
                sub_env = dict(env, PBS_JOBID=job, PBS_JOBNAME=name, PBS_O_WORKDIR=os.getcwd())
                if index is not None:
                    sub_env["PBS_ARRAYID" if self.torque else "PBS_ARRAY_INDEX"] = str(index)
                tmpdir = Path(tempfile.mkdtemp(prefix="pbs.", dir=self.node))  # MoM's per-job TMPDIR
                sub_env["TMPDIR"] = str(tmpdir)
                log = out_dir / f"{name}.o{job.split('.')[0]}"
                with open(log, "ab") as fh:
                    proc = subprocess.Popen(
                        ["bash", script], env=sub_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                    )
                running[job] = (proc, tmpdir)
                with self.lock:
                    self.states[job] = "R"
            time.sleep(0.2)
            for job, (proc, tmpdir) in list(running.items()):
                if proc.poll() is not None:
                    shutil.rmtree(tmpdir, ignore_errors=True)
                    del running[job]
                    with self.lock:
                        self.states[job] = "F"

    def qstat(self, args: list[str]) -> tuple[int, str, str]:
        assert args[:2] == ["-f", "-t"], args
        blocks, errors = [], []
        finished = "C" if self.torque else "X"
        with self.lock:
            for wanted in args[2:]:
                seq = wanted.split("[")[0].split(".")[0]
                mine = {j: s for j, s in self.states.items() if j.split("[")[0].split(".")[0] == seq}
                if not mine or all(s == "F" for s in mine.values()):
                    errors.append(f"qstat: Unknown Job Id {wanted}")  # no job history kept
                    continue
                for job, state in mine.items():
                    blocks.append(
                        f"Job Id: {job}\n    Job_Name = x\n    job_state = {finished if state == 'F' else state}\n"
                    )
        return (153 if errors else 0), "\n".join(blocks), "\n".join(errors)

    def qdel(self, args: list[str]) -> tuple[int, str, str]:
        return 0, "", ""


def directives(script: Path) -> list[str]:
    """The words of a script's #PBS lines, read as qsub reads them: until the first command."""
    words: list[str] = []
    for line in script.read_text().splitlines()[1:]:
        if line.startswith("#PBS"):
            words += shlex.split(line[len("#PBS") :])
        elif line.strip() and not line.startswith("#"):
            break
    return words


def emulated(flavor: Flavor, node: Path) -> tuple[str, EmulatedPbs]:
    """Register '<flavor>-emulation' (the registry's public door) bound to one emulated server."""
    node.mkdir()
    server = EmulatedPbs(torque=flavor is TORQUE, node=node)
    name = f"{flavor.name}-emulation"
    register(name)(lambda: PbsScheduler(replace(flavor, name=name), runner=server))
    return name, server


def start(tmp_path: Path, project: Path, videos: list[Path], scheduler: str, **overrides: object) -> Run:
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=project,
        dest=str(tmp_path / "keypoints"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        scheduler=scheduler,
        **overrides,
    )
    run, _ = batch.start_run(manifest, settings)
    return run


def wait_for(run: Run, timeout: float = 600) -> tuple[batch.Status, set[str]]:
    """The final status, and every state status showed on the way."""
    seen: set[str] = set()
    final = waiting.wait_for(run, timeout, each=lambda current: seen.update(current.states.values()))
    return final, seen


@pytest.fixture
def path_without_dlcrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `dlcrun` on PATH, the one the job scripts are given included (a venv used without
    activating it, as on a real cluster): the scripts call dlcrun by its absolute path."""
    kept = [d for d in os.environ["PATH"].split(os.pathsep) if d and not os.access(os.path.join(d, "dlcrun"), os.X_OK)]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    assert shutil.which("dlcrun") is None


def test_pbs_pro_array_emulation_failure_then_single_index_resubmit(
    tmp_path: Path, demo_project: Path, tiny_videos, path_without_dlcrun: None
) -> None:
    """PBS Pro emulation: -J array with %2, PBS_ARRAY_INDEX; a one-index resubmit is a plain job."""
    name, server = emulated(PRO, tmp_path / "node")
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4", "c.mp4"])
    videos[1].write_bytes(os.urandom(4096))
    run = start(tmp_path, demo_project, videos, name, max_running=2)
    sub = batch.submit(run)
    assert sub.job_ids == ["701[].emu"] and sub.scheduler == name
    (qsub,) = server.calls
    assert qsub == ["qsub", str(run.path / "submissions" / "001.pbs-emulation")]  # all else is in the script
    words = directives(Path(qsub[-1]))
    assert words[words.index("-J") + 1] == "0-2%2"
    final, seen = wait_for(run)
    assert final.states == {0: "done", 1: "failed", 2: "done"}
    assert "running" in seen  # qstat's view reached status while indices ran
    assert {r.job_id for r in final.records.values()} == {f"701[{k}].emu" for k in range(3)}
    for k in range(3):
        assert "dlcrun: job 701[" in (run.path / "logs" / f"701_{k}.out").read_text()

    shutil.copy(videos[0], videos[1])
    again = batch.resubmit(run)
    assert again is not None and again.indices == [1] and again.job_ids == ["702.emu"]
    plain = server.calls[-1]
    assert plain[0] == "qsub" and "-J" not in directives(Path(plain[-1]))
    assert "export PBS_ARRAY_INDEX=0\n" in Path(plain[-1]).read_text()
    final, _ = wait_for(run)
    assert final.counts["done"] == 3 and run.record(1).attempts == 2
    assert not list((tmp_path / "scratch").iterdir())


def test_torque_array_emulation(tmp_path: Path, demo_project: Path, tiny_videos, path_without_dlcrun: None) -> None:
    """Torque emulation: -t array with %1 and PBS_ARRAYID."""
    name, server = emulated(TORQUE, tmp_path / "node")
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4"])
    run = start(tmp_path, demo_project, videos, name, max_running=1)
    sub = batch.submit(run)
    (qsub,) = server.calls
    words = directives(Path(qsub[-1]))
    assert words[words.index("-t") + 1] == "0-1%1" and "-J" not in words
    final, seen = wait_for(run)
    assert final.states == {0: "done", 1: "done"}
    assert "queued" in seen  # index 1 waited behind the slot limit
    assert [p.name for p in sorted((tmp_path / "keypoints").glob("*.h5"))] == [
        f"a{run.model['scorer']}.h5",
        f"b{run.model['scorer']}.h5",
    ]
    assert {r.job_id for r in final.records.values()} == {f"{sub.job_ids[0].split('[')[0]}[{k}].emu" for k in range(2)}


def test_refused_submission_leaves_no_run_directory(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """Not an emulation: the real qsub is absent here, so the submit fails and nothing is kept."""
    from typer.testing import CliRunner

    from dlcrun.cli import app

    if shutil.which("qsub"):
        pytest.skip("qsub is installed here; this test needs it absent")
    videos = tiny_videos(tmp_path / "videos", ["a.mp4"])
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    shown = CliRunner().invoke(
        app,
        [
            "submit",
            str(manifest),
            "--project",
            str(demo_project),
            "--dest",
            str(tmp_path / "out"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--scheduler",
            "pbs",
            "--device",
            "cpu",  # no GPU asked for: said, or submit refuses before it reaches qsub
        ],
    )
    assert shown.exit_code == 1 and "qsub: command not found" in shown.output
    assert not list((tmp_path / "runs").iterdir())
