"""busybox:latest, built from the host's static busybox the first time it is named, and resolve().

resolve() lives here because busybox is the one image that can be missing and still be found:
every lookup by name goes through it. Why resolve() imports nothing heavy: it runs on every
``labtui run`` and must cost one JSON read. tarfile, gzip, hashlib, shutil and subprocess are
imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os

from engine import paths
from engine.errors import EngineError, NotFound
from engine.images.layers import _extract_layer, _LayerSource
from engine.images.record import Image, _Bad, _host_arch, _now_iso, parse_ref
from engine.images.store import _commit_locked, _image_file, _load, _staging, _step, _store_lock

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from engine.steps import Recorder

BUSYBOX = "/bin/busybox"
BUSYBOX_NAME, BUSYBOX_TAG = "busybox", "latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve(ref: str, *, rec: Recorder | None = None) -> Image:
    """The image named ref. One JSON read when it exists; busybox is built on first use."""
    name, tag = parse_ref(ref)
    try:
        return _load(_image_file(name, tag))
    except (FileNotFoundError, NotADirectoryError):
        pass
    if tag.startswith("sha256:"):  # name@digest: an image pulled by tag has that digest too
        found = _by_digest(name, tag)
        if found is not None:
            return found
    if (name, tag) == (BUSYBOX_NAME, BUSYBOX_TAG):
        return ensure_busybox(rec=rec)
    raise NotFound(f"image '{ref}' not found")


def _by_digest(name: str, digest: str) -> Image | None:
    """The image of this name whose registry digest is digest (one JSON read per tag of it)."""
    try:
        entries = sorted(os.scandir(paths.images_dir() / name), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for e in entries:
        if e.name.startswith(".") or not e.name.endswith(".json") or not e.is_file():
            continue
        try:
            img = _load(paths.images_dir() / name / e.name)
        except FileNotFoundError:
            continue
        if (img.pulled or {}).get("digest") == digest:
            return img
    return None


def check_layers(img: Image) -> Image:
    """The image, once each of its layer directories is there (one stat each, at create): a layer
    removed by hand would otherwise surface only at the overlay mount, as a bare ENOENT from the
    container's child (issue 15, faults)."""
    for h, p in zip(img.layers, img.layer_paths(), strict=True):
        if not p.is_dir():
            again = ("run it again to rebuild it" if img.ref == f"{BUSYBOX_NAME}:{BUSYBOX_TAG}" and not img.pulled
                     else "pull it again" if img.pulled else "import it again")
            raise EngineError(f"image {img.ref} is damaged: its layer {h[:12]} is missing ({p}); "
                              f"remove the image (labtui image rm {img.ref}) and {again}")
    return img


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
