"""`labtui`: docker-style command line over the engine. With no arguments it opens the terminal app.

Thin commands: parse, call one engine function, print. Errors become one line on stderr and
docker's exit codes (125 engine error, 126 cannot execute, 127 not found); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from engine.errors import EngineError, command_exit
from labtui.common import runopts

EPILOG = "Run `sudo labtui` with no arguments to open the terminal app."

# Each mechanism adds its own subcommands from its own module: add_commands(subparsers) ->
# dict[str, handler]. The flags of run/create are in labtui.common.runopts, shared with the app.
EXTENSIONS = ["labtui.cli.resources", "labtui.cli.network", "labtui.cli.security", "labtui.cli.living",
              "labtui.cli.checkpoint", "labtui.cli.lesson", "labtui.cli.system", "labtui.cli.pull"]


_EXT_CACHE: list | None = None


def _extensions() -> list:
    global _EXT_CACHE
    if _EXT_CACHE is not None:
        return _EXT_CACHE
    mods = []
    for name in EXTENSIONS:
        try:
            __import__(name)  # not importlib.import_module: the importlib package costs ~1 ms to import
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
        else:
            mods.append(sys.modules[name])
    _EXT_CACHE = mods
    return mods


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, with the terminal width found without shutil: argparse makes one
    for every add_argument (to check metavars), and shutil (with bz2 and lzma) costs ~1.5 ms of
    every command's start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)


def _columns() -> int:
    """shutil.get_terminal_size()'s answer: $COLUMNS, else the terminal's, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(runopts.ValueParser):
    """Every parser (subcommands' too: argparse makes them of the parent's class) with _Formatter
    (and an option's value "--" kept: runopts.ValueParser)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


CORE = {"run", "create", "start", "stop", "restart", "kill", "rm", "wait", "ps", "inspect", "logs", "top",
        "steps", "events", "gate", "image", "images", "serve", "walkthrough"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (only=) just one core command's: building all of them, extensions
    included, costs ~14 ms that `labtui run` should not pay."""
    ap = _Parser(
        prog="labtui",
        description="labtui: a real Linux container runtime you can watch. Every kernel step is recorded.",
        epilog=EPILOG,
    )
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    if only is not None:
        sub = _OnlyOne(sub, only)

    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print the ID")
    runopts.add_run_options(p)
    p = sub.add_parser("create", help="create a container without starting it")
    runopts.add_run_options(p)

    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach to output")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("stop", help="stop running containers (SIGTERM, then SIGKILL)")
    p.add_argument("-t", "--time", type=float, default=10, help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("restart", help="restart containers")
    p.add_argument("-t", "--time", type=float, default=10)
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("kill", help="send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("wait", help="wait for containers to stop and print their exit codes")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = sub.add_parser("inspect", help="low-level information as JSON")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("logs", help="a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", default="all")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")
    p = sub.add_parser("top", help="processes of a container")
    p.add_argument("container")

    p = sub.add_parser("steps", help="the kernel steps labtui performed (all containers or one)")
    p.add_argument("container", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = sub.add_parser("events", help="lifecycle events (the timeline)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--since", help="only events after: a time (RFC 3339 or Unix) or a duration ago (10m)")
    p.add_argument("--until", help="only events before: a time or a duration ago")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="container=NAME|ID, type=TYPE (repeatable)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = sub.add_parser("gate", help="the step gate: show the held step or let steps go")
    p.add_argument("action", choices=["next", "show"])
    p.add_argument("container")
    p.add_argument("-n", "--count", type=int, default=1)

    p = sub.add_parser("image", help="manage images")
    isub = p.add_subparsers(dest="image_cmd", metavar="SUBCOMMAND")
    q = isub.add_parser("import", help="import a docker-save or OCI layout tarball")
    q.add_argument("file")
    q.add_argument("ref", nargs="?")
    q = isub.add_parser("ls", help="list images")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q = isub.add_parser("rm", help="remove images")
    q.add_argument("refs", nargs="+")
    sub.add_parser("images", help="list images (image ls)")
    p = sub.add_parser("serve", help="serve the terminal app in a web browser (textual-serve)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("walkthrough", help="present a lesson step by step: each kernel step waits for a key")
    p.add_argument("id", metavar="LESSON")
    if only is None:
        for ext in _extensions():
            if hasattr(ext, "add_commands"):
                COMMANDS.update(ext.add_commands(sub))
    return ap


_WARM_PARSER: argparse.ArgumentParser | None = None


def warm_parsers() -> None:
    """Build the whole parser once, for a process that runs many commands (labtui/launcher/helper.py)."""
    global _WARM_PARSER
    _WARM_PARSER = build_parser()


def warm_regexes() -> None:
    """Parse a few typical command lines once: argparse matches arguments with regular
    expressions built per call, and re caches them compiled (~0.5 ms a command otherwise)."""
    import contextlib
    import io

    for argv in (["run", "--rm", "busybox", "true"], ["run", "-it", "--rm", "-e", "A=1", "busybox", "sh", "-c", "x"],
                 ["run", "-d", "--name", "x", "busybox"], ["create", "busybox"], ["start", "x"], ["ps", "-a"],
                 ["rm", "-f", "x"], ["stop", "x"], ["exec", "x", "true"], ["logs", "x"], ["inspect", "x"]):
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                _WARM_PARSER.parse_args(argv)
            except SystemExit:
                pass


class _OnlyOne:
    """Stands in for the subparsers action: builds the one wanted command for real and hands
    the others a throwaway parser (argparse's parsers cost time to build)."""

    def __init__(self, sub, only: str) -> None:
        self.sub = sub
        self.only = only

    def add_parser(self, name: str, **kw):
        if name == self.only:
            return self.sub.add_parser(name, **kw)
        return _Discard()


class _Discard:
    def add_argument(self, *a, **kw) -> None:
        return None

    def add_subparsers(self, **kw):
        return self

    def add_parser(self, *a, **kw):
        return self


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    t0, rc = time.time(), 1
    try:
        rc = _main(args_list)
    except SystemExit as e:  # argparse's usage errors and --help
        rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        raise
    finally:
        # While a lesson is open, its transcript records every command (docs/lessons-grading.md).
        # One stat of lessons.session.active_file() otherwise: nothing of lessons is imported.
        from engine import paths  # imported already by any command that got this far

        if args_list and os.path.exists(f"{paths.lib_dir()}/lessons/active.json"):
            from lessons import recorder

            recorder.record_command(args_list, rc, t0)
    return rc


def _main(args_list: list[str]) -> int:
    if not args_list:
        return open_app()
    first = next((a for a in args_list if not a.startswith("-")), None)
    ap = _WARM_PARSER or build_parser(
        first if first in CORE and "-h" not in args_list and "--help" not in args_list else None)
    args = ap.parse_args(args_list)
    if args.cmd is None:
        ap.print_help()
        return 0

    def body() -> int | None:
        from engine import api

        api.require_root()
        api.on_startup()
        return COMMANDS[args.cmd](args)

    return command_exit(body)


def open_app(start: tuple[str, str] | None = None) -> int:
    if os.geteuid() != 0:
        print("labtui: labtui must run as root: try sudo labtui", file=sys.stderr)
        return 125
    try:
        from labtui.tui.app import run_app
    except ImportError:
        build_parser().print_help()
        return 0
    return run_app(start)


# ---- commands ------------------------------------------------------------------------------------

def cmd_create(args: argparse.Namespace) -> int:
    from engine import api

    c = api.create(runopts.from_args(args), out=sys.stderr)  # a pull's progress: stdout is the ID's
    print(c.id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from engine import api

    opts = runopts.from_args(args)
    c = api.create(opts, out=sys.stderr)  # a pull's progress: stdout is the container's, as docker's
    if opts.detach:
        try:
            api.start(c)
        except EngineError:
            _cleanup_failed(c.id, opts.autoremove)
            raise
        print(c.id)
        return 0
    from labtui.cli import attach_client

    return attach_client.run_attached(c, opts)


def _cleanup_failed(cid: str, autoremove: bool) -> None:
    if autoremove:
        from engine import api

        try:
            api.remove(cid, force=True)
        except EngineError:
            pass


def cmd_start(args: argparse.Namespace) -> int:
    from engine import api

    rc = 0
    for ref in args.containers:
        if args.attach:
            from engine import state
            from labtui.cli import attach_client

            return attach_client.start_attached(state.resolve(ref))
        try:
            api.start(ref)
            print(ref)
        except EngineError as e:
            print(f"labtui: {e}", file=sys.stderr)
            rc = e.exit_code
    return rc


def _each(refs: list[str], fn) -> int:
    rc = 0
    for ref in refs:
        try:
            fn(ref)
            print(ref)
        except EngineError as e:
            print(f"labtui: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_stop(args: argparse.Namespace) -> int:
    from engine import api

    return _each(args.containers, lambda r: api.stop(r, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    from engine import api

    return _each(args.containers, lambda r: api.restart(r, args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    from engine import api

    api.parse_signal(args.signal)  # refuse a bad signal before touching anything
    return _each(args.containers, lambda r: api.kill(r, args.signal))


def cmd_rm(args: argparse.Namespace) -> int:
    from engine import api

    return _each(args.containers, lambda r: api.remove(r, force=args.force))


def cmd_wait(args: argparse.Namespace) -> int:
    from engine import api

    rc = 0
    for ref in args.containers:
        try:
            print(api.wait(ref), flush=True)
        except EngineError as e:
            print(f"labtui: {e}", file=sys.stderr)
            rc = 1
    return rc


def container_row(c) -> dict:
    from engine import state

    cmd = " ".join(c.config["argv"])
    health = (c.state.get("health") or {}).get("Status") if c.config.get("health") else None
    return {
        "RestartCount": c.state.get("restart_count", 0), "Health": health,
        "ID": c.short_id, "Id": c.id, "Image": c.config["image"], "Command": cmd,
        "CreatedAt": c.config["created"], "Status": state.status_text(c), "State": c.status,
        "Names": c.name, "Pid": c.state.get("pid") if c.init_alive() else 0,
        "ExitCode": c.exit_code, "Ports": ports_text(c),
    }


def ports_text(c) -> str:
    return ", ".join(p.get("text", "") for p in c.config.get("ports", []))


def cmd_ps(args: argparse.Namespace) -> int:
    from engine import api, state

    cs = api.list_containers(args.all)
    if args.quiet:
        for c in cs:
            print(c.short_id)
        return 0
    rows = [container_row(c) for c in cs]
    if args.format == "json":
        for r in rows:
            print(json.dumps(r))
        return 0
    table = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]]
    import time

    for r in rows:
        created = state.human_duration(time.time() - state.parse_iso(r["CreatedAt"])) + " ago"
        cmd = r["Command"] if len(r["Command"]) <= 20 else r["Command"][:19] + "…"
        table.append([r["ID"], r["Image"], f'"{cmd}"', created, r["Status"], r["Ports"], r["Names"]])
    print_table(table)
    return 0


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine import api

    out, rc = [], 0
    for ref in args.containers:
        try:
            out.append(api.inspect(ref))
        except EngineError as e:
            print(f"labtui: {e}", file=sys.stderr)
            rc = 1
    print(json.dumps(out, indent=4))
    return rc


def cmd_logs(args: argparse.Namespace) -> int:
    from engine import api

    tail = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError:
            raise EngineError(f"invalid --tail '{args.tail}': a number or 'all'") from None
    from engine.logs import dropped_note

    note = dropped_note(args.container)  # the disk filled up: say the log is incomplete (issue 15)
    if note:
        print(f"labtui: {note}", file=sys.stderr)
    recs = api.follow_logs(args.container, tail) if args.follow else api.read_logs(args.container, tail)
    for rec in recs:
        stream = sys.stdout if rec.get("stream") != "stderr" else sys.stderr
        text = rec["log"]
        if args.timestamps:
            text = f"{rec['time']} {text}"
        stream.write(text)
        stream.flush()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from engine import api

    rows = [["UID", "PID", "PPID", "PID IN CONTAINER", "STAT", "CMD"]]
    for p in api.top(args.container):
        rows.append([str(p["uid"]), str(p["pid"]), str(p["ppid"]), str(p["pid_inside"]), p["state"], p["cmd"]])
    print_table(rows)
    return 0


def format_step(s: dict) -> str:
    res = s.get("result", "?")
    dur = s.get("duration_ms")
    dur_s = f"{dur:.2f}ms" if isinstance(dur, (int, float)) else ""
    cid = (s.get("container") or "")[:12]
    tgt = s.get("target") or ""
    val = s.get("value") or ""
    return (f"{s.get('seq', ''):>4} {cid:12} {s.get('mechanism', ''):10} {s.get('op', ''):22} "
            f"{res:8} {dur_s:>9}  {tgt} {val}".rstrip() + (f"\n{'':41}$ {s['shell']}" if s.get("shell") else ""))


def cmd_steps(args: argparse.Namespace) -> int:
    from engine import jsonl, paths, state, steps

    cid = state.resolve(args.container).id if args.container else None
    if args.follow:
        it = steps.follow_steps(cid, from_start=True)
    else:
        src = paths.container_dir(cid) / "steps.jsonl" if cid else paths.steps_stream()
        it = iter(jsonl.read_all(src))
    for s in it:
        if cid and s.get("container") != cid:
            continue
        print(json.dumps(s) if args.format == "json" else format_step(s), flush=True)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import time

    from engine import events

    match = events.make_filter(args.since, args.until, args.filter)
    if args.follow:
        it = events.follow_events(from_start=args.since is not None)
    else:
        it = iter(events.read_events())
    for ev in it:
        if not match(ev):
            continue
        if args.format == "json":
            print(json.dumps(ev), flush=True)
            continue
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ev["ts"]))
        extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("ts", "type", "container", "name"))
        if ev["type"] == "pull":  # docker's `image pull REF` line
            more = " ".join(f"{k}={v}" for k, v in ev.items() if k in ("digest", "platform", "status"))
            print(f"{ts} image pull {ev.get('image')} ({more})", flush=True)
            continue
        print(f"{ts} container {ev['type']} {(ev.get('container') or '')[:12]} (name={ev.get('name')}"
              f"{', ' + extra if extra else ''})", flush=True)
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from engine import api

    if args.action == "show":
        step = api.gate_pending(args.container)
        print(json.dumps(step) if step else "no step is waiting")
        return 0
    api.gate_release(args.container, args.count)
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from engine import images

    sub = getattr(args, "image_cmd", None) or "ls"
    if sub == "import":
        for img in images.import_archive(args.file, args.ref):
            print(f"Loaded image: {img.ref} ({img.id[:12]})")
        return 0
    if sub == "rm":
        from engine import state

        def in_use(img) -> list[str]:
            # By layer, not by image ID: a re-imported tag keeps layers older containers still mount.
            mine = {str(p) for p in img.layer_paths()}
            return [c.id for c in state.all_containers() if mine & set(c.config.get("layers", []))]

        rc = 0
        for ref in args.refs:
            try:
                images.remove(ref, in_use)
                print(f"Deleted: {ref}")
            except EngineError as e:
                print(f"labtui: {e}", file=sys.stderr)
                rc = 1
        return rc
    imgs = images.list_images()
    if getattr(args, "format", "table") == "json":
        for img in imgs:
            print(json.dumps(img.to_json()))
        return 0
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    for img in imgs:
        tag = "<none>" if img.tag.startswith("sha256:") else img.tag  # pulled by digest, as docker shows it
        rows.append([img.name, tag, img.id[:12], img.created, f"{img.size / 1e6:.1f}MB"])
    print_table(rows)
    return 0


def cmd_walkthrough(args: argparse.Namespace) -> int:
    """The instructor's walkthrough: the app opens on the lesson, its containers under the step gate."""
    return open_app(("walkthrough", args.id))


def cmd_serve(args: argparse.Namespace) -> int:
    from labtui.tui import serve

    serve.serve(args.host, args.port)
    return 0


COMMANDS = {
    "serve": cmd_serve, "walkthrough": cmd_walkthrough,
    "run": cmd_run, "create": cmd_create, "start": cmd_start, "stop": cmd_stop, "restart": cmd_restart,
    "kill": cmd_kill, "rm": cmd_rm, "wait": cmd_wait, "ps": cmd_ps, "inspect": cmd_inspect,
    "logs": cmd_logs, "top": cmd_top, "steps": cmd_steps, "events": cmd_events, "gate": cmd_gate,
    "image": cmd_image, "images": cmd_image,
}


def entry() -> None:
    """The `labtui` command. Leaves through os._exit once output is flushed: tearing the
    interpreter down politely costs ~10 ms per command and nothing is left to clean."""
    rc = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(rc if isinstance(rc, int) else 1)


if __name__ == "__main__":
    entry()
