"""What dlcrun guarantees, one fault at a time, through real parts.

Each test holds one promise of the README's "What dlcrun guarantees" and would fail without
the code that keeps it: real task processes, real signals, local storage, the loopback Dropbox
emulation, and a local backend with injected faults (``tests/support/fault_storage.py``, named as such)
where a full disk or a crawling link has to be staged.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fault_storage  # noqa: F401  (registers faulty: in this process too)
import pytest
from typer.testing import CliRunner

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.files import PART_MARK
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.outputs import Plan
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow
SUPPORT = Path(__file__).resolve().parents[1] / "support"


def start(tmp_path: Path, project: Path, videos: list[str | Path], dest: str, **overrides: object) -> Run:
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None, project=project, dest=dest, runs_dir=tmp_path / "runs", scratch=tmp_path / "scratch", **overrides
    )
    run, _ = batch.start_run(manifest, settings)
    return run


def task(run: Run, index: int = 0, faults: dict[str, str] | None = None, **popen: object) -> subprocess.Popen[str]:
    """A real ``dlcrun task`` process (with the faulty: backend registered) on one manifest index."""
    env = {**os.environ, **(faults or {})}
    argv = [sys.executable, str(SUPPORT / "fault_storage.py"), "task", "--run", str(run.path), "--index", str(index)]
    return subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(run: Run, index: int = 0, faults: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = task(run, index, faults)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. source identity: another video's keypoints are never taken as done ----------------------


def test_same_named_output_of_another_video_is_refused_not_accepted(
    tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    """Run A analyses /v/mouse1/trial1.mp4; run B of /v/mouse2/trial1.mp4 (another video, same
    name, outputs landing flat in the same dest) must fail naming both videos and leave A's
    keypoints as they are, and a byte-identical copy of A's video is recognised as done."""
    (mouse1,) = tiny_videos(tmp_path / "v" / "mouse1", ["trial1.mp4"])
    mouse2 = tiny_videos(tmp_path / "v" / "mouse2", ["x.mp4", "trial1.mp4"])[1]  # other content (phase)
    assert mouse1.read_bytes() != mouse2.read_bytes()
    dest = tmp_path / "keypoints"

    first = start(tmp_path / "a", demo_project, [mouse1], str(dest))
    assert finish(first).returncode == 0
    published = files(dest)
    assert len(published) == 2  # flat: trial1<scorer>.h5 and _meta.pickle
    meta = next(v for k, v in published.items() if k.endswith("_meta.pickle"))
    source = pickle.loads(meta)["dlcrun"]["source"]
    assert source["location"] == str(mouse1) and source["size"] == mouse1.stat().st_size
    assert len(source["hashes"]["sha256"]) == 64
    assert first.record(0).source == source

    second = start(tmp_path / "b", demo_project, [mouse2], str(dest))
    done = finish(second)
    assert done.returncode == 1
    record = second.record(0)
    assert record.state == "failed" and "infer" not in record.seconds
    assert str(mouse1) in record.error and str(mouse2) in record.error and "different video" in record.error
    assert files(dest) == published, "the other video's keypoints are left exactly as they were"

    twin = tmp_path / "v" / "copy" / "trial1.mp4"
    twin.parent.mkdir()
    shutil.copy(mouse1, twin)
    third = start(tmp_path / "c", demo_project, [twin], str(dest))
    assert finish(third).returncode == 0
    assert third.record(0).state == "done" and "infer" not in third.record(0).seconds
    assert files(dest) == published


def test_output_without_a_source_record_is_not_taken_as_done(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """Keypoints already at dest that do not say which video they came from (DeepLabCut's own
    analyze_videos, an older tool) can be neither accepted nor silently overwritten."""
    (video,) = tiny_videos(tmp_path / "v", ["trial1.mp4"])
    dest = tmp_path / "keypoints"
    run = start(tmp_path, demo_project, [video], str(dest))
    plan = Plan(run, 0)
    for uri in plan.outputs:  # what analyze_videos would have left there: no "dlcrun" block
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(pickle.dumps({"data": {"nframes": 8, "fps": 10}}))
    before = files(dest)
    assert finish(run).returncode == 1
    record = run.record(0)
    assert record.state == "failed" and "no source record" in record.error and str(video) in record.error
    assert files(dest) == before


@pytest.mark.dropbox
def test_dropbox_output_of_another_video_is_refused_without_downloading(
    dropbox_emulator, tmp_path: Path, demo_project: Path, tiny_videos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Dropbox the identity is Dropbox's own content_hash, read from the metadata: a
    same-named output of another video is refused before a byte of the video is downloaded."""
    refresh = dropbox_emulator.grant()
    monkeypatch.setenv("DLCRUN_DROPBOX_APP_KEY", refresh[0])
    monkeypatch.setenv("DLCRUN_DROPBOX_REFRESH_TOKEN", refresh[1])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    one, two = tiny_videos(tmp_path / "local", ["a.mp4", "b.mp4"])
    dropbox_emulator.put_file("/V/mouse1/trial1.mp4", one.read_bytes())
    dropbox_emulator.put_file("/V/mouse2/trial1.mp4", two.read_bytes())

    first = start(tmp_path / "a", demo_project, ["dropbox:/V/mouse1/trial1.mp4"], "dropbox:/K")
    assert finish(first).returncode == 0, first.record(0).error
    assert set(first.record(0).source["hashes"]) == {"dropbox", "sha256"}
    published = {p: dropbox_emulator.read(p) for p in dropbox_emulator.paths() if p.startswith("/K/")}
    downloads = dropbox_emulator.count("files/download")

    second = start(tmp_path / "b", demo_project, ["dropbox:/V/mouse2/trial1.mp4"], "dropbox:/K")
    assert finish(second).returncode == 1
    record = second.record(0)
    assert "/V/mouse1/trial1.mp4" in record.error and "/V/mouse2/trial1.mp4" in record.error
    assert record.bytes_in == 0 and dropbox_emulator.count("files/download") == downloads + 1  # the meta only
    assert {p: dropbox_emulator.read(p) for p in dropbox_emulator.paths() if p.startswith("/K/")} == published


# -- 2. paths: nothing outside dest, no case-only or over-long collisions -----------------------


def test_dot_dot_in_a_manifest_never_takes_outputs_outside_dest(tmp_path: Path, demo_project: Path) -> None:
    """``/w/A/../B/x.mp4`` beside ``/w/A/y.mp4``: both keypoint folders stay under dest."""
    from dlcrun.demo import write_video

    w = tmp_path / "w"
    write_video(w / "B" / "x.mp4", frames=4)
    write_video(w / "A" / "y.mp4", frames=4)
    dest = tmp_path / "keypoints"
    run = start(tmp_path, demo_project, [f"{w}/A/../B/x.mp4", f"{w}/A/y.mp4"], str(dest))
    for index in range(2):
        folder = Path(Plan(run, index).dest_dir).resolve()
        assert folder.is_relative_to(dest.resolve()), folder


@pytest.mark.parametrize(
    "names, says",
    [
        (["cam/A.mp4", "cam/a.mp4"], "differ only in case"),
        (["Cam1/x.mp4", "cam1/x.mp4"], "differ only in case"),
        (["cam/x.mp4", "cam/x.avi"], "would write the same keypoint file"),
    ],
)
def test_case_only_collisions_are_refused_at_submit(
    tmp_path: Path, demo_project: Path, names: list[str], says: str
) -> None:
    """``A.mp4``/``a.mp4`` and ``Cam1/``/``cam1/`` overwrite each other on Dropbox, macOS and SMB:
    refused at submit in one line, before any run directory exists."""
    entries = [str(tmp_path / "v" / n) for n in names]
    write_manifest(tmp_path / "batch.txt", Manifest(entries=entries))
    result = CliRunner().invoke(
        app,
        ["submit", str(tmp_path / "batch.txt"), "--project", str(demo_project), "--dest", str(tmp_path / "k")]
        + ["--runs-dir", str(tmp_path / "runs")],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and entries[0] in lines[0], result.output
    assert not (tmp_path / "runs").exists()


def test_names_too_long_for_the_filesystem_are_refused_at_submit(
    tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    """A legal 248-byte video name, or one whose keypoint file name (scorer and all) passes 255
    bytes once the hidden suffix is added, is refused at submit, not after its inference."""
    for stem_bytes in (244, 200):  # the video's own name; then only its output name is too long
        (video,) = tiny_videos(tmp_path / f"v{stem_bytes}", ["x" * stem_bytes + ".mp4"])
        write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(video)]))
        result = CliRunner().invoke(
            app,
            ["submit", str(tmp_path / "batch.txt"), "--project", str(demo_project), "--dest", str(tmp_path / "k")]
            + ["--runs-dir", str(tmp_path / "runs"), "--scratch", str(tmp_path / "scratch")],
        )
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "255-byte limit" in lines[0], result.output
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- 3. all or nothing at dest --------------------------------------------------------------------


def test_a_full_disk_during_the_h5_upload_leaves_nothing_of_the_video(
    tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    """The .h5 upload fails half-way (as on a full disk) after _meta.pickle was published: the
    meta and every hidden part file are removed, the record says failed and lists nothing."""
    (video,) = tiny_videos(tmp_path / "v", ["a.mp4"])
    dest = tmp_path / "keypoints"
    run = start(tmp_path, demo_project, [video], f"faulty:{dest}", save_csv=True)
    done = finish(run, faults={"DLCRUN_TEST_FAULT": "enospc", "DLCRUN_TEST_FAULT_SUFFIX": ".h5"})
    assert done.returncode == 1, done.stderr
    record = run.record(0)
    assert record.state == "failed" and "No space left on device" in record.error
    assert files(dest) == {}, "neither the meta, the csv nor a part file stays"
    assert record.publishing == [] and record.outputs == []

    assert finish(run).returncode == 0  # the disk has room again: the retry publishes all of it
    assert sorted(Path(n).suffix for n in files(dest)) == [".csv", ".h5", ".pickle"]


def _sigterm_mid_upload(run: Run, is_underway, faults: dict[str, str] | None = None) -> None:
    proc = task(run, faults=faults)
    deadline = time.monotonic() + 240
    while not is_underway():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    record = run.record(0)
    assert record.state == "interrupted" and "signal 15" in record.error


def test_sigterm_during_a_slow_upload_leaves_nothing_at_local_dest(
    tmp_path: Path, demo_project: Path, tiny_videos
) -> None:
    """A real SIGTERM while the .h5 crawls to dest, its _meta.pickle already published: the task
    removes the meta and the parts before it exits; whatever a still-running upload could add
    is listed in the record, and the next attempt removes it and publishes the whole set."""
    (video,) = tiny_videos(tmp_path / "v", ["a.mp4"])
    dest = tmp_path / "keypoints"
    run = start(tmp_path, demo_project, [video], f"faulty:{dest}")
    slow = {"DLCRUN_TEST_FAULT": "slow", "DLCRUN_TEST_FAULT_SUFFIX": ".h5", "DLCRUN_TEST_FAULT_SECONDS": "40"}
    _sigterm_mid_upload(run, lambda: any(PART_MARK in n for n in files(dest) if dest.is_dir()), slow)
    left = files(dest)
    assert not [n for n in left if PART_MARK not in n], f"a published file stayed: {left}"
    record = run.record(0)
    assert all(f"faulty:{dest}/{n}" in record.publishing for n in left), (left, record.publishing)

    assert finish(run).returncode == 0
    names = sorted(files(dest))
    assert len(names) == 2 and not any(PART_MARK in n for n in names), names
    assert run.record(0).state == "done" and run.record(0).publishing == []


@pytest.mark.dropbox
def test_sigterm_during_a_slow_dropbox_upload_leaves_nothing_published(
    dropbox_emulator, tmp_path: Path, demo_project: Path, tiny_videos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on the Dropbox emulation: the .h5's upload session stalls at its finish, SIGTERM
    arrives; no final name stays, a part the stalled commit lands later is in the record, and
    the next attempt removes it."""
    app_key, refresh = dropbox_emulator.grant()
    monkeypatch.setenv("DLCRUN_DROPBOX_APP_KEY", app_key)
    monkeypatch.setenv("DLCRUN_DROPBOX_REFRESH_TOKEN", refresh)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DLCRUN_DROPBOX_CHUNK_BYTES", "16384")  # the .h5 goes through an upload session
    (video,) = tiny_videos(tmp_path / "local", ["a.mp4"])
    dropbox_emulator.put_file("/V/a.mp4", video.read_bytes())
    run = start(tmp_path, demo_project, ["dropbox:/V/a.mp4"], "dropbox:/K")
    dropbox_emulator.inject("files/upload_session/finish", "stall", seconds=25)
    _sigterm_mid_upload(run, dropbox_emulator.stalled.is_set)
    deadline = time.monotonic() + 60
    while dropbox_emulator.stalled.is_set() and time.monotonic() < deadline:
        if any(PART_MARK in p for p in dropbox_emulator.paths()):
            break  # the stalled commit has landed
        time.sleep(0.5)
    time.sleep(1)
    at_dest = [p for p in dropbox_emulator.paths() if p.startswith("/K/")]
    assert not [p for p in at_dest if PART_MARK not in p], f"a published file stayed: {at_dest}"
    assert all(f"dropbox:{p}" in run.record(0).publishing for p in at_dest), (at_dest, run.record(0).publishing)

    assert finish(run).returncode == 0, run.record(0).error
    at_dest = [p for p in dropbox_emulator.paths() if p.startswith("/K/")]
    assert len(at_dest) == 2 and not any(PART_MARK in p for p in at_dest), at_dest


def test_a_long_error_keeps_its_reason() -> None:
    """A record's error is cut to 500 characters; with a deep path the reason (last) survives."""
    from dlcrun.errors import one_line

    text = "/lab" * 300 + "/x.mp4: [Errno 36] File name too long"
    cut = one_line(text)
    assert len(cut) <= 500 and cut.endswith("[Errno 36] File name too long") and cut.startswith("/lab/lab")
    assert one_line("dest: disk full") == "dest: disk full"
