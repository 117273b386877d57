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
# A registry host as docker writes it (reference/regexp.go's domain): DNS labels joined by dots,
# and a port. Its labels start and end alphanumeric, so it is never "." or ".." either.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
    # Set for a pulled image (engine/images/pull.py): {"source": the full reference pulled,
    # "digest": the registry's manifest digest the reference named, "platform": "linux/amd64",
    # "blobs": the hex digests it uses in the blob cache (lib/blobs/sha256/)}.
    pulled: dict | None = None

    @property
    def ref(self) -> str:
        # Pulled by digest: recorded under the digest (file images/<name>/sha256:<hex>.json).
        return f"{self.name}@{self.tag}" if self.tag.startswith("sha256:") else f"{self.name}:{self.tag}"

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
        } | ({"pulled": self.pulled} if self.pulled else {})

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
            pulled=d.get("pulled") if isinstance(d.get("pulled"), dict) else None,
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
    name = _short_name(name)
    parts = name.split("/")
    if len(parts) > 1 and _is_domain(parts[0]):
        if not _DOMAIN.fullmatch(parts[0]):
            raise InvalidArgument(f"invalid registry {parts[0]!r} in {ref!r}: a host name, maybe with :port")
        parts = parts[1:]
    if len(name) > 255 or not all(_NAME_COMPONENT.fullmatch(c) for c in parts):
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


def _is_domain(first: str) -> bool:
    """docker's rule (reference/normalize.go): the first component names a registry when it has
    a dot or a port, or is localhost; otherwise `user/img` is a Docker Hub repository."""
    return "." in first or ":" in first or first == "localhost"


def _short_name(name: str) -> str:
    """The name the store (and docker's `images`) shows: Docker Hub's own prefix left off."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def parse_ref(ref: str) -> tuple[str, str]:
    """'busybox' -> ('busybox', 'latest'); 'lab/web:1.0' -> ('lab/web', '1.0');
    'alpine@sha256:<hex>' -> ('alpine', 'sha256:<hex>'): a digest stands where the tag would
    (docker ignores a tag written next to a digest; so does labtui)."""
    if isinstance(ref, str) and "@" in ref:
        base, _, digest = ref.partition("@")
        if not DIGEST.fullmatch(digest):
            raise InvalidArgument(f"invalid digest {digest!r} in {ref!r}: expected sha256: and 64 hex digits")
        name, _tag = _split_ref(base)
        return name, digest
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
