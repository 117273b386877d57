"""The cgroup lessons on a unified cgroup v2 kernel (the VM lane): their checks name both the v1
and the v2 file of each limit, so the same lesson must pass here as on the hybrid host. Each
replay costs seconds to tens of seconds under the emulated CPU: the four lessons whose checks read
cgroup files (memory.max, memory.events, pids.max, pids.events, cgroup.freeze, cgroup.controllers)
run here; cpu-scheduling's measured split is left to the host (the emulated CPU's timing is not
a machine's).
"""

from __future__ import annotations

import pytest

from lessons import replay
from lessons.core import schema

pytestmark = [pytest.mark.root]


@pytest.mark.parametrize("lesson_id", ["cgroups-v1-v2", "memory-oom", "pids-fork-bomb", "freezer-pause"])
def test_the_cgroup_lesson_passes_on_cgroup_v2(lesson_id):
    out = replay.replay(schema.load(schema.LESSONS_DIR / lesson_id), solve=True)
    assert not out.unsupported, out.unsupported
    failed = [f"{r.task}/{r.check}: {'; '.join(r.log)}" for r in out.results if r.passed is not True]
    assert out.passed, "\n".join(failed + out.log)
