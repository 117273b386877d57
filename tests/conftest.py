"""Test set-up: every test run gets its own LABTUI_ROOT and cgroup parent, and a final leak check.

Integration tests run as root against the real kernel; they are skipped (and say so) otherwise.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_ROOT = tempfile.mkdtemp(prefix="labtui-test-", dir="/var/tmp")
os.environ["LABTUI_ROOT"] = _ROOT
os.environ.setdefault("LABTUI_CGROUP_PARENT", "labtui-test")
os.environ.setdefault("LABTUI_DEFAULT_BRIDGE", "lttest0")  # never touch a real install's labtui0
# `run nosuchimage` pulls from Docker Hub, as docker does: the tests may reach loopback registries only.
os.environ["LABTUI_REGISTRIES"] = "127.0.0.1,localhost"

IS_ROOT = os.geteuid() == 0

if IS_ROOT:  # what a lab VM already had of labtui's: the final leak test judges only the rest
    from tests import helpers as _helpers

    _helpers.BEFORE_SUITE.update(_helpers.labtui_things())


def pytest_collection_modifyitems(config, items):
    # The leak check must run after everything else, whatever the collection order.
    last = [i for i in items if "test_zz_leaks" in i.nodeid]
    rest = [i for i in items if "test_zz_leaks" not in i.nodeid]
    items[:] = rest + last
    for item in items:
        if item.get_closest_marker("root") and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root and the real kernel"))


def pytest_sessionfinish(session, exitstatus):
    # Whatever a failed test left running, take it down so the machine stays clean.
    if IS_ROOT:
        from tests.helpers import force_cleanup, remove_all, remove_networks

        try:
            from labtui.launcher import helper

            helper.stop()  # the launcher's warm helper, if a test started one
            remove_all()
            remove_networks()
            from engine import cgroups
            from engine.steps import null_recorder

            cgroups.remove_empty_parents(null_recorder())  # kept between containers: ours to remove
        finally:
            force_cleanup()
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def labtui_root() -> str:
    return _ROOT


@pytest.fixture
def clean_containers():
    """Remove every container a test made, even when the test failed."""
    yield
    from tests.helpers import remove_all

    remove_all()
