"""labtui/launcher/trust.py: whom the warm helper serves (a caller confined exactly as it is)."""

from __future__ import annotations

import os
import socket

from labtui.launcher import trust


def test_a_process_is_confined_as_itself_and_every_difference_is_named():
    own = trust.facts("self")
    assert own is not None and own["ns:mnt"] and own["CapBnd"] and own["cgroup"] is not None
    assert trust.differences(own, trust.facts(os.getpid())) == []
    other = dict(own, **{"ns:net": "0:1", "CapBnd": "0000000000000000", "NoNewPrivs": "1"})
    assert trust.differences(own, other) == ["capability bounding set", "no_new_privs", "net namespace"]
    del other["ns:time"]  # a namespace the other side does not show is a difference too
    assert "time namespace" in trust.differences(own, other)


def test_a_helper_under_a_seccomp_filter_trusts_no_one():
    own = dict(trust.facts("self"), Seccomp="2", Seccomp_filters="1")
    assert trust.differences(own, dict(own)) == ["seccomp filter (the helper's own cannot be compared)"]


def test_the_peer_is_read_through_its_pidfd():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        assert trust.peer(a) == (os.getpid(), os.geteuid())
        fd = trust._peer_pidfd(a, os.getpid())
        try:
            assert trust.pidfd_pid(fd) == os.getpid()
        finally:
            os.close(fd)
        assert trust.refusal(a, trust.own_facts(trust.facts("self"))) == (
            os.getpid(), None if os.geteuid() == 0 else "not root")


def test_a_reaped_process_has_no_pid_behind_its_pidfd():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    fd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        assert trust.pidfd_pid(fd) == -1
    finally:
        os.close(fd)
