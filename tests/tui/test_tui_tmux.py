"""End to end, as a person would: the real `labtui` command in tmux at 80x24, keys in, screen out."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.tui.conftest import cli, run_d

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("tui_root"),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    """A private tmux server (its own socket) running one session."""

    def __init__(self, name: str) -> None:
        self.socket = f"labtui-test-{os.getpid()}-{name}"
        self.session = name

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                              text=True, check=check, timeout=10)

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", self.session, "-x", "80", "-y", "24", command)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def screen(self, escapes: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", self.session] + (["-e"] if escapes else [])
        return self.tmux(*args, check=False).stdout

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{shown}")

    def wait_gone(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} is still on the screen:\n{self.screen()}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux("labtui")
    try:
        yield t
    finally:
        t.kill()


def app_command(extra_env: str = "") -> str:
    """`labtui` with no arguments; the pane stays to show how it ended (and any traceback)."""
    root = shlex.quote(os.environ["LABTUI_ROOT"])
    return (f"env LABTUI_ROOT={root} {extra_env} {shlex.quote(sys.executable)} -m labtui.cli; "
            "echo \"[labtui exited $?]\"; sleep 60")


def test_the_app_in_tmux_dashboard_container_help_quit(tmux: Tmux):
    run_d("--name", "e2e", "busybox", "sleep", "120")
    tmux.start(app_command())
    shown = tmux.wait_for("e2e")
    assert "labtui" in shown and "running" in shown and "kernel" in shown
    assert "Run" in shown.splitlines()[-1], "the footer shows the keys"
    tmux.keys("?")
    tmux.wait_for("Everywhere")
    tmux.keys("Escape")  # (an Enter right after Escape would read as alt+enter: wait for the effect)
    tmux.wait_gone("Everywhere")
    tmux.keys("Enter")
    shown = tmux.wait_for("clone")
    assert "Steps" in shown and "Namespaces" in shown
    tmux.keys("C-End")
    tmux.wait_for("execve")
    tmux.keys("2")
    tmux.wait_for("ISOLATED?")
    tmux.keys("Escape")
    tmux.wait_for("HEALTH")
    tmux.keys("q")
    tmux.wait_for("[labtui exited 0]")
    assert "Up " in cli("ps").stdout, "closing the app must never stop a container"


GREYS_256 = {0, 7, 8, 15, 16, 231, *range(232, 256)}


def colours(screen: str) -> list[str]:
    """Every colour in SGR sequences of a `capture-pane -e` dump: '5;N' or '2;R;G;B' or a basic code."""
    out = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", screen):
        p = params.split(";")
        i = 0
        while i < len(p):
            if p[i] in ("38", "48") and i + 1 < len(p):
                width = 3 if p[i + 1] == "5" else 5
                out.append(";".join(p[i + 1:i + width]))
                i += width
                continue
            if p[i].isdigit() and (30 <= int(p[i]) <= 37 or 40 <= int(p[i]) <= 47 or 90 <= int(p[i]) <= 107):
                out.append(p[i])
            i += 1
    return out


def grey(colour: str) -> bool:
    parts = colour.split(";")
    if parts[0] == "5":
        return int(parts[1]) in GREYS_256
    if parts[0] == "2":
        return len(set(parts[1:])) == 1
    return colour in ("30", "37", "40", "47", "90", "97", "100", "107")


def test_the_app_in_tmux_with_no_color(tmux: Tmux):
    run_d("--name", "mono", "busybox", "sleep", "120")
    tmux.start(app_command("NO_COLOR=1"))
    tmux.wait_for("mono")
    shown = tmux.screen(escapes=True)
    hues = [c for c in colours(shown) if not grey(c)]
    assert not hues, f"colours with NO_COLOR set (Textual should render in greys only): {sorted(set(hues))[:5]}"
    tmux.keys("q")
    tmux.wait_for("[labtui exited 0]")
