"""One name per idea on the command line, a default and an example in every --help, and
``status --watch``.

Real parts: the Typer app as a user runs it (typer's CliRunner), its click commands as Typer
builds them, real manifests written from a real sheet and folder, and run directories written by
ledger.Run with a scheduler registered under a test-only name (only its live view is faked).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.cli.app import RENAMED, reflowed, renamed
from dlcrun.ledger import Record, Run, Submission
from dlcrun.manifest import Manifest, read_manifest
from dlcrun.schedulers import register
from dlcrun.settings import Settings, load_settings

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # help lines unwrapped, so a line can be looked for whole


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every visible command and group below ``group`` (the app), with its words after ``dlcrun``."""
    group = group if group is not None else get_command(app)
    for name, command in getattr(group, "commands", {}).items():
        if command.hidden:
            continue
        yield (*path, name), command
        yield from commands(command, (*path, name))


def leaf_commands() -> list[tuple[tuple[str, ...], Any]]:
    return [(path, c) for path, c in commands() if not getattr(c, "commands", None)]


def flags_of(command: Any) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))} | {"--help"}


# ---------------------------------------------------------------- old spellings


def test_manifest_from_still_lists_a_folder_with_one_warning_naming_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    for day in (1, 2):
        (tmp_path / "videos" / f"cam1_2026-10-0{day}_10-00-00.mp4").write_bytes(b"x")

    old = runner.invoke(app, ["manifest", "--from", "videos", "-o", "old.txt"])
    new = runner.invoke(app, ["manifest", "--folder", "videos", "-o", "new.txt"])

    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert old.stderr.strip() == "warning: --from is now --folder; the old name goes in the next release"
    assert "--from" not in new.stderr
    assert read_manifest(tmp_path / "old.txt").entries == read_manifest(tmp_path / "new.txt").entries
    assert len(read_manifest(tmp_path / "new.txt").entries) == 2


def test_sample_old_and_new_spellings_draw_the_same_videos(tmp_path: Path) -> None:
    sheet = tmp_path / "videos.csv"
    sheet.write_text("video,date\n" + "".join(f"/data/v{d:02d}.mp4,2026-10-{d:02d}\n" for d in range(1, 13)))
    common = ["sample", str(sheet), "--seed", "3"]

    old = runner.invoke(app, [*common, "--n", "4", "--from", "2026-10-03", "--to=2026-10-06", "-o", f"{tmp_path}/o"])
    new = runner.invoke(
        app, [*common, "-n", "4", "--since", "2026-10-03", "--until", "2026-10-06", "-o", f"{tmp_path}/n"]
    )

    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert old.stderr.splitlines() == [
        f"warning: {a} is now {b}; the old name goes in the next release"
        for a, b in (("--n", "--count"), ("--from", "--since"), ("--to", "--until"))
    ]
    drawn = read_manifest(tmp_path / "n").entries
    assert read_manifest(tmp_path / "o").entries == drawn
    # --until's date alone is the whole day, as in manifest: the 6th is in, the 7th is not
    assert {Path(e).stem for e in drawn} == {"v03", "v04", "v05", "v06"}
    assert "sample: count=4 seed=3 since=2026-10-03T00:00:00 until=2026-10-06T23:59:59" in (tmp_path / "n").read_text()


def test_submit_csv_is_save_csv_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("Task: x\n")
    args = ["submit", f"{tmp_path}/missing.txt", "--project", str(tmp_path), "--dest", f"{tmp_path}/k"]

    for old, new in (("--csv", "--save-csv"), ("--no-csv", "--no-save-csv")):
        result = runner.invoke(app, [*args, old])
        lines = result.stderr.splitlines()
        assert lines[0] == f"warning: {old} is now {new}; the old name goes in the next release", result.stderr
        # past the parsing: refused for the manifest, as without the flag, not for the flag
        assert result.exit_code == 1 and lines[-1].startswith(f"error: {tmp_path}/missing.txt: no such manifest")


def test_renamed_leaves_option_values_and_what_follows_a_double_dash_alone() -> None:
    sample = get_command(app).commands["sample"]  # type: ignore[attr-defined]
    rules = RENAMED["sample"]

    assert renamed(sample, ["s.csv", "--n=4", "--column", "--from", "--to", "x"], rules) == [
        "s.csv",
        "--count=4",
        "--column",
        "--from",  # the value of --column
        "--until",
        "x",
    ]
    assert renamed(sample, ["--per", "--n", "--", "--n"], rules) == ["--per", "--n", "--", "--n"]


def test_old_spellings_are_hidden_and_each_names_a_flag_the_command_has() -> None:
    found = {" ".join(path): command for path, command in commands()}
    for name, rules in RENAMED.items():
        command = found[name]
        shown = runner.invoke(app, [*name.split(), "--help"], env=WIDE).stdout
        for old, new in rules.items():
            assert new in flags_of(command), (name, new)
            assert old not in flags_of(command), (name, old)  # else the rename would change what it means
            assert f" {old} " not in shown, (name, old)


def test_every_flag_named_like_a_setting_is_spelled_like_it() -> None:
    """One name per idea: a flag that sets a setting is spelled after it (no exceptions left)."""
    from dlcrun.cli.app import SPELLED_OTHERWISE

    assert SPELLED_OTHERWISE == {}
    for _path, command in leaf_commands():
        for param in command.params:
            if param.name in Settings.model_fields and param.param_type_name == "option":
                assert param.opts[0] == "--" + param.name.replace("_", "-"), (command.name, param.opts)


# ---------------------------------------------------------------- defaults and examples in --help


def test_every_option_says_its_default() -> None:
    """A value shown, where it comes from (dlcrun.toml, else ...), required, or an on/off switch
    that is off unless given."""
    missing = []
    for path, command in commands():
        for p in command.params:
            if p.param_type_name != "option":
                continue
            said = (
                p.required
                or isinstance(p.show_default, str)
                or (p.default is not None and p.show_default is not False)
                or (p.is_flag and not p.secondary_opts and not p.default)
                or p.envvar
                or "\\[default:" in (p.help or "")  # written into the help text
            )
            if not said:
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    assert missing == []


def test_a_setting_s_flag_shows_its_description_and_where_its_default_comes_from() -> None:
    submit = get_command(app).commands["submit"]  # type: ignore[attr-defined]
    by_name = {p.name: p for p in submit.params}
    assert by_name["batch_size"].help == "frames per forward pass"  # the setting's, before "; empty: ..."
    assert Settings.model_fields["batch_size"].description == "frames per forward pass; empty: the project's"
    assert by_name["batch_size"].show_default == "dlcrun.toml, else the project's"
    assert by_name["shuffle"].show_default == "dlcrun.toml, else 1"
    assert by_name["save_csv"].show_default == "dlcrun.toml, else no-save-csv"

    shown = runner.invoke(app, ["submit", "--help"], env=WIDE).stdout
    assert "[default: (dlcrun.toml, else 1)]" in shown and "[default: (dlcrun.toml, else local)]" in shown


@pytest.mark.parametrize("path", [path for path, _ in leaf_commands()], ids=" ".join)
def test_every_command_s_help_has_an_example_using_its_own_flags(path: tuple[str, ...]) -> None:
    command = dict(leaf_commands())[path]
    help_text = command.help or ""
    assert "\n\nExample" in help_text, path
    examples = [line.strip() for line in help_text.replace("\\\n", " ").splitlines() if line.startswith("    ")]
    used = [line for line in examples if f"dlcrun {' '.join(path)}" in line]
    assert used, (path, examples)
    for line in used:
        words = shlex.split(line.split(f"dlcrun {' '.join(path)}", 1)[1])
        for word in words:
            if word in ("&&", ">", "|"):
                break
            if word.startswith("--"):
                assert word.split("=")[0] in flags_of(command), (path, word)

    shown = runner.invoke(app, [*path, "--help"], env=WIDE).stdout
    assert f"    {used[0]}" in shown  # kept as one indented line, not reflowed into the prose


def test_reflowed_joins_prose_keeps_examples_and_is_idempotent() -> None:
    doc = """Summary
    on two lines.

    A paragraph
    wrapped in the source.

    Example:

        dlcrun x --a 1
        dlcrun x --b 2
    """
    once = reflowed(doc)
    assert once == (
        "Summary on two lines.\n\n\nA paragraph wrapped in the source.\n\nExample:\n\n"
        "    dlcrun x --a 1\n    dlcrun x --b 2"
    )
    assert reflowed(once) == once


# ---------------------------------------------------------------- status --watch

FAKE = "names-fake"


class Scheduler:
    """A live view: every index running until asked ``turns`` times, then nothing (the records tell)."""

    def __init__(self, turns: int):
        self.name, self.turns = FAKE, turns

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        self.turns -= 1
        if self.turns > 0:
            return {(1, i): "running" for i in range(len(run))}
        for i in range(len(run)):  # the indices finish between two looks
            run.write_record(Record(index=i, video=run.manifest.entries[i], state="done", attempts=1, submission=1))
        return {}


def make_run(tmp_path: Path, n: int = 3) -> Run:
    settings = load_settings(
        None, project=tmp_path / "project", dest=str(tmp_path / "out"), runs_dir=tmp_path / "runs", scheduler=FAKE
    )
    run = Run.create(tmp_path / "runs", settings, Manifest(entries=[f"/v/v{i}.mp4" for i in range(n)]), {}, name="w")
    run.write_indices(1, list(range(n)))
    run.add_submission(1, FAKE, ["100"], list(range(n)), None)
    return run


def scheduler(turns: int) -> Scheduler:
    made = Scheduler(turns)
    register(FAKE)(lambda: made)
    return made


def test_watch_on_a_finished_run_prints_its_status_once_and_returns(tmp_path: Path) -> None:
    scheduler(turns=0)  # done at the first look
    run = make_run(tmp_path)

    result = runner.invoke(app, ["status", str(run.path), "--watch"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert result.stdout.count(f"run {run.id}: 3 videos") == 1
    assert "done" in result.stdout and "Ctrl-C" not in result.stdout  # no "redrawn every" line once finished


def test_watch_redraws_until_the_run_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dlcrun.cli.runs as runs

    monkeypatch.setattr(runs, "WATCH_SECONDS", 0)
    made = scheduler(turns=3)
    run = make_run(tmp_path)

    result = runner.invoke(app, ["status", str(run.path), "--watch"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert made.turns == 0  # asked three times: running, running, then ended
    assert "done" in result.stdout and "running" not in result.stdout  # the last view is what stays


def test_ctrl_c_stops_watching_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler(turns=100)
    run = make_run(tmp_path)

    def interrupted(run: Run, every: float = 1.0) -> Iterator[batch.Status]:
        yield batch.status(run)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "watch", interrupted)
    result = runner.invoke(app, ["status", str(run.path), "--watch"], env=WIDE)

    assert result.exit_code == 0 and "Aborted" not in result.output and "Traceback" not in result.output
    assert "running" in result.stdout  # the last view drawn stays on screen


def test_watch_with_json_is_refused_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--watch", "--json", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --watch and --json: --json prints one object for scripts, --watch redraws; give one"
    ]
    assert not (tmp_path / "runs").exists()
