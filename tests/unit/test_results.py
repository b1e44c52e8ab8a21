"""``dlcrun report``: the run's page from its ledger, at two videos and at 5,000.

Real parts: run directories written by ``ledger.Run``, keypoint ``.h5`` files in DeepLabCut's
layout read back with pandas/PyTables, records holding quality numbers computed from those files
(``tests/support/report_runs.py``), matplotlib drawing real PNGs, the CLI as a user runs it. The
page is read back with Python's HTML parser: every image, clip and link it names must exist.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_runs import (
    BODYPARTS,
    done_with_h5,
    keypoints,
    make_run,
    synthetic_quality,
    write_h5,
    write_record,
)
from typer.main import get_command
from typer.testing import CliRunner

from dlcrun import report_page, results
from dlcrun.cli import app
from dlcrun.ledger import Run

runner = CliRunner()
FAILED = "/videos/cam2/mouse0002.mp4: cannot open as video (moov atom not found)"


class Page(HTMLParser):
    """What a report page links and shows: images, clips, links, sections, table rows."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[str] = []
        self.videos: list[str] = []
        self.links: list[str] = []
        self.articles: list[str] = []
        self.scripts = 0
        self.rows: dict[str, int] = {}
        self._section = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
        elif tag == "video":
            self.videos.append(a["src"] or "")
        elif tag == "a":
            self.links.append(a["href"] or "")
        elif tag == "article":
            self.articles.append(a["id"] or "")
        elif tag == "section":
            self._section = a["id"] or ""
        elif tag == "script":
            self.scripts += 1
        elif tag == "tr":
            self.rows[self._section] = self.rows.get(self._section, 0) + 1


def two_videos(tmp_path: Path) -> tuple[Run, Path, Path]:
    """One good video, one with two stretches the model lost, one that failed."""
    run = make_run(tmp_path, 3)
    good = done_with_h5(run, 0, keypoints(3000, seed=0), minute=0)
    bad = done_with_h5(run, 1, keypoints(3000, seed=1, dips=[(1000, 1400), (2500, 2600)], base=0.8), minute=1)
    write_record(run, 2, state="failed", minute=2, error=FAILED)
    return run, good, bad


def read_page(run: Run) -> tuple[str, Page]:
    text = (run.path / "report" / "index.html").read_text()
    return text, Page(text)


def assert_everything_linked_exists(run: Run, page: Page) -> None:
    folder = run.path / "report"
    for src in page.images + page.videos:
        assert not src.startswith(("/", "http:", "https:", "file:")), src  # relative: the folder moves whole
        assert (folder / src).is_file(), src
    for src in page.images:
        with Image.open(folder / src) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 100, src
            assert len(set(image.convert("L").getdata())) > 10, f"{src} is blank"
    for href in page.links:
        if not href.startswith("#"):
            assert (folder / href).is_file(), href
        else:
            assert href[1:] in page.articles, href


# ---------------------------------------------------------------- two videos


def test_report_of_a_good_and_a_bad_video_ranks_the_bad_first_and_links_only_files_that_exist(
    tmp_path: Path,
) -> None:
    run, _, _ = two_videos(tmp_path)

    made = runner.invoke(app, ["report", str(run.path)])

    assert made.exit_code == 0, made.output
    assert f"report: {run.path / 'report' / 'index.html'}" in made.stdout
    assert "2 videos ranked by score, 2 shown in detail, 8 images" in made.stdout
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert page.scripts == 0 and "http" not in text  # no JavaScript, nothing from the network
    assert page.articles == ["video-1", "video-0"]  # worst first
    assert sorted(page.images) == sorted(
        ["likelihood.png", "scores.png"]
        + [f"videos/{i:06d}-{kind}.png" for i in (0, 1) for kind in ("hist", "trajectory", "likelihood")]
    )
    # the summary: 3 videos, 6,000 frames, 3 x 40 s of index time on 1 GPU and 4 CPU cores
    assert "3 (2 done, 1 failed)" in text and "6,000 in the done videos&#x27; keypoints" in text
    assert "0.03 (1 GPU per array index)" in text and "0.13 (4 CPU cores per array index)" in text
    assert "Failures: 1" in text and "cannot open as video (moov atom not found)" in text
    # the bad video's numbers: 500 of its 3,000 frames are in the two stretches
    bad = text[text.index('id="video-1"') : text.index("</article>")]
    assert "16.7%" in bad and '<td class="n">400</td>' in bad
    assert (
        re.findall(r"<tr><td>(\w+)</td>", bad) == BODYPARTS
    )  # the model's order, not the record's sorted keys  # under pcutoff; its longest stretch
    with open(run.path / "report" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["rank"], r["index"]) for r in rows] == [("1", "1"), ("2", "0")]
    assert float(rows[0]["score"]) == pytest.approx(2500 / 3000, abs=1e-4)


def test_the_content_adds_up_from_the_records(tmp_path: Path) -> None:
    run, _, _ = two_videos(tmp_path)

    found = results.gather(run)

    assert [r.index for r in found.ranking] == [1, 0]
    assert found.ranking[0].weakest(BODYPARTS) == "snout"  # all four lost the same frames: the model's first
    assert found.ranking[0].worst["start"] in range(1000, 1400)
    assert found.summary.counts == {"done": 2, "failed": 1}
    assert found.summary.frames == 6000 and found.summary.finished
    assert found.summary.index_hours == pytest.approx(120 / 3600)  # three records of 40 s each
    assert found.summary.gpu_hours == pytest.approx(120 / 3600) and found.summary.cpu_hours == pytest.approx(480 / 3600)
    assert found.summary.wall_seconds == pytest.approx(2 * 60 + 40)  # the first start to the last finish
    assert [bp.name for bp in found.bodyparts] == BODYPARTS  # the model's order
    snout = found.bodyparts[0]
    assert sum(snout.hist) == 6000 and snout.rows == 6000
    assert snout.below == pytest.approx(500 / 6000, abs=1e-3)  # the bad video's stretches, over both videos
    assert [g.count for g in found.groups] == [1]


def test_the_trajectories_are_the_h5_s_own_values(tmp_path: Path) -> None:
    run, _, _ = two_videos(tmp_path)
    columns = keypoints(3000, seed=1, dips=[(1000, 1400), (2500, 2600)], base=0.8)

    got = results.track(run.record(1), tmp_path / "work")

    assert isinstance(got, results.Track)
    assert got.frames.tolist() == list(range(3000))
    for part in BODYPARTS:
        assert np.array_equal(got.x[part], columns[f"{part}/x"])
        assert np.array_equal(got.likelihood[part], columns[f"{part}/likelihood"])
    assert not list((tmp_path / "work").iterdir())  # the fetched copy is gone


def test_a_multi_animal_h5_names_each_individual_s_bodyparts(tmp_path: Path) -> None:
    import pandas as pd

    columns = pd.MultiIndex.from_product(
        [["DLC_x"], ["mouse1", "mouse2"], ["snout", "tail"], ["x", "y", "likelihood"]],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    pd.DataFrame(np.arange(5 * 12, dtype=float).reshape(5, 12), columns=columns).to_hdf(
        tmp_path / "ma.h5", key="df_with_missing", format="table"
    )

    got = results.read_track(tmp_path / "ma.h5")

    assert list(got.likelihood) == ["mouse1/snout", "mouse1/tail", "mouse2/snout", "mouse2/tail"]
    assert got.y["mouse2/tail"].tolist() == [10.0 + 12 * k for k in range(5)]


def test_without_pytables_the_page_keeps_every_number_and_says_what_the_plots_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login node's install may lack PyTables: the report still comes from the records."""
    run, _, _ = two_videos(tmp_path)
    monkeypatch.setattr(results, "pytables", lambda: False)

    made = runner.invoke(app, ["report", str(run.path)])

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert sorted(page.images) == ["likelihood.png", "scores.png", "videos/000000-hist.png", "videos/000001-hist.png"]
    assert text.count("needs PyTables (pip install tables)") == 2
    assert "16.7%" in text


def test_a_published_h5_that_is_gone_is_a_note_not_a_failure(tmp_path: Path) -> None:
    run, good, _ = two_videos(tmp_path)
    good.unlink()

    made = runner.invoke(app, ["report", str(run.path)])

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert "videos/000000-trajectory.png" not in page.images and "videos/000001-trajectory.png" in page.images
    assert f"could not fetch {good}" in text


def test_records_without_or_with_unreadable_numbers_are_counted_not_ranked(tmp_path: Path) -> None:
    run = make_run(tmp_path, 4)
    write_record(run, 0, quality=synthetic_quality(0))
    write_record(run, 1)  # analysed by an older dlcrun
    damaged = synthetic_quality(2)
    damaged["bodyparts"]["snout"]["hist"] = [1, 2, 3]
    write_record(run, 2, quality=damaged)
    write_record(run, 3, quality={"version": 1, "bodyparts": {}})

    found = results.gather(run)
    made = runner.invoke(app, ["report", str(run.path)])

    assert [r.index for r in found.ranking] == [0]
    assert found.without_numbers == [1, 2, 3]
    assert found.damaged_numbers == {
        2: "quality of bodypart snout has no 20-bin histogram",
        3: "quality has no bodyparts",
    }
    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert "3 done videos have no numbers (2 with numbers this dlcrun cannot read" in text
    assert "no .h5 in the record" in text  # the one ranked has no published file to plot


def test_a_run_with_nothing_done_yet_still_has_a_page(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2)
    write_record(run, 0, state="failed", error=FAILED)

    made = runner.invoke(app, ["report", str(run.path), "--worst", "5"])

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert page.images == [] and page.articles == []
    assert "No done video has quality numbers yet." in text and "Failures: 1" in text
    assert "0 videos ranked by score, 0 shown in detail, 0 images" in made.stdout


def test_a_labelled_clip_is_copied_in_and_played_by_a_video_tag(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2)
    (run.path / "clips").mkdir()
    (run.path / "clips" / "mouse0000_labeled.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    write_record(run, 0, quality=synthetic_quality(0), clip="clips/mouse0000_labeled.mp4")
    write_record(run, 1, quality=synthetic_quality(1), clip=str(run.path / "clips" / "gone.mp4"))

    made = runner.invoke(app, ["report", str(run.path)])

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert page.videos == ["clips/000000-mouse0000_labeled.mp4"]
    assert_everything_linked_exists(run, page)
    assert "its labelled clip" in text and "gone.mp4 is not in the run directory" in text


def test_a_new_report_replaces_the_old_one_whole(tmp_path: Path) -> None:
    run, _, _ = two_videos(tmp_path)
    assert runner.invoke(app, ["report", str(run.path)]).exit_code == 0
    (run.path / "report" / "videos" / "stale.png").write_bytes(b"x")

    again = runner.invoke(app, ["report", str(run.path), "--worst", "1"])

    assert again.exit_code == 0, again.output
    _, page = read_page(run)
    assert page.articles == ["video-1"]
    assert sorted(p.name for p in (run.path / "report" / "videos").iterdir()) == [
        "000001-hist.png",
        "000001-likelihood.png",
        "000001-trajectory.png",
    ]
    assert [p.name for p in run.path.iterdir() if p.name.startswith(".report")] == []  # no build folder left


def test_dest_copies_the_report_next_to_the_keypoints_where_it_works_as_well(tmp_path: Path) -> None:
    run, good, _ = two_videos(tmp_path)

    made = runner.invoke(app, ["report", str(run.path), "--dest"])

    assert made.exit_code == 0, made.output
    copy = good.parent / f"report-{run.id}"
    assert f"copied to {copy}" in made.stdout
    ours = sorted(p.relative_to(run.path / "report") for p in (run.path / "report").rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
    assert ours == theirs and Path("index.html") in theirs
    assert (copy / "index.html").read_bytes() == (run.path / "report" / "index.html").read_bytes()
    # relative links only: the copy, away from the run directory, shows everything
    shutil.rmtree(run.path / "report")
    page = Page((copy / "index.html").read_text())
    assert len(page.images) == 8 and all((copy / src).is_file() for src in page.images)


def test_a_negative_worst_is_refused_naming_the_flag(tmp_path: Path) -> None:
    run, _, _ = two_videos(tmp_path)

    made = runner.invoke(app, ["report", str(run.path), "--worst", "-1"])

    assert made.exit_code != 0 and "--worst" in made.output
    assert not (run.path / "report").exists()


def test_report_imports_neither_deeplabcut_nor_torch(tmp_path: Path) -> None:
    """A login node has neither: the report is drawn from the records (and .h5 files via pandas)."""
    run, _, _ = two_videos(tmp_path)
    child = (
        "import sys\n"
        "from dlcrun.cli import main\n"
        "sys.argv = ['dlcrun', 'report', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('torch', 'deeplabcut', 'tensorflow', 'cv2') if m in sys.modules))\n"
    )

    done = subprocess.run([sys.executable, "-c", child, str(run.path)], capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (run.path / "report" / "videos" / "000001-trajectory.png").is_file()


LOGIN = Path(__file__).resolve().parents[2] / ".venv-login" / "bin"


@pytest.mark.skipif(not (LOGIN / "dlcrun").exists(), reason="no .venv-login here (make install-login)")
def test_a_login_node_install_writes_the_report_from_the_records(tmp_path: Path) -> None:
    """make install-login has no DeepLabCut, torch or PyTables: every number, the figures drawn
    from the records, and a note where the .h5 plots would be."""
    run, _, _ = two_videos(tmp_path)

    done = subprocess.run([str(LOGIN / "dlcrun"), "report", str(run.path)], capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert "2 videos ranked by score, 2 shown in detail, 4 images" in done.stdout
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert text.count("needs PyTables (pip install tables)") == 2 and "16.7%" in text


def test_the_cli_default_is_the_use_case_s() -> None:
    """cli/results.py spells WORST itself, to start without importing the report's modules."""
    command = get_command(app).commands["report"]  # type: ignore[attr-defined]
    assert {p.name: p.default for p in command.params}["worst"] == results.WORST == report_page.WORST


# ---------------------------------------------------------------- 5,000 videos


def five_thousand(tmp_path: Path) -> Run:
    """5,000 videos: 4,850 done with numbers, 100 done without, 50 failed."""
    run = make_run(tmp_path, 5000)
    folder = run.path / "records"
    for i in range(5000):
        if i % 100 == 7:
            error = f"no such video {run.manifest.entries[i]}"
            write_record(run, i, state="failed", minute=i / 10, durable=False, error=error)
        elif i % 50 == 3:
            write_record(run, i, minute=i / 10, durable=False)
        else:
            write_record(run, i, minute=i / 10, durable=False, quality=synthetic_quality(i))
    assert len(list(folder.iterdir())) == 5000
    return run


def test_five_thousand_videos_show_the_worst_n_in_detail_and_the_rest_only_in_aggregate(tmp_path: Path) -> None:
    """The 30 s promise is measured by benchmarks/bench_report.py (docs/benchmarks.md), not here."""
    run = five_thousand(tmp_path)

    clock = time.perf_counter()
    made = runner.invoke(app, ["report", str(run.path), "--worst", "12"])
    took = time.perf_counter() - clock

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert_everything_linked_exists(run, page)
    assert len(page.articles) == 12 and page.rows["ranking"] == 1 + 12  # the header and the worst 12
    assert "The other 4,838 are in the figure above" in text
    assert "5,000 (4,950 done, 50 failed)" in text and "100 done videos have no numbers" in text
    ranked = results.gather(run).ranking
    shown, rest = ranked[:12], ranked[12:]
    assert [a for a in page.articles] == [f"video-{r.index}" for r in shown]
    assert all(Path(r.video).name not in text for r in rest)  # named only in scores.csv
    with open(run.path / "report" / "scores.csv", newline="") as fh:
        assert sum(1 for _ in csv.reader(fh)) == 1 + 4850
    assert len(text) < 200_000  # a page of the same size as for 50 videos
    print(f"\nreport of 5,000 records: {took:.1f} s")


def test_worst_zero_shows_no_video_in_detail(tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    for i in range(3):
        write_record(run, i, quality=synthetic_quality(i))

    made = runner.invoke(app, ["report", str(run.path), "--worst", "0"])

    assert made.exit_code == 0, made.output
    text, page = read_page(run)
    assert page.articles == [] and page.images == ["likelihood.png", "scores.png"]
    assert "The other 3 are in the figure above" in text


def test_quality_numbers_written_by_a_newer_dlcrun_are_read_for_what_the_report_uses(tmp_path: Path) -> None:
    run = make_run(tmp_path, 1)
    newer = {**synthetic_quality(0), "version": 2, "blur": {"snout": 0.1}}
    write_record(run, 0, quality=newer)

    found = results.gather(run)

    assert [r.index for r in found.ranking] == [0]
    assert json.loads(run.record_path(0).read_text())["quality"]["version"] == 2


def test_the_record_s_h5_is_the_unfiltered_one(tmp_path: Path) -> None:
    from dlcrun.ledger import Output, Record

    rec = Record(
        index=0,
        video="v.mp4",
        outputs=[
            Output(uri="/k/vDLC_meta.pickle", size=1, sha256=""),
            Output(uri="/k/vDLC_filtered.h5", size=1, sha256=""),
            Output(uri="/k/vDLC.h5", size=1, sha256=""),
        ],
    )
    assert results.h5_output(rec) == "/k/vDLC.h5"
    assert results.h5_output(Record(index=0, video="v.mp4")) == ""


def test_write_h5_is_read_back_as_deeplabcut_writes_it(tmp_path: Path) -> None:
    """The support module's files have DeepLabCut's layout (the same key, levels and order)."""
    import pandas as pd

    h5 = write_h5(tmp_path / "v.h5", keypoints(10, seed=0))
    df = pd.read_hdf(h5, "df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(df.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    assert len(df) == 10
