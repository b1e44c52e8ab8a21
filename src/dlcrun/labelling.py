"""Sampled videos into a DLC project's labeled-data, with DeepLabCut's own functions.

The lab labels on a laptop; the sample may live in Dropbox. Remote videos are fetched first
(through the Storage seam), then DLC's ``add_new_videos`` registers them and its
``extract_frames`` picks frames uniformly in time, so the project is exactly what DLC's GUI
would have made.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from dlcrun.errors import ConfigError
from dlcrun.locations import basename, scheme_of
from dlcrun.storage import storage_for


def extract_for_labelling(
    project: Path,
    videos: Sequence[str],
    frames_per_video: int | None = None,
    copy_videos: bool = False,
) -> dict[str, int]:
    """Add ``videos`` to ``project`` and extract frames to label; returns frames per video folder.

    Local videos are linked into the project (``copy_videos`` copies them); when any video is
    remote, all are copied, since a link to a download would dangle.
    """
    import deeplabcut
    from deeplabcut.utils import auxiliaryfunctions

    project = Path(project).expanduser().resolve()
    config = project / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{project}: no config.yaml; create the project with deeplabcut.create_new_project")
    names = [basename(v) for v in videos]
    clashing = {n for n in names if names.count(n) > 1}
    if clashing:
        raise ConfigError(f"videos with the same file name cannot share a project: {', '.join(sorted(clashing))}")
    if frames_per_video is not None:
        auxiliaryfunctions.edit_config(str(config), {"numframes2pick": frames_per_video})

    staging = project / ".dlcrun-fetch"
    local: list[Path] = []
    try:
        for video in videos:
            if scheme_of(video) == "file":
                local.append(Path(video.removeprefix("file://")))
            else:
                target = staging / basename(video)
                storage_for(video).fetch(video, target)
                local.append(target)
        remote = any(scheme_of(v) != "file" for v in videos)
        deeplabcut.add_new_videos(str(config), [str(p) for p in local], copy_videos=copy_videos or remote)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    registered = [project / "videos" / p.name for p in local]
    deeplabcut.extract_frames(
        str(config), mode="automatic", algo="uniform", crop=False, userfeedback=False, videos_list=registered
    )
    return {p.stem: len(list((project / "labeled-data" / p.stem).glob("*.png"))) for p in registered}
