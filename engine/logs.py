"""A container's output log: docker's json-file log driver, written by the supervisor, read by
`labtui logs` and the app.

<container dir>/container.log holds one {"log", "stream", "time"} object per line, as docker's
json-file driver writes them; a line longer than 16 KiB is split, as docker does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from engine import jsonl, state
from engine.errors import NotFound

LOG_PARTIAL_MAX = 16 * 1024  # docker splits log lines at 16 KiB


def rfc3339nano(ts: float) -> str:
    """docker's log timestamp, in UTC (without datetime: ~1 ms of every supervisor's start)."""
    sec, us = divmod(round(ts * 1_000_000), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}000Z"


class LogWriter:
    """The supervisor's side: one {"log","stream","time"} object per line."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        out = [self._line(stream, line + b"\n") for line in lines]
        if len(self.partial[stream]) >= LOG_PARTIAL_MAX:
            out.append(self._line(stream, self.partial[stream]))
            self.partial[stream] = b""
        if out:
            os.write(self.fd, b"".join(out))

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                os.write(self.fd, self._line(stream, rest))
                self.partial[stream] = b""

    @staticmethod
    def _line(stream: str, data: bytes) -> bytes:
        obj = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": rfc3339nano(time.time())}
        return (json.dumps(obj) + "\n").encode()


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
