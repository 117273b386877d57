"""Lifecycle events (the timeline): created, started, died, removed, ... on the host-wide stream."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

from engine import jsonl, paths


def emit(type_: str, container: str | None = None, name: str | None = None, **attrs: object) -> dict:
    ev: dict = {"ts": time.time(), "type": type_, "container": container, "name": name}
    ev.update({k: v for k, v in attrs.items() if v is not None})
    try:
        jsonl.append(paths.events_stream(), ev)
    except OSError as e:  # a full disk loses the event, not the operation it reports (issue 15)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
    return ev


def read_events() -> list[dict]:
    return jsonl.read_all(paths.events_stream())


def follow_events(*, from_start: bool = False, stop=None) -> Iterator[dict]:
    yield from jsonl.follow(paths.events_stream(), from_start=from_start, stop=stop)


def parse_time(text: str, now: float | None = None) -> float:
    """docker's --since/--until: Unix seconds, an RFC 3339 time, or a duration ago ("10m")."""
    from engine.errors import InvalidArgument
    from engine.spec import parse_duration

    now = time.time() if now is None else now
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except ValueError:
        pass
    try:
        return now - parse_duration(t, "time")
    except InvalidArgument:
        raise InvalidArgument(f"invalid time '{text}': Unix seconds, RFC 3339 or a duration like 10m") from None


def make_filter(since: str | None, until: str | None, filters: list[str]):
    """A predicate over events from the CLI's --since/--until/--filter options."""
    from engine.errors import InvalidArgument

    lo = parse_time(since) if since else None
    hi = parse_time(until) if until else None
    want: dict[str, set[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or key not in ("container", "type", "event", "name"):
            raise InvalidArgument(f"invalid filter '{f}': container=NAME|ID or type=TYPE")
        want.setdefault("type" if key == "event" else ("container" if key == "name" else key), set()).add(value)

    def match(ev: dict) -> bool:
        if lo is not None and ev["ts"] < lo:
            return False
        if hi is not None and ev["ts"] > hi:
            return False
        if "type" in want and ev.get("type") not in want["type"]:
            return False
        if "container" in want:
            cid, name = ev.get("container") or "", ev.get("name") or ""
            if not any(v == name or (len(v) >= 3 and cid.startswith(v)) for v in want["container"]):
                return False
        return True

    return match


def timeline(container_id: str) -> list[dict]:
    return [e for e in read_events() if e.get("container") == container_id]
