"""How long ``dlcrun report`` takes for a run of thousands of videos (the issue asks: 5,000 in
under 30 s).

Writes a run directory of ``--videos`` records as array indices write them (``ledger.Run``;
1 % failed, 2 % done without quality numbers, the rest with numbers for four bodyparts), then
times, in a fresh process each (``--repeat`` times; the first pays the imports a user's command
pays too):

- ``results.gather``: the status (every record read and validated) and the aggregates;
- ``report_page.write``: that, plus every figure and the page (``--worst`` videos in detail).
  With ``--h5-frames N``, the ``--worst`` lowest-scoring videos have a published ``.h5`` of N
  frames each (four bodyparts), fetched and read for their trajectory and likelihood plots, as
  in a real run; without it their records name none and those plots are left out.

    PYTHONPATH=src python benchmarks/bench_report.py --videos 5000 --worst 12 --repeat 3
    PYTHONPATH=src python benchmarks/bench_report.py --videos 5000 --worst 12 --h5-frames 54000

Not part of the test suite; the numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
clock = time.perf_counter()
from dlcrun.ledger import Run
from dlcrun import results, report_page
imported = time.perf_counter() - clock
run = Run(sys.argv[1])
clock = time.perf_counter()
if sys.argv[2] == "gather":
    results.gather(run, int(sys.argv[3]))
else:
    report_page.write(run, int(sys.argv[3]))
print(json.dumps({"imports": imported, "seconds": time.perf_counter() - clock}))
"""


def make(root: Path, videos: int, worst: int, h5_frames: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from report_runs import done_with_h5, keypoints, make_run, synthetic_quality, write_record

    run = make_run(root, videos)
    lost = [(h5_frames // 10, h5_frames)]  # 90 % of the frames under pcutoff: ranked worst
    for i in range(videos):
        if h5_frames and i % (videos // max(worst, 1)) == 1 and i // (videos // max(worst, 1)) < worst:
            done_with_h5(run, i, keypoints(h5_frames, seed=i, dips=lost), minute=i / 10)
        elif i % 100 == 7:
            write_record(run, i, state="failed", minute=i / 10, durable=False, error=f"no such video /v/{i}.mp4")
        elif i % 50 == 3:
            write_record(run, i, minute=i / 10, durable=False)
        else:
            write_record(run, i, minute=i / 10, durable=False, quality=synthetic_quality(i))
    return run.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--worst", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--h5-frames", type=int, default=0, help="frames of each shown video's .h5; 0: none")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        path = make(Path(tmp), args.videos, args.worst, args.h5_frames)
        print(f"{args.videos:,} records written in {time.perf_counter() - clock:.1f} s")
        for what in ("gather", "write"):
            for k in range(args.repeat):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), what, str(args.worst)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                took = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{what} #{k + 1}: {took['seconds']:.2f} s (+ imports {took['imports']:.2f} s)")
        page = path / "report" / "index.html"
        images = list((path / "report").rglob("*.png"))
        size = sum(p.stat().st_size for p in (path / "report").rglob("*") if p.is_file())
        print(f"page {page.stat().st_size / 1e3:.0f} kB, {len(images)} images, folder {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
