"""CLI for `system ...`: check (what is leaked or inconsistent), prune (remove it, and stopped
containers and unused networks), df (what takes disk space). The work is in engine/doctor/."""

from __future__ import annotations

import argparse
import json

FORMATS = ("table", "json")


def add_commands(sub) -> dict:
    p = sub.add_parser("system", help="system-wide actions")
    ssub = p.add_subparsers(dest="system_cmd", metavar="SUBCOMMAND")
    q = ssub.add_parser("check", help="list what of labtui's is leaked or inconsistent (exit 1 if anything)")
    # Checked by the command, not by argparse's choices: a bad value is exit 125, as docker's flags.
    q.add_argument("--format", default="table", help="table (default) or json")
    q = ssub.add_parser("prune", help="remove stopped containers, unused networks and every leak check finds")
    q.add_argument("-f", "--force", action="store_true", help="do not ask (labtui never asks)")
    q = ssub.add_parser("df", help="show what images, containers, logs and lesson data take on disk")
    q.add_argument("-v", "--verbose", action="store_true", help="one line per image, container, log, lesson")
    q.add_argument("--format", default="table", help="table (default) or json")
    return {"system": cmd_system}


def _format(args: argparse.Namespace) -> str:
    from engine.errors import InvalidArgument

    if args.format not in FORMATS:
        raise InvalidArgument(f"unknown --format {args.format!r}: expected one of {', '.join(FORMATS)}")
    return args.format


def cmd_system(args: argparse.Namespace) -> int:
    sub = args.system_cmd
    if sub == "check":
        return _check(_format(args))
    if sub == "prune":
        return _prune()
    if sub == "df":
        return _df(_format(args), args.verbose)
    from engine.errors import InvalidArgument

    raise InvalidArgument("usage: labtui system check|prune|df")


def _check(fmt: str) -> int:
    from engine import api

    findings = api.system_check()
    if fmt == "json":
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    elif not findings:
        print("no problems found")
    else:
        from labtui.cli.main import print_table

        rows = [["KIND", "OBJECT", "FIXABLE", "WHY"]]
        rows += [[f.kind, f.object, "prune" if f.fixable else "no", f.why] for f in findings]
        print_table(rows)
        fixable = sum(1 for f in findings if f.fixable)
        print(f"\n{len(findings)} problem(s) found; `labtui system prune` fixes {fixable}.")
    return 1 if findings else 0


def _prune() -> int:
    from engine import api

    report: list[str] = []
    removed, nets = api.system_prune(report)
    for cid in removed:
        print(f"Deleted container: {cid}")
    for line in report:
        print(line)
    for name in nets:
        print(f"Deleted network: {name}")
    return 0


def _df(fmt: str, verbose: bool) -> int:
    from engine.doctor import df

    use = df.usage()
    if fmt == "json":
        print(json.dumps(use if verbose else use["rows"], indent=2))
        return 0
    from labtui.cli.main import print_table

    rows = [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]]
    for r in use["rows"]:
        pct = f" ({100 * r['reclaimable'] // r['size']}%)" if r["size"] else ""
        rows.append([r["type"], str(r["total"]), str(r["active"]), df.human(r["size"]),
                     df.human(r["reclaimable"]) + pct])
    print_table(rows)
    if verbose:
        for kind, items in use["items"].items():
            print(f"\n{kind}:")
            detail = [["NAME", "ACTIVE", "SIZE"]]
            detail += [[i["name"], "yes" if i["active"] else "no", df.human(i["size"])] for i in items]
            print_table(detail)
    return 0
