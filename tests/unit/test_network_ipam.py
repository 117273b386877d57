"""The networks store and IPAM: validation, subnet choice, leases (no kernel calls here)."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidArgument, NotFound
from engine.network import ipam


@pytest.fixture(autouse=True)
def lt_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path))
    return tmp_path


def net4(s: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(s)


def make(name: str, subnet: str | None = None, gateway: str | None = None, routes=()) -> dict:
    """Create a store record without a bridge (the bridge is the root tests' business)."""
    with ipam.store_lock():
        net = ipam.new_network_record(name, subnet, gateway, None, list(routes))
        ipam.save_network(net)
    return net


# ---------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize(
    ("subnet", "fragment"),
    [
        ("10.90.0.0", "prefix length"),
        ("banana/24", "expected an IPv4 CIDR"),
        ("10.90.0.300/24", "expected an IPv4 CIDR"),
        ("10.90.0.1/24", "did you mean 10.90.0.0/24"),
        ("fd00::/64", "only IPv4"),
        ("10.0.0.0/31", "between /8 and /30"),
        ("10.0.0.0/33", "expected an IPv4 CIDR"),
        ("10.0.0.0/4", "did you mean 0.0.0.0/4"),
        ("127.0.0.0/8", "loopback"),
    ],
)
def test_malformed_subnets_are_refused_with_a_reason(subnet: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid subnet") as e:
        ipam.parse_subnet(subnet)
    assert fragment in str(e.value)


def test_gateway_defaults_to_first_host_and_must_be_inside() -> None:
    sub = net4("10.90.0.0/24")
    assert str(ipam.parse_gateway(None, sub)) == "10.90.0.1"
    assert str(ipam.parse_gateway("10.90.0.254", sub)) == "10.90.0.254"
    with pytest.raises(InvalidArgument, match="outside the subnet"):
        ipam.parse_gateway("10.91.0.1", sub)
    with pytest.raises(InvalidArgument, match="broadcast"):
        ipam.parse_gateway("10.90.0.255", sub)
    with pytest.raises(InvalidArgument, match="invalid gateway"):
        ipam.parse_gateway("nope", sub)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 65, "none", "host"])
def test_bad_network_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        ipam.validate_name(name)


def test_bridge_names_must_fit_ifnamsiz() -> None:
    ipam.validate_ifname("ltbr-abcdef")
    with pytest.raises(InvalidArgument, match="15"):
        ipam.validate_ifname("a-very-long-bridge0")


# ---------------------------------------------------------------------------------------- subnet choice

def test_choose_subnet_skips_host_routes_and_other_networks() -> None:
    assert ipam.choose_subnet([], []) == net4("10.88.0.0/16")
    routes = [("eth0", net4("10.88.3.0/24"))]
    assert ipam.choose_subnet(routes, []) == net4("10.89.0.0/16")
    taken = [{"name": "a", "subnet": "10.89.0.0/16"}]
    assert ipam.choose_subnet(routes, taken) == net4("10.90.0.0/16")
    # A VPN's 10.0.0.0/8 rules out every 10.x candidate.
    assert ipam.choose_subnet([("tun0", net4("10.0.0.0/8"))], []) == net4("172.30.0.0/16")


def test_choose_subnet_exhausted_pool() -> None:
    with pytest.raises(Conflict, match="--subnet"):
        ipam.choose_subnet([("x", net4("0.0.0.0/1")), ("y", net4("128.0.0.0/1"))], [])


def test_host_routes_parses_proc_net_route(tmp_path: Path) -> None:
    f = tmp_path / "route"
    f.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "wg0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert ipam.host_routes(str(f)) == [("eth0", net4("192.0.2.0/24")), ("wg0", net4("10.88.0.0/16"))]


def test_default_like_record_avoids_a_route() -> None:
    net = make("bridge", routes=[("wg0", net4("10.88.0.0/16"))])
    assert net["subnet"] == "10.89.0.0/16"
    assert net["gateway"] == "10.89.0.1"
    assert net["bridge"] == ipam.default_bridge()


# ---------------------------------------------------------------------------------------- store

def test_create_inspect_list_and_file_layout(lt_root: Path) -> None:
    net = make("front", "10.213.7.0/24")
    assert net["bridge"].startswith("ltbr-") and len(net["bridge"]) <= 15
    path = lt_root / "lib" / "networks" / "front.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == net
    assert {"name", "id", "subnet", "gateway", "bridge", "created", "leases"} <= set(on_disk)
    assert ipam.inspect_network("front") == net
    assert [n["name"] for n in ipam.list_networks()] == ["front"]


def test_duplicate_name_and_overlaps_are_refused() -> None:
    make("front", "10.213.7.0/24")
    with pytest.raises(Conflict, match="already exists"):
        make("front", "10.213.8.0/24")
    with pytest.raises(InvalidArgument, match="overlaps network front"):
        make("back", "10.213.0.0/16")
    with pytest.raises(InvalidArgument, match="overlaps the host route 192.0.2.0/24 on eth0"):
        make("back", "192.0.2.128/25", routes=[("eth0", net4("192.0.2.0/24"))])
    with pytest.raises(InvalidArgument, match="outside the subnet"):
        make("back", "10.213.9.0/24", gateway="10.213.10.1")


def test_unknown_network_is_not_found() -> None:
    with pytest.raises(NotFound, match="network ghost not found"):
        ipam.inspect_network("ghost")
    with pytest.raises(NotFound):
        ipam.allocate("ghost", "c1")
    assert ipam.release("ghost", "c1") is None


# ---------------------------------------------------------------------------------------- leases

def test_allocate_sequential_requested_and_release() -> None:
    make("n", "10.213.7.0/29")  # hosts .1-.6, .1 is the gateway
    assert ipam.allocate("n", "c1", name="one") == "10.213.7.2"
    assert ipam.allocate("n", "c2") == "10.213.7.3"
    assert ipam.allocate("n", "c1") == "10.213.7.2"  # idempotent
    assert ipam.allocate("n", "c3", "10.213.7.6") == "10.213.7.6"
    with pytest.raises(Conflict, match="already in use by container one"):
        ipam.allocate("n", "c4", "10.213.7.2")
    with pytest.raises(InvalidArgument, match="outside network n's subnet"):
        ipam.allocate("n", "c4", "10.213.8.2")
    with pytest.raises(InvalidArgument, match="broadcast"):
        ipam.allocate("n", "c4", "10.213.7.7")
    with pytest.raises(Conflict, match="gateway"):
        ipam.allocate("n", "c4", "10.213.7.1")
    with pytest.raises(InvalidArgument, match="invalid IP"):
        ipam.allocate("n", "c4", "10.213.7")
    with pytest.raises(Conflict, match="already has address"):
        ipam.allocate("n", "c1", "10.213.7.5")
    assert ipam.release("n", "c2") == "10.213.7.3"
    assert ipam.release("n", "c2") is None
    assert ipam.allocate("n", "c5") == "10.213.7.3"  # freed addresses are reused
    assert ipam.allocate("n", "c6") == "10.213.7.4"
    assert ipam.allocate("n", "c7") == "10.213.7.5"
    with pytest.raises(Conflict, match="no free address"):
        ipam.allocate("n", "c8")


def test_leases_survive_a_restart(lt_root: Path) -> None:
    make("n", "10.213.7.0/24")
    ip = ipam.allocate("n", "c1", name="web", aliases=["www"])
    # A "restart": nothing in memory, only the file.
    raw = json.loads((lt_root / "lib" / "networks" / "n.json").read_text())
    assert raw["leases"]["c1"]["ip"] == ip
    assert raw["leases"]["c1"]["aliases"] == ["www"]
    assert ipam.allocate("n", "c1") == ip
    assert ipam.networks_of("c1") == ["n"]


def test_members_are_the_attached_leases() -> None:
    make("n", "10.213.7.0/24")
    ipam.allocate("n", "c1", name="web", aliases=["www"])
    ipam.allocate("n", "c2", name="db")
    assert ipam.network_members("n") == []
    ipam.update_lease("n", "c2", attached=True)
    assert ipam.network_members("n") == [
        {"id": "c2", "name": "db", "hostname": "db", "ip": "10.213.7.3", "aliases": []}
    ]
    with pytest.raises(NotFound):
        ipam.update_lease("n", "c9", attached=True)


def test_store_lock_is_reentrant() -> None:
    with ipam.store_lock(), ipam.store_lock():
        make("n", "10.213.7.0/24")


def _allocate_in_child(args: tuple[str, int]) -> str:
    root, i = args
    import os

    os.environ["LABTUI_ROOT"] = root
    return ipam.allocate("par", f"container{i:02d}")


def test_twenty_processes_get_distinct_addresses(lt_root: Path) -> None:
    make("par", "10.213.7.0/24")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(20) as pool:
        ips = pool.map(_allocate_in_child, [(str(lt_root), i) for i in range(20)], chunksize=1)
    assert len(set(ips)) == 20
    leases = ipam.inspect_network("par")["leases"]
    assert len(leases) == 20
    assert sorted(lease["ip"] for lease in leases.values()) == sorted(ips)
    assert set(ips) == {f"10.213.7.{n}" for n in range(2, 22)}
