"""labtui/launcher/spare.py's hand-over of a container to a supervisor forked ahead of time."""

from __future__ import annotations

import json
import os
import socket

from engine import prefork
from labtui.launcher import spare


def test_handover_sends_the_container_and_the_callers_fds_once():
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    prefork.close_in_supervisor(mine.fileno())
    r, w = os.pipe()
    try:
        spawn = spare.spawner(4242, mine)
        assert spawn("abc", w, None, (24, 80)) == 4242
        data, fds, _, _ = socket.recv_fds(theirs, 1 << 16, 4)
        msg = json.loads(data)
        assert msg["cid"] == "abc" and msg["winsize"] == [24, 80] and msg["parent"] == os.getpid()
        assert msg["cwd"] == os.getcwd() and msg["env"] == dict(os.environ)
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(w).st_ino
        os.close(fds[0])
        assert spawn("def", w, None, None) is None  # used: the next supervisor is forked
        assert prefork.fork_close_fds() == []
    finally:
        prefork.fork_close_fds().clear()
        for fd in (r, w):
            os.close(fd)
        theirs.close()


def test_a_spare_that_died_means_an_ordinary_fork_and_no_stale_fd_to_close():
    """The spawner closes its socket either way; the fd number must then leave prefork.fork_close_fds(),
    or the forked supervisor would close whatever reuses it (the status pipe, say)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()
    fd = mine.fileno()
    prefork.close_in_supervisor(fd)
    r, w = os.pipe()
    try:
        assert spare.spawner(4242, mine)("abc", w, None, None) is None
        assert fd not in prefork.fork_close_fds() and mine.fileno() == -1
    finally:
        prefork.fork_close_fds().clear()
        os.close(r)
        os.close(w)


def test_the_cold_launcher_guesses_a_network_from_the_words_only():
    from labtui.launcher.launch import _wants_network

    assert _wants_network(["run", "--network", "bridge", "busybox"])
    assert _wants_network(["run", "--net=mynet", "busybox"])
    assert not _wants_network(["run", "--network", "none", "busybox"])
    assert not _wants_network(["run", "--network=host", "busybox"])
    assert not _wants_network(["run", "--network", "container:web", "busybox"])
    assert not _wants_network(["run", "busybox", "echo", "--network"])
