"""Browser mode: `python -m labtui.tui.serve` serves the page and, over its websocket, a live labtui."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.usefixtures("tui_root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def first_screen(port: int, timeout: float = 20) -> str:
    """Open the websocket the page would open and collect the app's output until the dashboard shows."""
    import aiohttp

    seen = ""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30") as ws:
            deadline = time.monotonic() + timeout
            while "containers" not in seen or "kernel" not in seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the served app never drew its dashboard; got {seen[-500:]!r}")
                msg = await ws.receive(timeout=left)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    seen += msg.data.decode(errors="replace")
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    seen += msg.data
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    raise AssertionError(f"the websocket closed early; got {seen[-500:]!r}")
    return seen


def test_serve_gives_the_page_and_a_live_app_over_the_websocket():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "labtui.tui.serve", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
                              start_new_session=True)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/")
        assert "textual" in page.lower()
        screen = asyncio.run(first_screen(port))
        assert "labtui" in screen
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
