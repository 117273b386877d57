"""The lesson layer's two costs: the whole curriculum replayed headless with its solve scripts, and
grading a class (30 transcripts with `labtui grade -j 2`).

    sudo /opt/labtui-venv/bin/python bench/bench_lessons.py [--lessons ID,ID] [--students 30] [--jobs 2]

1. `labtui lesson replay ID --solve` for every shipped lesson, one after the other (as CI runs
   them): the time of each, the total, and the time per lesson and per check, which is how the
   total grows with the curriculum (each replay is a private state made and removed, plus the
   lesson's own containers: the cost is linear in lessons, dominated by their solve scripts).
2. Transcripts for a class: `replay --solve --transcript` of a few short lessons, copied to 30
   "students", then `labtui grade -j 2` over all of them: wall time, and per transcript.

Every replay and grade runs in a private state and removes what it made. Not a test: the figures
go into the issue's closing note (target: the curriculum under 3 minutes on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABTUI = [sys.executable, "-m", "labtui.cli"]
GRADE_LESSONS = ("cgroups-v1-v2", "exec-setns", "memory-oom")  # short ones: the bench is about grading


def labtui(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LABTUI, *args], cwd=REPO, env=env, capture_output=True, text=True)


def lesson_ids() -> list[str]:
    sys.path.insert(0, REPO)
    from lessons.core import schema

    return [p.name for p in schema.lesson_dirs(schema.LESSONS_DIR)]


def checks_of(lesson_id: str) -> int:
    from lessons.core import schema

    return len(schema.load(schema.LESSONS_DIR / lesson_id).checks())


def curriculum(ids: list[str]) -> dict:
    """Replays each lesson with its solve script; returns each one's seconds and exit status."""
    print(f"== the curriculum: {len(ids)} lessons, `labtui lesson replay ID --solve` one after the other")
    times, failed, skipped, checks = {}, [], [], 0
    t_all = time.monotonic()
    for lid in ids:
        t0 = time.monotonic()
        p = labtui("lesson", "replay", lid, "--solve")
        times[lid] = time.monotonic() - t0
        if p.returncode == 77:
            skipped.append(lid)
        elif p.returncode != 0:
            failed.append(lid)
        else:
            checks += checks_of(lid)
        print(f"  {lid:28s} {times[lid]:6.1f} s  exit {p.returncode}")
    total = time.monotonic() - t_all
    ran = [t for k, t in times.items() if k not in skipped]
    print(f"  total {total:.1f} s for {len(ran)} lessons ({len(skipped)} unsupported here: "
          f"{', '.join(skipped) or '-'}); failed: {', '.join(failed) or 'none'}")
    if ran:
        print(f"  per lesson: median {statistics.median(ran):.1f} s, mean {statistics.mean(ran):.1f} s;"
              f" per check {sum(ran) / max(checks, 1) * 1000:.0f} ms ({checks} checks)")
    return {"times": times, "skipped": skipped, "failed": failed, "total": total, "checks": checks}


def grading(students: int, jobs: int) -> None:
    print(f"== grading a class: {students} transcripts, `labtui grade -j {jobs}`")
    work = tempfile.mkdtemp(prefix="labtui-bench-grade-", dir="/var/tmp")
    try:
        made = []
        for lid in GRADE_LESSONS:
            path = os.path.join(work, f"{lid}.jsonl")
            p = labtui("lesson", "replay", lid, "--solve", "--transcript", path)
            if p.returncode != 0:
                raise SystemExit(f"replay {lid} failed ({p.returncode}): {p.stderr.strip()}")
            made.append(path)
        paths = []
        for i in range(students):
            dst = os.path.join(work, f"student{i:02d}.jsonl")
            shutil.copy(made[i % len(made)], dst)
            paths.append(dst)
        out = os.path.join(work, "grades.json")
        t0 = time.monotonic()
        p = labtui("grade", "-j", str(jobs), "--json", out, *paths)
        wall = time.monotonic() - t0
        with open(out) as f:
            graded = json.load(f)["transcripts"]
        full = sum(1 for g in graded if g.get("score") == g.get("max_score"))
        print(f"  {wall:.1f} s wall for {students} transcripts ({wall / students:.2f} s each), exit {p.returncode};"
              f" {full}/{len(graded)} with full marks")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lessons", help="comma-separated lesson ids (default: all)")
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-curriculum", action="store_true")
    ap.add_argument("--no-grading", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: sudo /opt/labtui-venv/bin/python bench/bench_lessons.py")
    ids = args.lessons.split(",") if args.lessons else lesson_ids()
    if not args.no_curriculum:
        curriculum(ids)
    if not args.no_grading:
        grading(args.students, args.jobs)


if __name__ == "__main__":
    main()
