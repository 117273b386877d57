"""The reports in docs/ (issue 17): they exist, what they name exists, their figures are current.

- every document is there and its links to files of the tree resolve;
- each failure case of FAILURE_CASES.md names tests that exist (file, function, parameter);
- COMMON_ERRORS.md lists the errors the issue asks for, each in a form its root test can run
  (tests/integration/test_common_errors_root.py runs them and compares the text);
- QUICK_REFERENCE.md has every CLI subcommand, every flag it names exists, and the app keys it
  names are bound on those screens;
- the generated blocks (docs/figures.py) are up to date: the line counts always; the bench
  figures against the results file, a comparison skipped, with its reason, until one exists;
- the peers' defaults COMPARATIVE_ANALYSIS.md quotes match their configuration files, where
  those are installed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import reports

REPO = reports.REPO
DOCS = reports.DOCS


def _figures():
    spec = importlib.util.spec_from_file_location("docs_figures", DOCS / "figures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


figures = _figures()


# ---- the documents -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", reports.REPORTS)
def test_the_document_exists_and_its_links_resolve(name):
    path = DOCS / name
    text = path.read_text()
    assert text.startswith("# "), f"{name}: no title"
    assert len(text.splitlines()) > 20, f"{name}: too short to be the report"
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    assert not missing, f"{name} links to files that do not exist: {missing}"


def test_the_readme_lists_the_reports():
    readme = (REPO / "README.md").read_text()
    for name in reports.REPORTS:
        assert f"(docs/{name})" in readme, f"README.md does not link docs/{name}"


# ---- FAILURE_CASES.md ----------------------------------------------------------------------------

LABELS = ("**What failed.**", "**Why.**", "**The kernel.**", "**labtui.**", "**The user sees.**")


def test_at_least_eight_failure_cases_each_with_the_five_parts():
    scs = reports.scenarios()
    assert len(scs) >= 8, [s.title for s in scs]
    for sc in scs:
        assert sc.tests, f"{sc.title}: names no test"
        for label in LABELS:
            assert label in sc.text, f"{sc.title}: no {label}"
        assert "Repeat: `sudo " in sc.text, f"{sc.title}: no command that repeats it"


def test_each_failure_case_names_tests_that_exist():
    for sc in reports.scenarios():
        for file, name, param in sc.tests:
            path = REPO / file
            assert path.is_file(), f"{sc.title}: {file} does not exist"
            fns = reports.defined_tests(path)
            assert name in fns, f"{sc.title}: {file} defines no {name}"
            if param is not None:
                assert reports.is_parametrized(fns[name]), f"{sc.title}: {name} takes no parameter"
                assert f'"{param}"' in path.read_text(), f"{sc.title}: {name} has no case {param!r}"


@pytest.mark.parametrize("words", [("oom",), ("fork bomb", "pids.max"), ("port",), ("layer",),
                                   ("supervisor", "sigkill"), ("disk",), ("criu",), ("seccomp",)])
def test_the_failure_cases_the_issue_asks_for_are_there(words):
    titles = [s.title.lower() for s in reports.scenarios()]
    assert any(all(w in t for w in words) for t in titles), f"no failure case about {' + '.join(words)}: {titles}"


# ---- COMMON_ERRORS.md ----------------------------------------------------------------------------

REQUIRED_ERRORS = ("not-root", "image-not-found", "name-in-use", "port-in-use", "memory-too-small",
                   "cgroup-v2-missing", "criu-missing", "lesson-unsupported", "transcript-refused")


def test_the_errors_the_issue_asks_for_are_listed_and_runnable():
    entries = {e.id: e for e in reports.error_entries()}
    assert not [r for r in REQUIRED_ERRORS if r not in entries], sorted(entries)
    text = (DOCS / "COMMON_ERRORS.md").read_text()
    assert len(entries) == text.count("<!-- error: "), "an entry the parser did not read"
    root_test = REPO / "tests" / "integration" / "test_common_errors_root.py"
    recipes = _dict_keys(root_test, "RECIPES")
    for e in entries.values():
        assert e.commands and e.expected, f"{e.id}: needs `$` commands and the output"
        assert e.exit in (1, 2, 77, 125, 126, 127), f"{e.id}: exit {e.exit}"
        if e.recipe:
            assert e.id in recipes, f"{e.id} is marked recipe but {root_test.name} has none"
        else:
            assert all(c.labtui for c in e.commands), f"{e.id}: a `$` line that is not a labtui command"
        for line in e.expected:
            reports.line_pattern(line)  # a valid expression
    assert set(recipes) == {e.id for e in entries.values() if e.recipe}
    # Each entry says what causes it and how to fix it.
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        assert "**Cause" in block and ("**Fix" in block or "fix.**" in block), block.splitlines()[0]


def _dict_keys(path: Path, name: str) -> set[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return {k.value for k in node.value.keys}
    raise AssertionError(f"{path}: no {name}")


def test_a_documented_line_matches_only_what_it_says():
    p = reports.line_pattern("labtui: name 'web' is already in use by container <id>: remove it")
    assert p.match("labtui: name 'web' is already in use by container 0123abcd: remove it")
    assert not p.match("labtui: name 'web' is already in use by container : remove it")
    assert not p.match("labtui: name 'db' is already in use by container 0123abcd: remove it")
    assert reports.line_pattern("alice  REFUSED   line 2").match("alice REFUSED line 2")
    assert reports.line_pattern("port 8080 in use", {"8080": "31337"}).match("port 31337 in use")


# ---- QUICK_REFERENCE.md --------------------------------------------------------------------------

def _commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    from labtui.cli import main

    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if words:
            out[words] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, words + (name,))

    walk(main.build_parser(), ())
    return out


def test_every_cli_command_is_in_the_quick_reference():
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    named = {words for words, _ in reports.quick_reference_rows(text)}
    missing = []
    for words, parser in _commands().items():
        has_subs = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if has_subs:
            continue  # `labtui image` is listed as `labtui image import`, `image ls`, ...
        if words not in named and not re.search(rf"`labtui {re.escape(' '.join(words))}(?![\w-])", text):
            missing.append(" ".join(words))
    assert not missing, f"QUICK_REFERENCE.md lacks: {missing}"


def test_every_flag_in_the_quick_reference_exists():
    commands = _commands()
    bad = []
    rows = reports.quick_reference_rows()
    assert len(rows) > 40, len(rows)
    for words, flags in rows:
        while words and words not in commands:
            words = words[:-1]  # `labtui gate show`: "show" is an argument of `gate`
        assert words, f"a row names no labtui command: {words}"
        options = {s for a in commands[words]._actions for s in a.option_strings}
        bad += [f"labtui {' '.join(words)} {f}" for f in flags if f not in options]
    run_options = {s for a in commands[("run",)]._actions for s in a.option_strings}
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    prose = text.split("Run options by mechanism:", 1)[1].split("##", 1)[0]
    bad += [f"labtui run {f}" for f in reports.FLAG_RE.findall(prose) if f not in run_options]
    assert not bad, f"flags QUICK_REFERENCE.md names that do not exist: {bad}"


def _keys_of(row: str) -> set[str]:
    cell = row.split("|")[2]
    keys: set[str] = set()
    for token in re.findall(r"`([^`]+)`", cell):
        for k in token.split("/"):
            keys.add({"→": "right", "←": "left", "]": "right_square_bracket", "[": "left_square_bracket",
                      "?": "question_mark"}.get(k, k))
    return keys


def test_the_app_keys_in_the_quick_reference_are_bound():
    from labtui.tui import app
    from labtui.tui.screens import attacks, container, dashboard, lesson, lessons, run_form, walkthrough

    def bound(*classes) -> set[str]:
        out: set[str] = set()
        for cls in classes:
            for b in getattr(cls, "BINDINGS", []) + getattr(cls, "KEYS", []):
                out.update(b.key.split(","))
        return out

    everywhere = bound(app.LabApp) | {"ctrl+p", "escape", "enter"}
    screens = {
        "everywhere": set(), "dashboard": bound(dashboard.DashboardScreen),
        "container": bound(container.ContainerScreen, *container.PANELS), "attack lab": bound(attacks.AttackLabScreen),
        "lessons": bound(lessons.LessonPickerScreen), "a lesson": bound(lesson.LessonScreen),
        "walkthrough": bound(walkthrough.WalkthroughScreen), "run form": bound(run_form.RunFormScreen),
    }
    text = (DOCS / "QUICK_REFERENCE.md").read_text()
    section = text.split("## The app's keys", 1)[1]
    seen = set()
    for row in section.splitlines():
        m = re.match(r"\| ([a-z ]+) \|", row)
        if not m or m.group(1) not in screens:
            continue
        seen.add(m.group(1))
        keys = {k for k in _keys_of(row) if not re.fullmatch(r"\d", k)}
        unbound = keys - screens[m.group(1)] - everywhere
        assert not unbound, f"{m.group(1)}: keys not bound there: {unbound}"
    assert seen == set(screens)


# ---- the figures ---------------------------------------------------------------------------------

def _docs_text() -> dict[str, str]:
    return {p.name: p.read_text() for p in figures.documents()}


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_line_counts_are_what_the_script_counts():
    found = 0
    for name, text in _docs_text().items():
        for block, args, body in figures.blocks(text):
            if block == "loc":
                found += 1
                assert body == figures.render(block, args, None) + "\n", \
                    f"{name}: the loc block is not what `python3 docs/figures.py --write` writes"
                assert "at=" in args, f"{name}: a loc block must name its commit (at=...)"
    assert found, "no loc block in docs/"


def test_the_bench_blocks_are_what_the_results_file_gives():
    """With no results file the blocks must say so (what `figures.py --write` writes then); with one,
    they must be rendered from it."""
    path = figures.results_path()
    results = figures.load_results(path) if path else None
    stale = [f"{name}: {b}" for name, text in _docs_text().items()
             for b in figures.stale(text, results) if b.startswith("bench")]
    assert not stale, f"out of date (run `python3 docs/figures.py --write`): {stale}"
    assert any("figures: bench-cases" in t for t in _docs_text().values())


def test_the_figures_quoted_match_the_results_file():
    path = figures.results_path()
    if path is None:
        pytest.skip("no bench results file in bench/results/ yet (`sudo ./bench/run` writes it): "
                    "the quoted figures are compared with it once it exists")
    results = figures.load_results(path)
    assert results.cases, f"{path}: no cases"
    bad = [f"{name}: {b}" for name, text in _docs_text().items() for b in figures.check_markers(text, results)]
    assert not bad, bad


def test_figures_reads_a_results_file_in_either_shape(tmp_path, monkeypatch):
    """The bench's file is read tolerantly: cases as a list or a mapping, runtimes likewise, samples
    in ms or s, precomputed statistics, runtimes that could not run."""
    as_list = {
        "host": {"kernel": "6.18.44", "cpu": "Xeon", "cgroup_layout": "hybrid"}, "date": "2026-01-01",
        "commit": "abc123",
        "cases": [
            {"case": "run-true-warm", "unit": "ms", "runtimes": [
                {"runtime": "labtui", "samples_ms": [20, 30, 25, 22, 28]},
                {"runtime": "runc", "samples_s": [0.030, 0.040, 0.035]},
                {"runtime": "crun", "skipped": "crun refuses cgroup-hybrid hosts"}]},
            {"case": "idle-memory-1", "unit": "MiB", "runtimes": {
                "labtui": {"samples": [30.0], "median": 30.0}, "podman": {"samples": [2.5]}}},
        ],
    }
    as_map = {"kernel": "6.18.44", "cases": {
        "run-true-warm": {"labtui": [20, 30, 25, 22, 28], "runc": {"median_ms": 35.0, "q1": 30.0, "q3": 40.0}}}}
    for raw in (as_list, as_map):
        f = tmp_path / "r.json"
        f.write_text(json.dumps(raw))
        r = figures.load_results(f)
        assert figures.value_of(r, "run-true-warm", "labtui", "median_ms") == 25
        assert figures.value_of(r, "run-true-warm", "runc", "median_ms") == pytest.approx(35.0)
        assert figures.value_of(r, "run-true-warm", "labtui/runc", "median_ms") == pytest.approx(25 / 35)
        text = "warm: 25.0 ms <!-- bench: run-true-warm labtui median_ms -->, 0.71x " \
               "<!-- bench: run-true-warm labtui/runc median_ms -->"
        assert figures.check_markers(text, r) == []
        assert figures.check_markers(text.replace("25.0", "26.0"), r)
        assert figures.check_markers("1 <!-- bench: nope labtui median -->", r)
        table = figures.render_bench_cases(r)
        assert "| `run-true-warm` (ms) | labtui | 25.0 |" in table
        assert "0.71x" in table
    f = tmp_path / "list.json"
    f.write_text(json.dumps(as_list))
    r = figures.load_results(f)
    assert "not run: crun refuses cgroup-hybrid hosts" in figures.render_bench_cases(r)
    assert figures.value_of(r, "idle-memory-1", "labtui/podman", "median") == pytest.approx(12.0)
    losses = figures.render_bench_losses(r)
    assert "`idle-memory-1` | podman | 30.0 MiB | 2.50 MiB | 27.5 MiB (12.00x)" in losses
    machine = figures.render_bench_machine(r)
    assert "| kernel | 6.18.44 |" in machine and "| labtui commit | abc123 |" in machine
    monkeypatch.setenv("LABTUI_BENCH_RESULTS", str(f))
    assert figures.results_path() == f
    monkeypatch.setenv("LABTUI_BENCH_RESULTS", str(tmp_path / "none.json"))
    assert figures.results_path() is None


def test_figures_check_runs_clean_from_the_command_line():
    p = subprocess.run(["python3", str(DOCS / "figures.py"), "--check"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr


# ---- the peers' defaults, where their files are installed ----------------------------------------

def _analysis() -> str:
    return " ".join((DOCS / "COMPARATIVE_ANALYSIS.md").read_text().split())


def test_labtuis_default_capabilities_are_the_ones_quoted():
    from engine import capabilities

    assert ", ".join(capabilities.DOCKER_DEFAULT) in _analysis()
    assert f"{capabilities.DOCKER_DEFAULT_MASK:016x}" in _analysis()


def test_podmans_default_capabilities_are_the_ones_quoted():
    conf = Path("/usr/share/containers/containers.conf")
    if not conf.exists():
        pytest.skip("podman is not installed here (apt-get install podman)")
    block = re.search(r"^default_capabilities = \[(.*?)\]", conf.read_text(), re.S | re.M)
    assert block, conf
    caps = re.findall(r'"([A-Z_]+)"', block.group(1))
    assert ", ".join(caps) in _analysis(), caps
    seccomp = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    assert f"`defaultErrnoRet` {seccomp['defaultErrnoRet']}" in _analysis()


def test_the_lxc_busybox_template_settings_are_the_ones_quoted():
    tpl = Path("/usr/share/lxc/templates/lxc-busybox")
    if not tpl.exists():
        pytest.skip("lxc is not installed here (apt-get install lxc)")
    text = tpl.read_text()
    for key in ("lxc.cap.drop", "lxc.mount.auto"):
        line = re.search(rf"^{re.escape(key)} = .*$", text, re.M)
        assert line and line.group(0) in _analysis(), key
    assert "common.conf" not in text  # the analysis says the template does not include it
