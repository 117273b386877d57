"""Parsing and validation of docker's resource options."""

from __future__ import annotations

import pytest

from engine.cgroups.limits import (
    Limits,
    blkio_to_io_weight,
    cpu_quota,
    format_cpu_list,
    limits_from_options,
    online_cpus,
    parse_cpu_list,
    parse_cpus,
    parse_memory_swap,
    parse_size,
    shares_to_weight,
    shares_to_weight_formula,
    validate,
)
from engine.errors import InvalidArgument

MiB = 1 << 20


@pytest.mark.parametrize("text,expected", [
    ("1024", 1024), ("512k", 512 << 10), ("512K", 512 << 10), ("64m", 64 * MiB), ("64M", 64 * MiB),
    ("64mb", 64 * MiB), ("64MB", 64 * MiB), ("64MiB", 64 * MiB), ("1g", 1 << 30), ("1G", 1 << 30),
    ("1.5g", 3 << 29), ("100b", 100), ("7B", 7), (" 64m ", 64 * MiB), (4096, 4096),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["12XB", "-1", "-64m", "0", "0m", "m", "", "1e3", "64 mega", "1..5g"])
def test_parse_size_refusals_name_the_option(text):
    with pytest.raises(InvalidArgument) as e:
        parse_size(text, "--memory")
    assert "--memory" in str(e.value)
    assert e.value.exit_code == 125


def test_parse_size_message_is_actionable():
    with pytest.raises(InvalidArgument, match=r"invalid value '12XB' for --memory: .*64m"):
        parse_size("12XB", "--memory")


def test_memory_swap_accepts_minus_one():
    assert parse_memory_swap("-1") == -1
    assert parse_memory_swap("128m") == 128 * MiB
    with pytest.raises(InvalidArgument, match="--memory-swap"):
        parse_memory_swap("-2")


@pytest.mark.parametrize("text,expected", [("0.5", 0.5), ("2", 2.0), (1.25, 1.25)])
def test_parse_cpus(text, expected):
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf", "0.0000000001"])
def test_parse_cpus_refusals(text):
    with pytest.raises(InvalidArgument, match="--cpus"):
        parse_cpus(text)


def test_limits_from_options_and_refusals():
    lim = limits_from_options(memory="64m", memory_swap="-1", cpus="0.5", cpu_shares="512",
                              cpuset_cpus="0-1", pids_limit="20", blkio_weight="300")
    assert lim == Limits(memory=64 * MiB, memory_swap=-1, cpus=0.5, cpu_shares=512,
                         cpuset_cpus="0-1", pids_limit=20, blkio_weight=300)
    with pytest.raises(InvalidArgument, match="--cpu-shares"):
        limits_from_options(cpu_shares="lots")
    with pytest.raises(InvalidArgument, match="--pids-limit"):
        limits_from_options(pids_limit="1.5")


def test_validate_accepts_docker_values():
    lim = Limits(memory=64 * MiB, memory_swap=128 * MiB, cpus=2, cpu_shares=2, cpuset_cpus="0-1",
                 pids_limit=-1, blkio_weight=10)
    assert validate(lim, cpu_count=2, online=[0, 1]) is lim
    assert validate(Limits(cpu_shares=262144, blkio_weight=1000, pids_limit=1), cpu_count=1, online=[0])


@pytest.mark.parametrize("limits,fragment", [
    (Limits(cpus=3), "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs"),
    (Limits(cpus=0.001), "--cpus"),
    (Limits(cpuset_cpus="0-3"), "CPUs 2-3 are not online (available: 0-1)"),
    (Limits(cpuset_cpus="1-0"), "runs backwards"),
    (Limits(cpuset_cpus="0,,1"), "CPU list"),
    (Limits(cpuset_cpus="a"), "--cpuset-cpus"),
    (Limits(pids_limit=0), "--pids-limit"),
    (Limits(pids_limit=-5), "-1 for unlimited"),
    (Limits(cpu_shares=1), "range 2 to 262144"),
    (Limits(cpu_shares=262145), "--cpu-shares"),
    (Limits(blkio_weight=9), "range 10 to 1000"),
    (Limits(blkio_weight=1001), "--blkio-weight"),
    (Limits(memory=4 * MiB), "6MB"),
    (Limits(memory=64 * MiB, memory_swap=32 * MiB), "at least --memory"),
    (Limits(memory_swap=64 * MiB), "needs --memory"),
])
def test_validate_refusals(limits, fragment):
    with pytest.raises(InvalidArgument) as e:
        validate(limits, cpu_count=2, online=[0, 1])
    assert fragment in str(e.value)


def test_swap_total_defaults_to_twice_memory():
    assert Limits(memory=64 * MiB).swap_total() == 128 * MiB
    assert Limits(memory=64 * MiB, memory_swap=-1).swap_total() == -1
    assert Limits(memory=64 * MiB, memory_swap=64 * MiB).swap_total() == 64 * MiB
    assert Limits().swap_total() is None


def test_merged_and_dict_roundtrip():
    a = Limits(memory=64 * MiB, cpus=1)
    b = a.merged(Limits(cpus=0.5, pids_limit=10))
    assert b == Limits(memory=64 * MiB, cpus=0.5, pids_limit=10)
    assert Limits.from_dict(b.to_dict() | {"junk": 1}) == b
    assert Limits().is_empty() and not b.is_empty()


@pytest.mark.parametrize("shares,weight", [(2, 1), (512, 20), (1024, 39), (262144, 10000), (0, 0)])
def test_shares_to_weight_is_runcs(shares, weight):
    assert shares_to_weight(shares) == weight
    if shares:
        assert shares_to_weight(shares) == 1 + ((shares - 2) * 9999) // 262142


def test_shares_formula_text():
    assert shares_to_weight_formula(512) == "1 + ((512 - 2) * 9999) / 262142 = 20"


def test_blkio_to_io_weight():
    assert blkio_to_io_weight(10) == 1
    assert blkio_to_io_weight(1000) == 10000
    assert blkio_to_io_weight(500) == 1 + (490 * 9999) // 990


@pytest.mark.parametrize("cpus,quota", [(0.5, 50000), (0.2, 20000), (0.29, 29000), (1.5, 150000), (0.01, 1000)])
def test_cpu_quota_has_no_float_drift(cpus, quota):
    assert cpu_quota(cpus) == (quota, 100000)


def test_cpu_lists(tmp_path):
    assert parse_cpu_list("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    assert format_cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert format_cpu_list([3]) == "3"
    f = tmp_path / "online"
    f.write_text("0-3\n")
    assert online_cpus(str(f)) == [0, 1, 2, 3]
    assert online_cpus(str(tmp_path / "missing"))  # falls back to os.cpu_count()
