"""Selection sheets (folder + date window per row) -> manifests, through the Storage seam."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selection_data import HEADER, IN_WINDOW, ROWS, TREE, comments, entries, lab_sheet, make_tree, write_xlsx
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.dates import parse_day
from dlcrun.errors import ConfigError, ManifestError, StorageError
from dlcrun.manifest import read_manifest, write_manifest
from dlcrun.names import NamePattern, is_conflicted_copy
from dlcrun.selection import Request, build, select
from dlcrun.sheets import parse_column_map, read_sheet, sheet_kind
from dlcrun.storage import StoredObject, register

runner = CliRunner()


def expected(root: Path, names: list[str]) -> list[str]:
    return [str(root / n) for n in names]


def test_lab_sheet_manifest_line_by_line(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    found = select(read_sheet(sheet), root=str(root))
    target = write_manifest(tmp_path / "m.txt", found.manifest())

    assert entries(target) == expected(root, IN_WINDOW)
    cam1 = TREE["cam1"]
    head = comments(target)
    assert head[1].startswith(f"sheet: {sheet} (sha256 ")
    assert head[2] == f"selection: root={root} name_pattern={{camera}}_{{start:%Y-%m-%d_%H-%M-%S}}"
    assert head[3:] == [
        'row 2: folder="cam1" window=2020-10-26T00:00:00..2020-10-27T23:59:59 videos=4 '
        f"bytes={sum(cam1[n.split('/')[1]] for n in IN_WINDOW[:4])} "
        "first=2020-10-26T00:00:00 last=2020-10-27T23:59:59",
        'row 4: folder="cam2" window=2020-10-26T00:00:00..2020-10-26T23:59:59 videos=2 bytes=43 '
        "first=2020-10-26T08:15:00 last=2020-10-26T23:45:10",
        'row 5: folder="cam2" window=2020-11-01T00:00:00..2020-11-02T23:59:59 videos=0 bytes=0',
        "videos: 6",
    ]
    assert read_manifest(target).entries == expected(root, IN_WINDOW)


def test_overlap_keeps_the_video_that_runs_into_each_window(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    found = select(read_sheet(sheet), root=str(root), overlap=True)
    assert [v.uri for v in found.videos] == expected(
        root,
        [
            "cam1/cam1_2020-10-25_23-30-00.mp4",
            *IN_WINDOW[:4],
            "cam2/cam2_2020-10-25_20-00-00.avi",
            *IN_WINDOW[4:],
            "cam2/cam2_2020-10-27_00-00-01.avi",
        ],
    )
    assert [r.videos[0].before_window for r in found.rows] == [True, True, True]
    assert "overlap=1" in found.header[2] and "first=2020-10-25T23:30:00" in found.header[2]


def test_warnings_name_conflicts_unmatched_names_and_empty_windows(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    warnings = select(read_sheet(sheet), root=str(root)).warnings
    text = "\n".join(warnings)
    assert f"{root / 'cam1'}: 1 video name(s) do not match" in text and "notes from tuesday.mp4" in text
    assert "skipped 2 Dropbox conflicted copies" in text
    assert any(w.startswith("row 5: no video in 'cam2' from 2020-11-01") for w in warnings)
    assert not any(w.startswith(("row 2:", "row 4:")) for w in warnings)


def test_mtime_fallback_times_names_that_do_not_match(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    odd = root / "cam1" / "notes from tuesday.mp4"
    when = dt.datetime(2020, 10, 26, 15, 0).timestamp()  # local time, as the fallback reads it
    os.utime(odd, (when, when))
    found = select(read_sheet(sheet), root=str(root), mtime_fallback=True)
    uris = [v.uri for v in found.videos]
    assert uris[:3] == expected(root, IN_WINDOW[:2]) + [str(odd)]
    assert next(v for v in found.videos if v.uri == str(odd)).timed_by == "mtime"
    assert not any("do not match" in w for w in found.warnings)
    assert "mtime-fallback" in found.header[1]


def test_custom_name_pattern_and_column_names(tmp_path: Path) -> None:
    make_tree(tmp_path / "v", {"A": {"20201026-140327_A.mov": 1, "20201027-000000_A.mov": 2, "A_x.mov": 1}})
    sheet = write_xlsx(tmp_path / "s.xlsx", ["Where", "From", "To"], [["A", "2020-10-26", "2020-10-26"]])
    with pytest.raises(ManifestError, match="neither a list of videos"):
        sheet_kind(read_sheet(sheet))
    found = select(
        read_sheet(sheet),
        root=str(tmp_path / "v"),
        columns=parse_column_map("folder=where"),
        pattern="{start:%Y%m%d-%H%M%S}_{tank}",
    )
    assert [v.uri for v in found.videos] == [str(tmp_path / "v" / "A" / "20201026-140327_A.mov")]
    assert found.videos[0].fields["tank"] == "A"


def test_error_rows_are_named_and_nothing_is_listed(tmp_path: Path) -> None:
    _, root = lab_sheet(tmp_path)
    sheet = write_xlsx(
        tmp_path / "bad.xlsx",
        HEADER,
        [
            ["cam1", "26-Oct-2020", "25-Oct-2020"],  # row 2: end before start
            ["cam1", "sometime", "27-Oct-2020"],  # row 3: unreadable date
            None,
            ["", "26-Oct-2020", "27-Oct-2020"],  # row 5: no folder
            ["cam2", "26-Oct-2020", None],  # row 6: no end
        ],
    )
    with pytest.raises(ManifestError) as info:
        select(read_sheet(sheet), root=str(root))
    message = str(info.value)
    assert "row 2: end 2020-10-25 is before start 2020-10-26" in message
    assert "row 3: 'Start Date' 'sometime' is not a date" in message
    assert "row 5: 'Tank' is empty" in message and "row 6: 'END' is empty" in message
    assert "row 4" not in message


def test_missing_folder_is_an_error_naming_the_row(tmp_path: Path) -> None:
    _, root = lab_sheet(tmp_path)
    sheet = write_xlsx(
        tmp_path / "s.xlsx", HEADER, [["cam1", "26-Oct-2020", "27-Oct-2020"], ["cam9", "26-Oct-2020", "27-Oct-2020"]]
    )
    with pytest.raises(ManifestError, match=r"row 3: folder 'cam9': .*cam9: no such folder"):
        select(read_sheet(sheet), root=str(root))


def test_no_video_at_all_is_an_error(tmp_path: Path) -> None:
    _, root = lab_sheet(tmp_path)
    sheet = write_xlsx(tmp_path / "s.xlsx", HEADER, [["cam1", "1-Jan-2021", "2-Jan-2021"]])
    with pytest.raises(ManifestError, match="no row's window matches a video .*1 video names did not match"):
        select(read_sheet(sheet), root=str(root))


def test_overlapping_rows_list_each_video_once(tmp_path: Path) -> None:
    _, root = lab_sheet(tmp_path)
    sheet = write_xlsx(
        tmp_path / "s.xlsx", HEADER, [["cam1", "26-Oct-2020", "26-Oct-2020"], ["cam1", "26-Oct-2020", "27-Oct-2020"]]
    )
    found = select(read_sheet(sheet), root=str(root))
    assert [v.uri for v in found.videos] == expected(root, IN_WINDOW[:4])
    assert [len(r.videos) for r in found.rows] == [2, 4]
    assert "row 3: 2 video(s) already selected by row 2 (overlapping windows); listed once" in found.warnings


@pytest.mark.parametrize(
    ("text", "dayfirst", "day"),
    [
        ("26-Oct-2020", False, dt.datetime(2020, 10, 26)),
        ("2020-10-26", True, dt.datetime(2020, 10, 26)),
        ("10/26/2020", False, dt.datetime(2020, 10, 26)),
        ("01/02/2020", False, dt.datetime(2020, 1, 2)),
        ("01/02/2020", True, dt.datetime(2020, 2, 1)),
        (dt.datetime(2020, 10, 26), False, dt.datetime(2020, 10, 26)),
        (dt.date(2020, 10, 26), False, dt.datetime(2020, 10, 26)),
        (44130, False, dt.datetime(2020, 10, 26)),  # an Excel serial number stored without a date format
    ],
)
def test_dates_in_the_forms_labs_write(text: object, dayfirst: bool, day: dt.datetime) -> None:
    assert parse_day(text, dayfirst) == day


def test_dayfirst_settles_ambiguous_dates_in_a_csv_sheet(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "v", {"c": {"c_2020-01-02_10-00-00.mp4": 1, "c_2020-02-01_10-00-00.mp4": 1}})
    sheet = tmp_path / "s.csv"
    sheet.write_text("folder,start,end\nc,01/02/2020,01/02/2020\n")
    for dayfirst, name in [(False, "c_2020-01-02_10-00-00.mp4"), (True, "c_2020-02-01_10-00-00.mp4")]:
        found = select(read_sheet(sheet), root=str(root), dayfirst=dayfirst)
        assert [v.uri for v in found.videos] == [str(root / "c" / name)]


@pytest.mark.parametrize("text", ["sometime", "3", "Oct 2020", ""])
def test_incomplete_or_unreadable_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_day(text)


def test_name_pattern_rules() -> None:
    ispy = NamePattern.compile("{camera}_{start:%Y-%m-%d_%H-%M-%S}")
    assert ispy.match("my_cam_2_2020-10-26_14-03-27.mp4") == (
        dt.datetime(2020, 10, 26, 14, 3, 27),
        {"camera": "my_cam_2"},
    )
    assert ispy.match("cam2_2020-13-26_14-03-27.mp4") is None  # month 13
    assert ispy.match("cam2_2020-10-26_14-03-27 (1).mp4") is None
    for bad, why in [
        ("{camera}", "needs a {start"),
        ("{start}", "needs a time format"),
        ("{start:%Q}", "unsupported"),
        ("{a}_{a}_{start:%Y}", "twice"),
        ("{start:%Y", "unbalanced"),
    ]:
        with pytest.raises(ConfigError, match=why):
            NamePattern.compile(bad)


def test_conflicted_copies() -> None:
    assert is_conflicted_copy("cam1_2020-10-26_00-00-00 (1).mp4")
    assert is_conflicted_copy("cam1_2020-10-26_00-00-00 (Jane Doe's conflicted copy 2020-10-27).mp4")
    assert is_conflicted_copy("cam1 (conflicted copy).mp4")
    assert not is_conflicted_copy("cam1_2020-10-26_00-00-00.mp4")
    assert not is_conflicted_copy("tank(1)_2020-10-26_00-00-00.mp4")


def test_sheet_kinds(tmp_path: Path) -> None:
    lst = tmp_path / "list.csv"
    lst.write_text("video,camera,start,end\na.mp4,c1,2020-10-26,2020-10-27\n")
    sel = tmp_path / "sel.csv"
    sel.write_text("Camera,start_date,End-Date\nc1,2020-10-26,2020-10-27\n")
    assert sheet_kind(read_sheet(lst)) == "list"  # a video column wins
    assert sheet_kind(read_sheet(sel)) == "selection"
    assert sheet_kind(read_sheet(lst), columns={"folder": "camera"}) == "selection"
    with pytest.raises(ManifestError, match="'where=x' is not ROLE=COLUMN"):
        parse_column_map("where=x")


class MemoryStorage:
    """An in-memory Storage (emulation) whose URIs are not paths, standing in for a Dropbox root.

    Registered through the public seam under the test-only 'memtest:' scheme: it shows the
    selection lists folders only through ``storage_for(root).list`` and never touches the disk.
    """

    files: dict[str, StoredObject] = {}

    def list(self, uri: str, recursive: bool = False) -> Iterator[StoredObject]:
        prefix = uri.rstrip("/") + "/"
        found = sorted((k, o) for k, o in self.files.items() if k.startswith(prefix) and "/" not in k[len(prefix) :])
        if not found:
            raise StorageError(f"{uri}: no such folder")
        yield from (o for _, o in found)

    def fetch(self, uri: str, local: Path) -> StoredObject:
        raise NotImplementedError

    def put(self, local: Path, uri: str) -> StoredObject:
        raise NotImplementedError

    def stat(self, uri: str) -> StoredObject | None:
        return self.files.get(uri)

    def delete(self, uri: str) -> None:
        self.files.pop(uri, None)


register("memtest")(MemoryStorage)


def test_remote_root_through_the_storage_seam_emulation(tmp_path: Path) -> None:
    root = "memtest:/iSpyData/video"
    client_modified = dt.datetime(2020, 10, 27, 9, 30).timestamp()
    MemoryStorage.files = {
        f"{root}/{folder}/{name}": StoredObject(f"{root}/{folder}/{name}", size, mtime=client_modified)
        for folder, files in TREE.items()
        for name, size in files.items()
    }
    sheet = write_xlsx(tmp_path / "s.xlsx", HEADER, ROWS)
    found = select(read_sheet(sheet), root=root, mtime_fallback=True)
    assert [v.uri for v in found.videos] == [
        f"{root}/{n}" for n in [*IN_WINDOW[:2], "cam1/notes from tuesday.mp4", *IN_WINDOW[2:]]
    ]
    assert found.total_bytes == sum(TREE[n.split("/")[0]][n.split("/")[1]] for n in IN_WINDOW) + 7
    sheet = write_xlsx(tmp_path / "t.xlsx", HEADER, [["cam7", "26-Oct-2020", "27-Oct-2020"]])
    with pytest.raises(ManifestError, match="row 2: folder 'cam7': memtest:/iSpyData/video/cam7: no such folder"):
        select(read_sheet(sheet), root=root)


def test_probe_reads_durations_of_real_videos(tmp_path: Path, tiny_videos) -> None:
    folder = tmp_path / "v" / "cam1"
    tiny_videos(folder, ["cam1_2020-10-26_10-00-00.mp4", "cam1_2020-10-26_11-00-00.mp4"], frames=20)
    (folder / "cam1_2020-10-26_12-00-00.mp4").write_bytes(b"")  # not a readable video: duration unknown
    sheet = write_xlsx(tmp_path / "s.xlsx", ["folder", "start", "end"], [["cam1", "2020-10-26", "2020-10-26"]])
    found = select(read_sheet(sheet), root=str(tmp_path / "v"), probe=True)
    hours, known = found.known_hours
    assert known == 2 and hours == pytest.approx(2 * 20 / 10 / 3600)  # write_video: 10 fps
    assert [v.duration for v in found.rows[0].videos] == [pytest.approx(2.0), pytest.approx(2.0), None]


# --- build: the one entry point of manifest and sample ----------------------------------------


def test_build_a_list_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "list.csv"
    sheet.write_text("video,camera,date\ncam1_2020-10-26_10-00-00.mp4,cam1,\nb.mp4,cam2,2020-10-27\nc.mp4,cam1,\n")
    found = build(Request(sheet=sheet, root="/v", cameras=("CAM1",)))
    assert found.kind == "list" and found.sheet_rows == 3
    assert [v.uri for v in found.videos] == ["/v/cam1_2020-10-26_10-00-00.mp4", "/v/c.mp4"]
    assert found.videos[0].start == dt.datetime(2020, 10, 26, 10) and found.videos[0].timed_by == "name"
    assert found.header[0].startswith(f"sheet: {sheet} (sha256 ")
    assert found.header[1] == "column: video; filters: camera=CAM1"
    (tmp_path / "dated.csv").write_text("video,date\na.mp4,2020-10-26\nb.mp4,2020-10-27\n")
    dated = build(Request(sheet=tmp_path / "dated.csv", source="/s", since="2020-10-27"))
    assert [(v.uri, v.timed_by) for v in dated.videos] == [("/s/b.mp4", "sheet")]  # source: the root without --root


def test_build_a_selection_sheet(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    found = build(Request(sheet=sheet, source=str(root), overlap=True))
    assert found.kind == "selection" and found.sheet_rows == 3 and len(found.rows) == 3
    assert [v.uri for v in found.videos] == [
        v.uri for v in select(read_sheet(sheet), root=str(root), overlap=True).videos
    ]
    assert len(found.videos) == 9
    assert found.header[1] == f"selection: root={root} name_pattern={{camera}}_{{start:%Y-%m-%d_%H-%M-%S}} overlap"
    custom = build(
        Request(
            sheet=sheet,
            root=str(root),
            columns="folder=Tank,start=Start Date,end=END",
            pattern="{cam}_{start:%Y-%m-%d_%H-%M-%S}",
        )
    )
    assert custom.videos[0].fields["cam"] == "cam1" and "name_pattern={cam}_" in custom.header[1]


def test_build_a_folder_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, {"videos": {"cam1_2020-10-26_10-00-00.mp4": 3, "cam1_2020-10-27_10-00-00.mp4": 4}})
    monkeypatch.chdir(tmp_path)
    found = build(Request(listing="videos", since="2020-10-27", dates="name", source="/ignored"))
    assert [v.uri for v in found.videos] == [str(tmp_path / "videos" / "cam1_2020-10-27_10-00-00.mp4")]
    pattern = "{camera}_{start:%Y-%m-%d_%H-%M-%S}"
    assert found.header == [f"listing: {tmp_path / 'videos'} since=2020-10-27 by name name_pattern={pattern}"]
    assert found.sheet_rows == 0 and found.total_bytes == 4


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request(), r"^give a spreadsheet or --folder FOLDER \(one of them\)$"),
        (Request(sheet=Path("s.csv"), listing="v"), r"one of them"),
        (Request(listing="v", cameras=("c1",), probe=True), r"^--camera, --probe: for spreadsheets, not --folder$"),
        (Request(listing="v", root="/r", worksheet="Sheet2"), r"^--root, --sheet: for spreadsheets, not --folder$"),
    ],
)
def test_build_refuses_a_request_that_is_not_one_source(request_: Request, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        build(request_)


def test_build_refuses_flags_of_the_other_kind(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    lst = tmp_path / "list.csv"
    lst.write_text("video\na.mp4\n")
    for request, message in [
        (Request(sheet=sheet, root=str(root), since="2020-10-26"), "--since does not apply: this sheet is a selection"),
        (Request(sheet=sheet, root=str(root), cameras=("c",)), "--camera does not apply: this sheet is a selection"),
        (Request(sheet=sheet, root=str(root), dates="name"), "--dates does not apply: this sheet is a selection"),
        (Request(sheet=lst, overlap=True), "--overlap does not apply: this sheet is a list"),
        (Request(sheet=lst, probe=True, recursive=True), "--probe does not apply: this sheet is a list"),
        (Request(sheet=lst, name_pattern="{start:%Y}"), "--name-pattern does not apply: this sheet is a list"),
    ]:
        with pytest.raises(ManifestError) as info:
            build(request)
        assert str(info.value).startswith(f"{request.sheet}: ") and message in str(info.value)
    # A sample times a list sheet's videos by their names, so there the pattern applies.
    sampled = build(Request(sheet=lst, name_pattern="{start:%Y}", pattern="{start:%Y}", sampling=True))
    assert [v.uri for v in sampled.videos] == [str(tmp_path / "a.mp4")]


# --- CLI --------------------------------------------------------------------------------------


def test_cli_manifest_from_selection_sheet(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    target = tmp_path / "manifests" / "oct26.txt"
    result = runner.invoke(app, ["manifest", str(sheet), "--root", str(root), "-o", str(target), "--overlap"])
    assert result.exit_code == 0, result.output
    assert len(entries(target)) == 9
    assert "warning: row 5: no video in 'cam2'" not in result.output  # with --overlap row 5 keeps one
    assert "notes from tuesday.mp4" in result.stderr
    assert "9 videos from 3 rows" in result.stdout
    assert "total" in result.stdout and "3 rows" in result.stdout


def test_cli_errors_name_rows_and_write_nothing(tmp_path: Path) -> None:
    _, root = lab_sheet(tmp_path)
    sheet = write_xlsx(
        tmp_path / "bad.xlsx",
        HEADER,
        [
            ["cam1", "26-Oct-2020", "27-Oct-2020"],
            ["cam1", "27-Oct-2020", "26-Oct-2020"],
            ["cam9", "26-Oct-2020", "27-Oct-2020"],
        ],
    )
    target = tmp_path / "m.txt"
    result = runner.invoke(app, ["manifest", str(sheet), "--root", str(root), "-o", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "row 3: end 2020-10-26 is before start" in result.stderr
    assert not target.exists()
    sheet = write_xlsx(tmp_path / "bad2.xlsx", HEADER, [["cam9", "26-Oct-2020", "27-Oct-2020"]])
    result = runner.invoke(app, ["manifest", str(sheet), "--root", str(root), "-o", str(target)])
    assert result.exit_code == 1 and "row 2: folder 'cam9'" in result.stderr
    assert not target.exists()


def test_cli_refuses_options_of_the_other_sheet_kind(tmp_path: Path) -> None:
    sheet, root = lab_sheet(tmp_path)
    result = runner.invoke(app, ["manifest", str(sheet), "--root", str(root), "--since", "2020-10-26"])
    assert result.exit_code == 1 and "--since does not apply: this sheet is a selection" in result.stderr
    lst = tmp_path / "list.csv"
    lst.write_text("video\na.mp4\n")
    result = runner.invoke(app, ["manifest", str(lst), "--overlap", "-o", str(tmp_path / "x.txt")])
    assert result.exit_code == 1 and "--overlap does not apply: this sheet is a list" in result.stderr


def test_name_pattern_from_settings_file(tmp_path: Path) -> None:
    make_tree(tmp_path / "v", {"t1": {"20201026-1403_t1.mp4": 1, "t1_2020-10-26_14-03-00.mp4": 1}})
    sheet = write_xlsx(tmp_path / "s.xlsx", ["Tank", "Start", "End"], [["t1", "26-Oct-2020", "26-Oct-2020"]])
    cfg = tmp_path / "dlcrun.toml"
    cfg.write_text(f'source = "{tmp_path / "v"}"\nname_pattern = "{{start:%Y%m%d-%H%M}}_{{tank}}"\n')
    target = tmp_path / "m.txt"
    result = runner.invoke(app, ["manifest", str(sheet), "-c", str(cfg), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert entries(target) == [str(tmp_path / "v" / "t1" / "20201026-1403_t1.mp4")]
    cfg.write_text('name_pattern = "{camera}_{day}"\n')
    result = runner.invoke(app, ["manifest", str(sheet), "-c", str(cfg), "-o", str(target)])
    assert result.exit_code == 1 and "name_pattern" in result.stderr and "needs a {start:FORMAT}" in result.stderr
