"""Live seccomp denials of a container, read from the kernel's audit records.

With the filter's log flag the kernel writes an audit record (type 1326, AUDIT_SECCOMP) for each
denied call. DenialWatcher reads them from the audit netlink multicast group (the read-only group
journald uses; every record, no rate limit) or, failing that, from /dev/kmsg, keeps only this
container's (its audit session id, set per supervisor, or its PID namespace) and turns each into
a "seccomp_denied" event with the syscall's name and number.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
import socket
import struct
import time

from engine.seccomp.profile import action_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.seccomp.filter import Filter
    from engine.seccomp.profile import Plan

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_SECCOMP = 1326
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_audit(text: str) -> dict | None:
    """One AUDIT_SECCOMP record ("audit(TS:SEQ): auid=... pid=... syscall=83 ... code=0x50000",
    or the same line as printed to the kernel log after "audit: type=1326") -> its fields."""
    if "syscall=" not in text or "code=" not in text:
        return None
    out = {k: v.strip('"') for k, v in _FIELD_RE.findall(text)}
    try:
        out["pid"] = int(out["pid"])
        out["syscall"] = int(out["syscall"])
        out["code"] = int(out["code"], 16)
    except (KeyError, ValueError):
        return None
    return out


def action_of_code(code: int) -> str:
    act = code & 0xFFFF0000
    return {0x80000000: "SCMP_ACT_KILL_PROCESS", 0: "SCMP_ACT_KILL_THREAD", 0x00030000: "SCMP_ACT_TRAP",
            0x00050000: "SCMP_ACT_ERRNO", 0x7FC00000: "SCMP_ACT_NOTIFY", 0x7FF00000: "SCMP_ACT_TRACE",
            0x7FFC0000: "SCMP_ACT_LOG", 0x7FFF0000: "SCMP_ACT_ALLOW"}.get(act, f"{act:#x}")


NR_CLONE3 = 435  # x86_64 (and every architecture added since: the unified syscall table)


def syscall_name(nr: int, arch_hex: str | None = None) -> str:
    try:
        import seccomp as lib
    except ImportError:
        return f"syscall_{nr}"
    arch = int(arch_hex, 16) if arch_hex else AUDIT_ARCH_X86_64
    if arch == AUDIT_ARCH_X86_64 and nr & X32_SYSCALL_BIT:
        arch = 0x4000003E  # AUDIT_ARCH_X86_64 as x32
    token = arch - (1 << 32) if arch >= 1 << 31 else arch
    try:
        name = lib.resolve_syscall(token, nr)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return f"syscall_{nr}"


def start_audit_session() -> int | None:
    """Give this process (the supervisor) and everything it will start a new audit session:
    the kernel assigns a fresh session id whenever loginuid is written, and every audit record
    carries it (ses=N). It is how denials are told apart from other containers'. Returns the
    session id, or None when the host forbids it (loginuid immutable)."""
    try:
        with open("/proc/self/loginuid") as f:
            cur = int(f.read().strip() or "4294967295")
        uid = cur if cur != 4294967295 else os.getuid()
        fd = os.open("/proc/self/loginuid", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(uid).encode())
        finally:
            os.close(fd)
        with open("/proc/self/sessionid") as f:
            ses = int(f.read().strip())
        return None if ses == 4294967295 else ses
    except (OSError, ValueError):
        return None


class DenialWatcher:
    """Live seccomp denials of one container, read from the kernel's audit records.

    poll() is non-blocking and cheap (one recv per pending record); it returns the new denials
    as dicts and, unless emit=False, puts each on the event stream as "seccomp_denied" and adds
    it to the container's denial count (denial_stats(cid)). Open it before the container's
    command starts: multicast records are not kept for late readers.
    """

    def __init__(self, cid: str, name: str | None = None, session: int | None = None,
                 plan: Plan | Filter | None = None, emit: bool = True, source: str = "auto") -> None:
        self.cid = cid
        self.name = name
        self.session = session
        self.plan = plan
        self.emit = emit
        self.pidns: int | None = None
        self.count = 0
        self.by_syscall: dict[str, int] = {}
        self.last: dict | None = None
        self.sock: socket.socket | None = None
        self.kmsg: int | None = None
        self.source = ""
        self._pid_cache: dict[int, bool] = {}
        prev = denial_stats(cid)  # a restarted container keeps counting
        self.count = int(prev.get("count") or 0)
        self.by_syscall = dict(prev.get("by_syscall") or {})
        if source in ("auto", "netlink"):
            try:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                                  NETLINK_AUDIT)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.bind((0, AUDIT_NLGRP_READLOG))
                self.sock = s
                self.source = "audit-netlink"
            except OSError:
                if source == "netlink":
                    raise
        if self.sock is None and source in ("auto", "kmsg"):
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(fd, 0, os.SEEK_END)
            self.kmsg = fd
            self.source = "kmsg"

    def fileno(self) -> int:
        if self.sock is not None:
            return self.sock.fileno()
        return self.kmsg if self.kmsg is not None else -1

    init_pid: int | None = None  # host PID of the container's init (set_target)

    def set_target(self, init_pid: int) -> None:
        """The container's init: its PID namespace identifies processes when no session id is
        available (and for processes that joined the container later, e.g. an exec)."""
        self.init_pid = init_pid
        try:
            self.pidns = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
        except OSError:
            self.pidns = None

    def _records(self) -> list[str]:
        out: list[str] = []
        if self.sock is not None:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno_mod.ENOBUFS:  # overrun: some records were lost
                        continue
                    break
                off = 0
                while off + 16 <= len(data):
                    ln, typ = struct.unpack_from("=IH", data, off)
                    if ln < 16:
                        break
                    if typ == AUDIT_SECCOMP:
                        out.append(data[off + 16:off + ln].decode(errors="replace").rstrip("\0"))
                    off += (ln + 3) & ~3
        elif self.kmsg is not None:
            while True:
                try:
                    data = os.read(self.kmsg, 8192)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno_mod.EPIPE:  # the ring buffer overwrote records
                        continue
                    break
                if not data:
                    break
                line = data.decode(errors="replace")
                msg = line.split(";", 1)[1] if ";" in line else line
                if "type=1326" in msg:
                    out.append(msg.split("type=1326", 1)[1])
        return out

    def _sessions(self) -> set[str]:
        """This container's audit sessions: the supervisor's, and those of execs into it
        (add_session), re-read only when that file changes."""
        from engine import paths

        path = paths.container_dir(self.cid) / "seccomp_sessions"
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = 0
        if mtime != getattr(self, "_sessions_mtime", None):
            self._sessions_mtime = mtime
            extra: set[str] = set()
            if mtime:
                try:
                    extra = set(path.read_text().split())
                except OSError:
                    pass
            self._session_set = extra | ({str(self.session)} if self.session is not None else set())
        return self._session_set

    def _ours(self, rec: dict) -> bool:
        if rec.get("ses") in self._sessions():
            return True
        if self.pidns is None:
            return False
        pid = rec["pid"]
        if pid not in self._pid_cache:
            try:
                self._pid_cache[pid] = os.stat(f"/proc/{pid}/ns/pid").st_ino == self.pidns
            except OSError:
                self._pid_cache[pid] = False
            if len(self._pid_cache) > 4096:
                self._pid_cache.clear()
        return self._pid_cache[pid]

    def poll(self) -> list[dict]:
        found = []
        for text in self._records():
            rec = parse_audit(text)
            if rec is None or not self._ours(rec):
                continue
            if self.init_pid is not None and rec["pid"] == self.init_pid and rec["syscall"] == NR_CLONE3 \
                    and rec.get("arch") in (None, f"{AUDIT_ARCH_X86_64:x}"):
                # labtui's own PID 1 starting the command: glibc's posix_spawn tries clone3, which
                # the profile answers ENOSYS (as docker's does) so that it falls back to clone.
                continue
            name = syscall_name(rec["syscall"], rec.get("arch"))
            action = action_of_code(rec["code"])
            if action == "SCMP_ACT_ERRNO" and self.plan is not None:  # a Plan or a Filter
                action = action_text(action, self.plan.errno_for(name))
            d = {"pid": rec["pid"], "syscall": name, "nr": rec["syscall"], "action": action,
                 "comm": rec.get("comm"), "exe": rec.get("exe"), "arch": rec.get("arch"), "ts": time.time()}
            found.append(d)
        if found:
            self.count += len(found)
            for d in found:
                self.by_syscall[d["syscall"]] = self.by_syscall.get(d["syscall"], 0) + 1
                if self.emit:
                    from engine import events

                    events.emit("seccomp_denied", self.cid, self.name, pid=d["pid"], syscall=d["syscall"],
                                nr=d["nr"], action=d["action"], comm=d["comm"], source=self.source)
            self.last = found[-1]
            self._save()
        return found

    def _save(self) -> None:
        from engine import paths

        d = paths.container_dir(self.cid)
        if not d.is_dir():
            return
        path = d / "seccomp_denials.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"count": self.count, "by_syscall": self.by_syscall, "last": self.last,
                           "source": self.source, "session": self.session}, f)
            os.rename(tmp, path)
        except OSError:
            pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.kmsg is not None:
            os.close(self.kmsg)
            self.kmsg = None


def add_session(cid: str, session: int | None) -> None:
    """Tell the container's DenialWatcher about another audit session of its processes (an exec)."""
    if session is None:
        return
    from engine import paths

    d = paths.container_dir(cid)
    if d.is_dir():
        with open(d / "seccomp_sessions", "a") as f:
            f.write(f"{session}\n")


def denial_stats(cid: str) -> dict:
    """The container's denial count (what its supervisor's DenialWatcher has seen)."""
    from engine import paths

    try:
        with open(paths.container_dir(cid) / "seccomp_denials.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"count": 0, "by_syscall": {}, "last": None}
