"""`labtui system check` and the repairs of `system prune`: what of labtui's is leaked or
inconsistent in the current state directory, read from the kernel (docs/reliability.md).

Only what belongs to this state directory is judged, so a lab VM's real install and another
test run's containers are never touched:
- mounts below the lib or run directory, in the host's mount namespace (/proc/self/mountinfo);
- cgroups below LABTUI_CGROUP_PARENT in every hierarchy;
- links (bridges and host-side veths) that this state's step stream (steps.jsonl) records
  creating, or named after one of its containers (engine/network/veth.py's lt<id>);
- the isolation rules (`ip rule ... prohibit pref 30900`, engine/network/isolation.py) of those
  bridges: labtui installs no iptables/nftables rules and no NAT, so there are none to check;
- leases in this state's network store, entries of its names/, run/ and sock/ directories;
- labtui-sup / labtui-init processes started for this state (the environment names this
  LABTUI_ROOT; an init's mounts are below this lib directory), as tests/helpers.py finds them.

A container whose supervisor is alive is never judged: it may be starting, restarting or just
exiting, and its supervisor tears down what it made. Things younger than GRACE seconds without
a record (a process, a container directory) are left alone for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

from engine import paths, state
from engine.doctor import entries, host, net
from engine.doctor.base import Ctx, Finding
from engine.errors import Conflict, NotFound
from engine.steps import Recorder

__all__ = ["Finding", "check", "prune", "repair"]


def check() -> list[Finding]:
    """Every finding, in the order prune repairs them (processes first: they hold the rest)."""
    ctx = Ctx()
    out: list[Finding] = []
    for fn in (host.processes, host.records, host.mounts, host.cgroups, net.links, net.leases, entries.entries):
        out.extend(fn(ctx))
    return out


def repair(findings: list[Finding]) -> list[str]:
    """Run each fixable finding's repair; returns one line per thing removed or fixed."""
    done = []
    for f in findings:
        if f.fix is None:
            continue
        try:
            done.append(f.fix())
        except OSError as e:  # gone meanwhile, or refused: reported, the rest still repaired
            done.append(f"Could not fix {f.kind} {f.object}: {e.strerror or e}")
        except Exception as e:  # EngineError from a netlink step
            done.append(f"Could not fix {f.kind} {f.object}: {e}")
    return done


def prune(remove: Callable[[str], None], network_users: Callable[[str], list[str]], rec: Recorder,
          report: list[str]) -> tuple[list[str], list[str]]:
    """`labtui system prune`: (removed container ids, removed networks); what else it fixed is
    appended to report. remove and network_users are the facade's (engine/api.py)."""
    from engine.teardown import empty_trash

    # Orphaned processes first (they hold the cgroups, veths and mounts the rest would remove),
    # then every other leak, so that each is reported by name; a leaked mount below a container's
    # directory would also make its rm fail with EBUSY.
    report += repair([f for f in check() if f.kind == "process"])
    report += repair(check())
    empty_trash()
    removed = []
    # Not one that a live supervisor is starting (or ending): its start records it only once
    # set-up is done, and until then it reads "created" (issue 15's chaos test: a prune racing
    # a start killed the container being made).
    busy = Ctx().busy
    for c in state.all_containers():
        if c.status in (state.EXITED, state.CREATED, state.DEAD) and c.id not in busy:
            try:
                remove(c.id)  # the ordinary rm: its cgroup, veth, lease and name go with it
                removed.append(c.id)
            except (NotFound, Conflict):
                continue
    report += repair(check())  # what the removals uncovered (a trash entry cut short, ...)
    nets: list[str] = []
    if (paths.lib_dir() / "networks").exists():
        from engine import network

        nets = network.prune(rec, network_users)
    from engine import cgroups

    cgroups.remove_empty_parents(rec)  # kept between containers: gone once unused
    host.remove_empty_parents()  # and in the hierarchies the drivers do not use (name=systemd)
    return removed, nets
