"""The container's root filesystem, built inside its own mount namespace (runs in the child).

Order (as crun/runc): make every mount private, mount the overlay, volumes, /proc, /sys, /dev,
the per-container /etc files, tmpfs mounts, then pivot_root and detach the old root. Because all
of this happens in the container's mount namespace after propagation was made private, none of
these mounts ever appears in the host's mount table, and they vanish with the namespace.
"""

from __future__ import annotations

import os
import stat

from engine import syscalls as sc
from engine.steps import Recorder

DEV_NODES = [  # name, major, minor (docker's device allowlist, REFERENCE)
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
]
TIOCGPTN = 0x80045430  # <asm-generic/ioctls.h>: not exported by Python's termios
TIOCSPTLCK = 0x40045431
DEV_LINKS = [
    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"),
]


def mount(rec: Recorder, source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, *, shell: str = "", op: str = "mount", mechanism: str = "mount") -> None:
    value = ",".join(x for x in (sc.ms_names(flags), data or "") if x)
    if not shell:
        opts = f" -o {value}" if value else ""
        shell = f"mount -t {fstype} {source or 'none'}{opts} {target}" if fstype else f"mount{opts} {target}"
    with rec.step(mechanism, op, target=target, value=f"{fstype or ''} {value}".strip(), shell=shell,
                  source=source or ""):
        sc.mount(source, target, fstype, flags, data)


def make_private(rec: Recorder) -> None:
    # Why: the host's / is usually shared (systemd); without this our mounts would propagate
    # back into the host's mount table (mount_namespaces(7), "Shared subtrees").
    mount(rec, None, "/", None, sc.MS_REC | sc.MS_PRIVATE, shell="mount --make-rprivate /",
          op="make-rprivate")


def secure_join(root: str, path: str) -> str:
    """Resolve path inside root, following symlinks as if root were / (CVE-2018-15664 class).

    A symlink planted in the image (e.g. /data -> /etc) must not send a volume mount out of the
    container's root onto the host.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(40, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def ensure_mountpoint(path: str, is_dir: bool) -> None:
    if os.path.lexists(path):
        return
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass


def mount_overlay(rec: Recorder, lowers: list[str], upper: str, work: str, merged: str,
                  userxattr: bool = False, volatile: bool = False) -> None:
    # overlayfs(5): lowerdir lists layers top first; writes copy up into upperdir.
    data = f"lowerdir={':'.join(reversed(lowers))},upperdir={upper},workdir={work}"
    if userxattr:
        # In a user namespace overlay cannot use trusted.* xattrs: its markers are user.overlay.*
        data += ",userxattr"
    if volatile:
        # A --rm container's upper layer is thrown away: without "volatile" the unmount when the
        # container exits syncs the upper filesystem (ovl_sync_fs), waiting for the disk, before
        # the exit is even reported (overlayfs docs, "Volatile mount"; podman's transient mounts).
        data += ",volatile"
    mount(rec, "overlay", merged, "overlay", 0, data, mechanism="rootfs", op="mount overlay")


def mount_volume(rec: Recorder, root: str, host: str, ctr: str, readonly: bool) -> None:
    target = secure_join(root, ctr)
    ensure_mountpoint(target, os.path.isdir(host))
    mount(rec, host, target, None, sc.MS_BIND | sc.MS_REC, shell=f"mount --rbind {host} {target}",
          op="bind volume")
    if readonly:
        # A bind mount's read-only flag can only be set by a remount of that bind (mount(2)). The
        # source mount's nosuid/nodev/noexec/atime flags are kept: in a user namespace they are
        # locked, and a remount that drops them fails with EPERM.
        mount(rec, None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | locked_flags(target),
              shell=f"mount -o remount,bind,ro {target}", op="remount ro")


def locked_flags(path: str) -> int:
    """The flags of the mount at path that a bind remount must repeat (statvfs(3) -> mount(2))."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    out = 0
    for st_bit, ms_bit in ((2, sc.MS_NOSUID), (4, sc.MS_NODEV), (8, sc.MS_NOEXEC), (1024, 1024), (2048, 2048),
                           (4096, 1 << 21)):  # ST_NOATIME, ST_NODIRATIME, ST_RELATIME
        if f & st_bit:
            out |= ms_bit
    return out


def mount_proc_sys(rec: Recorder, root: str, bind_sys: bool = False) -> None:
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    # A fresh procfs shows the PID namespace of the mounting process: ours, as PID 1.
    mount(rec, "proc", proc, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    sysd = os.path.join(root, "sys")
    os.makedirs(sysd, exist_ok=True)
    if bind_sys:
        # A user namespace may mount sysfs only for a network namespace it owns; with the host's
        # network the host's /sys is bound instead, read-only (as runc does).
        mount(rec, "/sys", sysd, None, sc.MS_BIND | sc.MS_REC, shell=f"mount --rbind /sys {sysd}", op="bind sys")
        mount(rec, None, sysd, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | locked_flags(sysd),
              shell=f"mount -o remount,bind,ro {sysd}", op="remount ro")
        return
    # sysfs shows the network devices of the mounting process's network namespace.
    mount(rec, "sysfs", sysd, "sysfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)


def setup_dev(rec: Recorder, root: str, with_console: bool = True, bind_nodes: bool = False) -> None:
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    mount(rec, "tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEV_NODES:
        path = os.path.join(dev, name)
        if bind_nodes:
            # In a user namespace mknod(2) of a device is refused (EPERM): bind the host's node.
            with open(path, "a"):
                pass
            mount(rec, f"/dev/{name}", path, None, sc.MS_BIND, shell=f"mount --bind /dev/{name} {path}",
                  op="bind device", mechanism="device")
            continue
        with rec.step("device", "mknod", target=path, value=f"c {major}:{minor} 0666",
                      shell=f"mknod -m 666 {path} c {major} {minor}"):
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod's mode is filtered by the umask
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    # newinstance: a private devpts, so the container sees only its own ptys (devpts docs).
    mount(rec, "devpts", pts, "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    mount(rec, "shm", shm, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    if with_console:
        # Without a terminal /dev/console is /dev/null: mknod c 5 1 would hand the container the
        # host's console.
        bind_console(rec, dev, os.path.join(dev, "null"))


def bind_console(rec: Recorder, dev: str, src: str) -> None:
    cons = os.path.join(dev, "console")
    with open(cons, "a"):
        pass
    mount(rec, src, cons, None, sc.MS_BIND, shell=f"mount --bind {src} {cons}", op="bind console")


def open_console(rec: Recorder, root: str, console_sock: int, send) -> int:
    """The container's terminal, allocated from its own devpts instance (as runc's console
    socket): the command sees /dev/pts/0, and the master side is passed to the supervisor with
    SCM_RIGHTS (unix(7)). Returns the slave fd."""
    import fcntl
    import socket
    import struct

    dev = os.path.join(root, "dev")
    ptmx = os.path.join(dev, "pts", "ptmx")
    with rec.step("device", "open ptmx", target=ptmx, value="O_RDWR|O_NOCTTY",
                  shell="# posix_openpt(): a new pty pair in the container's devpts"):
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt(3)
        num = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        slave_path = os.path.join(dev, "pts", str(num))
        slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    bind_console(rec, dev, slave_path)
    sock = socket.socket(fileno=console_sock)
    socket.send_fds(sock, [b"m"], [master])
    sock.close()
    os.close(master)
    send({"t": "console", "pts": f"/dev/pts/{num}"})
    return slave


def bind_file(rec: Recorder, root: str, host_file: str, ctr_path: str) -> None:
    target = secure_join(root, ctr_path)
    ensure_mountpoint(target, False)
    mount(rec, host_file, target, None, sc.MS_BIND, shell=f"mount --bind {host_file} {target}",
          op="bind file")


def mount_tmpfs(rec: Recorder, root: str, path: str, mode: str = "1777") -> None:
    target = secure_join(root, path)
    ensure_mountpoint(target, True)
    mount(rec, "tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"mode={mode}")


def pivot(rec: Recorder, root: str) -> None:
    """pivot_root(".", ".") then detach the old root (the trick runc uses, pivot_root(2) NOTES).

    Unlike chroot, the old root stops being reachable at all once it is unmounted, so no
    directory fd or `cd ..` can lead back to the host.
    """
    os.chdir(root)
    with rec.step("rootfs", "pivot_root", target=root, value=". .", shell=f"cd {root} && pivot_root . ."):
        sc.pivot_root(".", ".")
    with rec.step("rootfs", "umount old root", target="/", value="MNT_DETACH", shell="umount -l /"):
        sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def chroot_into(rec: Recorder, root: str) -> None:
    """chroot(2) instead of pivot_root: only the attack lab's weak "chroot" profile uses it, to show
    why runtimes do not. The host's mounts stay in the container's mount namespace and a process
    with CAP_SYS_CHROOT can climb out (chroot into a subdirectory, then chdir("..") from outside it).
    """
    os.chdir(root)
    with rec.step("rootfs", "chroot", target=root, value=".", shell=f"cd {root} && chroot ."):
        os.chroot(".")
    os.chdir("/")


def remount_root_ro(rec: Recorder) -> None:
    mount(rec, None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY,
          shell="mount -o remount,bind,ro /", op="remount / ro")
