"""CLI for a container's life: --restart and --health-* on run/create."""

from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--restart", default=None, metavar="POLICY",
                   help="no | on-failure[:N] | always | unless-stopped")
    p.add_argument("--health-cmd", default=None, help="command run in the container (through /bin/sh -c)")
    p.add_argument("--health-interval", default=None, help="time between checks (default 30s)")
    p.add_argument("--health-timeout", default=None, help="a check taking longer fails (default 30s)")
    p.add_argument("--health-retries", default=None, help="consecutive failures that make it unhealthy (default 3)")
    p.add_argument("--health-start-period", default=None, help="failures in this first period don't count")
    p.add_argument("--health-on-failure", default=None, choices=["none", "restart"],
                   help="what to do once unhealthy")
    p.add_argument("--no-healthcheck", action="store_true", help="no health check")


def run_extra(args: argparse.Namespace) -> dict:
    from engine import health, restart

    out: dict = {}
    if args.restart is not None:
        pol = restart.parse_policy(args.restart)
        if pol["name"] != "no" and getattr(args, "rm", False):
            from engine.errors import InvalidArgument

            raise InvalidArgument("--rm and --restart cannot be used together: a removed container cannot restart")
        out["restart"] = pol
    if args.health_cmd and not args.no_healthcheck:
        out["health"] = health.parse_options(
            cmd=args.health_cmd, interval=args.health_interval, timeout=args.health_timeout,
            retries=args.health_retries, start_period=args.health_start_period,
            on_failure=args.health_on_failure)
    else:
        for opt in ("health_interval", "health_timeout", "health_retries", "health_start_period"):
            if getattr(args, opt) is not None:
                health.parse_options(cmd="true", **{opt[len("health_"):]: getattr(args, opt)})
    return out
