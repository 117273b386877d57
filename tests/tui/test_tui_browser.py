"""Browser mode end to end: `labtui serve` opened in headless Chromium shows the dashboard.

textual-serve's page draws the terminal with xterm.js on a <canvas> (its WebGL and canvas
addons), so the text is not in the DOM. The test drives Chromium over the DevTools protocol:
before the page loads it installs a hook that keeps a reference to textual-serve's client
object (the one that owns the xterm.js Terminal), then reads what xterm.js holds on screen
(buffer.active lines, the text the renderer paints) and checks the canvases got pixels.

Chromium runs with every host name except 127.0.0.1 mapped to "not found", so nothing it
would fetch (the page links Google Fonts) leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.tui.conftest import cli, run_d

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("tui_root")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NAME = "webdash1"

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--disable-client-side-phishing-detection", "--disable-domain-reliability", "--no-pings",
    "--disable-features=AutofillServerCommunication,MediaRouter,OptimizationHints,Translate",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1400,900", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]

# textual-serve's client does `this.websocket_url = ...` first thing in its constructor, then
# `this.terminal = new Terminal(...)`. A setter of that (unusual) name on Object.prototype sees
# the assignment, puts the value back as a plain property and remembers the object.
HOOK = """
Object.defineProperty(Object.prototype, "websocket_url", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "websocket_url", {value, writable: true, configurable: true, enumerable: true});
    window.__labtuiClient = this;
  },
});
"""

# What is on the terminal's screen now, line by line, and whether its canvases hold pixels.
READ_SCREEN = """
(() => {
  const client = window.__labtuiClient;
  if (!client || !client.terminal) return null;
  const term = client.terminal, buf = term.buffer.active, lines = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buf.getLine(buf.viewportY + y);
    lines.push(line ? line.translateToString(true) : "");
  }
  let painted = 0;
  for (const c of document.querySelectorAll(".xterm-screen canvas")) {
    const ctx = c.width && c.height ? c.getContext("2d") : null;
    if (!ctx) continue;
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i]) painted++;
  }
  return {cols: term.cols, rows: term.rows, lines, painted,
          firstByte: document.body.classList.contains("-first-byte"),
          closed: document.body.classList.contains("-closed")};
})()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"`labtui serve` exited {proc.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"`labtui serve` did not listen on port {port} in {timeout}s") from None
            time.sleep(0.1)


def devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 15) -> int:
    """Chromium writes the port it picked (--remote-debugging-port=0) to <profile>/DevToolsActivePort."""
    deadline = time.monotonic() + timeout
    f = profile / "DevToolsActivePort"
    while True:
        try:
            return int(f.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            if proc.poll() is not None:
                raise AssertionError(f"chromium exited {proc.returncode} before opening DevTools") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"chromium did not open DevTools in {timeout}s") from None
            time.sleep(0.1)


def stop_group(proc: subprocess.Popen) -> None:
    """End a process we started in its own session, and its children (textual-serve's app,
    Chromium's renderers): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            os.killpg(proc.pid, signal.SIGKILL)  # the leader is gone: take down what it left
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue


async def close_browser(devtools: int) -> None:
    """Ask Chromium to quit (it then ends and reaps its own helper processes)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools}/json/version") as r:
            url = (await r.json())["webSocketDebuggerUrl"]
        async with session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"id": 1, "method": "Browser.close"}))
            await ws.receive(timeout=5)


class DevTools:
    """The least of a Chrome DevTools Protocol client, over aiohttp's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        await self.ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.receive_str(timeout=10))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(f"DevTools {method}: {msg['error']}")
                return msg["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


async def dashboard_in_browser(devtools: int, url: str, timeout: float = 20) -> dict:
    """Open url in Chromium's tab and wait until the terminal shows the dashboard with our row."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
            await cdp.call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            screen = None
            while time.monotonic() < deadline:
                screen = await cdp.evaluate(READ_SCREEN)
                if screen:
                    text = "\n".join(screen["lines"])
                    if screen["closed"]:
                        raise AssertionError(f"the page says the session ended; screen:\n{text}")
                    if NAME in text and "STATUS" in text and "IMAGE" in text and screen["painted"]:
                        return screen
                await asyncio.sleep(0.25)
            shown = "\n".join(screen["lines"]) if screen else "(no xterm.js terminal on the page)"
            raise AssertionError(f"the dashboard did not show {NAME!r} in {timeout}s; screen:\n{shown}")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_served_dashboard_renders_in_headless_chromium(tmp_path: Path):
    cid = run_d("--name", NAME, "busybox", "sleep", "300")
    port = free_port()
    server_log = tmp_path / "serve.log"
    profile = Path(tempfile.mkdtemp(prefix="lt-chromium-"))
    server = browser = devtools = None
    try:
        with open(server_log, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "labtui.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
                start_new_session=True)
        wait_port(port, server)
        browser = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        devtools = devtools_port(profile, browser)
        try:
            screen = asyncio.run(dashboard_in_browser(devtools, f"http://127.0.0.1:{port}/"))
        except AssertionError as e:
            log_text = server_log.read_text(errors="replace")
            raise AssertionError(f"{e}\n--- labtui serve output ---\n{log_text}") from None

        text = "\n".join(screen["lines"])
        assert screen["firstByte"], "textual-serve's page never saw the app's first bytes"
        row = next(line for line in screen["lines"] if NAME in line)
        assert "running" in row and "busybox" in row and cid[:12] in row, f"our row is {row!r}"
        assert "containers" in text and "kernel" in text  # the host facts above the table
        assert screen["cols"] >= 80 and screen["rows"] >= 24, f"terminal fit to {screen['cols']}x{screen['rows']}"
    finally:
        if devtools is not None and browser.poll() is None:
            try:
                asyncio.run(close_browser(devtools))
                browser.wait(5)
            except Exception:  # noqa: BLE001 - stop_group below ends it anyway
                pass
        for proc in (browser, server):
            if proc is not None:
                stop_group(proc)
        shutil.rmtree(profile, ignore_errors=True)
        cli("rm", "-f", cid, check=False)
