"""The image store: read-only layers on disk, and small JSON records that name them.

Layout (under paths.lib_dir(), i.e. /var/lib/labtui or $LABTUI_ROOT/lib):

    layers/<sha256-hex>/          one directory per layer, the layer tar extracted as-is;
                                  mounted later as an OverlayFS lowerdir. The id is the sha256
                                  of the *uncompressed* layer tar (docker's "diff_id"), so the
                                  same layer arriving gzip'd in one archive and plain in another
                                  is stored once.
    images/<name>/<tag>.json      {"name","tag","id","layers":[hex, lowest first],"config":{...},
                                   "created","size"}
    images.lock                   flock(2)'d while the store changes
    .staging-*/                   private work dirs; an import extracts here and renames into place

Whiteouts stay in the overlay format the kernel reads: a layer tar's ``.wh.NAME`` becomes a
character device 0:0 called NAME, and ``.wh..wh..opq`` the xattr trusted.overlay.opaque=y on its
directory (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").

Why resolve() imports nothing heavy: it runs on every ``labtui run`` and must cost one JSON read.
tarfile, gzip, hashlib, shutil and subprocess are imported inside the functions that need them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from engine import paths
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.record import dataclass, field

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import IO, Any

if TYPE_CHECKING:
    import tarfile

    from engine.steps import Recorder

BUSYBOX = "/bin/busybox"
BUSYBOX_NAME, BUSYBOX_TAG = "busybox", "latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# docker's reference grammar, reduced to what we can use as a path: components of lowercase
# letters and digits joined by . _ -, so no component can be "", "." or ".." (no path escapes).
_NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")

_STAGING_PREFIX = ".staging-"
_STALE_AFTER = 60.0  # seconds; a staging dir nobody holds a lock on for this long is debris
_MAX_JSON = 16 << 20  # manifests and configs are small; refuse to slurp anything bigger

_OCI_INDEX = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_OCI_MANIFEST = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}


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


def _image_file(name: str, tag: str) -> Path:
    return paths.images_dir() / name / f"{tag}.json"


def _load(path: Path) -> Image:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return Image.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, _Bad) as e:
        raise EngineError(f"image record {path} is corrupt ({e}); remove it and import again") from None


# --------------------------------------------------------------------------------------------
# Public API


def resolve(ref: str, *, rec: Recorder | None = None) -> Image:
    """The image named ref. One JSON read when it exists; busybox is built on first use."""
    name, tag = parse_ref(ref)
    try:
        return _load(_image_file(name, tag))
    except (FileNotFoundError, NotADirectoryError):
        pass
    if (name, tag) == (BUSYBOX_NAME, BUSYBOX_TAG):
        return ensure_busybox(rec=rec)
    raise NotFound(f"image '{ref}' not found")


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
        still_used = {h for other in list_images() for h in other.layers}
        for h in img.layers:
            if h not in still_used:
                _discard(paths.layers_dir() / h)


def ensure_busybox(*, rec: Recorder | None = None) -> Image:
    """The built-in busybox:latest image, built from the host's static busybox the first time.

    Many `labtui run busybox` may start at once on a fresh host: the build runs under the store
    lock and re-checks inside it, so exactly one process builds and the others wait and reuse it.
    """
    path = _image_file(BUSYBOX_NAME, BUSYBOX_TAG)
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    _check_busybox()
    with _store_lock():
        try:
            return _load(path)
        except FileNotFoundError:
            pass
        return _build_busybox(rec)


def import_archive(
    path: str | os.PathLike, ref: str | None = None, *, rec: Recorder | None = None
) -> list[Image]:
    """Import a `docker save` tarball or an OCI image layout tarball; returns the images tagged.

    ref names the image (its tag, if written, overrides the archive's too); without it the
    archive's RepoTags / org.opencontainers.image.ref.name are used. On any failure nothing is
    left behind: everything is extracted in a staging dir and only renamed into place at the end.
    """
    import gzip
    import tarfile
    import zlib

    src = Path(path)
    override = _split_ref(ref) if ref is not None else None
    if src.is_dir():
        raise InvalidArgument(f"cannot import {src}: it is a directory; pack it first: tar -cf image.tar -C {src} .")
    if not src.is_file():
        raise NotFound(f"cannot import {src}: no such file")
    try:
        with _Archive(src) as arc:
            plans = _plan(arc)
            named = _name_plans(plans, override)
            with _staging() as stage:
                images, staged = _stage_images(arc, named, stage, rec)
                with _store_lock():
                    _commit_locked(staged, images, rec)
    except _Bad as e:
        raise InvalidArgument(f"cannot import {src}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeError) as e:
        raise InvalidArgument(f"cannot import {src}: {_tar_reason(e)}") from None
    except OSError as e:
        raise EngineError(f"cannot import {src}: {e}") from None
    return images


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


# --------------------------------------------------------------------------------------------
# Reading archives


class _Bad(Exception):
    """A problem with the archive's contents; becomes InvalidArgument('cannot import FILE: ...')."""


def _tar_reason(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "empty file" in msg or "invalid header" in msg or "bad checksum" in msg:
        return f"not a tar file ({msg})"
    return f"corrupt or truncated ({msg})"


def _safe_parts(name: str, what: str = "entry") -> tuple[str, ...]:
    """The path components of an archive member name; refuses absolute paths and '..'."""
    if name.startswith("/"):
        raise _Bad(f"{what} {name!r} is an absolute path")
    if "\0" in name:
        raise _Bad(f"{what} {name!r} contains a NUL byte")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Bad(f"{what} {name!r} points outside the layer ('..')")
    return parts


@dataclass
class _LayerSource:
    member: str  # path of the (maybe compressed) layer tar inside the archive
    digest: str | None = None  # sha256 hex of the blob as stored, if the archive names it
    diff_id: str | None = None  # sha256 hex of the uncompressed tar, from the image config
    media_type: str | None = None


@dataclass
class _Plan:
    """One image found in an archive, before anything is written."""

    config_blob: bytes
    config: dict
    layers: list[_LayerSource]
    refs: list[tuple[str | None, str | None]] = field(default_factory=list)  # (name, tag)


class _Archive:
    """Random access to the members of the outer tarball (which may itself be compressed)."""

    def __init__(self, path: Path) -> None:
        import tarfile

        try:
            self.tf = tarfile.open(path, "r:*")
        except tarfile.ReadError:
            raise _Bad("not a tar archive; expected a `docker save` or OCI image layout tarball") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in self.tf.getmembers():
            try:
                self.members["/".join(_safe_parts(m.name))] = m
            except _Bad:
                continue  # never looked up: we only open the names the manifests give

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tf.close()

    def has(self, name: str) -> bool:
        return "/".join(_safe_parts(name)) in self.members

    def open(self, name: str) -> IO[bytes]:
        m = self.members.get("/".join(_safe_parts(name, "file")))
        if m is None:
            raise _Bad(f"{name} is missing from the archive")
        f = self.tf.extractfile(m)
        if f is None:
            raise _Bad(f"{name} in the archive is not a file")
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise _Bad(f"{name} is too large for a manifest or config")
        return data

    def read_json(self, name: str, data: bytes | None = None) -> Any:
        try:
            return json.loads(self.read(name) if data is None else data)
        except ValueError as e:
            raise _Bad(f"{name} is not valid JSON ({e})") from None


def _plan(arc: _Archive) -> list[_Plan]:
    if arc.has("manifest.json"):
        return _plan_docker(arc)
    if arc.has("index.json"):
        return _plan_oci(arc)
    raise _Bad(
        "neither a `docker save` archive (no manifest.json) nor an OCI image layout (no index.json)"
    )


def _diff_ids(config: dict, n_layers: int) -> list[str | None]:
    rootfs = config.get("rootfs") or {}
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not ids:
        return [None] * n_layers
    if not isinstance(ids, list) or len(ids) != n_layers:
        raise _Bad(f"the image config lists {len(ids)} layers but the manifest has {n_layers}")
    out: list[str | None] = []
    for d in ids:
        m = _DIGEST.fullmatch(d) if isinstance(d, str) else None
        if m is None:
            raise _Bad(f"unsupported layer diff_id {d!r} (only sha256 is supported)")
        out.append(m.group(1))
    return out


def _parse_config(arc: _Archive, name: str, blob: bytes) -> dict:
    config = arc.read_json(name, blob)
    if not isinstance(config, dict):
        raise _Bad(f"image config {name} is not a JSON object")
    return config


def _plan_docker(arc: _Archive) -> list[_Plan]:
    """manifest.json: [{"Config": "<hex>.json", "RepoTags": ["name:tag"], "Layers": [...]}, ...]"""
    manifest = arc.read_json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise _Bad("manifest.json lists no images")
    plans = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise _Bad("manifest.json entry without a Config")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise _Bad("manifest.json entry without a list of Layers")
        blob = arc.read(entry["Config"])
        config = _parse_config(arc, entry["Config"], blob)
        sources = []
        for member, diff_id in zip(layers, _diff_ids(config, len(layers)), strict=True):
            # docker >= 25 stores layers as content-addressed blobs: their name is their digest.
            m = re.fullmatch(r"(?:\./)?blobs/sha256/([0-9a-f]{64})", member)
            sources.append(_LayerSource(member, m.group(1) if m else None, diff_id))
        refs = []
        for t in entry.get("RepoTags") or []:
            refs.append(_archive_ref(str(t)))
        plans.append(_Plan(blob, config, sources, refs))
    return plans


def _archive_ref(ref: str) -> tuple[str, str]:
    try:
        name, tag = _split_ref(ref)
    except InvalidArgument as e:
        raise _Bad(f"the archive names the image {ref!r}, which labtui cannot use: {e}") from None
    return name, tag or "latest"


def _blob(arc: _Archive, desc: Any, what: str) -> tuple[str, bytes]:
    """Read a small blob named by an OCI descriptor and check it against its digest."""
    import hashlib

    if not isinstance(desc, dict):
        raise _Bad(f"{what} descriptor is not a JSON object")
    m = _DIGEST.fullmatch(str(desc.get("digest", "")))
    if m is None:
        raise _Bad(f"{what} has an unsupported digest {desc.get('digest')!r} (only sha256 is supported)")
    name = f"blobs/sha256/{m.group(1)}"
    data = arc.read(name)
    if hashlib.sha256(data).hexdigest() != m.group(1):
        raise _Bad(f"{what} {name} does not match its digest (corrupt archive)")
    return name, data


def _platform_ok(desc: dict) -> bool:
    ann = desc.get("annotations") or {}
    if ann.get("vnd.docker.reference.type") == "attestation-manifest":
        return False  # buildkit's provenance records, not images
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return True
    return plat.get("os") == "linux" and plat.get("architecture") == _host_arch()


def _oci_manifest(arc: _Archive, desc: dict, depth: int = 0) -> dict:
    """Follow a descriptor (through nested indexes, choosing this host's platform) to a manifest."""
    if depth > 4:
        raise _Bad("OCI indexes nested too deeply")
    name, data = _blob(arc, desc, "manifest")
    doc = arc.read_json(name, data)
    if not isinstance(doc, dict):
        raise _Bad(f"{name} is not a JSON object")
    media = desc.get("mediaType") or doc.get("mediaType")
    if media in _OCI_INDEX or (media is None and "manifests" in doc):
        candidates = [d for d in doc.get("manifests") or [] if isinstance(d, dict) and _platform_ok(d)]
        if not candidates:
            raise _Bad(f"the image index has no linux/{_host_arch()} image")
        return _oci_manifest(arc, candidates[0], depth + 1)
    if media not in _OCI_MANIFEST and not (media is None and "layers" in doc):
        raise _Bad(f"unsupported manifest media type {media!r}")
    return doc


def _plan_oci(arc: _Archive) -> list[_Plan]:
    """oci-layout + index.json -> manifest -> config + layers, all blobs under blobs/sha256/."""
    if not arc.has("oci-layout"):
        raise _Bad("index.json without oci-layout: not an OCI image layout")
    layout = arc.read_json("oci-layout")
    version = str(layout.get("imageLayoutVersion", "")) if isinstance(layout, dict) else ""
    if not version.startswith("1."):
        raise _Bad(f"unsupported OCI layout version {version!r}")
    index = arc.read_json("index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list) or not descs:
        raise _Bad("index.json lists no manifests")
    plans = []
    for desc in descs:
        if not isinstance(desc, dict) or not _platform_ok(desc):
            continue
        manifest = _oci_manifest(arc, desc)
        cfg_name, blob = _blob(arc, manifest.get("config"), "image config")
        config = _parse_config(arc, cfg_name, blob)
        layer_descs = manifest.get("layers")
        if not isinstance(layer_descs, list):
            raise _Bad("manifest has no list of layers")
        sources = []
        for ld, diff_id in zip(layer_descs, _diff_ids(config, len(layer_descs)), strict=True):
            if not isinstance(ld, dict):
                raise _Bad("layer descriptor is not a JSON object")
            media = ld.get("mediaType")
            if media not in _LAYER_TYPES:
                hint = " (zstd is not supported; re-export with gzip)" if "zstd" in str(media) else ""
                raise _Bad(f"unsupported layer media type {media!r}{hint}")
            m = _DIGEST.fullmatch(str(ld.get("digest", "")))
            if m is None:
                raise _Bad(f"layer has an unsupported digest {ld.get('digest')!r}")
            sources.append(_LayerSource(f"blobs/sha256/{m.group(1)}", m.group(1), diff_id, media))
        plans.append(_Plan(blob, config, sources, [_oci_ref(desc)]))
    if not plans:
        raise _Bad(f"index.json has no linux/{_host_arch()} image")
    return plans


def _oci_ref(desc: dict) -> tuple[str | None, str | None]:
    """(name, tag) from the index annotations; a bare ref.name is a tag, as the OCI spec says."""
    ann = desc.get("annotations") or {}
    full = ann.get("io.containerd.image.name")  # docker/containerd write the full name here
    ref_name = ann.get("org.opencontainers.image.ref.name")
    if isinstance(full, str) and full:
        return _archive_ref(full)
    if isinstance(ref_name, str) and ref_name:
        if ":" in ref_name or "/" in ref_name:
            return _archive_ref(ref_name)
        if _TAG.fullmatch(ref_name):
            return None, ref_name
    return None, None


_Named = list[tuple[_Plan, list[tuple[str, str]]]]  # each image found and the name:tags it gets


def _name_plans(plans: list[_Plan], override: tuple[str, str | None] | None) -> _Named:
    """Decide the name:tag of every image to write; refuse ambiguity before extracting anything."""
    out = []
    seen: set[tuple[str, str]] = set()
    for plan in plans:
        if override is not None:
            name, tag = override
            tags = [tag] if tag else [t for _n, t in plan.refs if t] or ["latest"]
            refs = [(name, t) for t in dict.fromkeys(tags)]
        else:
            refs = [(n, t or "latest") for n, t in plan.refs if n]
            if not refs:
                raise _Bad("the archive does not name its image; give it a name, e.g. 'lab/app:1.0'")
        for r in refs:
            if r in seen:
                raise _Bad(f"two images in the archive would both be {r[0]}:{r[1]}; import them one by one")
            seen.add(r)
        out.append((plan, refs))
    return out


def _stage_images(
    arc: _Archive, named: _Named, stage: Path, rec: Recorder | None
) -> tuple[list[Image], dict[str, Path]]:
    """Extract every layer into the staging dir; build the Image records (not yet written)."""
    import hashlib

    staged: dict[str, Path] = {}  # layer id -> its dir in staging
    by_member: dict[str, tuple[str, int]] = {}  # a layer shared by two images is extracted once
    images: list[Image] = []
    for n, (plan, refs) in enumerate(named):
        ids, size = [], 0
        for src in plan.layers:
            if src.member not in by_member:
                tmp = stage / f"layer-{len(by_member)}"
                with _step(rec, "image", "extract-layer", target=src.member, value=str(n)) as s:
                    with arc.open(src.member) as f:
                        hexid, lsize = _extract_layer(f, tmp, src)
                    s["value"] = hexid
                if hexid in staged:
                    _rmtree(tmp)
                else:
                    staged[hexid] = tmp
                by_member[src.member] = (hexid, lsize)
            hexid, lsize = by_member[src.member]
            ids.append(hexid)
            size += lsize
        config = _normalize_config(plan.config.get("config"))
        created = plan.config.get("created") if isinstance(plan.config.get("created"), str) else None
        image_id = hashlib.sha256(plan.config_blob).hexdigest()  # docker's image id
        for name, tag in refs:
            images.append(Image(name, tag, image_id, list(ids), config, created or _now_iso(), size))
    return images, staged


# --------------------------------------------------------------------------------------------
# Extracting one layer


class _HashingReader:
    """A read-only stream that hashes and counts what passes through, and can peek at its start."""

    def __init__(self, f: IO[bytes], h: Any) -> None:
        self.f, self.h = f, h
        self.count = 0
        self.trailing_zeros = 0  # NUL bytes at the end of what was read so far
        self._head = b""

    def _pull(self, n: int) -> bytes:
        data = self.f.read(n)
        if data:
            self.h.update(data)
            self.count += len(data)
            kept = len(data.rstrip(b"\0"))
            self.trailing_zeros = self.trailing_zeros + len(data) if kept == 0 else len(data) - kept
        return data

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            chunk = self._pull(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(out) :]
            return out
        return self._pull(n if n >= 0 else 1 << 30)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _extract_layer(f: IO[bytes], dest: Path, src: _LayerSource) -> tuple[str, int]:
    """Extract one (maybe gzip'd) layer tar into dest; returns (sha256 of the tar, bytes of data).

    Streams it once: the tar's digest is computed while extracting, then checked against the
    digests the archive claims. Format errors become _Bad.
    """
    import gzip
    import hashlib
    import tarfile
    import zlib

    os.mkdir(dest, 0o755)
    raw = _HashingReader(f, hashlib.sha256())
    try:
        magic = raw.peek(4)
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            raise _Bad(f"layer {src.member} is zstd-compressed, which is not supported; re-export with gzip")
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if magic[:2] == b"\x1f\x8b" else raw  # type: ignore[assignment]
        tar = _HashingReader(stream, hashlib.sha256())
        writer = _LayerWriter(dest)
        with tarfile.open(fileobj=tar, mode="r|") as tf:
            for member in tf:
                writer.add(tf, member)
            end = tf.offset
            tar.drain()
        writer.finish()
        raw.drain()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _Bad(f"layer {src.member}: {_tar_reason(e)}") from None
    # A tar ends with two zero blocks; without them it was cut off (maybe at a file boundary).
    tail = tar.count - end
    if tail < 1024 or tar.trailing_zeros < tail:
        raise _Bad(f"layer {src.member} is truncated (no end-of-archive marker)")
    if src.digest and raw.h.hexdigest() != src.digest:
        raise _Bad(f"layer {src.member} does not match its digest sha256:{src.digest} (corrupt archive)")
    hexid = tar.h.hexdigest()
    if src.diff_id and hexid != src.diff_id:
        raise _Bad(f"layer {src.member} does not match its diff_id sha256:{src.diff_id} (corrupt archive)")
    return hexid, writer.size


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class _LayerWriter:
    """Writes tar members under root, never following a symlink on the way.

    Why not tarfile.extractall(filter="data"): that filter refuses device files, and overlay
    whiteouts *are* device files (0:0). So each member is created by hand: parents are walked with
    lstat and a symlink among them is refused; files are opened O_NOFOLLOW|O_EXCL; symlinks are
    stored as-is (they are resolved later inside the container's root, never by us).
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.as_root = os.geteuid() == 0
        self.known_dirs: set[str] = {""}
        self.deferred: dict[str, tuple[str, tarfile.TarInfo]] = {}  # dir metadata, applied last
        self.size = 0

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _safe_parts(m.name)
        if not parts:
            return  # the layer root ("./"): overlayfs takes the root's attributes from upper
        rel = "/".join(parts)
        parent = self._parent_dir(parts[:-1], m.name)
        base = parts[-1]
        if base.startswith(".wh."):
            self._whiteout(parent, base, m.name)
            return
        path = os.path.join(parent, base)
        st = _lstat(path)
        if m.isdir():
            if st is None or not stat.S_ISDIR(st.st_mode):
                if st is not None:
                    self._remove(path, rel, st)
                os.mkdir(path, 0o700)  # real mode applied at the end, so we can still write into it
            self.known_dirs.add(rel)
            self.deferred[rel] = (path, m)
            return
        if st is not None:
            self._remove(path, rel, st)  # a later entry replaces an earlier one, as tar does
        if m.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                data = tf.extractfile(m)
                assert data is not None
                while chunk := data.read(1 << 20):
                    out.write(chunk)
            self.size += m.size
        elif m.issym():
            if not m.linkname:
                raise _Bad(f"symlink {m.name!r} has an empty target")
            os.symlink(m.linkname, path)
        elif m.islnk():
            os.link(self._existing(m.linkname, m.name), path, follow_symlinks=False)
            return  # same inode as its target, which already has its metadata
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise _Bad(f"layer entry {m.name!r} has an unsupported type {m.type!r}")
        self._apply(path, m)

    def finish(self) -> None:
        # Deepest first, so setting a parent's mtime is the last change to it.
        for rel in sorted(self.deferred, key=lambda r: r.count("/"), reverse=True):
            path, m = self.deferred[rel]
            st = _lstat(path)
            if st is not None and stat.S_ISDIR(st.st_mode):
                self._apply(path, m)

    def _parent_dir(self, parts: tuple[str, ...], name: str) -> str:
        """The directory for parts, creating missing ones (0755); refuses a symlink on the way."""
        cur, rel = self.root, ""
        for p in parts:
            cur = os.path.join(cur, p)
            rel = f"{rel}/{p}" if rel else p
            if rel in self.known_dirs:
                continue
            st = _lstat(cur)
            if st is None:
                os.mkdir(cur, 0o755)
            elif stat.S_ISLNK(st.st_mode):
                raise _Bad(f"layer entry {name!r} goes through the symlink {rel!r}")
            elif not stat.S_ISDIR(st.st_mode):
                raise _Bad(f"layer entry {name!r} is inside {rel!r}, which is not a directory")
            self.known_dirs.add(rel)
        return cur

    def _existing(self, linkname: str, name: str) -> str:
        """The path of a hard link's target: must already be in this layer, reached without symlinks."""
        parts = _safe_parts(linkname, f"hard link {name!r} to")
        if not parts:
            raise _Bad(f"hard link {name!r} has no target")
        cur = self.root
        for i, p in enumerate(parts):
            cur = os.path.join(cur, p)
            st = _lstat(cur)
            if st is None:
                raise _Bad(f"hard link {name!r} points to {linkname!r}, which is not in the layer")
            if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                what = "the symlink" if stat.S_ISLNK(st.st_mode) else "the non-directory"
                raise _Bad(f"hard link {name!r} to {linkname!r} goes through {what} {'/'.join(parts[: i + 1])!r}")
            if i == len(parts) - 1 and stat.S_ISDIR(st.st_mode):
                raise _Bad(f"hard link {name!r} points to a directory")
        return cur

    def _whiteout(self, parent: str, base: str, name: str) -> None:
        if base == ".wh..wh..opq":
            # An opaque dir: overlayfs shows none of the lower layers' entries of this directory.
            os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            return
        if base.startswith(".wh..wh."):
            return  # aufs bookkeeping (.wh..wh.plnk, ...), meaningless to overlayfs
        hidden = base[len(".wh.") :]
        if hidden in ("", ".", ".."):
            raise _Bad(f"invalid whiteout {name!r}")
        path = os.path.join(parent, hidden)
        st = _lstat(path)
        if st is not None:
            rel = os.path.relpath(path, self.root)
            self._remove(path, rel, st)
        # A whiteout: overlayfs hides NAME of the lower layers where it finds a 0:0 char device.
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def _remove(self, path: str, rel: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            _rmtree(Path(path))
            # Forget what we knew under it: a symlink may now stand where a directory was.
            def gone(d: str) -> bool:
                return d == rel or d.startswith(rel + "/")

            self.known_dirs = {d for d in self.known_dirs if not gone(d)}
            self.deferred = {d: v for d, v in self.deferred.items() if not gone(d)}
        else:
            os.unlink(path)

    def _apply(self, path: str, m: tarfile.TarInfo) -> None:
        """Ownership, mode, xattrs, mtime: chown first, since chown(2) clears setuid bits."""
        is_link = m.issym()
        if self.as_root:
            os.lchown(path, m.uid, m.gid)
        if not is_link:
            os.chmod(path, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            xname = key[len("SCHILY.xattr.") :]
            # trusted.* would let a layer forge overlayfs metadata (redirects, metacopy): never.
            if not (xname.startswith("user.") or xname == "security.capability"):
                continue
            try:
                os.setxattr(path, xname, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError:
                pass  # the filesystem may not support it; the file itself is still right
        ns = int(m.mtime * 1_000_000_000)
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


# --------------------------------------------------------------------------------------------
# busybox


def _is_static_elf(path: str) -> bool:
    """True if the ELF file at path has no PT_INTERP program header (needs no dynamic loader)."""
    import struct

    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF":
            raise EngineError(f"{path} is not an ELF executable")
        end = "<" if ident[5] == 1 else ">"
        if ident[4] == 2:  # 64-bit
            (phoff,) = struct.unpack_from(end + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 54)
        else:
            (phoff,) = struct.unpack_from(end + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    for i in range(phnum):
        (p_type,) = struct.unpack_from(end + "I", table, i * phentsize)
        if p_type == pt_interp:
            return False
    return True


def _check_busybox() -> None:
    if not os.path.isfile(BUSYBOX):
        raise EngineError("busybox-static is not installed: apt-get install busybox-static")
    if not _is_static_elf(BUSYBOX):
        raise EngineError(
            f"{BUSYBOX} is dynamically linked, so it would need the host's libraries inside the"
            " container: apt-get install busybox-static"
        )


def _busybox_layer_tar() -> bytes:
    """The busybox layer as a tar in memory, deterministic for a given busybox binary.

    Built as a tar (not written straight to disk) so it goes through the same extraction as any
    imported layer and gets a real layer id: the sha256 of this tar.
    """
    import io
    import subprocess
    import tarfile

    st = os.stat(BUSYBOX)
    listing = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise EngineError(f"{BUSYBOX} --list-full failed: {listing.stderr.strip()}")
    # Applets at the top level (linuxrc) would clutter `ls /`; busybox itself is the real file.
    applets = sorted({a for a in listing.stdout.split() if "/" in a and a != "bin/busybox"})

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, int(st.st_mtime), link
            ti.uname = ti.gname = "root"
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "home", "proc", "sys", "dev",
                "run", "var", "tmp", "var/tmp"}
        dirs |= {os.path.dirname(a) for a in applets}
        for d in sorted(dirs):
            mode = {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700}.get(d, 0o755)
            add(d, tarfile.DIRTYPE, mode)
        with open(BUSYBOX, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for a in applets:
            add(a, tarfile.SYMTYPE, 0o777, link="/bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        # The runtime bind-mounts these per container; the targets must exist in the image.
        for f_name in ("etc/hostname", "etc/hosts", "etc/resolv.conf"):
            add(f_name, tarfile.REGTYPE, 0o644)
    return buf.getvalue()


def _build_busybox(rec: Recorder | None) -> Image:
    """Build busybox:latest. Caller holds the store lock."""
    import hashlib
    import io

    layer_tar = _busybox_layer_tar()
    config = {
        "Env": [DEFAULT_PATH],
        "Cmd": ["sh"],
        "Entrypoint": None,
        "WorkingDir": "",
        "User": "",
    }
    with _staging() as stage:
        tmp = stage / "layer"
        shell = f"mkdir -p rootfs/bin && cp {BUSYBOX} rootfs/bin/ && {BUSYBOX} --install -s rootfs/bin"
        with _step(rec, "image", "build-busybox", target=str(paths.layers_dir()), value=BUSYBOX,
                   shell=shell) as s:
            try:
                hexid, size = _extract_layer(io.BytesIO(layer_tar), tmp, _LayerSource("busybox layer"))
            except _Bad as e:
                raise EngineError(f"cannot build the busybox image: {e}") from None
            s["value"] = hexid
        # docker's image id is the sha256 of the config blob; ours has the same shape.
        blob = json.dumps(
            {"architecture": _host_arch(), "os": "linux", "config": config,
             "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hexid}"]}},
            sort_keys=True, separators=(",", ":"),
        ).encode()
        img = Image(BUSYBOX_NAME, BUSYBOX_TAG, hashlib.sha256(blob).hexdigest(), [hexid], config,
                    _now_iso(), size)
        _commit_locked({hexid: tmp}, [img], rec)
    return img
