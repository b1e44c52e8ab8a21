"""The run report in a real browser: Debian's headless Chromium opens ``report/index.html``.

Real parts: a real batch on the local scheduler (DeepLabCut on the tiny demo project's videos,
one of which is not a video at all, quality numbers and labelled clips made by the array
indices), ``dlcrun report`` as a user runs it, and Chromium (``make system-deps`` installs it).
No driver library: Chromium's ``--dump-dom`` of a copy of the page whose one inline script
writes what it found into the DOM (images loaded, clips playable, the page's size), its
``--screenshot`` of the page itself, and its console on stderr (``--enable-logging=stderr``),
where any line from the page's console fails the test (the report has no script of its own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_runs import done_with_h5, keypoints, make_run, write_record
from typer.testing import CliRunner
from waiting import wait_for

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow

CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (make system-deps installs it)")

# Written into a copy of the page, first thing in <head>: page errors as they happen, then, once
# every image has loaded (or failed) and every clip has its metadata (or an error), a <pre> with
# what was found. --virtual-time-budget lets the polling run to its end before the DOM is dumped.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
function __report() {
  const images = [...document.images];
  const videos = [...document.querySelectorAll("video")];
  const pending = images.some(i => !i.complete) || videos.some(v => v.readyState < 1 && !v.error);
  if (pending && (window.__tries = (window.__tries || 0) + 1) < 100) { setTimeout(__report, 100); return; }
  const out = document.createElement("pre");
  out.id = "dlcrun-probe";
  out.textContent = JSON.stringify({
    images: images.map(i => ({src: i.getAttribute("src"), width: i.naturalWidth, height: i.naturalHeight})),
    videos: videos.map(v => ({src: v.getAttribute("src"), ready: v.readyState, error: v.error && v.error.code,
                              width: v.videoWidth})),
    errors: window.__errors,
    height: document.documentElement.scrollHeight,
    text: document.body.innerText.length,
  });
  document.body.appendChild(out);
}
window.addEventListener("load", __report);
</script>"""

CONSOLE = re.compile(r":CONSOLE[:(]")  # Chromium's stderr line for a message on the page's console


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={cwd / 'chromium-profile'}",
            "--allow-file-access-from-files",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd)},
    )


def probe(page: Path, work: Path) -> tuple[dict[str, object], list[str]]:
    """What Chromium found on ``page`` (via a probed copy beside it), and its console's lines."""
    text = page.read_text()
    probed = page.with_name(".probe-" + page.name)
    probed.write_text(text.replace("<head>", "<head>\n" + PROBE, 1))
    try:
        done = chromium("--virtual-time-budget=20000", "--dump-dom", probed.as_uri(), cwd=work)
    finally:
        probed.unlink()
    found = re.search(r'<pre id="dlcrun-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe result in the DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    console = [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


def screenshot(page: Path, shot: Path, work: Path, size: str = "1200,2400") -> Image.Image:
    done = chromium(f"--window-size={size}", f"--screenshot={shot}", page.as_uri(), cwd=work)
    assert shot.is_file(), done.stderr[-2000:]
    return Image.open(shot)


def assert_rendered(page: Path, work: Path) -> dict[str, object]:
    """Non-blank, every image loaded, every clip playable, nothing on the console."""
    found, console = probe(page, work)
    assert console == [], console
    assert found["errors"] == []
    images = found["images"]
    assert isinstance(images, list) and images, found
    assert [i for i in images if not i["width"] or not i["height"]] == [], images
    videos = found["videos"]
    assert isinstance(videos, list)
    assert [v for v in videos if v["error"] or v["ready"] < 1 or not v["width"]] == [], videos
    assert isinstance(found["text"], int) and found["text"] > 500

    image = screenshot(page, work / "shot.png", work)
    grey = image.convert("L")
    histogram = grey.histogram()
    inked = sum(histogram[:200]) / (grey.width * grey.height)  # pixels clearly darker than the page
    assert inked > 0.02, f"the screenshot is blank ({inked:.1%} of it drawn)"
    assert len([n for n in histogram if n]) > 50  # text, figures: many shades, not one flat colour
    return found


@needs_chromium
def test_the_probe_sees_a_broken_image_and_a_console_message(tmp_path: Path) -> None:
    """The checks can fail: a page with a missing image and a console message is caught."""
    (tmp_path / "page.html").write_text(
        '<!DOCTYPE html><html><head><title>x</title></head><body><p>broken</p><img src="missing.png">'
        '<script>console.error("boom")</script></body></html>'
    )

    found, console = probe(tmp_path / "page.html", tmp_path)

    assert found["images"] == [{"src": "missing.png", "width": 0, "height": 0}]
    assert len(console) == 1 and '"boom"' in console[0]


@needs_chromium
def test_a_real_run_s_report_renders_in_chromium(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """Two videos analysed by DeepLabCut (with labelled clips), one that is not a video."""
    videos = tiny_videos(tmp_path / "videos", ["good.mp4", "other.mp4", "broken.mp4"], frames=24)
    videos[2].write_bytes(os.urandom(4096))
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=demo_project,
        dest=str(tmp_path / "keypoints"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        qc_clips=True,
    )
    run, _ = batch.start_run(manifest, settings)
    batch.submit(run)
    final = wait_for(run)
    assert final.states == {0: "done", 1: "done", 2: "failed"}, final.records

    made = CliRunner().invoke(app, ["report", str(run.path)])

    assert made.exit_code == 0, made.output
    page = run.path / "report" / "index.html"
    found = assert_rendered(page, tmp_path)
    srcs = {i["src"] for i in found["images"]}  # type: ignore[union-attr]
    assert {"likelihood.png", "scores.png", "videos/000000-trajectory.png", "videos/000001-likelihood.png"} <= srcs
    assert len(found["videos"]) == 2  # type: ignore[arg-type]  # both clips play
    assert "cannot open as video" in page.read_text()


@needs_chromium
def test_the_report_of_a_good_and_a_bad_video_renders_in_chromium(tmp_path: Path) -> None:
    """The records-and-.h5 run of tests/unit/test_results.py, in the browser (docs/report.png,
    the README's screenshot, is the top of this page)."""
    run = make_run(tmp_path, 3)
    done_with_h5(run, 0, keypoints(3000, seed=0), minute=0)
    done_with_h5(run, 1, keypoints(3000, seed=1, dips=[(1000, 1400), (2500, 2600)], base=0.8), minute=1)
    write_record(run, 2, state="failed", minute=2, error="/videos/cam2/mouse0002.mp4: cannot open as video")
    assert CliRunner().invoke(app, ["report", str(run.path)]).exit_code == 0

    found = assert_rendered(run.path / "report" / "index.html", tmp_path)

    assert len(found["images"]) == 8  # type: ignore[arg-type]
    assert isinstance(found["height"], int) and found["height"] > 3000  # two videos' sections below the summary
