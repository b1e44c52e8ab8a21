"""How long submit's existence check takes on an rclone remote: folder listings vs one question per file.

Serves a folder tree with ``rclone serve webdav`` on loopback (a real HTTP server; a cloud
remote adds its own latency to every round trip) holding ``--folders`` camera folders of
``--per-folder`` videos each, then times ``batch.check_sources`` on the whole manifest twice:
as submit runs it (a folder with several of the videos is listed once) and with listing
turned off (one ``rclone lsjson --stat`` per video, 8 at a time, as before).

    PYTHONPATH=src python benchmarks/bench_preflight.py --folders 4 --per-folder 50

Needs the rclone binary. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=4)
    parser.add_argument("--per-folder", type=int, default=50)
    args = parser.parse_args()

    from dlcrun import batch
    from dlcrun.manifest import Manifest
    from dlcrun.storage import rclone

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "remote"
        entries = []
        for f in range(args.folders):
            for i in range(args.per_folder):
                name = f"cam{f}/cam{f}_2026-10-{1 + i // 24:02d}_{i % 24:02d}-00-00.mp4"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(b"v" * 1000)
                entries.append(f"rclone:lab:{name}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            ["rclone", "serve", "webdav", str(root), "--addr", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.environ.update(
            RCLONE_CONFIG=str(Path(tmp) / "none.conf"),
            RCLONE_CONFIG_LAB_TYPE="webdav",
            RCLONE_CONFIG_LAB_URL=f"http://127.0.0.1:{port}",
        )
        rclone.private_config.cache_clear()
        try:
            time.sleep(1.0)
            manifest = Manifest(entries=entries)
            timings = {}
            for label, list_at in (("listing", batch.LIST_AT), ("per file", 10**9)):
                batch.LIST_AT = list_at
                start = time.perf_counter()
                found = batch.check_sources(manifest)
                timings[label] = time.perf_counter() - start
                assert found.videos == len(entries)
            print(f"{len(entries)} videos in {args.folders} folders on rclone serve webdav (loopback)")
            for label, seconds in timings.items():
                print(f"  {label:9s} {seconds:7.2f} s")
            print(f"  ratio     {timings['per file'] / timings['listing']:7.1f}x")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
