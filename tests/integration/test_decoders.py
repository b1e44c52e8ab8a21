"""The decoder seam: PyAV gives the frames OpenCV (DeepLabCut's reader) gives, bit for bit.

Real videos only: the fixture's H.264 yuv444p file, and tiny files written here by FFmpeg's
encoders (H.264 yuv420p/yuv422p through PyAV, mp4v and full-range MJPEG through OpenCV), the
pixel formats lab cameras produce. Frames are random noise, so a conversion that differs
anywhere shows.
"""

from __future__ import annotations

import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from dlcrun.decoders import decoder_for
from dlcrun.errors import ConfigError, InferenceError


def noise(n: int, size: tuple[int, int] = (128, 96), seed: int = 0) -> list[np.ndarray]:
    """RGB frames of noise: colour changes from pixel to pixel, so chroma subsampling and range show."""
    rng = np.random.default_rng(seed)
    w, h = size
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def write_pyav(
    path: Path, frames: list[np.ndarray], pix_fmt: str = "yuv420p", rotation: int = 0, **options: str
) -> Path:
    """H.264 through FFmpeg's libx264 (PyAV's bundled FFmpeg), as a camera or ffmpeg would write it."""
    out = av.open(str(path), "w", options=options)
    stream = out.add_stream("libx264", rate=10)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    if rotation:
        stream.set_display_rotation(rotation)
    for rgb in frames:
        out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
    out.mux(stream.encode())
    out.close()
    return path


def write_opencv(path: Path, frames: list[np.ndarray], fourcc: str) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    for rgb in frames:
        writer.write(rgb[..., ::-1])
    writer.release()
    return path


def decode(name: str, video: Path, stride: int = 1, crop=None, limit: int | None = None):
    stream = decoder_for(name).open(video, crop)
    frames = []
    for number, rgb in stream.frames(stride):
        frames.append((number, rgb))
        if limit is not None and len(frames) == limit:
            break
    stream.close()
    return stream.info, stream.decoded, frames


def assert_same(video: Path, stride: int = 1, crop=None, limit: int | None = None) -> int:
    info_cv, decoded_cv, cv_frames = decode("opencv", video, stride, crop, limit)
    info_av, decoded_av, av_frames = decode("pyav", video, stride, crop, limit)
    assert info_av == info_cv
    assert decoded_av == decoded_cv
    assert [n for n, _ in av_frames] == [n for n, _ in cv_frames]
    for (number, ours), (_, theirs) in zip(av_frames, cv_frames):
        assert ours.dtype == np.uint8 and ours.flags.c_contiguous
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs), f"{video.name} frame {number}"
    return len(av_frames)


def test_fixture_video_frames_equal_opencv(openfield_fixture: Path) -> None:
    """The openfield video (640x480 H.264, yuv444p): the first 60 frames, header and frame rate."""
    video = openfield_fixture / "videos" / "m3v1mp4.mp4"
    assert assert_same(video, limit=60) == 60
    info, _, _ = decode("pyav", video, limit=1)
    assert (info.width, info.height, info.header_frames) == (640, 480, 2330)


@pytest.mark.parametrize("kind", ["h264-yuv420p", "h264-yuv422p", "h264-mkv", "mp4v", "mjpeg-fullrange"])
def test_pixel_formats_equal_opencv(kind: str, tmp_path: Path) -> None:
    frames = noise(12, seed=len(kind))
    if kind == "mp4v":
        video = write_opencv(tmp_path / "v.mp4", frames, "mp4v")
    elif kind == "mjpeg-fullrange":
        video = write_opencv(tmp_path / "v.avi", frames, "MJPG")  # yuvj420p: full range
    elif kind == "h264-mkv":
        video = write_pyav(tmp_path / "v.mkv", frames)  # no frame count in the header: from the duration
    else:
        video = write_pyav(tmp_path / "v.mp4", frames, pix_fmt=kind.split("-")[1])
    assert assert_same(video) == 12


@pytest.mark.parametrize("stride", [1, 3])
def test_stride_and_crop_keep_original_frame_numbers(stride: int, tmp_path: Path) -> None:
    video = write_pyav(tmp_path / "v.mp4", noise(10))
    assert assert_same(video, stride) == len(range(0, 10, stride))
    info, decoded, frames = decode("pyav", video, stride, crop=(10, 70, 5, 50))
    assert [n for n, _ in frames] == list(range(0, 10, stride)) and decoded == 10
    assert frames[0][1].shape == (45, 60, 3) and (info.width, info.height) == (128, 96), "info: the full frame"
    assert_same(video, stride, crop=(10, 70, 5, 50))


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_video_is_turned_as_opencv_turns_it(rotation: int, tmp_path: Path) -> None:
    """A display-matrix rotation (phones, some cameras): OpenCV applies it, so PyAV must too."""
    video = write_pyav(tmp_path / "r.mp4", noise(3, size=(64, 48)), pix_fmt="yuv444p", rotation=rotation)
    assert assert_same(video, crop=(4, 40, 2, 30)) == 3
    info, _, frames = decode("pyav", video)
    assert frames[0][1].shape == ((64, 48, 3) if rotation % 180 else (48, 64, 3))
    assert (info.width, info.height) == ((48, 64) if rotation % 180 else (64, 48))


def faststart_cut(tmp_path: Path) -> Path:
    """An mp4 with its index first (a camera's or ffmpeg -movflags faststart), cut in half in
    bytes as an interrupted copy leaves it: it opens, its header claims 30 frames."""
    video = write_pyav(tmp_path / "whole.mp4", noise(30), movflags="faststart")
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_file_decodes_fewer_frames_than_its_header(tmp_path: Path) -> None:
    cut = faststart_cut(tmp_path)
    info, decoded, frames = decode("pyav", cut)
    assert info.header_frames == 30 and 0 < decoded < 30 and len(frames) == decoded
    assert_same(cut)


def test_bad_files_name_themselves(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(InferenceError, match=r"^notes.mp4: cannot open as video \(PyAV"):
        decoder_for("pyav").open(text)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(InferenceError, match=r"^empty.avi: cannot open as video"):
        decoder_for("pyav").open(empty)
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 800)
    with pytest.raises(InferenceError, match=r"^sound.wav: cannot open as video \(PyAV: no video stream\)"):
        decoder_for("pyav").open(sound)
    with pytest.raises(InferenceError, match=r"gone.mp4: no such video file"):
        decoder_for("pyav").open(tmp_path / "gone.mp4")


def test_unknown_decoder_is_a_config_error_listing_the_known_ones() -> None:
    from dlcrun.settings import load_settings

    with pytest.raises(ConfigError, match=r"unknown decoder 'nvdec' \(available here: opencv, pyav\)"):
        decoder_for("nvdec")
    with pytest.raises(ConfigError, match=r"decoder 'nvdec': unknown \(dlcrun has: opencv, pyav\)"):
        load_settings(None, decoder="nvdec")
    assert load_settings(None, decoder="pyav").decoder == "pyav"


def test_a_decoder_missing_here_is_accepted_by_settings_and_refused_where_indices_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A login node without PyAV may submit --decoder pyav to an image that has it; a run whose
    indices run here may not."""
    import sys

    from dlcrun import decoders
    from dlcrun.settings import load_settings

    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    monkeypatch.delitem(sys.modules, "dlcrun.decoders.pyav", raising=False)
    monkeypatch.delitem(decoders._REGISTRY, "pyav", raising=False)
    assert load_settings(None, decoder="pyav").decoder == "pyav"
    with pytest.raises(ConfigError, match=r"^decoder 'pyav' is not installed here \(available here: opencv\)$"):
        decoders.check_decoder("pyav")
    with pytest.raises(ConfigError, match=r"unknown decoder 'nvdec' \(dlcrun has: opencv, pyav\)"):
        decoders.check_decoder("nvdec")


@pytest.mark.slow
def test_truncated_file_is_refused_by_the_analyzer(demo_project: Path, tmp_path: Path) -> None:
    from dlcrun.engines import pin_model
    from dlcrun.engines.pytorch import PytorchAnalyzer

    analyzer = PytorchAnalyzer(pin_model(demo_project), batch_size=4, device="cpu", decoder="pyav")
    with pytest.raises(InferenceError, match=r"cut.mp4: decoded \d+ of the 30 frames .* truncated"):
        analyzer.analyze(faststart_cut(tmp_path), tmp_path / "out")
    assert not list((tmp_path / "out").glob("*_meta.pickle")), "no DLC output for a refused video"


@pytest.mark.slow
def test_decoder_pyav_through_the_cli(demo_project: Path, tmp_path: Path, tiny_videos) -> None:
    """`dlcrun submit --decoder pyav` on the local scheduler: the same .h5 (rows, columns,
    keypoints) as the default OpenCV decoder; the metadata names the decoder."""
    import pickle

    from typer.testing import CliRunner

    from dlcrun.cli import app

    videos = tiny_videos(tmp_path / "videos", ["a.mp4"], frames=7)
    manifest = tmp_path / "batch.txt"
    manifest.write_text(f"{videos[0]}\n")
    outputs = {}
    for decoder in ("opencv", "pyav"):
        dest = tmp_path / f"kp-{decoder}"
        result = CliRunner().invoke(
            app,
            [
                "submit",
                str(manifest),
                "--project",
                str(demo_project),
                "--dest",
                str(dest),
                "--runs-dir",
                str(tmp_path / f"runs-{decoder}"),
                "--scratch",
                str(tmp_path / "scratch"),
                "--scheduler",
                "local",
                "--decoder",
                decoder,
                "--device",
                "cpu",
                "--wait",
            ],
        )
        assert result.exit_code == 0, result.output
        (h5,) = dest.rglob("*.h5")
        (meta,) = dest.rglob("*_meta.pickle")
        with open(meta, "rb") as fh:
            assert pickle.load(fh)["dlcrun"]["decoder"] == decoder
        outputs[decoder] = pd.read_hdf(h5, "df_with_missing")
    ours, theirs = outputs["pyav"], outputs["opencv"]
    assert ours.shape == theirs.shape == (7, theirs.shape[1]) and theirs.shape[1] > 0
    assert ours.columns.equals(theirs.columns) and ours.index.equals(theirs.index)
    np.testing.assert_array_equal(ours.to_numpy(), theirs.to_numpy())
