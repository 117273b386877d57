"""Lifecycle events (the timeline): created, started, died, removed, ... on the host-wide stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

from engine import jsonl, paths


def emit(type_: str, container: str | None = None, name: str | None = None, **attrs: object) -> dict:
    ev: dict = {"ts": time.time(), "type": type_, "container": container, "name": name}
    ev.update({k: v for k, v in attrs.items() if v is not None})
    jsonl.append(paths.events_stream(), ev)
    return ev


def read_events() -> list[dict]:
    return jsonl.read_all(paths.events_stream())


def follow_events(*, from_start: bool = False, stop=None) -> Iterator[dict]:
    yield from jsonl.follow(paths.events_stream(), from_start=from_start, stop=stop)
