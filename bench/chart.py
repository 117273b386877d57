"""The main ratios of a results file as a text chart (plotext): `bench/run --chart FILE`.

One horizontal bar per (case, peer): labtui's median over the peer's, on a log2 scale so that
2x and 1/2x are as long. Left of 1x labtui takes less (time, memory) than the peer; right, more.
The chart is plain text (no colour codes), written to docs/bench-chart.txt with the figures under
it, so that it reads in any editor and diffs line by line.
"""

from __future__ import annotations

import math
import re

import plotext as plt

from bench import results as R

MAIN = ("start-true", "start-bridge", "exec", "image-import", "idle-memory-1", "idle-memory-50",
        "parallel-start-50", "stats-tick-50")
WIDTH = 100


def main_ratios(doc: dict) -> list[tuple[str, float]]:
    """(label, ratio) of labtui (its warm, everyday variant) against each peer, in MAIN's order."""
    out = []
    for name in MAIN:
        rec = R.case(doc, name)
        if not rec:
            continue
        for key, r in rec["ratios"].items():
            lab, peer = key.split("/", 1)
            if lab == "labtui":
                out.append((f"{name} / {peer}", r))
    return out


def render(doc: dict, source: str = "") -> str:
    pairs = main_ratios(doc)
    h = doc["host"]
    head = (f"labtui / peer, median over median (below 1: labtui takes less; above 1: more). "
            f"{source or 'results'}: {doc['date']}, labtui {doc['labtui']['commit'][:12]}, kernel {h['kernel']}, "
            f"{h['cpus']} x {h['cpu']}, cgroup {h['cgroup'].get('kind')}"
            + (" (--quick: not final)" if doc.get("quick") else ""))
    if not pairs:
        return head + "\n(no ratios in this results file)\n"
    # log2 of the ratio: 1/2x and 2x as far from 1x, bars to the left where labtui takes less.
    labels = [p[0] for p in pairs][::-1]  # plotext draws the first bar at the bottom
    logs = [math.log2(max(p[1], 1e-3)) for p in pairs][::-1]
    lo, hi = math.floor(min(0.0, *logs)), math.ceil(max(0.0, *logs))
    ticks = list(range(lo, hi + 1))
    plt.clear_figure()
    plt.theme("clear")
    plt.limitsize(False, False)  # not the terminal's size: this goes to a file
    plt.plotsize(WIDTH, len(pairs) * 2 + 5)
    plt.bar(labels, logs, orientation="horizontal", width=0.5)
    plt.ylim(0.5, len(pairs) + 0.5)  # one bar per two rows, on its label's row
    plt.xticks(ticks, [_times(t) for t in ticks])
    plt.xlim(lo - 0.2, hi + 0.2)
    plt.title("labtui / peer (log scale; 1x = the same)")
    chart = re.sub(r"\x1b\[[0-9;]*m", "", plt.build())  # the "clear" theme still writes resets
    plt.clear_figure()
    lines = [_wrap(head), "", chart.rstrip(), "", "figures:"]
    for (label, r) in pairs:
        name, peer = label.split(" / ")
        rec = R.case(doc, name)
        lm, pm = rec["summary"]["labtui"]["median"], rec["summary"][peer]["median"]
        unit = rec["unit"]
        lines.append(f"  {label:34} {R.fmt_ratio(r):>8}   labtui {R.fmt(lm, unit):>11}   {peer} {R.fmt(pm, unit)}")
    unavailable = {n: p.get("reason", "") for n, p in doc["peers"].items() if p["status"] == "unavailable"}
    for n, why in unavailable.items():
        lines.append(f"  {n}: could not run here: {why[:200]}")
    return "\n".join(lines) + "\n"


def _times(power: int) -> str:
    return f"{2 ** power}x" if power >= 0 else f"1/{2 ** -power}x"


def _wrap(text: str, width: int = WIDTH) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return "\n".join(lines)
