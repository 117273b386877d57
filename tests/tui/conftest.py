"""Fixtures for the app's tests: a private LABTUI_ROOT per test, the real CLI, Pilot helpers.

Every test that starts containers gets its own state directory (set with monkeypatch BEFORE the
app is created, so the app and the CLI see the same containers) and removes what it started.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

CLI = [sys.executable, "-m", "labtui.cli"]


def cli(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real `labtui` CLI, in the current environment (LABTUI_ROOT included)."""
    p = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"labtui {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def run_d(*args: str) -> str:
    return cli("run", "-d", *args).stdout.strip()


def remove_all() -> None:
    ids = cli("ps", "-aq", check=False).stdout.split()
    if ids:
        cli("rm", "-f", *ids, check=False)


@pytest.fixture
def tui_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh LABTUI_ROOT (short: the attach socket path must fit in 108 bytes)."""
    root = tempfile.mkdtemp(prefix="lt-tui-", dir="/var/tmp")
    monkeypatch.setenv("LABTUI_ROOT", root)
    try:
        yield root
    finally:
        remove_all()
        shutil.rmtree(root, ignore_errors=True)


async def until(pilot, predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> float:
    """Let the app run until predicate() is true; returns how long it took."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - widgets not mounted yet
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def in_thread(fn: Callable, *args):
    """Run a blocking call (the CLI) without blocking the app's event loop."""
    return await asyncio.to_thread(fn, *args)


def table_rows(table) -> list[list[str]]:
    return [[str(c) for c in table.get_row(key)] for key in table.rows]


def column(table, key: str) -> list[str]:
    return [str(table.get_cell(rk, key)) for rk in table.rows]
