"""An image's record (images/<name>/<tag>.json), its name:tag reference and its config.

Pure data: nothing here touches the disk, so the store, the importers and busybox's builder all
share it without importing one another.
"""

from __future__ import annotations

import os
import re

from engine import paths
from engine.errors import InvalidArgument
from engine.record import dataclass

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# docker's reference grammar, reduced to what we can use as a path: components of lowercase
# letters and digits joined by . _ -, so no component can be "", "." or ".." (no path escapes).
_NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class _Bad(Exception):
    """A problem with the archive's contents; becomes InvalidArgument('cannot import FILE: ...')."""


# --------------------------------------------------------------------------------------------
# The record


@dataclass
class Image:
    name: str
    tag: str
    id: str
    layers: list[str]
    config: dict
    created: str
    size: int = 0

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def layer_paths(self) -> list[Path]:
        """The layer directories, lowest first (overlayfs wants them reversed: top:...:bottom)."""
        base = paths.layers_dir()
        return [base / h for h in self.layers]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "tag": self.tag,
            "id": self.id,
            "layers": list(self.layers),
            "config": self.config,
            "created": self.created,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, d: dict) -> Image:
        return cls(
            name=d["name"],
            tag=d["tag"],
            id=d["id"],
            layers=list(d["layers"]),
            config=_normalize_config(d.get("config")),
            created=d.get("created", ""),
            size=int(d.get("size", 0)),
        )

# --------------------------------------------------------------------------------------------
# References


def _split_ref(ref: str) -> tuple[str, str | None]:
    """name and the tag if one was written; validates both."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidArgument("an image reference is required, e.g. busybox or lab/web:1.0")
    if "@" in ref:
        raise InvalidArgument(f"invalid image reference {ref!r}: digests are not supported, use name:tag")
    name, tag = ref, None
    # A colon after the last slash separates the tag (one before it would be a registry port).
    colon, slash = ref.rfind(":"), ref.rfind("/")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :]
    # docker writes Docker Hub names in full in some archives; they are the same image.
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if len(name) > 255 or not all(_NAME_COMPONENT.fullmatch(c) for c in name.split("/")):
        raise InvalidArgument(
            f"invalid image name {name!r}: use lowercase letters, digits and . _ - separated by /"
            " (e.g. busybox or lab/web)"
        )
    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidArgument(
            f"invalid tag {tag!r} in {ref!r}: use letters, digits and . _ -"
            " (at most 128, not starting with . or -)"
        )
    return name, tag


def parse_ref(ref: str) -> tuple[str, str]:
    """'busybox' -> ('busybox', 'latest'); 'lab/web:1.0' -> ('lab/web', '1.0')."""
    name, tag = _split_ref(ref)
    return name, tag or "latest"

# --------------------------------------------------------------------------------------------
# Image config


def _normalize_config(cfg: Any) -> dict:
    """The part of an image config the runtime applies, with docker's defaults for missing keys."""
    cfg = cfg if isinstance(cfg, dict) else {}

    def strlist(key: str) -> list[str] | None:
        v = cfg.get(key)
        if v is None:
            return None
        if isinstance(v, str):  # docker accepts a bare string as a one-word list
            return [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise _Bad(f"image config {key} must be a list of strings")
        return list(v)

    return {
        "Env": strlist("Env") or [],
        "Cmd": strlist("Cmd"),
        "Entrypoint": strlist("Entrypoint"),
        "WorkingDir": cfg.get("WorkingDir") or "",
        "User": cfg.get("User") or "",
    }


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
