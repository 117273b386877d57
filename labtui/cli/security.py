"""CLI for isolation and security: `seccomp show` and the attack lab (`attack list`, `attack run`).
The run/create flags (capabilities, no_new_privs, seccomp, user namespaces, devices) are in
labtui.common.runopts."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(sub) -> dict:
    p = sub.add_parser("seccomp", help="a container's seccomp filter")
    ssub = p.add_subparsers(dest="seccomp_cmd", metavar="SUBCOMMAND")
    q = ssub.add_parser("show", help="the loaded rules as libseccomp pseudo-filter code or BPF")
    q.add_argument("container")
    q.add_argument("--format", choices=["pfc", "bpf", "json"], default="pfc")
    p = sub.add_parser("attack", help="the attack lab: real escapes, weakened and default")
    asub = p.add_subparsers(dest="attack_cmd", metavar="SUBCOMMAND")
    q = asub.add_parser("list", help="the catalogue")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q = asub.add_parser("run", help="run an attack in a container")
    q.add_argument("name", help="an attack name (see attack list), or all")
    q.add_argument("--profile", choices=["weak", "default"], default="default")
    q.add_argument("--format", choices=["text", "json"], default="text")
    return {"seccomp": cmd_seccomp, "attack": cmd_attack}


# ---- seccomp show -------------------------------------------------------------------------------

def cmd_seccomp(args: argparse.Namespace) -> int:
    from engine import capabilities, seccomp, security, state
    from engine.errors import InvalidArgument

    if getattr(args, "seccomp_cmd", None) != "show":
        raise InvalidArgument("usage: labtui seccomp show CONTAINER [--format pfc|bpf|json]")
    c = state.resolve(args.container)
    s = security.settings(c.config)
    plan = security.seccomp_plan(c.config)
    denials = seccomp.denial_stats(c.id)
    loaded = None
    if c.init_alive():
        from engine import api

        pid = api.main_pid(c) or c.state.get("pid")
        try:
            loaded = {"pid": pid, **capabilities.describe(pid).get("seccomp", {})}
        except OSError:
            loaded = None
    if args.format == "json":
        out = {"container": c.name, "seccomp": s.seccomp, "profile": s.profile_source, "loaded": loaded,
               "denials": denials}
        if plan is not None:
            out.update(plan.summary())
            out["rules"] = [{"name": r.name, "action": r.action_text(), "args": r.args} for r in plan.rules]
            out["skipped"] = plan.skipped
        print(json.dumps(out, indent=2))
        return 0
    print(f"# container {c.name}: seccomp {s.seccomp}"
          + (f" (profile {s.profile_source})" if plan is not None else ""))
    if loaded:
        print(f"# running pid {loaded['pid']}: Seccomp={loaded.get('mode')} ({loaded.get('name')}), "
              f"filters={loaded.get('filters')}")
    print(f"# denials seen: {denials.get('count', 0)}"
          + (f" {denials.get('by_syscall')}" if denials.get("by_syscall") else ""))
    if plan is None:
        print("# no filter: the container runs unconfined")
        return 0
    flt = seccomp.build(plan)
    print(f"# {flt.describe()}")
    if flt.unknown:
        print(f"# names unknown to this libseccomp, skipped as docker does: {' '.join(flt.unknown)}")
    if args.format == "bpf":
        for line in seccomp.disassemble(flt.backend.export("bpf")):
            print(line)
    else:
        sys.stdout.write(flt.backend.export("pfc").decode())
    return 0


# ---- the attack lab --------------------------------------------------------------------------------

def cmd_attack(args: argparse.Namespace) -> int:
    from engine import attacks
    from engine.errors import InvalidArgument

    sub = getattr(args, "attack_cmd", None) or "list"
    if sub == "list":
        items = [a.info() for a in attacks.catalogue()]
        if args.format == "json":
            print(json.dumps(items, indent=2))
            return 0
        from labtui.cli.main import print_table

        rows = [["NAME", "CVE", "WEAKENED BY"]]
        for it in items:
            rows.append([it["name"], it["cve"] or "", it["weak"][:80]])
        print_table(rows)
        return 0
    if sub != "run":
        raise InvalidArgument("usage: labtui attack list | labtui attack run NAME --profile weak|default")
    names = attacks.names() if args.name == "all" else [attacks.get(args.name).name]
    results = []
    for name in names:
        res = attacks.run(name, args.profile)
        results.append(res)
        if args.format == "text":
            _print_result(res)
    if args.format == "json":
        print(json.dumps(results[0] if len(results) == 1 and args.name != "all" else results, indent=2))
    return 0


def _print_result(r: dict) -> None:
    if r.get("skipped"):
        verdict = "SKIPPED"
    else:
        verdict = "ESCAPED" if r["escaped"] else "CONTAINED"
    print(f"{r['attack']} [{r['profile']}]: {verdict}" + (f"  ({r['cve']})" if r.get("cve") else ""))
    if r.get("weakening"):
        print(f"  weakened by: {r['weakening']}")
    if r.get("note"):
        print(f"  note: {r['note']}")
    if r.get("evidence"):
        print(f"  evidence:    {r['evidence']}")
    if r.get("mitigation"):
        print(f"  stopped by:  {r['mitigation']}")
    sys.stdout.flush()
