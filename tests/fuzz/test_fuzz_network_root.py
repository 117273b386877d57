"""`labtui network create` with random --subnet, --gateway and names, as root: created (then
removed) or refused with a message and exit 125 (2 for argparse's usage errors); after the
batch no bridge, network record or lease is left (/sys/class/net and the state directory)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.argv import examples, garbage, names, values
from tests.fuzz.leftovers import new_since, snapshot
from tests.fuzz.test_fuzz_cli import check_outcome, run_main, warm_up

pytestmark = pytest.mark.root

# Ranges no lab VM routes (TEST-NET-like corners of 10/8 and 172.16/12), borderline prefixes,
# loopback/multicast/link-local, host bits set, IPv6 and garbage.
SUBNETS = values("10.213.7.0/24", "10.213.8.0/30", "10.213.9.0/31", "172.29.250.0/24", "10.213.10.0/8",
                 "10.213.11.1/24", "127.0.0.0/8", "224.0.0.0/8", "169.254.0.0/16", "0.0.0.0/0", "fd00::/64",
                 "10.213.12.0", "10.213.13.0/33", "10.213.14.0/-1", "300.0.0.0/24", " 10.213.15.0/24 ")
GATEWAYS = values("10.213.7.1", "10.213.7.254", "10.213.7.255", "10.213.7.0", "10.213.8.2", "172.29.250.9",
                  "1.2.3.4", "::1", "10.213.7", "")
net_argv = st.tuples(
    st.one_of(st.just([]), SUBNETS.map(lambda s: ["--subnet", s])),
    st.one_of(st.just([]), GATEWAYS.map(lambda g: ["--gateway", g])),
    st.one_of(names, names, garbage.map(lambda g: "zzfz" + g), st.sampled_from(["bridge", "host", "none", ""])),
).map(lambda t: [*t[0], *t[1], t[2]])


def test_network_create_random_specs_leave_nothing(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a fuzzed command writes to a relative path lands here
    warm_up(capfd)
    before = snapshot()
    counts = {"created": 0, "refused": 0}

    @settings(max_examples=examples(80))
    @given(net_argv)
    def one(argv: list[str]) -> None:
        rc, _out, err = run_main(["network", "create", *argv], capfd)
        check_outcome(["network", "create", *argv], rc, err)
        if rc == 0 and argv[-1] == "bridge":  # the default network: `network rm` keeps it, as docker's
            counts["created"] += 1
            from engine import api, network

            network.remove_network("bridge", api.network_users, allow_default=True)
        elif rc == 0:
            counts["created"] += 1
            rm = run_main(["network", "rm", argv[-1]], capfd)
            assert rm[0] == 0, (argv, rm)
        else:
            counts["refused"] += 1
            assert rc in (2, 125), (argv, rc, err)

    one()
    print("network create:", counts)
    assert not new_since(before), new_since(before)
    assert counts["created"] and counts["refused"], counts
