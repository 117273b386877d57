"""Hypothesis settings of the fuzz tests: bounded and repeatable.

derandomize=True draws the same examples on every run (a failure in CI repeats on a laptop), no
example database is written into the tree, and deadline=None: the machine is shared and a slow
example is not a bug. Each test sets its own max_examples; the whole folder stays under ~60 s.
LABTUI_FUZZ_RANDOM=1 explores other examples (LABTUI_FUZZ_SCALE=K, K times as many); a failure
then prints its seed, and
`pytest --hypothesis-seed=N` repeats it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_RANDOM = os.environ.get("LABTUI_FUZZ_RANDOM") == "1"
settings.register_profile(
    "labtui-fuzz", deadline=None, database=None, derandomize=not _RANDOM, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
settings.load_profile("labtui-fuzz")


def pytest_report_header(config) -> str:
    return f"labtui fuzz: {'random examples' if _RANDOM else 'derandomized (LABTUI_FUZZ_RANDOM=1 for others)'}"
