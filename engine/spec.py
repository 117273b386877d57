"""A container's configuration: parsed and validated from docker-style options before anything exists."""

from __future__ import annotations

import os
import posixpath
import random
import re

from engine.errors import InvalidArgument

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_ADJ = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zealous", "bold", "cosmic"]
_NOUN = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra",
         "liskov", "hamilton", "kernighan", "pike", "stallman", "wozniak", "babbage", "curie",
         "noether", "shannon", "tanenbaum", "bell"]


def random_name() -> str:
    return f"{random.choice(_ADJ)}_{random.choice(_NOUN)}_{random.randrange(1000):03d}"


class Volume:
    __slots__ = ("host", "container", "readonly")

    def __init__(self, host: str, container: str, readonly: bool = False) -> None:
        self.host = host
        self.container = container
        self.readonly = readonly

    def to_json(self) -> dict:
        return {"host": self.host, "container": self.container, "readonly": self.readonly}


class RunOptions:
    """What `labtui run/create` was asked for (docker's flags).

    A plain class, not a dataclass: importing dataclasses costs ~7 ms on every `labtui run`.
    """

    def __init__(self, image: str, command: list[str] | None = None, name: str | None = None,
                 env: list[str] | None = None, workdir: str | None = None, hostname: str | None = None,
                 volumes: list[str] | None = None, read_only: bool = False, tmpfs: list[str] | None = None,
                 tty: bool = False, interactive: bool = False, detach: bool = False, autoremove: bool = False,
                 gate: bool = False, entrypoint: str | None = None, extra: dict | None = None,
                 pull: str = "missing", platform: str | None = None) -> None:
        self.image = image
        self.command = list(command or [])
        self.name = name
        self.env = list(env or [])
        self.workdir = workdir
        self.hostname = hostname
        self.volumes = list(volumes or [])
        self.read_only = read_only
        self.tmpfs = list(tmpfs or [])
        self.tty = tty
        self.interactive = interactive
        self.detach = detach
        self.autoremove = autoremove
        self.gate = gate
        self.entrypoint = entrypoint
        self.extra = dict(extra or {})
        self.pull = pull  # docker's --pull: missing, always or never (engine/images/pull.py)
        self.platform = platform  # --platform os/arch[/variant] of an image to pull


def parse_volume(spec: str) -> Volume:
    """HOST:CONTAINER[:ro|rw]. Only absolute host paths: labtui has no named volumes."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume '{spec}': expected HOST:CONTAINER[:ro]")
    host, ctr = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise InvalidArgument(f"invalid volume '{spec}': mode must be ro or rw, not '{mode}'")
    if not host.startswith("/"):
        raise InvalidArgument(f"invalid volume '{spec}': the host path must be absolute")
    if not ctr.startswith("/"):
        raise InvalidArgument(f"invalid volume '{spec}': the container path must be absolute")
    ctr = posixpath.normpath(ctr)
    if ctr == "/":
        raise InvalidArgument(f"invalid volume '{spec}': cannot mount over the container's /")
    return Volume(os.path.normpath(host), ctr, mode == "ro")


def parse_env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        key, eq, _ = item.partition("=")
        if not key or any(ch.isspace() for ch in key):
            raise InvalidArgument(f"invalid environment variable '{item}'")
        if not eq:
            # docker: `-e KEY` copies the value from the caller's environment, or drops it
            if key in os.environ:
                out.append(f"{key}={os.environ[key]}")
            continue
        out.append(item)
    return out


def merge_env(image_env: list[str], user_env: list[str], tty: bool = False) -> list[str]:
    merged: dict[str, str] = {}
    for item in list(image_env) + list(user_env):
        k, _, v = item.partition("=")
        merged[k] = v
    merged.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if tty:
        merged.setdefault("TERM", "xterm")  # docker does the same for -t (daemon/oci_linux.go)
    return [f"{k}={v}" for k, v in merged.items()]


def resolve_argv(image_config: dict, command: list[str], entrypoint: str | None) -> list[str]:
    """docker's rule: Entrypoint + (command given, else the image's Cmd)."""
    ep = [entrypoint] if entrypoint else list(image_config.get("Entrypoint") or [])
    if entrypoint == "":
        ep = []
    cmd = list(command) if command else list(image_config.get("Cmd") or [])
    argv = ep + cmd
    if not argv:
        raise InvalidArgument("no command specified: the image has no Cmd or Entrypoint, give one")
    return argv


def validate_name(name: str) -> str:
    name = name.lstrip("/")
    if not NAME_RE.match(name):
        raise InvalidArgument(f"invalid container name '{name}': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def validate_hostname(h: str) -> str:
    if not HOSTNAME_RE.match(h):
        raise InvalidArgument(f"invalid hostname '{h}'")
    return h


def validate_tmpfs(paths_: list[str]) -> list[str]:
    out = []
    for p in paths_:
        path = p.split(":", 1)[0]
        if not path.startswith("/") or posixpath.normpath(path) == "/":
            raise InvalidArgument(f"invalid --tmpfs '{p}': the path must be absolute and not /")
        out.append(posixpath.normpath(path))
    return out


def parse_duration(text: str, option: str) -> float:
    """Go's time.ParseDuration, as docker uses it: "30s", "1m30s", "500ms"; a bare 0 is allowed."""
    t = str(text).strip()
    if t == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise InvalidArgument(f"invalid {option} '{text}': a duration like 30s, 1m30s or 500ms")
    return total
