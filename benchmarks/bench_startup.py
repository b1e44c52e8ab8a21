"""Fixed start-up: ``dlcrun submit --dry-run`` of 1,000 local videos, and an array index's start to
its first forward pass, each as whole processes on the real openfield project.

1. **submit**: a manifest of ``--videos`` hard links of one real video (local storage), submitted
   with ``--dry-run`` for Slurm (``DLCRUN_MAX_ARRAY_SIZE`` set, so no ``scontrol`` is asked) and
   for the local scheduler, ``--repeat`` times each: wall seconds from spawning the process to
   its exit.
2. **task**: ``dlcrun task --run R --index 0`` on a one-video run (made by ``batch.start_run``,
   nothing queued), instrumented from outside dlcrun's code: the child marks the time the model
   load starts and ends and, by a forward pre-hook on DLC's model, the first forward pass. Run
   twice over: as a job runs it, and with torch and DeepLabCut imported before the clock's
   "after imports" mark, which gives the issue's "task start to first forward after imports";
   with ``--fetch-seconds S``, once more with the video's fetch made S seconds longer (a download
   from Dropbox or an rclone remote), which the model load overlaps.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_startup.py              # openfield from ../shared
    PYTHONPATH=src .venv/bin/python benchmarks/bench_startup.py --profile    # + cProfile's top entries

Needs DeepLabCut (``make install``) and ``../shared/fixtures/openfield``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "openfield"

# Runs in the child process: marks, then dlcrun's own CLI as the job script runs it.
CHILD = r"""
import json, os, sys, time
marks = {"python": time.time()}
out, argv = sys.argv[1], sys.argv[2:]
if os.environ.get("BENCH_PREIMPORT"):
    import torch, cv2, pandas, tables  # noqa: F401
    import deeplabcut.pose_estimation_pytorch.apis.utils  # noqa: F401
    import deeplabcut.pose_estimation_pytorch.apis.videos  # noqa: F401
    import dlcrun.engines.pytorch_pipeline  # noqa: F401
    marks["imported"] = time.time()
from dlcrun.engines import pytorch as engine

if os.environ.get("BENCH_FETCH_SECONDS"):  # a download's time (Dropbox, rclone), on local storage
    from dlcrun.storage.local import LocalStorage

    fetch = LocalStorage.fetch

    def slow_fetch(self, uri, local):
        time.sleep(float(os.environ["BENCH_FETCH_SECONDS"]))
        return fetch(self, uri, local)

    LocalStorage.fetch = slow_fetch

load = engine.PytorchAnalyzer.__init__

def timed_load(self, *args, **kwargs):
    marks.setdefault("load_start", time.time())
    load(self, *args, **kwargs)
    marks.setdefault("load_end", time.time())
    self.pipeline.model.register_forward_pre_hook(first_forward)

def first_forward(module, inputs):  # returns None: the inputs go on unchanged
    marks.setdefault("first_forward", time.time())

engine.PytorchAnalyzer.__init__ = timed_load
sys.argv = ["dlcrun", *argv]
from dlcrun.cli import main
try:
    main()
except SystemExit as exc:
    marks["exit"] = exc.code
marks["end"] = time.time()
with open(out, "w") as fh:
    json.dump(marks, fh)
"""


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:6])}...: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return seconds, done


def summary(values: list[float]) -> str:
    return f"min {min(values):6.2f}  median {statistics.median(values):6.2f}  max {max(values):6.2f} s"


def project_for(args: argparse.Namespace, work: Path) -> Path:
    if args.project is not None:
        return args.project.resolve()
    from dlcrun.demo import project_from_example

    cached = work / "project"
    found = next(cached.glob("*/config.yaml"), None) if cached.is_dir() else None
    if found is not None:
        return found.parent
    print("building the openfield project (DLC create_training_dataset, random-initialised snapshot)...")
    return project_from_example(FIXTURE, cached)


def manifest_of_links(video: Path, folder: Path, count: int) -> Path:
    """``count`` hard links of ``video`` (a copy when linking is refused), one manifest line each."""
    folder.mkdir(parents=True, exist_ok=True)
    first = folder / "v00000.mp4"
    if not first.exists():
        shutil.copy2(video, first)
    lines = []
    for i in range(count):
        path = folder / f"v{i:05d}.mp4"
        if not path.exists():
            try:
                os.link(first, path)
            except OSError:
                shutil.copy2(first, path)
        lines.append(str(path))
    manifest = folder.parent / f"batch{count}.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def bench_submit(args: argparse.Namespace, project: Path, work: Path) -> None:
    manifest = manifest_of_links(args.video, work / "videos", args.videos)
    base = [sys.executable, "-m", "dlcrun", "submit", str(manifest), "--dry-run", "--project", str(project)]
    base += ["--dest", str(work / "keypoints"), "--runs-dir", str(work / "runs"), "--device", "cpu"]
    print(f"\nsubmit --dry-run, {args.videos} local videos, whole process ({args.repeat} runs after one warm-up)")
    for scheduler, env in (("slurm", {"DLCRUN_MAX_ARRAY_SIZE": "10000"}), ("local", {})):
        argv = base + ["--scheduler", scheduler]
        run(argv, env)  # warm-up: the page cache, .pyc files
        times = [run(argv, env)[0] for _ in range(args.repeat)]
        print(f"  {scheduler:6s} {summary(times)}")
        if args.profile:
            profile(argv, env, work / f"submit-{scheduler}.prof")
    shutil.rmtree(work / "runs", ignore_errors=True)


def clip(video: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``video``, re-encoded: a task's fixed costs, not its frames."""
    import cv2

    if dst.exists():
        return dst
    cap = cv2.VideoCapture(str(video))
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 30, size)
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        out.write(frame)
    out.release()
    cap.release()
    return dst


def task_run(project: Path, work: Path, video: Path) -> Path:
    from dlcrun import batch
    from dlcrun.settings import load_settings

    manifest = manifest_of_links(video, work / "task-videos", 1)
    settings = load_settings(
        None,
        project=project,
        dest=str(work / "task-keypoints"),
        runs_dir=work / "task-runs",
        scheduler="local",
        device="cpu",
        scratch=work / "scratch",
    )
    run_, _ = batch.start_run(manifest, settings)
    return run_.path


def bench_task(args: argparse.Namespace, project: Path, work: Path) -> None:
    video = clip(args.video, work / f"clip{args.frames}.mp4", args.frames)
    print(f"\ntask start to first forward, one {args.frames}-frame clip of {args.video.name}, CPU ({args.repeat} runs)")
    rows: dict[str, list[float]] = {}
    variants = [("as a job runs it", {}), ("imports first", {"BENCH_PREIMPORT": "1"})]
    if args.fetch_seconds:
        variants.append((f"a {args.fetch_seconds:g} s download", {"BENCH_FETCH_SECONDS": str(args.fetch_seconds)}))
    for label, env in variants:
        for k in range(args.repeat + 1):  # the first is a warm-up
            run_path = task_run(project, work, video)
            marks_path = work / "marks.json"
            start = time.time()
            run([sys.executable, "-c", CHILD, str(marks_path), "task", "--run", str(run_path), "--index", "0"], env)
            marks = json.loads(marks_path.read_text())
            if marks.get("exit"):
                raise SystemExit(f"dlcrun task exited {marks['exit']}: see {run_path}/records and run it by hand")
            shutil.rmtree(work / "task-keypoints", ignore_errors=True)
            shutil.rmtree(work / "task-runs", ignore_errors=True)
            if k == 0:
                continue
            after = marks.get("imported", marks["python"])
            for name, seconds in (
                ("interpreter up", marks["python"] - start),
                ("torch + DLC imports", marks["imported"] - marks["python"] if "imported" in marks else 0.0),
                ("start -> model load starts", marks["load_start"] - after),
                ("model load", marks["load_end"] - marks["load_start"]),
                ("load -> first forward", marks["first_forward"] - marks["load_end"]),
                ("start -> first forward", marks["first_forward"] - start),
                ("after imports -> first forward", marks["first_forward"] - after),
                ("whole task", marks["end"] - start),
            ):
                rows.setdefault(f"{label}: {name}", []).append(seconds)
        if args.profile:
            run_path = task_run(project, work, video)
            profile(["-m", "dlcrun", "task", "--run", str(run_path), "--index", "0"], env, work / "task.prof")
            shutil.rmtree(work / "task-keypoints", ignore_errors=True)
            shutil.rmtree(work / "task-runs", ignore_errors=True)
    for name, values in rows.items():
        print(f"  {name:55s} {summary(values)}")


def profile(argv: list[str], env: dict[str, str], out: Path) -> None:
    """cProfile of one more run, its 25 costliest entries by cumulative time."""
    import pstats

    tail = argv[argv.index("-m") :] if "-m" in argv else argv
    run([sys.executable, "-m", "cProfile", "-o", str(out), *tail], env)
    print(f"  cProfile ({' '.join(tail[:3])}): {out}")
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a DLC 3 project (default: openfield, built once in --workdir)")
    parser.add_argument("--video", type=Path, default=FIXTURE / "videos" / "m3v1mp4.mp4")
    parser.add_argument("--videos", type=int, default=1000, help="manifest lines for submit")
    parser.add_argument("--frames", type=int, default=16, help="frames of the task's video clip")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--fetch-seconds", type=float, default=0.0, help="also time a task whose video takes this long to fetch"
    )
    parser.add_argument("--workdir", type=Path, help="kept between calls (the project is built once)")
    parser.add_argument("--only", choices=["submit", "task"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    args.video = args.video.resolve()
    project = project_for(args, work.resolve())
    print(f"project {project}\nmachine {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    if args.only in (None, "submit"):
        bench_submit(args, project, work.resolve())
    if args.only in (None, "task"):
        bench_task(args, project, work.resolve())


if __name__ == "__main__":
    main()
