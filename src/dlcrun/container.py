"""Running array indices inside the pinned Apptainer image (settings.image)."""

from __future__ import annotations

from dlcrun.ledger import Run


def exec_prefix(run: Run) -> list[str]:
    """``apptainer exec`` words that put a task inside the image; empty when no image is set.

    The run directory, the DLC project and the destination (when local) are bound at the same
    paths, so the frozen settings mean the same thing inside and out.
    """
    settings = run.settings
    if not settings.image:
        return []
    binds = [str(run.path.parent)]
    if settings.project is not None:
        binds.append(str(settings.project))
    if settings.dest and settings.dest.startswith("/"):
        binds.append(settings.dest)
    return image_prefix(settings.image, binds)


def image_prefix(image: str | None, binds: list[str]) -> list[str]:
    """The ``apptainer exec`` words for ``image`` with ``binds`` (training jobs use it too)."""
    if not image:
        return []
    return ["apptainer", "exec", "--nv", "--bind", ",".join(dict.fromkeys(binds)), image]
