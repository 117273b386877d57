"""Capability names, docker's --cap-add/--cap-drop rules, decoding /proc/PID/status."""

from __future__ import annotations

import os

import pytest

from engine import capabilities as caps
from engine.errors import InvalidArgument


def test_docker_default_is_the_14_caps_of_mask_a80425fb():
    assert len(caps.DOCKER_DEFAULT) == 14
    assert caps.to_mask({caps.CAP_BITS[n] for n in caps.DOCKER_DEFAULT}) == 0xA80425FB
    assert caps.to_mask(caps.effective_set()) == caps.DOCKER_DEFAULT_MASK


@pytest.mark.parametrize("raw,expected", [
    ("SYS_ADMIN", "CAP_SYS_ADMIN"), ("sys_admin", "CAP_SYS_ADMIN"), ("CAP_SYS_ADMIN", "CAP_SYS_ADMIN"),
    ("cap_net_raw", "CAP_NET_RAW"), ("  Net_Admin ", "CAP_NET_ADMIN"), ("all", "ALL"), ("ALL", "ALL"),
])
def test_names_are_case_insensitive_with_an_optional_prefix(raw, expected):
    assert caps.normalize(raw) == expected


@pytest.mark.parametrize("raw", ["SYS_ADMINN", "CAP_", "", "NET-ADMIN", "CAP_ALL"])
def test_unknown_names_are_refused_with_a_clear_message(raw):
    with pytest.raises(InvalidArgument, match="unknown capability"):
        caps.normalize(raw)


def test_lists_accept_commas_and_drop_duplicates():
    assert caps.normalize_list(["net_admin,SYS_PTRACE", "CAP_NET_ADMIN"]) == ["CAP_NET_ADMIN", "CAP_SYS_PTRACE"]


def test_cap_drop_all_keeps_nothing_and_then_only_the_adds():
    assert caps.effective_set(cap_drop=["ALL"]) == set()
    assert caps.effective_set(cap_add=["NET_ADMIN"], cap_drop=["all"]) == {caps.CAP_BITS["CAP_NET_ADMIN"]}


def test_cap_add_sys_admin_sets_bit_21():
    got = caps.effective_set(cap_add=["SYS_ADMIN"])
    assert 21 in got
    assert caps.to_mask(got) == 0xA80425FB | 1 << 21


def test_cap_add_all_keeps_every_known_cap_but_the_drops():
    got = caps.effective_set(cap_add=["ALL"], cap_drop=["SYS_ADMIN"])
    assert got == caps.all_caps() - {21}


def test_an_add_wins_over_a_drop_of_the_same_cap():
    assert caps.CAP_BITS["CAP_CHOWN"] in caps.effective_set(cap_add=["CHOWN"], cap_drop=["CHOWN"])


def test_drop_removes_a_default():
    got = caps.effective_set(cap_drop=["NET_RAW", "mknod"])
    assert caps.CAP_BITS["CAP_NET_RAW"] not in got and caps.CAP_BITS["CAP_MKNOD"] not in got
    assert len(got) == 12


def test_privileged_is_every_cap_the_kernel_knows():
    assert caps.effective_set(privileged=True) == caps.all_caps()
    assert max(caps.all_caps()) == caps.last_cap()


def test_decode_turns_a_mask_into_names():
    assert caps.decode("00000000a80425fb")[:3] == ["cap_chown", "cap_dac_override", "cap_fowner"]
    assert len(caps.decode(0xA80425FB)) == 14
    assert caps.decode(0) == []
    assert caps.decode(1 << 21) == ["cap_sys_admin"]
    assert caps.from_mask(caps.to_mask({0, 5, 40})) == {0, 5, 40}


def test_describe_reads_and_decodes_proc_status():
    d = caps.describe(os.getpid())
    for key in ("inheritable", "permitted", "effective", "bounding", "ambient"):
        assert d[key]["mask"].startswith("0x")
        assert d[key]["names"] == caps.decode(d[key]["mask"][2:])
    assert isinstance(d["no_new_privs"], bool)
    assert d["seccomp"]["name"] in ("disabled", "strict", "filter")


def test_describe_decodes_a_given_status(tmp_path, monkeypatch):
    status = ("Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
              "CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
              "Seccomp_filters:\t1\n")
    real_open = open

    def fake_open(path, *a, **kw):
        if path == "/proc/4242/status":
            p = tmp_path / "status"
            p.write_text(status)
            return real_open(p, *a, **kw)
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    d = caps.describe(4242)
    assert d["effective"]["mask"] == "0x00000000a80425fb"
    assert "cap_net_bind_service" in d["bounding"]["names"]
    assert d["inheritable"]["names"] == [] and d["ambient"]["names"] == []
    assert d["no_new_privs"] is True
    assert d["seccomp"] == {"mode": 2, "name": "filter", "filters": 1}


class _Rec:
    def __init__(self):
        self.steps = []

    def step(self, mechanism, op, **kw):
        import contextlib

        self.steps.append((mechanism, op, kw))
        return contextlib.nullcontext({})


def test_apply_records_bounding_ambient_and_capset_with_shell_equivalents(monkeypatch):
    calls = []
    monkeypatch.setattr(caps, "current_bounding", lambda: set(range(41)) - {16})
    monkeypatch.setattr(caps, "drop_bounding", lambda bits: calls.append(("drop", tuple(bits))))
    monkeypatch.setattr(caps, "clear_ambient", lambda: calls.append(("amb",)))
    monkeypatch.setattr(caps, "capset", lambda e, p, i: calls.append(("capset", e, p, i)))
    rec = _Rec()
    caps.apply(rec, caps.effective_set(cap_add=["SYS_MODULE"]))
    assert [s[1] for s in rec.steps] == ["prctl PR_CAPBSET_DROP", "prctl PR_CAP_AMBIENT_CLEAR_ALL", "capset"]
    assert rec.steps[0][2]["shell"].startswith("capsh --drop=cap_dac_read_search,")
    assert "unavailable" in rec.steps[0][2]["value"] and "cap_sys_module" in rec.steps[0][2]["value"]
    assert rec.steps[2][2]["shell"].startswith('capsh --caps="cap_chown,')
    assert calls[0][0] == "drop" and 0 not in calls[0][1] and 16 not in calls[0][1]
    assert calls[2] == ("capset", 0xA80425FB, 0xA80425FB, 0)
