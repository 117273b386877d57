"""CLI for networking: `network ...` (--network/--ip/--network-alias/-p of run/create are in
labtui.common.runopts; `system prune` is in labtui.cli.system)."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(sub) -> dict:
    p = sub.add_parser("network", help="manage networks")
    nsub = p.add_subparsers(dest="network_cmd", metavar="SUBCOMMAND")
    q = nsub.add_parser("create", help="create a bridge network")
    q.add_argument("--subnet")
    q.add_argument("--gateway")
    q.add_argument("name")
    q = nsub.add_parser("ls", help="list networks")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q = nsub.add_parser("inspect", help="show a network as JSON")
    q.add_argument("names", nargs="+")
    q = nsub.add_parser("rm", help="remove networks (refused while a container uses them)")
    q.add_argument("names", nargs="+")
    nsub.add_parser("prune", help="remove every network no container uses")
    return {"network": cmd_network}


def cmd_network(args: argparse.Namespace) -> int:
    from engine import api, network

    sub = args.network_cmd or "ls"
    rec = api.host_recorder()
    if sub == "create":
        net = network.create_network(args.name, args.subnet, args.gateway, rec)
        print(net["id"])
        return 0
    if sub == "ls":
        nets = network.list_networks()
        if args.format == "json":
            for n in nets:
                print(json.dumps(_public(n)))
            return 0
        from labtui.cli.main import print_table

        rows = [["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE"]]
        rows += [[n["id"][:12], n["name"], "bridge", n["subnet"], n["gateway"], n["bridge"]] for n in nets]
        print_table(rows)
        return 0
    if sub == "inspect":
        print(json.dumps([_public(network.inspect_network(n)) for n in args.names], indent=4))
        return 0
    if sub == "rm":
        rc = 0
        for name in args.names:
            try:
                network.remove_network(name, api.network_users, rec)
                print(name)
            except Exception as e:  # EngineError: keep going with the others, as docker does
                print(f"labtui: {e}", file=sys.stderr)
                rc = 1
        return rc
    if sub == "prune":
        for name in network.prune(rec, api.network_users):
            print(f"Deleted network: {name}")
        return 0
    return 1


def _public(n: dict) -> dict:
    out = {k: v for k, v in n.items() if k != "leases"}
    out["containers"] = {cid[:12]: {"name": lease.get("name"), "ip": lease.get("ip")}
                         for cid, lease in n.get("leases", {}).items()}
    return out
