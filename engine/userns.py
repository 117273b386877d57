"""User namespaces (--userns=private): container root is an unprivileged user on the host.

The mapping: the `labtui` entries of /etc/subuid and /etc/subgid when they exist (START:COUNT),
else 100000:65536 - container uid 0..65535 is host uid 100000..165535. Like dockerd's
userns-remap, every private container uses this one mapping: they are kept apart from each other
by their other namespaces, and from the host by the mapping. (podman's --userns=auto gives each
container its own range instead; the cache below is keyed by mapping so that would fit.)

The sequence, with the kernel rules behind it (user_namespaces(7)):
1. clone(2) gets CLONE_NEWUSER with the other CLONE_NEW* flags, so the new mount, PID, network,
   UTS, IPC namespaces are owned by the new user namespace and its root has capabilities over them.
2. The parent (the supervisor) writes the maps once, between clone and "go": first "deny" to
   /proc/PID/setgroups (required before an unprivileged gid_map, and it stops a mapped process
   from dropping supplementary groups to bypass "deny" ACLs - CVE-2014-8989), then uid_map and
   gid_map. Only a process in the parent namespace with CAP_SETUID/CAP_SETGID there may write a
   mapping of more than its own id, so the child cannot do it itself.
3. The child becomes uid/gid 0 of the namespace (setresuid/setresgid: until then its ids are the
   host's root, which is unmapped, and it shows as 65534).
4. Its root filesystem must be usable by host uid 100000: the image layers are copied once per
   mapping with every owner shifted (a cache under lib/userns-cache/<mapping>/<layer>), the
   container's upper and work directories are chowned to the mapped root, overlay is mounted with
   `userxattr` (a user namespace cannot write trusted.* xattrs), device nodes are bind-mounted from
   the host (mknod is refused in a user namespace), and /proc and /sys are fresh mounts the
   namespace owns.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from engine import paths
from engine.errors import EngineError, InvalidArgument
from engine.record import dataclass
from engine.steps import Recorder

SUBID_NAME = "labtui"
DEFAULT_START = 100000
DEFAULT_COUNT = 65536
MODES = ("host", "private")


@dataclass(frozen=True)
class Mapping:
    uid: int
    gid: int
    count: int

    @property
    def key(self) -> str:
        return f"{self.uid}-{self.gid}-{self.count}"

    def uid_line(self) -> str:
        return f"0 {self.uid} {self.count}"

    def gid_line(self) -> str:
        return f"0 {self.gid} {self.count}"

    def host_uid(self, uid: int) -> int:
        return self.uid + uid if 0 <= uid < self.count else 65534

    def host_gid(self, gid: int) -> int:
        return self.gid + gid if 0 <= gid < self.count else 65534


def validate_mode(mode: str | None) -> str:
    mode = (mode or "host").strip()
    if mode not in MODES:
        raise InvalidArgument(f"invalid --userns '{mode}': expected host or private")
    return mode


def is_private(cfg: dict) -> bool:
    return cfg.get("userns") == "private"


def _subid(path: str, name: str = SUBID_NAME) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] == name:
                    return int(parts[1]), int(parts[2])
    except (OSError, ValueError):
        return None
    return None


def mapping(subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> Mapping:
    u = _subid(subuid)
    g = _subid(subgid)
    if u and g:
        return Mapping(u[0], g[0], min(u[1], g[1], DEFAULT_COUNT))
    return Mapping(DEFAULT_START, DEFAULT_START, DEFAULT_COUNT)


def mapping_of(cfg: dict) -> Mapping:
    m = cfg.get("userns_mapping")
    if m:
        return Mapping(int(m["uid"]), int(m["gid"]), int(m["count"]))
    return mapping()


# ---- supervisor side: maps ---------------------------------------------------------------------

def write_maps(rec: Recorder, pid: int, cfg: dict) -> bool:
    """Between clone and "go": setgroups deny, uid_map, gid_map (in that order). Idempotent: a
    namespace whose maps are already written is left alone. Returns True when it wrote them."""
    if not is_private(cfg):
        return False
    try:
        with open(f"/proc/{pid}/uid_map") as f:
            if f.read().strip():
                return False
    except OSError as e:
        raise EngineError(f"userns: cannot read /proc/{pid}/uid_map: {e.strerror}") from None
    m = mapping_of(cfg)
    _write_proc(rec, f"/proc/{pid}/setgroups", "deny",
                why="before gid_map: a mapped process must not drop groups with setgroups(2) (CVE-2014-8989)")
    _write_proc(rec, f"/proc/{pid}/uid_map", m.uid_line(), why="container uid 0.. = host uid "
                f"{m.uid}..{m.uid + m.count - 1}", op="write uid_map")
    _write_proc(rec, f"/proc/{pid}/gid_map", m.gid_line(), why="container gid 0.. = host gid "
                f"{m.gid}..{m.gid + m.count - 1}", op="write gid_map")
    return True


def _write_proc(rec: Recorder, path: str, value: str, why: str, op: str | None = None) -> None:
    with rec.step("userns", op or f"write {os.path.basename(path)}", target=path, value=value,
                  shell=f"echo '{value}' > {path}", why=why):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


# ---- child side --------------------------------------------------------------------------------

def enter(rec: Recorder, cfg: dict) -> None:
    """In the child after "go": the maps must be there; become root of the namespace."""
    if not is_private(cfg):
        return
    with open("/proc/self/uid_map") as f:
        umap = f.read().strip()
    if not umap:
        raise EngineError("userns: the supervisor did not write uid_map before letting the container go "
                          "(userns.write_maps must be called between clone and go)")
    with rec.step("userns", "setresuid/setresgid", target="self", value="0 0 0",
                  shell="# setresgid(0,0,0); setresuid(0,0,0): become the namespace's root "
                        f"(host {' '.join(umap.split()[1:2])})"):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


# ---- root filesystem -----------------------------------------------------------------------------

def cache_dir() -> Path:
    return paths.lib_dir() / "userns-cache"


def prepare_rootfs(rec: Recorder, cfg: dict) -> list[str]:
    """Supervisor side, before clone: the mapped copies of the image layers (built once per
    mapping) and the container's own directories owned by the mapped root. Returns the lower
    directories to mount."""
    m = mapping_of(cfg)
    _make_reachable(rec)
    lowers = [str(mapped_layer(rec, Path(layer), m)) for layer in cfg["layers"]]
    cdir = paths.container_dir(cfg["id"])
    for sub in ("upper", "work", "merged", "hostname", "hosts", "resolv.conf"):
        p = cdir / sub
        if not p.exists():
            continue
        st = os.lstat(p)
        if (st.st_uid, st.st_gid) == (m.uid, m.gid):
            continue
        with rec.step("userns", "chown", target=str(p), value=f"{m.uid}:{m.gid}",
                      shell=f"chown {m.uid}:{m.gid} {p}", why="owned by the container's root"):
            os.lchown(p, m.uid, m.gid)
    return lowers


def _make_reachable(rec: Recorder) -> None:
    """The mapped root is "other" for the host's directories: it needs search (x) permission on
    every directory above the container's files. labtui's own root directory (LABTUI_ROOT, or
    /var/lib/labtui) is made o+x; any other ancestor without it is an error naming it."""
    lib = paths.lib_dir().resolve()
    own = {lib}
    if os.environ.get("LABTUI_ROOT"):
        own.add(Path(os.environ["LABTUI_ROOT"]).resolve())
    for d in [lib, *lib.parents]:
        st = os.stat(d)
        if st.st_mode & stat.S_IXOTH:
            continue
        if d in own:
            with rec.step("userns", "chmod", target=str(d), value="o+x", shell=f"chmod o+x {d}",
                          why="the mapped root must be able to reach the container's directories"):
                os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        else:
            raise EngineError(f"userns: {d} is not searchable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                              "the container's mapped root could not reach its root filesystem")


def mapped_layer(rec: Recorder, layer: Path, m: Mapping) -> Path:
    """lib/userns-cache/<mapping>/<layer>: a copy of the layer with every owner shifted by the
    mapping, built once under a lock and renamed into place when complete."""
    dest = cache_dir() / m.key / layer.name
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(str(dest.parent / ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():
            return dest
        tmp = dest.with_name(f".{layer.name}.{os.getpid()}.tmp")
        import shutil  # here: ~2 ms (bz2, lzma) of every supervisor's start otherwise
        shutil.rmtree(tmp, ignore_errors=True)
        with rec.step("userns", "copy layer (shifted owners)", target=str(dest), value=f"+{m.uid}:+{m.gid}",
                      source=str(layer),
                      shell=f"cp -a {layer} {dest} && find {dest} -exec chown -h --from=... "
                            f"# every uid u -> {m.uid}+u, gid g -> {m.gid}+g"):
            shift_copy(str(layer), str(tmp), m)
            os.rename(tmp, dest)
    finally:
        os.close(lock)
    return dest


def shift_copy(src: str, dst: str, m: Mapping) -> None:
    """Copy a tree (files, dirs, symlinks, devices, fifos, hard links, xattrs) with owners shifted.

    Overlay's own markers move from trusted.overlay.* to user.overlay.*, where overlay looks for
    them when mounted with userxattr in a user namespace.
    """
    inodes: dict[tuple[int, int], str] = {}

    def copy_meta(s: str, d: str, st: os.stat_result) -> None:
        os.lchown(d, m.host_uid(st.st_uid), m.host_gid(st.st_gid))
        for name in _listxattr(s):
            try:
                value = os.getxattr(s, name, follow_symlinks=False)
            except OSError:
                continue
            target = name
            if name.startswith("trusted.overlay."):
                target = "user.overlay." + name[len("trusted.overlay."):]
            elif name == "security.capability":
                value = _caps_v3(value, m.uid)
                if value is None:
                    continue
            try:
                os.setxattr(d, target, value, follow_symlinks=False)
            except OSError:
                pass
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(d, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    import shutil  # here: ~2 ms (bz2, lzma) of every supervisor's start otherwise

    def walk(s: str, d: str) -> None:
        st = os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            for name in sorted(os.listdir(s)):
                walk(os.path.join(s, name), os.path.join(d, name))
        elif stat.S_ISREG(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in inodes:
            os.link(inodes[(st.st_dev, st.st_ino)], d)
            return
        elif stat.S_ISREG(mode):
            with open(s, "rb") as fi, open(d, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
            if st.st_nlink > 1:
                inodes[(st.st_dev, st.st_ino)] = d
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(d, mode, st.st_rdev)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, stat.S_IMODE(mode))
        else:
            return  # sockets are not part of an image
        copy_meta(s, d, st)

    walk(src, dst)


def _listxattr(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def _caps_v3(value: bytes, rootid: int) -> bytes | None:
    """File capabilities for a user namespace: a v2 security.capability is honoured only for the
    host's root; v3 names the namespace root's host uid (capabilities(7), "Namespaced file
    capabilities")."""
    import struct

    if len(value) < 20:
        return None
    magic = struct.unpack_from("<I", value)[0]
    body = value[4:20]
    flags = magic & 0x1  # VFS_CAP_FLAGS_EFFECTIVE
    return struct.pack("<I", 0x03000000 | flags) + body + struct.pack("<I", rootid)


def remove_cache() -> None:
    import shutil  # here: ~2 ms (bz2, lzma) of every supervisor's start otherwise
    shutil.rmtree(cache_dir(), ignore_errors=True)
