"""The data shipped with the agent: prompt catalogues, help videos, rigs.

``assets`` and ``rigs`` are installed as packages next to ``agent``, so an
installed wheel finds them wherever it lives. Every lookup goes through
:mod:`importlib.resources`; :func:`real_path` gives a file system path where a
library needs one (OpenCV, aplay), extracted for the life of the process when
the package is not plain files.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import tempfile
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

DEFAULT_RIG_NAME = "sim"
RIG_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a bare name like "sim" means a shipped rig

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def asset(*parts: str) -> Traversable:
    """``assets/<parts...>`` as a resource (prompts, video, ...)."""
    node = files("assets")
    for part in parts:
        node = node / part
    return node


def real_path(resource: Traversable) -> Path:
    """A file system path for a file or directory resource, valid until exit."""
    if isinstance(resource, Path):
        return resource
    if resource.is_file():
        return _extracted.enter_context(as_file(resource))
    target = Path(_extracted.enter_context(tempfile.TemporaryDirectory(prefix="atm-assets-")))
    _copy_tree(resource, target)
    return target


def _copy_tree(resource: Traversable, target: Path) -> None:
    for child in resource.iterdir():
        if child.is_dir():
            (target / child.name).mkdir()
            _copy_tree(child, target / child.name)
        else:
            with child.open("rb") as src, (target / child.name).open("wb") as dst:
                shutil.copyfileobj(src, dst)


def asset_path(*parts: str) -> Path:
    """``assets/<parts...>`` as a file system path."""
    return real_path(asset(*parts))


def prompts_dir() -> Traversable:
    """The voice prompt catalogues (``<lang>.toml``, ``patterns.toml``)."""
    return asset("prompts")


def help_video() -> Path:
    """``help.mp4``, with the ``help_<lang>.mp4`` files beside it."""
    return asset_path("video") / "help.mp4"


def shipped_rigs() -> list[str]:
    """Names of the rigs shipped in the ``rigs`` package (``sim``, ...)."""
    return sorted(r.name[:-5] for r in files("rigs").iterdir() if r.name.endswith(".toml"))


def rig_path(name: str) -> Path:
    """The shipped rig ``name`` (e.g. ``"sim"``); KeyError if there is none."""
    if not RIG_NAME.fullmatch(name) or name not in shipped_rigs():
        raise KeyError(name)
    return real_path(files("rigs") / f"{name}.toml")


ASSETS = asset()
HELP_VIDEO = help_video()
