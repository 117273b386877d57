"""Where labtui keeps its state.

Persistent data (container configs, logs, upper dirs, images) lives under /var/lib/labtui and
runtime state (sockets, gates, locks) under /run/labtui, a tmpfs that a reboot empties. One
setting, the LABTUI_ROOT environment variable, moves both (to $LABTUI_ROOT/lib and
$LABTUI_ROOT/run) so tests and students can keep their own.
"""

from __future__ import annotations

import os
from pathlib import Path


def _root() -> str | None:
    return os.environ.get("LABTUI_ROOT") or None


_CACHE: dict[tuple[str, str | None], Path] = {}


def lib_dir() -> Path:
    root = _root()
    p = _CACHE.get(("lib", root))  # keyed by the setting: tests change it within one process
    if p is None:
        p = _CACHE[("lib", root)] = Path(root, "lib") if root else Path("/var/lib/labtui")
    return p


def run_dir() -> Path:
    root = _root()
    p = _CACHE.get(("run", root))
    if p is None:
        p = _CACHE[("run", root)] = Path(root, "run") if root else Path("/run/labtui")
    return p


def containers_dir() -> Path:
    return lib_dir() / "containers"


def container_dir(cid: str) -> Path:
    return containers_dir() / cid


def trash_dir() -> Path:
    """Removed containers' directories, renamed here to be deleted (engine/teardown.py)."""
    return lib_dir() / ".trash"


def container_run_dir(cid: str) -> Path:
    return run_dir() / "containers" / cid


def attach_socket(cid: str) -> Path:
    """Short on purpose: a Unix socket path must fit in 108 bytes (unix(7))."""
    return run_dir() / "sock" / f"{cid[:20]}.sock"


def images_dir() -> Path:
    return lib_dir() / "images"


def layers_dir() -> Path:
    return lib_dir() / "layers"


def blobs_dir() -> Path:
    """The pull cache: registry blobs (compressed layers, configs, manifests) by digest, as
    skopeo's --dest-shared-blob-dir writes them (sha256/<hex>), so a re-pull fetches none again."""
    return lib_dir() / "blobs"


def steps_stream() -> Path:
    """The host-wide step stream: every container's steps, appended as JSON lines."""
    return lib_dir() / "steps.jsonl"


def events_stream() -> Path:
    """The host-wide lifecycle event stream (the timeline)."""
    return lib_dir() / "events.jsonl"


def ensure_dirs() -> None:
    for d in (containers_dir(), images_dir(), layers_dir(), run_dir() / "containers", run_dir() / "sock"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(lib_dir(), 0o711)
