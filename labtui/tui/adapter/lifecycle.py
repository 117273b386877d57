"""The lifecycle keys and the run form: create, start, stop, kill, restart, remove, pause,
checkpoint and restore, each one engine.api call, made from a background thread."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field

from engine import api, state
from engine.errors import InvalidArgument
from engine.spec import RunOptions
from labtui.common import runopts


@dataclass
class RunForm:
    """What the run form asks for; `flags` takes any other `labtui run` flag (limits, network...)."""

    image: str = "busybox"
    command: str = ""
    name: str = ""
    env: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    read_only: bool = False
    gate: bool = False
    flags: str = ""

    def argv(self) -> list[str]:
        """The form as the arguments of `labtui run` (raises ValueError for unbalanced quotes)."""
        out = ["-d"]
        if self.name:
            out += ["--name", self.name]
        for e in self.env:
            out += ["-e", e]
        for v in self.volumes:
            out += ["-v", v]
        if self.read_only:
            out.append("--read-only")
        if self.gate:
            out.append("--gate")
        out += shlex.split(self.flags)
        return out + [self.image or "busybox"] + shlex.split(self.command)


def run_options(form: RunForm) -> RunOptions:
    """The form as engine RunOptions, parsed and validated by the options `labtui run` has
    (labtui.common.runopts), so every flag of the command line works here too."""
    try:
        argv = form.argv()
    except ValueError as e:
        raise InvalidArgument(f"cannot parse the form: {e}") from None
    return runopts.parse(argv)


def create(form: RunForm) -> tuple[str, bool]:
    """Create the container; returns (id, whether its steps are gated)."""
    opts = run_options(form)
    return api.create(opts).id, bool(opts.gate)


def start(cid: str) -> None:
    # In-process, though this app has threads: engine.api fork+execs the supervisor then.
    api.start(cid)


def stop(cid: str, timeout: float = 10) -> None:
    api.stop(cid, timeout)


def kill(cid: str, sig: str = "KILL") -> None:
    api.kill(cid, sig)


def restart(cid: str) -> None:
    api.stop(cid)
    api.start(cid)


def remove(cid: str) -> None:
    api.remove(cid, force=True)


def toggle_pause(cid: str) -> str:
    """Pause a running container or resume a paused one; returns what was done."""
    if state.load(cid).status == state.PAUSED:
        api.unpause(cid)
        return "resumed"
    api.pause(cid)
    return "paused"


def checkpoint(cid: str) -> str:
    """CRIU dump of the container (it stops)."""
    api.checkpoint(cid)
    return "checkpointed"


def restore(cid: str) -> str:
    api.restore(cid)
    return "restored"


def shell_argv(cid: str) -> list[str]:
    """`labtui exec -it ID sh`, the command the shell key runs with the app suspended: a process of
    its own, since it takes over the terminal (and exec joins namespaces from a single thread)."""
    return [sys.executable, "-m", "labtui.cli", "exec", "-it", cid, "sh"]
