"""The results file of `bench/run` and the statistics printed from it (pure: no root, no kernel).

A results file is one JSON document:

    {
      "format": "labtui-bench/1",
      "date": "2026-12-07T04:30:00Z",          # when the run started (UTC)
      "quick": true,                          # --quick: fewer rounds, figures not final
      "duration_s": 312.4,                    # the whole run, peers' set-up included
      "argv": ["--quick"],
      "host": {"kernel": ..., "cpu": ..., "cpus": 2, "memory_kb": ..., "os": ...,
               "cgroup": {"kind": "hybrid", "v1": {...}, "v2_mount": ..., "v2_controllers": [...]},
               "load_before": [0.3, 0.5, 0.7]},
      "labtui": {"commit": "ec5f4f8...", "dirty": false},
      "peers": {"runc": {"status": "ran", "version": "1.1.5", "detail": ...},
                "crun": {"status": "unavailable", "reason": "cgroups in hybrid mode not supported ..."}},
      "cases": [
        {"case": "start-true", "title": "...", "unit": "ms", "better": "lower",
         "how": "what each runtime ran",
         "runtimes": {"labtui": {"samples": [25.1, ...], "failures": 0, "note": "..."},
                      "runc": {"samples": [...], "failures": 0}},
         "skipped": {"bwrap": "why this runtime has no figure here"},
         "summary": {"labtui": {"n": 30, "median": ..., "q1": ..., "q3": ..., "min": ..., "max": ...}},
         "ratios": {"labtui/runc": 2.31},      # labtui's median over the peer's: > 1 = labtui has more
         "extra": {...}}                         # case-specific details (counts, wall times, ...)
      ]
    }

Runtimes whose name is "labtui" or starts with "labtui:" (labtui:first, labtui:tick) are labtui's
own variants; every other one is a peer. A ratio is computed for each labtui variant against each
peer that has samples in the same case.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable

FORMAT = "labtui-bench/1"
UNITS = ("ms", "s", "kB", "Hz", "%", "count")
BETTER = ("lower", "higher")


# ---- statistics ----------------------------------------------------------------------------------


def quartiles(xs: Iterable[float]) -> tuple[float, float]:
    """The first and third quartiles (inclusive method: the same as numpy's default linear one).
    One sample is its own quartiles."""
    xs = sorted(xs)
    if not xs:
        raise ValueError("no samples")
    if len(xs) == 1:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def summarize(xs: Iterable[float]) -> dict:
    """n, median, quartiles, min and max of the samples ({"n": 0} when there are none)."""
    xs = [float(x) for x in xs]
    if not xs:
        return {"n": 0}
    q1, q3 = quartiles(xs)
    return {"n": len(xs), "median": statistics.median(xs), "q1": q1, "q3": q3, "min": min(xs), "max": max(xs)}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0 (a peer that keeps no process per container)."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def is_labtui(runtime: str) -> bool:
    return runtime == "labtui" or runtime.startswith("labtui:")


def case_record(case: str, title: str, unit: str, samples: dict[str, list[float]], *,
                better: str = "lower", how: str = "", failures: dict[str, int] | None = None,
                notes: dict[str, str] | None = None, skipped: dict[str, str] | None = None,
                extra: dict | None = None) -> dict:
    """One case of the results file, with its summaries and labtui's ratios to each peer."""
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not one of {UNITS}")
    if better not in BETTER:
        raise ValueError(f"better {better!r} is not one of {BETTER}")
    failures = failures or {}
    notes = notes or {}
    runtimes: dict[str, dict] = {}
    for rt, xs in samples.items():
        entry: dict = {"samples": [round(float(x), 4) for x in xs], "failures": int(failures.get(rt, 0))}
        if rt in notes:
            entry["note"] = notes[rt]
        runtimes[rt] = entry
    rec = {"case": case, "title": title, "unit": unit, "better": better, "how": how, "runtimes": runtimes,
           "skipped": dict(skipped or {}), "extra": dict(extra or {})}
    return finish_case(rec)


def finish_case(rec: dict) -> dict:
    """(Re)compute a case's summaries and ratios from its samples."""
    rec["summary"] = {rt: summarize(v["samples"]) for rt, v in rec["runtimes"].items()}
    medians = {rt: s.get("median") for rt, s in rec["summary"].items()}
    ratios = {}
    for lab in (rt for rt in medians if is_labtui(rt)):
        for peer in (rt for rt in medians if not is_labtui(rt)):
            r = ratio(medians[lab], medians[peer])
            if r is not None:
                ratios[f"{lab}/{peer}"] = round(r, 4)
    rec["ratios"] = ratios
    return rec


# ---- the document --------------------------------------------------------------------------------


def host_facts() -> dict:
    """Kernel, CPU, memory, distribution, cgroup layout and load of this machine."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1])
    except OSError:
        pass
    distro = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        import importlib

        layout = importlib.import_module("engine.cgroups.detect").detect().to_dict()
    except Exception as e:  # noqa: BLE001 - the facts are informative; never fail the run for them
        layout = {"kind": "unknown", "error": str(e)}
    return {"kernel": platform.release(), "machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(),
            "memory_kb": mem, "os": distro, "cgroup": layout, "load_before": list(os.getloadavg()),
            "python": platform.python_version()}


def labtui_commit(repo: str) -> dict:
    def git(*args: str) -> str:
        p = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def new_document(repo: str, quick: bool, argv: list[str]) -> dict:
    return {"format": FORMAT, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": quick,
            "duration_s": None, "argv": list(argv), "host": host_facts(), "labtui": labtui_commit(repo),
            "peers": {}, "cases": []}


def validate(doc: object) -> list[str]:
    """What is wrong with a results document (empty: nothing)."""
    errs: list[str] = []
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    if doc.get("format") != FORMAT:
        errs.append(f"format is {doc.get('format')!r}, not {FORMAT!r}")
    for key, kind in (("date", str), ("host", dict), ("labtui", dict), ("peers", dict), ("cases", list)):
        if not isinstance(doc.get(key), kind):
            errs.append(f"{key}: missing or not a {kind.__name__}")
    host = doc.get("host") if isinstance(doc.get("host"), dict) else {}
    for key in ("kernel", "cpu", "cgroup"):
        if key not in host:
            errs.append(f"host.{key}: missing")
    if isinstance(doc.get("labtui"), dict) and "commit" not in doc["labtui"]:
        errs.append("labtui.commit: missing")
    for name, peer in (doc.get("peers") or {}).items() if isinstance(doc.get("peers"), dict) else ():
        if not isinstance(peer, dict) or peer.get("status") not in ("ran", "unavailable", "not asked"):
            errs.append(f"peers.{name}: status must be ran, unavailable or not asked")
        elif peer["status"] == "unavailable" and not peer.get("reason"):
            errs.append(f"peers.{name}: unavailable without a reason")
    seen = set()
    for i, case in enumerate(doc.get("cases") or [] if isinstance(doc.get("cases"), list) else []):
        where = f"cases[{i}]"
        if not isinstance(case, dict):
            errs.append(f"{where}: not an object")
            continue
        name = case.get("case")
        where = f"cases[{i}] ({name})"
        if not isinstance(name, str) or not name:
            errs.append(f"{where}: no case name")
        elif name in seen:
            errs.append(f"{where}: case named twice")
        seen.add(name)
        if case.get("unit") not in UNITS:
            errs.append(f"{where}: unit {case.get('unit')!r} is not one of {UNITS}")
        if case.get("better") not in BETTER:
            errs.append(f"{where}: better must be lower or higher")
        runtimes = case.get("runtimes")
        if not isinstance(runtimes, dict):
            errs.append(f"{where}: runtimes missing")
            continue
        numbers = True
        for rt, entry in runtimes.items():
            xs = entry.get("samples") if isinstance(entry, dict) else None
            if not isinstance(xs, list) or not all(isinstance(x, int | float) and math.isfinite(x) for x in xs):
                errs.append(f"{where}: runtimes.{rt}.samples must be a list of finite numbers")
                numbers = False
        if not isinstance(case.get("skipped", {}), dict):
            errs.append(f"{where}: skipped must map a runtime to its reason")
        elif any(not isinstance(v, str) or not v for v in case.get("skipped", {}).values()):
            errs.append(f"{where}: a skipped runtime without a reason")
        if numbers and isinstance(case.get("summary"), dict):
            fresh = finish_case(json.loads(json.dumps(case)))
            if _rounded(fresh["summary"]) != _rounded(case["summary"]):
                errs.append(f"{where}: summary does not match the samples")
            if _rounded(fresh["ratios"]) != _rounded(case.get("ratios", {})):
                errs.append(f"{where}: ratios do not match the samples")
    return errs


def _rounded(obj: object) -> object:
    if isinstance(obj, float):
        return round(obj, 3)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def dump(doc: dict, path: str) -> None:
    errs = validate(doc)
    if errs:
        raise ValueError("results document is not valid: " + "; ".join(errs))
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def load(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    errs = validate(doc)
    if errs:
        raise ValueError(f"{path}: " + "; ".join(errs))
    return doc


def case(doc: dict, name: str) -> dict | None:
    return next((c for c in doc.get("cases", []) if c.get("case") == name), None)


# ---- printing ------------------------------------------------------------------------------------


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        s = f"{x:,.0f}"
    elif abs(x) >= 100:
        s = f"{x:.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return f"{s} {unit}".rstrip()


def fmt_ratio(r: float) -> str:
    """Two decimals, or two significant digits below 0.1 (0.0041x, not 0.00x)."""
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def case_table(rec: dict) -> list[str]:
    """The lines printed for one case: each runtime's median and quartiles, and the ratios."""
    unit = rec["unit"]
    out = [f"== {rec['case']}: {rec['title']} ({unit}, {rec['better']} is better)"]
    labs = [rt for rt in rec["runtimes"] if is_labtui(rt)]
    for rt, entry in rec["runtimes"].items():
        s = rec["summary"][rt]
        fails = f"  {entry['failures']} failed" if entry.get("failures") else ""
        if not s["n"]:
            out.append(f"  {rt:18} no samples{fails}")
            continue
        rs = ""
        if not is_labtui(rt) and labs:
            parts = [f"{lab}/{rt} {fmt_ratio(rec['ratios'][f'{lab}/{rt}'])}" for lab in labs
                     if f"{lab}/{rt}" in rec["ratios"]]
            rs = "   " + ", ".join(parts) if parts else ""
        out.append(f"  {rt:18} median {fmt(s['median']):>8}  (q1-q3 {fmt(s['q1'])}-{fmt(s['q3'])}, "
                   f"n={s['n']}){fails}{rs}")
    for rt, why in rec.get("skipped", {}).items():
        out.append(f"  {rt:18} -- {why}")
    return out
