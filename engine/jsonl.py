"""Append-only JSON-lines files that many writers append to and many readers follow.

Why one write(2) per line with O_APPEND: the kernel positions and writes an O_APPEND write
atomically with respect to other appenders on a local filesystem, so lines from concurrent
supervisors never interleave (write(2), "O_APPEND").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


def dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


def append(path: Path | str, obj: dict) -> None:
    data = (dumps(obj) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: dict, *, indent: int = 1, sort_keys: bool = False,
                      durable: bool = False) -> None:
    """Write a JSON file so that readers see the old content or the new, never half: a uniquely
    named temp file in the same directory, then rename(2) over the old one (as runc's state.json).
    durable: fsync before the rename, for records that must survive a crash (images, leases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    data = (json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def decode(lines: Iterable[bytes]) -> Iterator[dict]:
    """Records of complete lines; blank lines and a line that is not JSON (the end of a line a
    killed writer left half-written) are passed over."""
    for line in lines:
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                continue


def read_all(path: Path | str) -> list[dict]:
    """Every complete record. A reader can meet the last line half-written: write(2) to a regular
    file is not atomic for concurrent readers, even with O_APPEND, so a line without its newline
    yet is left for the next read (as follow() does)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    return list(decode(lines[:-1]))  # the part after the last newline is empty, or not written yet


def follow(
    path: Path | str,
    *,
    from_start: bool = True,
    poll: float = 0.05,
    stop: Callable[[], bool] | None = None,
) -> Iterator[dict]:
    """Yield records as they are appended; waits for the file to appear. Ends when stop() is true."""
    pos = 0
    buf = b""
    started = False
    while True:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            if stop and stop():
                return
            time.sleep(poll)
            continue
        with f:
            if not started:
                started = True
                if not from_start:
                    f.seek(0, os.SEEK_END)
                    pos = f.tell()
            f.seek(pos)
            while True:
                chunk = f.read()
                if chunk:
                    pos += len(chunk)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    yield from decode(lines)
                    continue
                if stop and stop():
                    return
                time.sleep(poll)
