"""CLI for resource control: `update`, `stats`, `pause`/`unpause`, `info` (the limit flags of
run/create are in labtui.common.runopts)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from labtui.common.runopts import add_limits, limits_from_args


def add_commands(sub) -> dict:
    p = sub.add_parser("update", help="change a running container's limits")
    add_limits(p)
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("stats", help="live resource usage read from the cgroup files")
    p.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("containers", nargs="*")
    p = sub.add_parser("pause", help="freeze every process of containers (freezer)")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("unpause", help="thaw paused containers")
    p.add_argument("containers", nargs="+")
    p = sub.add_parser("info", help="the host: kernel, cgroup layout and controllers, directories")
    p.add_argument("--format", choices=["table", "json"], default="table")
    return {"update": cmd_update, "stats": cmd_stats, "pause": cmd_pause, "unpause": cmd_unpause,
            "info": cmd_info}


def cmd_update(args: argparse.Namespace) -> int:
    from engine import api
    from labtui.cli.main import _each

    limits = limits_from_args(args)

    def one(ref: str) -> None:
        _, warnings = api.update(ref, limits)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)

    return _each(args.containers, one)


def cmd_pause(args: argparse.Namespace) -> int:
    from engine import api
    from labtui.cli.main import _each

    return _each(args.containers, api.pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    from engine import api
    from labtui.cli.main import _each

    return _each(args.containers, api.unpause)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "--"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def stats_rows(prev: dict, cur: list[dict]) -> list[dict]:
    from engine.cgroups import cpu_percent, memory_percent

    rows = []
    for s in cur:
        p = prev.get(s["id"])
        cpu = cpu_percent(p, s) if p else 0.0
        limit = s.get("memory_limit")
        if limit is not None and limit >= 1 << 60:
            limit = None  # "max": no limit
        rows.append({
            "id": s["id"], "name": s["name"], "cpu_percent": round(cpu or 0.0, 2),
            "memory_usage": s.get("memory_working_set") or s.get("memory_usage"), "memory_limit": limit,
            "memory_percent": round(memory_percent(s) or 0.0, 2) if limit else None,
            "pids": s.get("pids_current"), "pids_limit": s.get("pids_limit"),
            "blkio_read": s.get("blkio_read_bytes"), "blkio_write": s.get("blkio_write_bytes"),
            "nr_periods": s.get("nr_periods"), "nr_throttled": s.get("nr_throttled"),
            "throttled_time_ns": s.get("throttled_time_ns"), "oom_kill": s.get("oom_kill"),
        })
    return rows


def cmd_stats(args: argparse.Namespace) -> int:
    from engine import api, state

    def targets():
        if args.containers:
            return [state.resolve(r) for r in args.containers]
        return api.list_containers(False)

    prev = {s["id"]: s for s in api.stats_snapshot(targets())}
    while True:
        time.sleep(0.5 if args.no_stream else 1.0)
        cur = api.stats_snapshot(targets())
        rows = stats_rows(prev, cur)
        prev = {s["id"]: s for s in cur}
        if args.format == "json":
            for r in rows:
                print(json.dumps(r), flush=True)
        else:
            if not args.no_stream:
                sys.stdout.write("\x1b[2J\x1b[H")
            print_stats(rows)
        if args.no_stream:
            return 0


def print_stats(rows: list[dict]) -> None:
    from labtui.cli.main import print_table

    table = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O", "THROTTLED"]]
    for r in rows:
        mem = f"{human_bytes(r['memory_usage'])} / {human_bytes(r['memory_limit']) if r['memory_limit'] else '--'}"
        blk = f"{human_bytes(r['blkio_read'])} / {human_bytes(r['blkio_write'])}"
        thr = f"{r['nr_throttled'] or 0}/{r['nr_periods'] or 0} {((r['throttled_time_ns'] or 0) / 1e9):.2f}s"
        memp = f"{r['memory_percent']:.2f}%" if r["memory_percent"] is not None else "--"
        table.append([r["id"][:12], r["name"], f"{r['cpu_percent']:.2f}%", mem, memp,
                      str(r["pids"] if r["pids"] is not None else "--"), blk, thr])
    print_table(table)
    sys.stdout.flush()


def cmd_info(args: argparse.Namespace) -> int:
    from engine import api

    info = api.host_info()
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    cg = info["cgroup"]
    print(f"Kernel:          {info['kernel']}")
    print(f"Cgroup layout:   {cg['kind']}")
    print(f"  v1 controllers: {', '.join(sorted(cg['v1'])) or '-'}")
    print(f"  v2 mount:       {cg['v2_mount'] or '-'}")
    print(f"  v2 controllers: {', '.join(cg['v2_controllers']) or '-'}")
    print(f"Data directory:  {info['lib_dir']}")
    print(f"Runtime dir:     {info['run_dir']}")
    print(f"Containers:      {info['containers']}")
    return 0
