"""dlcrun sample: a seeded, stratified random sample of videos for labelling."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from selection_data import comments, entries, lab_sheet, make_tree, write_xlsx
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.dates import bounds
from dlcrun.errors import ManifestError
from dlcrun.manifest import read_manifest
from dlcrun.sampling import allocate, draw
from dlcrun.selection import Request, build

runner = CliRunner()
CAMERAS = {"camA": 12, "camB": 12, "camC": 2}  # videos per camera: camC is small


def list_sheet(tmp: Path) -> Path:
    """A list sheet: one video per row, a camera column, a date column (Oct 1-12, 2026)."""
    lines = ["video,camera,date"]
    for cam, count in CAMERAS.items():
        for i in range(count):
            lines.append(f"/data/{cam}/{cam}_{i:02d}.mp4,{cam},2026-10-{i + 1:02d}")
    path = tmp / "videos.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def candidates(tmp: Path) -> list:
    return build(Request(sheet=list_sheet(tmp), sampling=True)).videos


def test_same_seed_same_sample_other_seed_other_sample(tmp_path: Path) -> None:
    videos = candidates(tmp_path)
    first = [v.uri for v in draw(videos, 6, seed=7).videos]
    assert first == [v.uri for v in draw(list(reversed(videos)), 6, seed=7).videos]  # listing order is irrelevant
    assert len(set(first)) == 6
    others = {tuple(v.uri for v in draw(videos, 6, seed=s).videos) for s in range(8, 13)}
    assert tuple(first) not in others and len(others) > 1


def test_strata_get_even_shares_and_a_small_stratum_gives_up_its_rest(tmp_path: Path) -> None:
    videos = candidates(tmp_path)
    per_camera = Counter(v.fields["camera"] for v in draw(videos, 6, seed=1, per="camera").videos)
    assert per_camera == {"camA": 2, "camB": 2, "camC": 2}
    sample = draw(videos, 12, seed=1, per="Camera")  # column names match case-insensitively
    assert Counter(v.fields["camera"] for v in sample.videos) == {"camA": 5, "camB": 5, "camC": 2}
    assert [(s.key, s.available, s.chosen) for s in sample.strata] == [("camA", 12, 5), ("camB", 12, 5), ("camC", 2, 2)]
    odd = Counter(v.fields["camera"] for v in draw(videos, 7, seed=1, per="camera").videos)
    assert odd["camC"] == 2 and sorted([odd["camA"], odd["camB"]]) == [2, 3]


def test_allocation() -> None:
    assert allocate({"a": 10, "b": 10, "c": 1}, 9, seed=0) == {"a": 4, "b": 4, "c": 1}
    assert allocate({"a": 3, "b": 3}, 6, seed=0) == {"a": 3, "b": 3}
    assert sum(allocate({"a": 5, "b": 5, "c": 5}, 4, seed=3).values()) == 4


def test_time_window_and_day_strata(tmp_path: Path) -> None:
    videos = candidates(tmp_path)
    since, until = bounds("2026-10-03", "2026-10-05")
    sample = draw(videos, 6, seed=2, per="day", since=since, until=until)
    assert {v.start.date() for v in sample.videos} == {dt.date(2026, 10, d) for d in (3, 4, 5)}
    assert Counter(v.start.date() for v in sample.videos) == {dt.date(2026, 10, d): 2 for d in (3, 4, 5)}
    with pytest.raises(ManifestError, match="--count 7: only 6 videos in the --since/--until window"):
        draw(videos, 7, since=since, until=until)


def test_unknown_stratum_is_an_error_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"--per tank: no such column or name field .*known: camera, date, day"):
        draw(candidates(tmp_path), 3, per="tank")


def test_list_sheet_videos_timed_by_name_when_there_is_no_date_column(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("path\n/v/cam1_2026-10-01_10-00-00.mp4\n/v/cam1_2026-10-02_10-00-00.mp4\n/v/other.mp4\n")
    videos = build(Request(sheet=sheet, sampling=True)).videos
    sample = draw(videos, 1, since=dt.datetime(2026, 10, 2))
    assert [v.uri for v in sample.videos] == ["/v/cam1_2026-10-02_10-00-00.mp4"]
    assert "1 video(s) have no start time" in sample.warnings[0]


def test_selection_sheet_sample_by_name_field(tmp_path: Path) -> None:
    tree = {
        f"tank{t}": {f"cam{t}_2026-10-{d:02d}_{h:02d}-00-00.mp4": 1 for d in (1, 2, 3) for h in range(0, 24, 6)}
        for t in (1, 2)
    }
    root = make_tree(tmp_path / "v", tree)
    sheet = write_xlsx(
        tmp_path / "s.xlsx",
        ["Tank", "Start", "End"],
        [["tank1", "01-Oct-2026", "03-Oct-2026"], ["tank2", "02-Oct-2026", "03-Oct-2026"]],
    )
    videos = build(Request(sheet=sheet, root=str(root), sampling=True)).videos
    sample = draw(videos, 4, seed=7, per="camera")
    assert Counter(v.fields["camera"] for v in sample.videos) == {"cam1": 2, "cam2": 2}
    assert all(v.start >= dt.datetime(2026, 10, 2) for v in sample.videos if v.fields["camera"] == "cam2")
    assert Counter(v.fields["folder"] for v in draw(videos, 4, seed=7, per="tank").videos) == {"tank1": 2, "tank2": 2}


def test_cli_sample_is_reproducible_and_writes_a_manifest(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    args = [
        "sample",
        str(sheet),
        "--root",
        str(root),
        "--count",
        "4",
        "--per",
        "folder",
        "--seed",
        "7",
        "--since",
        "2020-10-26",
        "--until",
        "2020-10-27",
    ]
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    for target in (a, b):
        result = runner.invoke(app, [*args, "-o", str(target)])
        assert result.exit_code == 0, result.output
    assert entries(a) == entries(b) and len(entries(a)) == 4
    assert read_manifest(a).entries == entries(a)
    assert Counter(Path(e).parent.name for e in entries(a)) == {"cam1": 2, "cam2": 2}
    assert "sample: count=4 seed=7 per=folder since=2020-10-26T00:00:00 until=2020-10-27T23:59:59" in comments(a)
    assert any(line.startswith('row 2: folder="cam1"') for line in comments(a))
    assert "4 of 6 videos (seed 7)" in result.stdout


def test_cli_sample_errors(tmp_path: Path) -> None:
    sheet = list_sheet(tmp_path)
    target = tmp_path / "s.txt"
    result = runner.invoke(app, ["sample", str(sheet), "--count", "100", "-o", str(target)])
    assert result.exit_code == 1 and "error: --count 100: only 26 videos" in result.stderr
    result = runner.invoke(app, ["sample", str(sheet), "-n", "3", "--since", "soon", "-o", str(target)])
    assert result.exit_code == 1 and "--since: 'soon' is not a date" in result.stderr
    result = runner.invoke(app, ["sample", str(sheet), "-n", "3", "--overlap", "-o", str(target)])
    assert result.exit_code == 1 and "--overlap does not apply" in result.stderr
    assert not target.exists()
