"""A container's output log: docker's json-file log driver, written by the supervisor, read by
`labtui logs` and the app.

<container dir>/container.log holds one {"log", "stream", "time"} object per line, as docker's
json-file driver writes them; a line longer than 16 KiB is split, as docker does.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable, Iterator

from engine import events, jsonl, state
from engine.errors import NotFound

LOG_PARTIAL_MAX = 16 * 1024  # docker splits log lines at 16 KiB
# Free space the log leaves on its filesystem: 5% of it, at least 1 MiB, at most 256 MiB.
LOG_RESERVE_MIN, LOG_RESERVE_MAX = 1 << 20, 256 << 20


def rfc3339nano(ts: float) -> str:
    """docker's log timestamp, in UTC (without datetime: ~1 ms of every supervisor's start)."""
    sec, us = divmod(round(ts * 1_000_000), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}000Z"


class LogWriter:
    """The supervisor's side: one {"log","stream","time"} object per line.

    Why a reserve: the log shares its filesystem with every container's records, so a chatty
    container must not fill it to the last byte and leave `run`, `rm` and the supervisor's own
    exit record failing with ENOSPC. Output that would eat into the reserve (or that meets ENOSPC
    anyway) is dropped, as docker's json-file driver drops what it cannot write, while the pipe
    is still read so the container never blocks or dies of it; on_drop(info) is told when the
    dropping starts and when it ends (issue 15, faults)."""

    def __init__(self, path: str, on_drop: Callable[[dict], None] | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.on_drop = on_drop
        self.dropped: dict | None = None  # {"bytes", "since", "until", "reserve"} once any was
        self.full = False
        st = os.fstatvfs(self.fd)
        self.reserve = min(max(st.f_blocks * st.f_frsize // 20, LOG_RESERVE_MIN), LOG_RESERVE_MAX)

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        out = [self._line(stream, line + b"\n") for line in lines]
        if len(self.partial[stream]) >= LOG_PARTIAL_MAX:
            out.append(self._line(stream, self.partial[stream]))
            self.partial[stream] = b""
        if out:
            self._append(b"".join(out))

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._append(self._line(stream, rest))
                self.partial[stream] = b""

    def _append(self, data: bytes) -> None:
        st = os.fstatvfs(self.fd)  # statvfs(3): f_bavail blocks of f_frsize bytes are free
        if st.f_bavail * st.f_frsize - len(data) < self.reserve:
            return self._drop(len(data))
        try:
            os.write(self.fd, data)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            return self._drop(len(data))
        if self.full:  # room again (a container removed, a file deleted): say how much is missing
            self.full = False
            assert self.dropped is not None
            self.dropped["until"] = state.now_iso()
            self._tell()

    def _drop(self, n: int) -> None:
        if self.dropped is None or not self.full:
            self.dropped = {"bytes": (self.dropped or {}).get("bytes", 0), "since": state.now_iso(),
                            "until": None, "reserve": self.reserve}
        self.dropped["bytes"] += n
        if not self.full:
            self.full = True
            self._tell()

    def summary(self) -> dict | None:
        """What was dropped so far, for the exit record (a run's output ends with its exit)."""
        if self.dropped is not None and self.full:
            self.dropped["until"] = state.now_iso()
        return dict(self.dropped) if self.dropped is not None else None

    def _tell(self) -> None:
        if self.on_drop is not None and self.dropped is not None:
            self.on_drop(dict(self.dropped))

    @staticmethod
    def _line(stream: str, data: bytes) -> bytes:
        obj = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": rfc3339nano(time.time())}
        return (json.dumps(obj) + "\n").encode()


def drop_recorder(cid: str, name: str) -> Callable[[dict], None]:
    """The supervisor's on_drop: the log's disk is (or was) full, said in the container's state
    (for `labtui logs`) and on the timeline (log_full, then log_resumed)."""
    def record(info: dict) -> None:
        try:
            state.update_state(cid, log_dropped=info)
            events.emit("log_full" if info.get("until") is None else "log_resumed", cid, name, **info)
        except OSError as e:  # full beyond the log's reserve: keep serving the container
            try:  # stderr is supervisor.log, on the same full disk: print itself can fail
                print(f"labtui supervisor: could not record that the log is full: {e}", file=sys.stderr)
            except OSError:
                pass
    return record


def dropped_note(ref: str) -> str | None:
    """A line for `labtui logs` when output was dropped because the disk was full, else None."""
    c = state.resolve(ref)
    d = c.state.get("log_dropped")
    if not isinstance(d, dict):
        return None
    what = (f"{d.get('bytes', 0)} bytes of output were not logged between {d.get('since')} and {d['until']}"
            if d.get("until") else f"output is not being logged since {d.get('since')}")
    return (f"this log is incomplete: {what}: the disk of {c.dir.parent} "
            f"had less than {d.get('reserve', 0) // 1024} KiB free")


def read_logs(ref: str, tail: int | None = None) -> list[dict]:
    """The log's records, the last `tail` of them when given."""
    c = state.resolve(ref)
    recs = jsonl.read_all(c.dir / "container.log")
    if tail is not None:
        recs = recs[-tail:] if tail > 0 else []
    return recs


def follow_logs(ref: str, tail: int | None = None) -> Iterator[dict]:
    """logs -f: the records so far (or the last `tail`), then each new one until the container
    stopped for good (no supervisor left to write)."""
    c = state.resolve(ref)
    path = c.dir / "container.log"
    existing = jsonl.read_all(path)
    start_from = existing[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else existing)
    yield from start_from
    size = os.path.getsize(path) if path.exists() else 0

    def stopped() -> bool:
        try:
            cur = state.load(c.id)
        except NotFound:
            return True
        return cur.status not in (state.RUNNING, state.PAUSED, state.RESTARTING) and not cur.supervisor_alive()

    with open(path, "a+b") as f:
        f.seek(size)
        buf = b""
        idle_checks = 0
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                continue
            idle_checks += 1
            if idle_checks % 5 == 0 and stopped():
                chunk = f.read()
                if not chunk:
                    return
                buf += chunk
                continue
            time.sleep(0.05)
