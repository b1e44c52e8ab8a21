"""``dlcrun submit --dry-run`` keeps what it shows: a run directory marked as a dry run with the
exact job scripts and the submit commands (a chained array's job id fed by a shell variable),
printed in about fifteen lines whatever the batch's size, with an estimate of wall time and
GPU-hours measured by an earlier run of the same model, never invented. ``status`` says a dry
run is one; ``resubmit`` and ``cancel`` refuse it.

Real parts: the CLI, batch.dry_run, the scheduler backends' plans, run directories and ledger
records written by ledger.Run, the storage check over real (sparse) video files, and bash
running the commands file against stand-in ``sbatch``/``qsub`` programs. Only pinning is
replaced (it needs a trained DeepLabCut snapshot): it returns a fixed ModelSpec.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun import batch
from dlcrun.cli import app, views
from dlcrun.errors import SubmissionError
from dlcrun.estimate import estimate, wall_seconds
from dlcrun.inference import ModelSpec
from dlcrun.ledger import Record, Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.schedulers import PREVIOUS
from dlcrun.settings import load_settings

runner = CliRunner()
GB = 10**9
SCORER = "DLC_Resnet50_labshuffle1_snapshot_200"
MODEL = {"scorer": SCORER, "snapshot": "/anywhere/dlc-models-pytorch/iteration-0/train/snapshot-200.pt"}


@pytest.fixture(autouse=True)
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a project (config.yaml only), no dlcrun.toml, no DLCRUN_ variables,
    dlcrun's own schedulers only, and pinning that returns MODEL's snapshot."""
    from dlcrun import settings

    monkeypatch.setattr(settings, "SCHEDULERS", ["local", "pbs", "slurm", "torque"])
    for name in [k for k in os.environ if k.upper().startswith("DLCRUN_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.yaml").write_text("Task: lab\n")

    def pinned(current: object) -> ModelSpec:
        return ModelSpec(
            project=str(tmp_path / "proj"),
            shuffle=1,
            trainingsetindex=0,
            snapshot=MODEL["snapshot"],
            scorer=SCORER,
            bodyparts=["nose"],
            net_type="resnet_50",
            default_batch_size=8,
        )

    monkeypatch.setattr(batch, "pin", pinned)
    return tmp_path


def videos(lab: Path, sizes: list[int], folder: str = "videos") -> Path:
    """A manifest of sparse video files of ``sizes`` bytes (the storage check stats them)."""
    (lab / folder).mkdir()
    entries = []
    for i, size in enumerate(sizes):
        path = lab / folder / f"v{i:05d}.mp4"
        with open(path, "wb") as fh:
            fh.truncate(size)
        entries.append(str(path))
    return write_manifest(lab / "batch.txt", Manifest(entries=entries))


def settings_for(lab: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(None, project=lab / "proj", dest=str(lab / "keypoints"), runs_dir=lab / "runs", **overrides)


def earlier_run(lab: Path, model: dict[str, str] = MODEL, name: str = "earlier", **overrides: object) -> Run:
    """A finished run of ``model``: five videos analysed at 10, 20, 30, 400 and 50 s per GB (median
    30), two indices' model loads of 12 and 18 s (median 15), and records that must not count."""
    made = Run.create(
        lab / "runs", settings_for(lab, **overrides), Manifest(entries=[f"/v/{i}.mp4" for i in range(8)]), model, name
    )
    timed = [
        (1 * GB, {"fetch": 2.0, "load": 12.0, "infer": 6.0, "upload": 2.0}),
        (2 * GB, {"fetch": 0.0, "load": 0.0, "infer": 40.0, "upload": 0.0}),
        (GB // 2, {"fetch": 1.0, "load": 18.0, "infer": 13.0, "upload": 1.0}),
        (1 * GB, {"fetch": 0.0, "load": 0.0, "infer": 400.0, "upload": 0.0}),
        (1 * GB, {"fetch": 0.0, "load": 0.0, "infer": 50.0, "upload": 0.0}),
    ]
    host = ["gpu-a1", "gpu-a1", "gpu-b2", "gpu-a1", "gpu-b2"]
    for i, (size, seconds) in enumerate(timed):
        made.write_record(
            Record(index=i, video=f"/v/{i}.mp4", state="done", bytes_in=size, frames=900, seconds=seconds, host=host[i])
        )
    # Failed (no rate to trust), found done already (nothing analysed), and no size known.
    made.write_record(Record(index=5, video="/v/5.mp4", state="failed", bytes_in=GB, seconds={"infer": 9000.0}))
    made.write_record(Record(index=6, video="/v/6.mp4", state="done", frames=900))
    made.write_record(Record(index=7, video="/v/7.mp4", state="done", frames=900, seconds={"infer": 9000.0}))
    return made


# ---------------------------------------------------------------- what is written and shown


def test_a_dry_run_of_5000_videos_keeps_its_files_and_says_it_all_in_15_lines(lab: Path) -> None:
    earlier_run(lab)
    manifest = videos(lab, [GB // 10] * 5000)
    args = ["submit", str(manifest), "--project", "proj", "--dest", "keypoints", "--runs-dir", "runs"]
    args += ["--scheduler", "slurm", "--gpus", "1", "--max-running", "50", "--videos-per-task", "5", "--time", "30m"]
    (lab / "dlcrun.toml").write_text("max_array_size = 400\n")  # no scontrol asked
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    shown = result.stdout.splitlines()
    assert len(shown) <= 15, result.stdout

    (path,) = [p.parent for p in (lab / "runs").glob("*/dry-run.json")]
    run = Run(path)
    assert run.dry is not None and run.dry.manifest == str(manifest)
    assert json.loads((path / "dry-run.json").read_text())["queued"] is False
    assert shown[0] == f"dry run: nothing was queued; run {run.id} kept in {path} (marked by dry-run.json)"
    assert f"  model     {SCORER} (snapshot-200.pt)" in shown
    assert "  videos    5000, 500.00 GB to stage" in shown
    assert "  array     1000 indices of 5 videos (slurm); split into 3 arrays of at most 400" in result.stdout
    assert "at most 50 at once" in result.stdout
    assert sum("each array waits for the one before it (--dependency=afterany:$previous" in x for x in shown) == 1
    assert PREVIOUS not in result.stdout
    assert "#!/bin/bash" not in result.stdout, "the scripts are named, not printed"

    plans = batch.plan(run)  # the run plans the same arrays again: what was written is what would run
    assert len(plans) == 3
    for plan in plans:
        assert plan.script_path is not None and plan.script_path.read_text() == plan.script
        assert os.access(plan.script_path, os.X_OK)
    assert f"  scripts   3 in {path / 'submissions'}: " in result.stdout
    commands = path / "submissions" / "001.submit.sh"
    assert f"  commands  {commands} (in order; kept to be read)" in shown
    assert not list((path / "submissions").glob("*.json")), "nothing was queued"

    # The estimate: 0.1 GB videos at a median 30 s/GB, 15 s of model load: 5 x 3 + 15 = 30 s per index.
    earlier = next(p.name for p in (lab / "runs").iterdir() if p.name.endswith("-earlier"))
    rate = f"  estimate  from run {earlier}: 5 videos on gpu-a1 and 1 other host"
    assert rate + ", median 30.0 s per GB of video, model load 15 s per index" in shown
    assert (
        "per index about 1 min (longest 1 min, videos #0-#4); 1000 indices: 8.3 GPU-hours (1 GPU each)" in result.stdout
    )
    assert not any(x.startswith("  warning") for x in shown), "30 s fit in 30 min"
    assert shown[-1] == f"to queue it: dlcrun submit {manifest} with the same options, without --dry-run"


def test_an_index_longer_than_the_time_limit_is_warned_with_the_time_to_ask_for(lab: Path) -> None:
    earlier_run(lab)
    manifest = videos(lab, [40 * GB, 10 * GB, 1 * GB])  # 40 GB at 30 s/GB + 15 s load: 20 min 15 s
    args = ["submit", str(manifest), "--project", "proj", "--dest", "keypoints", "--runs-dir", "runs"]
    args += ["--scheduler", "pbs", "--gpus", "2", "--time", "00:10:00", "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    warning = [x for x in result.stdout.splitlines() if x.startswith("  warning")]
    # 1215 s x 1.2 = 1458 s, in whole quarter hours: 1800 s.
    assert warning == ["  warning   video #0: about 20 min, past the time limit 00:10:00; raise --time to 00:30:00"]
    # (1215 + 315 + 45) s = 1575 s of index time, x 2 GPUs = 0.875 GPU-hours.
    assert "3 indices: 0.9 GPU-hours (2 GPUs each)" in result.stdout


@pytest.mark.parametrize(
    ("scheduler", "client", "prints", "job"),
    [
        ("slurm", "sbatch", "{n};cluster1", "{n}"),  # sbatch --parsable may add the cluster
        ("pbs", "qsub", "{n}[].server", "{n}[].server"),
        ("torque", "qsub", "{n}[].server", "{n}[].server"),
    ],
)
def test_the_commands_file_feeds_each_chained_array_the_job_id_before_it(
    lab: Path, scheduler: str, client: str, prints: str, job: str
) -> None:
    """Run under bash against a stand-in client, the commands file submits each plan's exact
    command, the previous array's job id in place of the placeholder; as written it refuses."""
    manifest = videos(lab, [GB] * 5)
    settings = settings_for(lab, scheduler=scheduler, resources={"gpus": 1}, max_array_size=2, max_running=2)
    made = batch.dry_run(manifest, settings)
    assert len(made.plans) == 3 and made.commands == made.run.path / "submissions" / "001.submit.sh"
    text = made.commands.read_text()
    assert PREVIOUS not in text and text.count("$previous") >= 2
    assert subprocess.run(["bash", "-n", str(made.commands)]).returncode == 0

    bin_dir = lab / "bin"
    bin_dir.mkdir()
    calls = lab / "calls.txt"
    stub = bin_dir / client
    reply = prints.replace("{n}", "$((76 + $(wc -l < " + str(calls) + ")))")
    stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {calls}\necho "{reply}"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    refused = subprocess.run(["bash", str(made.commands)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "a dry run's commands" in refused.stderr and not calls.exists()

    body = text.replace("\nexit 1\n", "\n", 1)
    ran = subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    expected = [
        " ".join(word.replace(PREVIOUS, job.replace("{n}", str(76 + k))) for word in plan.argv[1:])
        for k, plan in enumerate(made.plans)
    ]
    assert calls.read_text().splitlines() == expected
    assert any(PREVIOUS in word for word in made.plans[1].argv), "the throttled arrays are chained"


def test_a_local_dry_run_names_its_command_and_this_machines_hours(lab: Path) -> None:
    earlier_run(lab)
    manifest = videos(lab, [GB, GB, 2 * GB])
    made = batch.dry_run(manifest, settings_for(lab, max_running=2))
    (plan,) = made.plans
    assert plan.script is None and "dlcrun.schedulers.local" in made.commands.read_text()
    shown = views.dry_run(made)
    assert "  script    none: the local scheduler runs each index's dlcrun task itself" in shown
    # (15 + 30) + (15 + 30) + (15 + 60) s = 165 s, two at a time: 82.5 s.
    assert any(x.endswith("3 indices: about 1 min in all, 2 at a time") for x in shown), shown
    assert not any("GPU-hours" in x or "warning" in x for x in shown), "no time limit applies here"


def test_a_dry_run_that_fails_on_the_way_leaves_no_run_behind(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = videos(lab, [GB])

    def refused(run: Run) -> list[object]:
        assert (run.path / "dry-run.json").is_file()
        raise SubmissionError("the plan could not be made")

    monkeypatch.setattr(batch, "plan", refused)
    with pytest.raises(SubmissionError):
        batch.dry_run(manifest, settings_for(lab))
    assert not list((lab / "runs").iterdir())


# ---------------------------------------------------------------- a dry run afterwards


def test_status_says_a_dry_run_is_one_and_resubmit_and_cancel_refuse_it(lab: Path) -> None:
    manifest = videos(lab, [GB, GB])
    made = batch.dry_run(manifest, settings_for(lab, scheduler="slurm", resources={"gpus": 1}, max_array_size=9))
    said = f"run {made.run.id} is a dry run (made "

    shown = runner.invoke(app, ["status", "--runs-dir", "runs"])  # the newest run is the dry run
    assert shown.exit_code == 0, shown.output
    (warning,) = [x for x in shown.stderr.splitlines() if "dry run" in x]
    assert warning.startswith(f"warning: {said}") and warning.endswith(
        f"UTC): nothing was submitted; to queue it: dlcrun submit {manifest} with the same options, without --dry-run"
    )
    assert "pending" in shown.stdout and "queued" not in shown.stdout
    as_json = json.loads(runner.invoke(app, ["status", made.run.id, "--runs-dir", "runs", "--json"]).stdout)
    assert as_json["counts"]["pending"] == 2 and any(said in w for w in as_json["warnings"])

    before = sorted(made.run.path.rglob("*"))
    for verb in ("resubmit", "cancel"):
        refused = runner.invoke(app, [verb, "--runs-dir", "runs"])
        assert refused.exit_code == 1, refused.output
        (line,) = refused.stderr.splitlines()
        assert line.startswith(f"error: {said}") and f"nothing was submitted, so there is nothing to {verb};" in line
    assert sorted(made.run.path.rglob("*")) == before


def test_a_damaged_mark_still_marks_a_dry_run(lab: Path) -> None:
    made = batch.dry_run(videos(lab, [GB]), settings_for(lab))
    (made.run.path / "dry-run.json").write_text("{")
    run = Run(made.run.path)
    assert run.dry is not None and run.dry.manifest == ""
    refused = runner.invoke(app, ["resubmit", run.id, "--runs-dir", "runs"])
    assert refused.exit_code == 1 and "is a dry run: nothing was submitted" in refused.stderr, refused.output
    assert "dlcrun submit MANIFEST with the same options" in refused.stderr


# ---------------------------------------------------------------- the estimate


def test_the_estimate_comes_from_the_newest_comparable_run_of_the_same_model(lab: Path) -> None:
    """Hand-computed: median 30 s/GB and 15 s of model load (see earlier_run); videos of 1, 3, 2, 2
    and 0.5 GB, two per index: indices of 4, 4 and 0.5 GB take 135, 135 and 30 s."""
    earlier = earlier_run(lab, name="a-earlier")
    slow = {"fetch": 0.0, "load": 0.0, "infer": 1e6, "upload": 0.0}
    for name, model, extra in [
        ("b-other-model", {**MODEL, "scorer": "DLC_other"}, {}),
        ("c-other-stride", MODEL, {"stride": 10}),
        ("d-other-precision", MODEL, {"precision": "bf16"}),
    ]:
        other = Run.create(lab / "runs", settings_for(lab, **extra), Manifest(entries=["/v/0.mp4"]), model, name)
        other.write_record(Record(index=0, video="/v/0.mp4", state="done", bytes_in=GB, frames=9, seconds=slow))
    Run.create(lab / "runs", settings_for(lab), Manifest(entries=["/v/0.mp4"]), MODEL, "e-nothing-done-yet")

    settings = settings_for(
        lab, scheduler="slurm", videos_per_task=2, resources={"gpus": 2, "time": "00:02:00"}, max_array_size=9
    )
    new = Run.create(lab / "runs", settings, Manifest(entries=[f"/n/{i}.mp4" for i in range(5)]), MODEL, "f-new")
    found = estimate(new, [GB, 3 * GB, 2 * GB, 2 * GB, GB // 2])

    assert found.rate is not None and found.rate.run == earlier.id
    assert (found.rate.videos, found.rate.seconds_per_gb, found.rate.load_seconds) == (5, 30.0, 15.0)
    assert found.rate.hosts == ["gpu-a1", "gpu-b2"]
    assert (found.indices, found.longest_index) == (3, 0)
    assert found.longest_seconds == pytest.approx(135)
    assert found.index_seconds == pytest.approx(100)
    assert found.index_hours == pytest.approx(300 / 3600)
    assert (found.unit, found.per_index) == ("GPU", 2) and found.charged_hours == pytest.approx(600 / 3600)
    assert found.limit_seconds == 120 and found.over_limit and found.suggested_time == "00:15:00"

    cpus = settings_for(lab, scheduler="slurm", device="cpu", resources={"gpus": 0, "cpus": 4}, max_array_size=9)
    on_cpus = estimate(Run.create(lab / "runs", cpus, Manifest(entries=["/n/0.mp4"]), MODEL, "g-cpu"), [GB])
    assert (on_cpus.unit, on_cpus.per_index) == ("CPU", 4) and on_cpus.charged_hours == pytest.approx(4 * 45 / 3600)
    assert not on_cpus.over_limit  # 45 s within the default 4 h


def test_no_estimate_is_invented(lab: Path) -> None:
    made = batch.dry_run(videos(lab, [GB]), settings_for(lab))
    missing = (
        f"no earlier run of {SCORER} (snapshot-200.pt) analysed a video under {lab / 'runs'}: submit a small "
        "manifest (a few videos) first, then dry-run again for an estimate from its rate"
    )
    assert made.estimate.rate is None and made.estimate.missing == missing
    assert f"  estimate  none: {missing}" in views.dry_run(made)

    earlier_run(lab, stride=300)  # the same model, every 300th frame: not this run's rate
    found = estimate(made.run, [GB])
    assert found.rate is None and "with stride 1 at fp32" in found.missing
    assert "(1 of it with other sampling or precision left out)" in found.missing


def test_without_the_check_the_estimate_says_it_needs_the_sizes(lab: Path) -> None:
    earlier_run(lab)
    manifest = videos(lab, [GB])
    made = batch.dry_run(manifest, settings_for(lab), check=False)
    assert made.preflight is None and made.estimate.rate is not None
    shown = views.dry_run(made)
    assert "  videos    1 (not checked: --no-check)" in shown
    assert "            none yet: needs the videos' sizes: dry-run again without --no-check" in shown


@pytest.mark.parametrize(
    ("time", "scheduler", "seconds"),
    [
        ("90", "slurm", 5400),  # Slurm: minutes
        ("90", "pbs", 90),  # PBS: seconds
        ("30:00", "slurm", 1800),
        ("12:00:00", "torque", 43200),
        ("36:00:00", "pbs", 129600),
        ("1-12", "slurm", 129600),
        ("1-12:30", "slurm", 131400),
        ("2-00:00:10", "slurm", 172810),
        ("soon", "slurm", None),
    ],
)
def test_wall_times_read_as_the_scheduler_reads_them(time: str, scheduler: str, seconds: int | None) -> None:
    assert wall_seconds(time, scheduler) == seconds
