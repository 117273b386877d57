"""The store on disk: the lock, private staging dirs, atomic commits, and reading records back.

Every change to layers/ and images/ happens under an flock(2) on lib/images.lock and is built in
a staging dir on the same filesystem first, so rename(2) moves it into place in one step and a
crash leaves only a staging dir (swept by the next import) behind.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from engine import paths
from engine.errors import Conflict, EngineError, NotFound
from engine.images.record import Image, _Bad, parse_ref

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from engine.steps import Recorder

_STAGING_PREFIX = ".staging-"
_STALE_AFTER = 60.0  # seconds; a staging dir nobody holds a lock on for this long is debris


# --------------------------------------------------------------------------------------------
# Reading the store


def _image_file(name: str, tag: str) -> Path:
    return paths.images_dir() / name / f"{tag}.json"


def _load(path: Path) -> Image:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return Image.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, _Bad) as e:
        raise EngineError(f"image record {path} is corrupt ({e}); remove it and import again") from None


def list_images() -> list[Image]:
    out: list[Image] = []
    base = paths.images_dir()
    for dirpath, _dirs, files in os.walk(base):
        for fn in files:
            # Dot files are temp files of an atomic write in progress (or left by a crash).
            if fn.startswith(".") or not fn.endswith(".json"):
                continue
            try:
                out.append(_load(Path(dirpath, fn)))
            except FileNotFoundError:
                continue  # removed while we walked
    out.sort(key=lambda i: (i.name, i.tag))
    return out


def image_size(img: Image) -> int:
    """Bytes of file data in the image's layers, counted once at import (no disk walk)."""
    return img.size


def remove(ref: str, in_use: Callable[[Image], list[str]]) -> None:
    """Forget an image and delete the layers no other image uses.

    in_use(img) returns the ids of containers created from it; any makes this a Conflict, since
    their overlay mounts name these layer directories as lowerdirs.
    """
    name, tag = parse_ref(ref)
    path = _image_file(name, tag)
    with _store_lock():
        try:
            img = _load(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"image '{ref}' not found") from None
        users = [str(c) for c in (in_use(img) or [])]
        if users:
            shown = ", ".join(c[:12] for c in users)
            word = "container" if len(users) == 1 else "containers"
            raise Conflict(f"image {img.ref} is in use by {word} {shown}; remove the {word} first")
        os.unlink(path)
        _prune_empty_dirs(path.parent, paths.images_dir())
        others = list_images()
        still_used = {h for other in others for h in other.layers}
        for h in img.layers:
            if h not in still_used:
                _discard(paths.layers_dir() / h)
        # A pulled image's blobs in the pull cache go with the last image that names them.
        cached = {b for other in others for b in (other.pulled or {}).get("blobs", [])}
        for b in (img.pulled or {}).get("blobs", []):
            if b not in cached and isinstance(b, str) and len(b) == 64 and b.isalnum():
                (paths.blobs_dir() / "sha256" / b).unlink(missing_ok=True)

# --------------------------------------------------------------------------------------------
# Locking, staging, atomic writes


@contextmanager
def _store_lock() -> Iterator[None]:
    """An exclusive flock(2) on lib/images.lock; closing the fd releases it, even on a crash."""
    lib = paths.lib_dir()
    lib.mkdir(parents=True, exist_ok=True)
    fd = os.open(lib / "images.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def _staging() -> Iterator[Path]:
    """A private dir under lib (same filesystem, so rename(2) can move its contents into place).

    It is flock'd while in use, so a later import can tell a crashed import's leftovers (unlocked,
    older than a minute) from one in progress, and delete them.
    """
    lib = paths.lib_dir()
    lib.mkdir(parents=True, exist_ok=True)
    _sweep_stale_staging(lib)
    d = lib / f"{_STAGING_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    os.mkdir(d, 0o700)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        try:
            _rmtree(d)
        finally:
            os.close(fd)


def _sweep_stale_staging(lib: Path) -> None:
    import time

    for entry in os.scandir(lib):
        if not entry.name.startswith(_STAGING_PREFIX):
            continue
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime < _STALE_AFTER:
                continue  # maybe just created, not yet locked
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # an import is using it
        finally:
            os.close(fd)
        _rmtree(Path(entry.path))


def _rmtree(path: Path) -> None:
    import shutil

    def retry_writable(func: Callable, p: str, _exc: object) -> None:
        # Without root, a read-only dir kept from an archive cannot be emptied: open it up.
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry_writable)


def _discard(path: Path) -> None:
    """Delete a layer dir: first rename it out of sight, so a half-deleted layer is never used."""
    if not os.path.lexists(path):
        return
    with _staging() as trash:
        os.rename(path, trash / "layer")


def _write_json_atomic(path: Path, obj: dict) -> None:
    from engine.jsonl import write_json_atomic

    write_json_atomic(path, obj, indent=2, durable=True)


def _prune_empty_dirs(start: Path, stop: Path) -> None:
    """rmdir start and its parents up to (not including) stop while they are empty."""
    cur = start
    while cur != stop and stop in cur.parents:
        try:
            os.rmdir(cur)
        except OSError:
            return
        cur = cur.parent


def _commit_locked(staged: dict[str, Path], images: list[Image], rec: Recorder | None) -> None:
    """Move staged layers into layers/ and write the image records; undo all of it on failure.

    Caller holds the store lock. A layer already present is reused (same content, same id).
    """
    layers, imgs = paths.layers_dir(), paths.images_dir()
    layers.mkdir(parents=True, exist_ok=True)
    imgs.mkdir(parents=True, exist_ok=True)
    moved: list[Path] = []
    written: list[tuple[Path, bytes | None]] = []
    try:
        for hexid, src in staged.items():
            dest = layers / hexid
            if os.path.lexists(dest):
                continue
            os.rename(src, dest)
            moved.append(dest)
        for img in images:
            p = _image_file(img.name, img.tag)
            try:
                old: bytes | None = p.read_bytes()
            except FileNotFoundError:
                old = None
            with _step(rec, "image", "tag", target=str(p), value=img.ref):
                _write_json_atomic(p, img.to_json())
            written.append((p, old))
    except BaseException:
        for p, old in reversed(written):
            if old is None:
                p.unlink(missing_ok=True)
                _prune_empty_dirs(p.parent, imgs)
            else:
                _write_json_atomic(p, json.loads(old))
        for d in moved:
            _discard(d)
        raise


def _step(rec: Recorder | None, mechanism: str, op: str, **kw: str):
    return rec.step(mechanism, op, **kw) if rec is not None else nullcontext({})
