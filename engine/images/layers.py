"""One layer tar (maybe gzip'd) extracted into its directory, whiteouts kept in overlay format.

A layer tar's ``.wh.NAME`` becomes a character device 0:0 called NAME, and ``.wh..wh..opq`` the
xattr trusted.overlay.opaque=y on its directory (Documentation/filesystems/overlayfs.rst,
"whiteouts and opaque directories"). The layer's id is the sha256 of the uncompressed tar,
computed while extracting it, in one pass.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.images.record import _Bad
from engine.images.store import _rmtree
from engine.record import dataclass

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    import tarfile
    from typing import IO, Any


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
