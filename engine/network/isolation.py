"""Keeping networks apart without NAT: policy-routing rules that refuse to route between bridges.

Two containers on different networks sit on different bridges, so the only way from one to the
other is through the host's IP routing. With net.ipv4.ip_forward=0 (this runtime never turns it
on) the host routes nothing between interfaces and the networks are already isolated. But any
other program (docker, a VPN, a student) may turn forwarding on, and then the host would happily
route 10.88.0.2 -> 10.89.0.2. So for every ordered pair of labtui networks (A, B) we add

    ip rule add iif <bridge A> to <subnet B> prohibit pref 30900

Why rules and not iptables/nftables: rules are plain rtnetlink (no extra tool or kernel module),
and they act before the main routing table, so a forwarded packet from A to B gets "prohibited"
(ICMP administratively prohibited) whatever ip_forward says. Traffic to the host's own addresses
is decided by the local table at priority 0, before these rules, exactly as with docker.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from engine.network.netlink import host_ipr, nl_step
from engine.steps import Recorder

PRIORITY = 30900
FR_ACT_PROHIBIT = 8
Rule = tuple[str, str]  # (iif bridge, "subnet/len")


def ip_forward_enabled(path: str = "/proc/sys/net/ipv4/ip_forward") -> bool:
    """Whether this namespace routes between interfaces (reported in docs and `inspect`)."""
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def desired_rules(networks: Iterable[dict]) -> set[Rule]:
    nets = list(networks)
    return {(a["bridge"], b["subnet"]) for a in nets for b in nets if a["name"] != b["name"]}


def _shell(rule: Rule, verb: str) -> str:
    return f"ip rule {verb} iif {rule[0]} to {rule[1]} prohibit pref {PRIORITY}"


def _current_rules(ipr: object, bridges: set[str], rec: Recorder) -> set[Rule]:
    """Our prohibit rules whose input interface is one of `bridges` (others' rules are not ours)."""
    with nl_step(rec, "rule_show", value=f"pref {PRIORITY}", shell="ip -4 rule show"):
        dump = ipr.rule("dump", family=socket.AF_INET)  # type: ignore[attr-defined]
    found: set[Rule] = set()
    for r in dump:
        if r.get_attr("FRA_PRIORITY") != PRIORITY or r["action"] != FR_ACT_PROHIBIT:
            continue
        iif, dst = r.get_attr("FRA_IIFNAME"), r.get_attr("FRA_DST")
        if iif in bridges and dst:
            found.add((iif, f"{dst}/{r['dst_len']}"))
    return found


def _apply(ipr: object, rule: Rule, verb: str, rec: Recorder) -> None:
    dst, dst_len = rule[1].split("/")
    value = f"to {rule[1]} prohibit"
    with nl_step(rec, f"rule_{verb}", target=rule[0], value=value, shell=_shell(rule, verb)):
        ipr.rule(  # type: ignore[attr-defined]
            "add" if verb == "add" else "del", family=socket.AF_INET, iifname=rule[0], dst=dst,
            dst_len=int(dst_len), action="FR_ACT_PROHIBIT", priority=PRIORITY,
        )


def sync_isolation(networks: Iterable[dict], rec: Recorder, forget: Iterable[str] = ()) -> None:
    """Make the kernel's rules for our bridges match `networks` exactly.

    networks: every network of this store (after the change); forget: bridges of networks just
    removed, whose rules must go too. Call with the store lock held.
    """
    nets = list(networks)
    want = desired_rules(nets)
    bridges = {n["bridge"] for n in nets} | set(forget)
    if not want and not forget:
        return  # one network (or none): nothing to keep apart, no netlink request at all
    with host_ipr() as ipr:
        have = _current_rules(ipr, bridges, rec)
        for rule in sorted(have - want):
            _apply(ipr, rule, "del", rec)
        for rule in sorted(want - have):
            _apply(ipr, rule, "add", rec)
