"""The kernel-step stream: the one bridge from the engine to whoever watches it.

A step is recorded by the code that performs a kernel operation, at the moment it performs it,
with its real result or errno. The schema (docs/steps-and-events.md):

    seq, ts, container, pid, mechanism, op, target, value, result ("ok" or an errno name),
    errno, strerror, duration_ms, shell

Steps made in the container's child process travel to the supervisor over a pipe and are written
there, so one writer numbers them. A step gate, when enabled, holds each step until a reader lets
it go (the instructor's step-through mode).
"""

from __future__ import annotations

import errno as errno_mod
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine import jsonl, paths
from engine.errors import StepError

Sink = Callable[[dict], None]
Gate = Callable[[dict], None]

MECHANISMS = (
    "namespace", "mount", "rootfs", "cgroup", "process", "device", "network", "uts",
    "capability", "seccomp", "userns", "sysctl", "image", "exec", "signal", "checkpoint",
)


class Recorder:
    """Times and records kernel operations. Use as ``with rec.step(...) as s: do_it()``."""

    def __init__(self, container: str | None, sink: Sink, gate: Gate | None = None) -> None:
        self.container = container
        self.sink = sink
        self.gate = gate

    @contextmanager
    def step(
        self,
        mechanism: str,
        op: str,
        target: str = "",
        value: str = "",
        shell: str = "",
        **extra: object,
    ) -> Iterator[dict]:
        rec: dict = {
            "container": self.container,
            "pid": os.getpid(),
            "mechanism": mechanism,
            "op": op,
            "target": target,
            "value": value,
            "shell": shell,
        }
        rec.update(extra)
        if self.gate is not None:
            rec["gated"] = True  # held until a reader let it go
            self.gate(rec)
        rec["ts"] = time.time()
        t0 = time.perf_counter()
        try:
            yield rec
        except OSError as e:
            _finish(rec, t0, e.errno or 0)
            self.sink(rec)
            raise StepError(rec) from e
        except BaseException:
            _finish(rec, t0, errno_mod.ECANCELED)
            rec["result"] = rec.get("result_override", "error")
            self.sink(rec)
            raise
        else:
            _finish(rec, t0, 0)
            self.sink(rec)

    def record(self, rec: dict) -> None:
        """Record a step whose operation was timed elsewhere (e.g. exec seen through CLOEXEC)."""
        self.record_many([rec])

    def record_many(self, recs: list[dict]) -> None:
        """Steps timed elsewhere that arrived together (the child's, read from its pipe in one
        chunk): numbered and written at once when the sink can (FileSink.many)."""
        for rec in recs:
            rec.setdefault("container", self.container)
            rec.setdefault("ts", time.time())
        many = getattr(self.sink, "many", None)
        if many is not None:
            many(recs)
        else:
            for rec in recs:
                self.sink(rec)


def _finish(rec: dict, t0: float, err: int) -> None:
    rec["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    rec["errno"] = err
    rec["result"] = "ok" if err == 0 else errno_mod.errorcode.get(err, str(err))
    if err:
        rec["strerror"] = os.strerror(err)


def null_recorder() -> Recorder:
    return Recorder(None, lambda rec: None)


class FileSink:
    """Numbers steps and appends them to the container's steps.jsonl and the host-wide stream.

    The sequence number is shared by every process that records steps for one container (the
    supervisor, a CLI sending a signal, `rm` tearing down): the length of a counter file that
    each of them appends one byte to. An O_APPEND write moves the file position of the writer's
    own open file to the end of its bytes atomically, whoever else appends (write(2)), so the
    position after the write is a number nobody else gets: two syscalls, no lock.
    """

    def __init__(self, container_log: os.PathLike | str | None, start_seq: int = 0) -> None:
        self.container_log = container_log
        self.seq = start_seq
        self.listeners: list[Sink] = []
        self._fds: dict[str, int] = {}
        self._counter_fd: int | None = None
        if container_log is not None:
            counter = os.path.join(os.path.dirname(os.fspath(container_log)), ".step_seq")
            try:
                self._counter_fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._counter_fd = None

    def _next_seqs(self, n: int) -> int:
        """n consecutive sequence numbers; returns the first. One write of n bytes: O_APPEND
        places them together whoever else appends, so the block is ours alone."""
        fd = self._counter_fd
        if fd is None:
            self.seq += n
            return self.seq - n + 1
        try:
            os.write(fd, b"." * n)
        except OSError as e:  # a full disk: numbered by this process alone (see many())
            if e.errno not in (errno_mod.ENOSPC, errno_mod.EDQUOT):
                raise
            self.seq += n
            return self.seq - n + 1
        self.seq = os.lseek(fd, 0, os.SEEK_CUR)
        return self.seq - n + 1

    def __call__(self, rec: dict) -> None:
        self.many([rec])

    def many(self, recs: list[dict]) -> None:
        """Number and append steps; several at once cost the syscalls of one."""
        first = self._next_seqs(len(recs))
        for i, rec in enumerate(recs):
            rec["seq"] = first + i
        data = "".join(jsonl.dumps(rec) + "\n" for rec in recs).encode()
        try:
            # The files stay open (O_APPEND): a container start records ~100 steps.
            if self.container_log is not None:
                os.write(self._fds.get("log") or self._fd("log", self.container_log), data)
            os.write(self._fds.get("stream") or self._fd("stream", paths.steps_stream()), data)
        except OSError as e:
            # A full disk loses the record, not the operation it records: `rm` is how space is
            # freed, and it records steps before the container's files are gone (issue 15).
            if e.errno not in (errno_mod.ENOSPC, errno_mod.EDQUOT):
                raise
        for listener in self.listeners:
            for rec in recs:
                listener(rec)

    def open_files(self) -> None:
        """Open the step files now, not at the first step: a supervisor back from its idle phase
        may record the last steps of a --rm container after its directory is gone, and a process
        about to leave the host's filesystem (pivot_root, engine/oci/child.py) keeps recording
        through them (an open file still takes them)."""
        if self.container_log is not None:
            self._fd("log", self.container_log)
        self._fd("stream", paths.steps_stream())

    def _fd(self, which: str, path: os.PathLike | str) -> int:
        fd = self._fds.get(which)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._fds[which] = fd
        return fd

    def fds(self) -> list[int]:
        """The descriptors this sink writes through (for a child that must keep them open)."""
        return list(self._fds.values()) + ([self._counter_fd] if self._counter_fd is not None else [])

    def close(self) -> None:
        for fd in list(self._fds.values()) + ([self._counter_fd] if self._counter_fd is not None else []):
            os.close(fd)
        self._fds = {}
        self._counter_fd = None


def container_recorder(cid: str) -> Recorder:
    """A recorder for steps a CLI or app process performs on a container (signals, teardown)."""
    return Recorder(cid, FileSink(os.path.join(paths.container_dir(cid), "steps.jsonl")))


def follow_steps(container: str | None = None, *, from_start: bool = False, stop=None) -> Iterator[dict]:
    for rec in jsonl.follow(paths.steps_stream(), from_start=from_start, stop=stop):
        if container is None or rec.get("container") == container:
            yield rec
