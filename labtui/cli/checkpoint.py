"""CLI for checkpoint/restore with CRIU: `labtui checkpoint`, `labtui restore` (docs/checkpoint.md)."""

from __future__ import annotations

import argparse
import json


def add_commands(sub) -> dict:
    p = sub.add_parser("checkpoint", help="save a running container's processes to disk with CRIU (it stops)")
    p.add_argument("--leave-running", action="store_true", help="keep the container running after the checkpoint")
    p.add_argument("--list", action="store_true", help="list the container's checkpoints instead")
    p.add_argument("--rm", action="store_true", help="remove the named checkpoint instead")
    p.add_argument("container")
    p.add_argument("name", nargs="?", default="checkpoint", help="checkpoint name (default: checkpoint)")
    p = sub.add_parser("restore", help="restore a stopped container from a checkpoint (CRIU)")
    p.add_argument("container")
    p.add_argument("name", nargs="?", default="checkpoint", help="checkpoint name (default: checkpoint)")
    return {"checkpoint": cmd_checkpoint, "restore": cmd_restore}


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from engine import checkpoint, state

    if args.list:
        c = state.resolve(args.container)
        for m in checkpoint.list_checkpoints(c):
            print(json.dumps({k: m.get(k) for k in ("name", "created", "criu_version", "leave_running", "size")}))
        return 0
    if args.rm:
        checkpoint.remove_checkpoint(state.resolve(args.container), args.name)
        print(args.name)
        return 0
    m = checkpoint.checkpoint(args.container, args.name, leave_running=args.leave_running)
    print(m["name"])
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from engine import api

    c = api.restore_container(args.container, args.name)
    print(c.name)
    return 0
