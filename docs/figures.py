#!/usr/bin/env python3
"""The figures the reports in docs/ quote, made from files a test can check.

Two kinds of figure live in the Markdown:

* **generated blocks**, between `<!-- figures: NAME -->` and `<!-- /figures -->`, written by this
  script and compared with a fresh rendering by tests/unit/test_reports.py:

      bench-machine   the machine, kernel, cgroup layout, date and commit of the bench results
      bench-cases     every case of the results file, every runtime: median, quartiles, n, ratio
      bench-losses    where labtui's median is above a peer's, and by how much
      loc             lines of code per part of labtui, counted from git at a recorded commit

* **inline figures**: a number followed by `<!-- bench: CASE RUNTIME STAT -->`, where RUNTIME may
  be `A/B` (the ratio of A's STAT to B's). The number must equal the value computed from the
  results file, rounded to the decimals the text shows.

The results file is what `sudo ./bench/run` writes into bench/results/: $LABTUI_BENCH_RESULTS if
set, else bench/results/latest.json, else the last bench/results/*.json by name. Until one exists
the bench blocks say so, and the test skips only the bench comparison, with that reason.

    python3 docs/figures.py                 # print every block as it would be written
    python3 docs/figures.py --write         # rewrite the blocks in docs/*.md
    python3 docs/figures.py --check         # exit 1 when a block is out of date, naming it
    python3 docs/figures.py loc [--at REV]  # the line counts alone (REV: a commit, default HEAD)

The results file's shape is read tolerantly (see `load_results`): a list or a mapping of cases,
each with a mapping or list of runtimes, each with its samples (`samples`, `samples_ms`, `samples_s`
or a bare list of numbers) or the reason it did not run (`skipped`, `error`, `reason`). Statistics
given in an entry (`median_ms`, `q1`, ...) are used as they are; the rest are computed from the
samples (quartiles: statistics.quantiles, method "inclusive").

Standard library only: it runs with any python3, no venv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RESULTS_DIR = REPO / "bench" / "results"
BLOCK_RE = re.compile(r"(<!-- figures: (?P<name>[a-z0-9-]+)(?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /figures -->)",
                      re.S)
MARKER_RE = re.compile(r"(?P<num>-?\d+(?:\.\d+)?)(?P<unit>[^<\d\n]{0,12}?)\s*<!-- bench: (?P<case>\S+) "
                       r"(?P<runtime>\S+) (?P<stat>\S+) -->")
NO_RESULTS = ("_No bench results file yet: `sudo ./bench/run` writes one into bench/results/; then "
              "`python3 docs/figures.py --write` fills this in._")
FIRST = "labtui"  # the runtime every ratio is taken against


# ---- the results file ---------------------------------------------------------------------------

@dataclass
class Entry:
    """One runtime in one case: its samples or precomputed statistics, or why it did not run."""

    samples: list[float] = field(default_factory=list)
    unit: str = "ms"
    stats: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Case:
    name: str
    unit: str = "ms"
    title: str = ""
    runtimes: dict[str, Entry] = field(default_factory=dict)
    lower_is_better: bool = True  # times and memory; a case may say otherwise (`lower_is_better`)


@dataclass
class Results:
    path: Path
    host: dict
    cases: dict[str, Case]


def results_path() -> Path | None:
    """Where the results file is, or None when there is none yet."""
    env = os.environ.get("LABTUI_BENCH_RESULTS")
    if env:
        return Path(env) if Path(env).is_file() else None
    latest = RESULTS_DIR / "latest.json"
    if latest.is_file():
        return latest
    found = sorted(RESULTS_DIR.glob("*.json")) if RESULTS_DIR.is_dir() else []
    return found[-1] if found else None


HOST_KEYS = ("kernel", "cpu", "cpus", "cpu_count", "memory", "cgroups", "cgroup_layout", "cgroup", "os",
             "date", "started", "finished", "commit", "labtui_commit", "hostname", "quick", "command")
META_KEYS = {"case", "name", "id", "title", "description", "unit", "runtimes", "results", "skipped", "note",
             "notes", "order", "kind", "what", "lower_is_better"}


def load_results(path: Path) -> Results:
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    host = dict(raw.get("host") or raw.get("machine") or {})
    for key in HOST_KEYS:
        if key in raw and not isinstance(raw[key], (dict, list)):
            host.setdefault(key, raw[key])
    cases: dict[str, Case] = {}
    for name, item in _named(raw.get("cases", raw.get("results", {})), ("case", "name", "id")):
        cases[name] = _case(name, item)
    for rt, reason in (raw.get("skipped") or raw.get("unavailable") or {}).items() \
            if isinstance(raw.get("skipped") or raw.get("unavailable"), dict) else []:
        for case in cases.values():
            case.runtimes.setdefault(rt, Entry(skipped=str(reason), unit=case.unit))
    return Results(Path(path), host, cases)


def _named(items, keys: tuple[str, ...]):
    """(name, item) from a mapping, or from a list of objects naming themselves by one of keys."""
    if isinstance(items, dict):
        yield from items.items()
        return
    for i, item in enumerate(items or []):
        name = next((item[k] for k in keys if isinstance(item, dict) and item.get(k)), None)
        yield str(name if name is not None else i), item


def _case(name: str, item) -> Case:
    if not isinstance(item, dict):
        raise ValueError(f"case {name}: expected an object")
    unit = str(item.get("unit") or "ms")
    case = Case(name, unit, str(item.get("title") or item.get("description") or ""),
                lower_is_better=item.get("lower_is_better", True) is not False)
    runtimes = item.get("runtimes", item.get("results"))
    if runtimes is None:
        runtimes = {k: v for k, v in item.items() if k not in META_KEYS and isinstance(v, (dict, list))}
    for rt, raw in _named(runtimes, ("runtime", "name")):
        case.runtimes[rt] = _entry(raw, unit)
    skipped = item.get("skipped")
    if isinstance(skipped, dict):
        for rt, reason in skipped.items():
            case.runtimes.setdefault(rt, Entry(skipped=str(reason), unit=unit))
    return case


SAMPLE_KEYS = (("samples_ms", "ms"), ("samples_s", "s"), ("samples_us", "us"), ("samples", None), ("values", None))


def _entry(raw, unit: str) -> Entry:
    if isinstance(raw, list):
        return Entry([float(x) for x in raw if _is_num(x)], unit)
    if not isinstance(raw, dict):
        return Entry(skipped=str(raw), unit=unit)
    e = Entry(unit=str(raw.get("unit") or unit))
    for key, u in SAMPLE_KEYS:
        if isinstance(raw.get(key), list):
            e.samples = [float(x) for x in raw[key] if _is_num(x)]
            e.unit = u or e.unit
            break
    e.stats = {k: float(v) for k, v in raw.items() if _is_num(v) and not isinstance(v, bool)}
    reason = raw.get("skipped") or raw.get("error") or raw.get("reason")
    if reason and not e.samples and not e.stats:
        e.skipped = str(reason)
    elif not e.samples and not e.stats:
        e.skipped = "no samples"
    return e


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---- statistics -----------------------------------------------------------------------------------

UNIT_FACTORS = {"s": 1e3, "ms": 1.0, "us": 1e-3, "ns": 1e-6,  # to ms
                "b": 1 / 1048576, "bytes": 1 / 1048576, "kib": 1 / 1024, "kb": 1 / 1024, "mib": 1.0, "mb": 1.0,
                "gib": 1024.0, "gb": 1024.0}
TIME_UNITS = {"s", "ms", "us", "ns"}
ALIASES = {"p25": "q1", "p50": "median", "p75": "q3", "avg": "mean", "count": "n"}


def stat(entry: Entry, name: str) -> float:
    """A statistic of an entry: given in the file (its exact name), else computed from the
    samples; a unit suffix (`median_ms`, `median_mib`) converts from the entry's unit."""
    if entry.skipped:
        raise LookupError(f"not run: {entry.skipped}")
    if name in entry.stats:
        return entry.stats[name]
    base, _, suffix = name.rpartition("_")
    if not base or suffix.lower() not in UNIT_FACTORS:
        base, suffix = name, ""
    base = ALIASES.get(base, base)
    value = None
    for given in (base, f"{base}_{entry.unit}"):
        if given in entry.stats:
            value = entry.stats[given]
            break
    if value is None:
        value = _computed(entry.samples, base)
    return value * _factor(entry.unit, suffix) if suffix else value


def _factor(have: str, want: str) -> float:
    h, w = have.lower(), want.lower()
    if h == w or h not in UNIT_FACTORS or w not in UNIT_FACTORS or (h in TIME_UNITS) != (w in TIME_UNITS):
        return 1.0
    return UNIT_FACTORS[h] / UNIT_FACTORS[w]


def _computed(samples: list[float], base: str) -> float:
    if not samples:
        raise LookupError("no samples")
    if base == "n":
        return float(len(samples))
    if base in ("q1", "q3"):
        if len(samples) < 2:
            return samples[0]
        q = statistics.quantiles(samples, n=4, method="inclusive")
        return q[0] if base == "q1" else q[2]
    fn = {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max,
          "stdev": lambda s: statistics.stdev(s) if len(s) > 1 else 0.0}.get(base)
    if fn is None:
        raise LookupError(f"unknown statistic {base!r}")
    return float(fn(samples))


def value_of(results: Results, case: str, runtime: str, name: str) -> float:
    """What an inline marker names: one runtime's statistic, or `A/B` the ratio of two."""
    c = results.cases.get(case)
    if c is None:
        raise LookupError(f"no case {case!r} in {results.path.name} (cases: {', '.join(results.cases)})")
    parts = runtime.split("/")
    vals = []
    for rt in parts:
        if rt not in c.runtimes:
            raise LookupError(f"case {case}: no runtime {rt!r} (runtimes: {', '.join(c.runtimes)})")
        vals.append(stat(c.runtimes[rt], name))
    if len(vals) == 1:
        return vals[0]
    if len(vals) != 2 or vals[1] == 0:
        raise LookupError(f"bad ratio {runtime!r}")
    return vals[0] / vals[1]


def check_markers(text: str, results: Results) -> list[str]:
    """Every inline figure that does not match the results file, as a message."""
    bad = []
    for m in MARKER_RE.finditer(text):
        shown = m.group("num")
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        try:
            want = value_of(results, m.group("case"), m.group("runtime"), m.group("stat"))
        except LookupError as e:
            bad.append(f"{m.group(0)!r}: {e}")
            continue
        if abs(float(shown) - want) > 0.5 * 10 ** -decimals + 1e-9:
            bad.append(f"{m.group(0)!r}: the results say {want:.{decimals + 2}f}")
    return bad


def markers(text: str) -> list[str]:
    return [m.group(0) for m in MARKER_RE.finditer(text)]


# ---- rendering: the bench blocks ------------------------------------------------------------------

def fmt(v: float) -> str:
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _rt_order(case: Case) -> list[str]:
    return sorted(case.runtimes, key=lambda rt: (rt != FIRST, list(case.runtimes).index(rt)))


def render_bench_machine(results: Results | None) -> str:
    if results is None:
        return NO_RESULTS
    h = results.host
    rows = [("results file", f"`{_rel(results.path)}`")]
    for label, keys in (("kernel", ("kernel",)), ("CPU", ("cpu",)), ("CPUs", ("cpus", "cpu_count")),
                        ("memory", ("memory",)), ("cgroup layout", ("cgroup_layout", "cgroups", "cgroup")),
                        ("OS", ("os",)), ("date", ("date", "started", "finished")),
                        ("labtui commit", ("labtui_commit", "commit")), ("command", ("command",))):
        v = next((h[k] for k in keys if h.get(k) not in (None, "")), None)
        if v is not None:
            rows.append((label, f"`{v}`" if label == "command" else str(v)))
    return "| | |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows).rstrip("\n")


def render_bench_cases(results: Results | None) -> str:
    if results is None:
        return NO_RESULTS
    out = ["| case | runtime | median | quartiles | n | labtui ÷ runtime |", "|---|---|---|---|---|---|"]
    for case in results.cases.values():
        first = True
        for rt in _rt_order(case):
            e = case.runtimes[rt]
            label = f"`{case.name}` ({case.unit})" if first else ""
            first = False
            if e.skipped:
                out.append(f"| {label} | {rt} | not run: {_cell(e.skipped)} | | | |")
                continue
            med = _try(e, "median", case.unit)
            q1, q3 = _try(e, "q1", case.unit), _try(e, "q3", case.unit)
            n = _try(e, "n")
            ratio = ""
            lab = case.runtimes.get(FIRST)
            if lab is not None and not lab.skipped and med:
                lab_med = _try(lab, "median", case.unit)
                ratio = f"{lab_med / med:.2f}x" if lab_med is not None else ""
            quart = f"{fmt(q1)}–{fmt(q3)}" if q1 is not None and q3 is not None else ""
            out.append(f"| {label} | {rt} | {fmt(med) if med is not None else ''} | {quart} | "
                       f"{int(n) if n is not None else ''} | {ratio} |")
    return "\n".join(out)


def losses(results: Results) -> list[tuple[str, str, float, float, str]]:
    """(case, peer, labtui's median, the peer's, unit) wherever labtui's median is the worse one:
    the higher, or the lower in a case whose file says `"lower_is_better": false`."""
    out = []
    for case in results.cases.values():
        lab = case.runtimes.get(FIRST)
        if lab is None or lab.skipped:
            continue
        lm = _try(lab, "median", case.unit)
        for rt in _rt_order(case):
            e = case.runtimes[rt]
            if rt == FIRST or e.skipped:
                continue
            pm = _try(e, "median", case.unit)
            if lm is not None and pm is not None and (lm > pm if case.lower_is_better else lm < pm):
                out.append((case.name, rt, lm, pm, case.unit))
    return out


def render_bench_losses(results: Results | None) -> str:
    if results is None:
        return NO_RESULTS
    rows = losses(results)
    if not rows:
        return "labtui's median is at least as good as every peer's in every case of this results file."
    out = ["| case | peer | labtui | peer | labtui is behind by |", "|---|---|---|---|---|"]
    for case, rt, lm, pm, unit in rows:
        out.append(f"| `{case}` | {rt} | {fmt(lm)} {unit} | {fmt(pm)} {unit} | "
                   f"{fmt(abs(lm - pm))} {unit} ({lm / pm:.2f}x) |")
    return "\n".join(out)


def _try(e: Entry, name: str, unit: str | None = None) -> float | None:
    """A statistic, in `unit` (the case's) when the entry's samples are in another."""
    if unit and unit.lower() != e.unit.lower() and unit.lower() in UNIT_FACTORS and name != "n":
        name = f"{name}_{unit}"
    try:
        return stat(e, name)
    except (LookupError, statistics.StatisticsError):
        return None


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


# ---- rendering: lines of code -------------------------------------------------------------------

PARTS = [  # (label, path prefix, suffixes): first match wins
    ("engine/ (the runtime)", "engine/", (".py",)),
    ("labtui/cli/ (the command line)", "labtui/cli/", (".py",)),
    ("labtui/common/", "labtui/common/", (".py",)),
    ("labtui/launcher/ (launcher.c, the warm helper)", "labtui/launcher/", (".py", ".c")),
    ("labtui/tui/ (the app)", "labtui/tui/", (".py", ".tcss")),
    ("lessons/*.py, core/, probes/ (checks, grading)", "lessons/", (".py",)),
    ("lessons/<id>/ (the lessons: toml, Markdown)", "lessons/", (".toml", ".md")),
    ("tests/", "tests/", (".py", ".sh")),
    ("bench/", "bench/", (".py",)),
    ("scripts/", "scripts/", ("",)),
]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def count_lines(text: str, suffix: str) -> tuple[int, int]:
    """(lines, code lines): code lines are those neither blank nor only a comment."""
    lines = text.splitlines()
    code = 0
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if suffix in (".py", ".sh", ".toml", "") and s.startswith("#"):
            continue
        if suffix in (".c", ".tcss") and s.startswith(("//", "/*", "*")):
            continue
        code += 1
    return len(lines), code


def loc(rev: str = "HEAD") -> tuple[str, list[tuple[str, int, int, int]]]:
    """The commit and, per part, (label, files, lines, code lines), counted from git (not the
    working tree), so a count names exactly the code it was taken from."""
    commit = _git("rev-parse", "--short=12", f"{rev}^{{commit}}").strip()
    files = [f for f in _git("ls-tree", "-r", "--name-only", commit).splitlines() if f]
    totals: dict[str, list[int]] = {label: [0, 0, 0] for label, _, _ in PARTS}
    wanted: list[tuple[str, str, str]] = []
    for f in files:
        for label, prefix, suffixes in PARTS:
            suffix = Path(f).suffix
            if f.startswith(prefix) and (suffix in suffixes or "" in suffixes):
                wanted.append((label, f, suffix))
                break
    if wanted:
        blobs = _cat_files(commit, [f for _, f, _ in wanted])
        for (label, _f, suffix), text in zip(wanted, blobs, strict=True):
            lines, code = count_lines(text, suffix)
            t = totals[label]
            t[0] += 1
            t[1] += lines
            t[2] += code
    return commit, [(label, *totals[label]) for label, _, _ in PARTS]


def _cat_files(commit: str, paths: list[str]) -> list[str]:
    data = "".join(f"{commit}:{p}\n" for p in paths)
    out = subprocess.run(["git", "-C", str(REPO), "cat-file", "--batch"], input=data.encode(), check=True,
                         capture_output=True).stdout
    texts, i = [], 0
    for _ in paths:
        nl = out.index(b"\n", i)
        size = int(out[i:nl].split()[2])
        texts.append(out[nl + 1:nl + 1 + size].decode("utf-8", "replace"))
        i = nl + 1 + size + 1
    return texts


def render_loc(rev: str = "HEAD") -> str:
    commit, rows = loc(rev)
    out = [f"Counted at commit `{commit}` by `python3 docs/figures.py loc --at {commit}` (code lines: neither "
           "blank nor only a comment; docstrings count as code).", "",
           "| part | files | lines | code lines |", "|---|---|---|---|"]
    for label, files, lines, code in rows:
        out.append(f"| {label} | {files} | {lines} | {code} |")
    runtime = [r for r in rows if not r[0].startswith(("tests/", "bench/", "scripts/", "lessons/<id>"))]
    out.append(f"| **labtui itself** (engine, labtui, lessons code) | {sum(r[1] for r in runtime)} | "
               f"{sum(r[2] for r in runtime)} | {sum(r[3] for r in runtime)} |")
    return "\n".join(out)


# ---- the blocks in the documents ------------------------------------------------------------------

def render(name: str, args: str, results: Results | None) -> str:
    if name == "bench-machine":
        return render_bench_machine(results)
    if name == "bench-cases":
        return render_bench_cases(results)
    if name == "bench-losses":
        return render_bench_losses(results)
    if name == "loc":
        at = dict(a.split("=", 1) for a in args.split() if "=" in a).get("at", "HEAD")
        return render_loc(at)
    raise ValueError(f"unknown figures block {name!r}")


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(name, args, body) of every generated block of a document."""
    return [(m.group("name"), m.group("args").strip(), m.group("body")) for m in BLOCK_RE.finditer(text)]


def rewrite(text: str, results: Results | None) -> str:
    def one(m: re.Match) -> str:
        return m.group(1) + render(m.group("name"), m.group("args"), results) + "\n" + m.group(5)

    return BLOCK_RE.sub(one, text)


def stale(text: str, results: Results | None) -> list[str]:
    """The names of the blocks of a document whose text is not what they would be rendered as."""
    return [m.group("name") for m in BLOCK_RE.finditer(text)
            if m.group("body") != render(m.group("name"), m.group("args"), results) + "\n"]


def documents() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", choices=["loc"], help="print only the line counts")
    ap.add_argument("--at", default="HEAD", help="with loc: the commit to count (default HEAD)")
    ap.add_argument("--results", help="the bench results file (default: see above)")
    ap.add_argument("--write", action="store_true", help="rewrite the blocks in docs/*.md")
    ap.add_argument("--check", action="store_true", help="exit 1 when a block is out of date")
    args = ap.parse_args(argv)
    if args.what == "loc":
        print(render_loc(args.at))
        return 0
    path = Path(args.results) if args.results else results_path()
    results = load_results(path) if path else None
    bad: list[str] = []
    for doc in documents():
        text = doc.read_text()
        if args.write:
            new = rewrite(text, results)
            if new != text:
                doc.write_text(new)
                print(f"rewrote {doc.relative_to(REPO)}")
        elif args.check:
            bad += [f"{doc.relative_to(REPO)}: block {name}" for name in stale(text, results)]
        else:
            for name, a, _ in blocks(text):
                print(f"== {doc.relative_to(REPO)}: {name} {a}".rstrip())
                print(render(name, a, results))
        if results is not None:
            bad += [f"{doc.relative_to(REPO)}: {b}" for b in check_markers(doc.read_text(), results)]
    for b in bad:
        print(f"out of date: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
