"""dlcrun: DeepLabCut keypoints for thousands of videos, one job array at a time."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlcrun")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
