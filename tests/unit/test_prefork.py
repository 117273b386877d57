"""engine/prefork.py: the one hook through which labtui's helper changes what the engine does."""

from __future__ import annotations

import os

from engine import api, cgroups, prefork


def test_the_supervisor_spawner_takes_the_container_instead_of_a_fork():
    calls = []

    def spawn(cid, status_w, client, winsize):
        calls.append((cid, client, winsize))
        return 4242

    prefork.set_supervisor_spawner(spawn)
    try:
        r, pid = api.spawn_supervisor("abc", None, (24, 80))
        os.close(r)
        assert pid == 4242 and calls == [("abc", None, (24, 80))]
    finally:
        prefork.set_supervisor_spawner(None)
    assert prefork.supervisor_spawner() is None


def test_the_facade_keeps_its_names_and_the_lists_are_one():
    assert api.FORK_CLOSE_FDS is prefork.fork_close_fds()
    prefork.close_in_supervisor(99)
    try:
        assert 99 in api.FORK_CLOSE_FDS
        prefork.keep_in_supervisor(99)
        prefork.keep_in_supervisor(99)  # twice: no error
        assert 99 not in api.FORK_CLOSE_FDS
    finally:
        prefork.fork_close_fds().clear()


def test_the_layout_ttl_is_the_engines_unless_set():
    assert prefork.layout_ttl(cgroups.LAYOUT_TTL) == cgroups.LAYOUT_TTL
    first = cgroups.host_layout(refresh=True)
    prefork.set_layout_ttl(-1.0)  # every call detects again
    try:
        assert cgroups.host_layout() is not first
    finally:
        prefork.set_layout_ttl(None)
    again = cgroups.host_layout()
    assert cgroups.host_layout() is again
