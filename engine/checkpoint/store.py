"""Where checkpoints live: <container dir>/checkpoints/<name>, with CRIU's image files and
labtui's manifest (labtui.json) of what the dump needs back at restore."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from engine import state
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.state import Container

MANIFEST = "labtui.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def checkpoints_dir(c: Container) -> Path:
    return c.dir / "checkpoints"


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(f"invalid checkpoint name '{name}': use letters, digits, '_', '.' or '-'")
    return name


def checkpoint_dir(c: Container, name: str) -> Path:
    return checkpoints_dir(c) / validate_name(name)


def read_manifest(c: Container, name: str) -> dict:
    d = checkpoint_dir(c, name)
    try:
        return state.read_json(d / MANIFEST)
    except (FileNotFoundError, NotADirectoryError):
        have = list_checkpoints(c)
        hint = f" (it has: {', '.join(x['name'] for x in have)})" if have else " (it has none)"
        raise NotFound(f"container {c.name} has no checkpoint named '{name}'{hint}") from None
    except ValueError:
        raise EngineError(f"checkpoint '{name}' of {c.name} is damaged: {d / MANIFEST} is not JSON") from None


def list_checkpoints(c: Container) -> list[dict]:
    out = []
    try:
        names = sorted(os.listdir(checkpoints_dir(c)))
    except FileNotFoundError:
        return []
    for n in names:
        try:
            out.append(state.read_json(checkpoints_dir(c) / n / MANIFEST))
        except (OSError, ValueError):
            continue
    return out


def remove_checkpoint(c: Container, name: str) -> None:
    read_manifest(c, name)
    shutil.rmtree(checkpoint_dir(c, name))
