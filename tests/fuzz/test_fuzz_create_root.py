"""`labtui create` for real with random run/create flags (tests/fuzz/argv.py) on busybox, as
root: each example is created and removed, or refused with a message and exit 125 (2 for
argparse's usage errors); after the batch nothing is left: no container directory, name link,
address lease, cgroup, link or mount (tests/fuzz/leftovers.py)."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings

from tests.fuzz.argv import VOL, examples, run_argv
from tests.fuzz.leftovers import new_since, snapshot
from tests.fuzz.test_fuzz_cli import check_outcome, run_main, warm_up

pytestmark = pytest.mark.root


def test_create_for_real_then_rm_leaves_nothing(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a fuzzed command writes to a relative path lands here
    warm_up(capfd)
    before = snapshot()
    counts = {"created": 0, "refused": 0}

    @settings(max_examples=examples(120))
    @given(run_argv("busybox"))
    def one(argv: list[str]) -> None:
        rc, out, err = run_main(["create", *argv], capfd)
        check_outcome(["create", *argv], rc, err)
        if rc == 0:
            counts["created"] += 1
            rm = run_main(["rm", "-f", out.strip()], capfd)
            assert rm[0] == 0, (argv, rm)
        else:
            counts["refused"] += 1
            assert rc in (2, 125), (argv, rc, err)

    try:
        one()
    finally:
        shutil.rmtree(VOL, ignore_errors=True)
    print("create:", counts)
    assert not new_since(before), new_since(before)
    assert counts["created"] and counts["refused"], counts
