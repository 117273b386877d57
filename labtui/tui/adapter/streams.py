"""The streams the app follows: a container's kernel steps, its log and its events, and the
host-wide events (alerts), read as JSON lines appended since the previous read."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from engine import jsonl, paths


class Tail:
    """Reads the JSON-lines records appended to a file since the previous read().

    Never blocks: a follower thread calls read() on its own tick and posts one message per
    batch. A file that is replaced (new inode) or truncated is read again from the start.
    """

    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None) -> None:
        self.path = path
        self.keep = keep
        self.pos = 0
        self.ino: int | None = None
        self.buf = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self.ino or st.st_size < self.pos:
                    if self.ino is not None:
                        self.pos, self.buf = 0, b""
                    self.ino = st.st_ino
                f.seek(self.pos)
                chunk = f.read()
        except OSError:
            return []  # not there (yet, or any more)
        self.pos += len(chunk)
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [r for r in jsonl.decode(lines) if self.keep is None or self.keep(r)]


def logs_tail(cid: str) -> Tail:
    return Tail(paths.container_dir(cid) / "container.log")


def container_events_tail(cid: str) -> Tail:
    return Tail(paths.events_stream(), lambda ev: ev.get("container") == cid)


def events_tail() -> Tail:
    """Host-wide events: the first read() returns the history, later ones what is new."""
    return Tail(paths.events_stream())
