"""CLI for working with a living container: `exec` and `trace` (`run --strace` is a flag in
labtui.common.runopts).

Layout (one section per command, so more commands can join):
    add_commands(sub) -> {name: handler}   registers every command below
    cmd_<name>(args)                       one handler per command
"""

from __future__ import annotations

import argparse
import json
import sys

# ---- registration -------------------------------------------------------------------------------


def add_commands(sub) -> dict:
    _add_exec(sub)
    _add_trace(sub)
    return {"exec": cmd_exec, "trace": cmd_trace}


# ---- exec ---------------------------------------------------------------------------------------


def _add_exec(sub) -> None:
    p = sub.add_parser("exec", help="run a command in a running container (joins its namespaces and cgroup)")
    p.add_argument("-d", "--detach", action="store_true", help="start it in the background and return at once")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY in the container's devpts")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user name or uid (and group), from the container's "
                   "/etc/passwd and /etc/group")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")


def cmd_exec(args: argparse.Namespace) -> int:
    from engine import exec_main
    from engine.errors import InvalidArgument

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgument("exec needs a command: labtui exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    return exec_main.exec_in(args.container, command, tty=args.tty, interactive=args.interactive,
                             detach=args.detach, env=args.env, user=args.user, workdir=args.workdir)


# ---- trace --------------------------------------------------------------------------------------


def _add_trace(sub) -> None:
    p = sub.add_parser("trace", help="trace a running container's system calls from the host (strace); "
                                     "of a stopped one, print its kept trace")
    p.add_argument("-f", "--follow", action="store_true", help="also print the calls as they happen")
    p.add_argument("--summary", action="store_true", help="per-syscall counts of the program's calls (strace.log)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output of --summary")
    p.add_argument("container")


def cmd_trace(args: argparse.Namespace) -> int:
    from engine import strace

    if args.summary:
        rows = strace.summary(args.container)
        if args.format == "json":
            print(json.dumps(rows))
        else:
            print(strace.format_table(rows))
        return 0
    return strace.attach(args.container, follow=args.follow, out=sys.stdout)
