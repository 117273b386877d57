"""bench/run's results file (bench/results.py): the statistics, the ratios, the format's checks,
and the chart rendered from a file (bench/chart.py)."""

from __future__ import annotations

import json
import statistics

import pytest

from bench import chart
from bench import results as R


def doc_with(*cases: dict) -> dict:
    return {"format": R.FORMAT, "date": "2026-12-07T04:00:00Z", "quick": True, "duration_s": 10.0, "argv": [],
            "host": {"kernel": "6.1.0", "cpu": "Test CPU", "cpus": 2, "cgroup": {"kind": "hybrid"}},
            "labtui": {"commit": "0" * 40, "dirty": False},
            "peers": {"labtui": {"status": "ran", "version": "x"}, "runc": {"status": "ran", "version": "1.1"},
                      "crun": {"status": "unavailable", "reason": "cgroups in hybrid mode not supported"}},
            "cases": list(cases)}


def start_case() -> dict:
    return R.case_record("start-true", "run true", "ms",
                         {"labtui": [30, 10, 20, 40], "labtui:first": [60, 60], "runc": [10, 10, 10]},
                         failures={"runc": 1}, skipped={"bwrap": "not installed"}, notes={"labtui": "warm"})


# ---- statistics ------------------------------------------------------------------------------------


def test_quartiles_inclusive_like_numpy():
    # numpy.percentile([1, 2, 3, 4], [25, 75]) == [1.75, 3.25]
    assert R.quartiles([4, 1, 3, 2]) == (1.75, 3.25)
    assert R.quartiles([1, 2, 3, 4, 5]) == (2.0, 4.0)


def test_one_sample_is_its_own_quartiles():
    assert R.quartiles([7.5]) == (7.5, 7.5)
    assert R.summarize([7.5]) == {"n": 1, "median": 7.5, "q1": 7.5, "q3": 7.5, "min": 7.5, "max": 7.5}


def test_no_samples():
    assert R.summarize([]) == {"n": 0}
    with pytest.raises(ValueError):
        R.quartiles([])


def test_summary_median_min_max():
    xs = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    s = R.summarize(xs)
    assert s["n"] == 6
    assert s["median"] == statistics.median(xs) == 4.0
    assert (s["min"], s["max"]) == (1.0, 9.0)
    assert s["q1"] <= s["median"] <= s["q3"]


def test_ratio():
    assert R.ratio(30, 10) == 3
    assert R.ratio(None, 10) is None
    assert R.ratio(10, 0) is None  # runc keeps no process per container: no ratio, not infinity
    assert R.ratio(float("nan"), 1) is None


def test_case_record_ratios_are_labtui_variants_over_peers():
    rec = start_case()
    assert rec["summary"]["labtui"]["median"] == 25.0
    assert rec["ratios"] == {"labtui/runc": 2.5, "labtui:first/runc": 6.0}
    assert rec["runtimes"]["runc"]["failures"] == 1
    assert rec["runtimes"]["labtui"]["note"] == "warm"
    assert rec["skipped"] == {"bwrap": "not installed"}


def test_case_record_rejects_unknown_unit_and_direction():
    with pytest.raises(ValueError):
        R.case_record("x", "x", "parsecs", {})
    with pytest.raises(ValueError):
        R.case_record("x", "x", "ms", {}, better="sideways")


def test_small_ratios_keep_two_significant_digits():
    assert R.fmt_ratio(2.5) == "2.50x"
    assert R.fmt_ratio(0.0041) == "0.0041x"


def test_is_labtui():
    assert R.is_labtui("labtui") and R.is_labtui("labtui:tick")
    assert not R.is_labtui("labtuix") and not R.is_labtui("runc")


# ---- the file format -----------------------------------------------------------------------------


def test_valid_document_round_trips(tmp_path):
    doc = doc_with(start_case())
    assert R.validate(doc) == []
    path = tmp_path / "r.json"
    R.dump(doc, str(path))
    back = R.load(str(path))
    assert back == json.loads(json.dumps(doc))
    assert R.case(back, "start-true")["ratios"]["labtui/runc"] == 2.5


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(format="other/9"), "format"),
    (lambda d: d.pop("host"), "host"),
    (lambda d: d["host"].pop("kernel"), "host.kernel"),
    (lambda d: d["labtui"].pop("commit"), "labtui.commit"),
    (lambda d: d["peers"]["crun"].pop("reason"), "without a reason"),
    (lambda d: d["peers"]["runc"].update(status="maybe"), "status"),
    (lambda d: d["cases"].append(dict(d["cases"][0])), "twice"),
    (lambda d: d["cases"][0].update(unit="parsecs"), "unit"),
    (lambda d: d["cases"][0]["runtimes"]["runc"].update(samples=[1, "x"]), "finite numbers"),
    (lambda d: d["cases"][0]["runtimes"]["runc"].update(samples=[float("inf")]), "finite numbers"),
    (lambda d: d["cases"][0]["runtimes"]["runc"]["samples"].append(1000), "summary does not match"),
    (lambda d: d["cases"][0]["ratios"].update({"labtui/runc": 1.0}), "ratios do not match"),
    (lambda d: d["cases"][0]["skipped"].update(bwrap=""), "without a reason"),
])
def test_damaged_documents_are_refused(tmp_path, damage, message):
    doc = doc_with(start_case())
    damage(doc)
    errs = R.validate(doc)
    assert any(message in e for e in errs), errs
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError):
        R.load(str(path))
    with pytest.raises(ValueError):
        R.dump(doc, str(tmp_path / "out.json"))


def test_not_an_object():
    assert R.validate([]) == ["not a JSON object"]


def test_new_document_has_the_host_and_commit(tmp_path):
    doc = R.new_document(str(tmp_path), quick=True, argv=["--quick"])  # not a git tree: commit unknown
    assert doc["format"] == R.FORMAT and doc["quick"] is True
    assert doc["labtui"]["commit"] == "unknown"
    for key in ("kernel", "cpu", "cpus", "cgroup", "memory_kb"):
        assert key in doc["host"]
    doc["duration_s"] = 1.0
    assert R.validate(doc) == []


# ---- printing and the chart ------------------------------------------------------------------------


def test_case_table_shows_medians_quartiles_ratios_and_reasons():
    text = "\n".join(R.case_table(start_case()))
    assert "labtui/runc 2.50x" in text and "labtui:first/runc 6.00x" in text
    assert "q1-q3" in text and "1 failed" in text
    assert "bwrap" in text and "not installed" in text


def test_chart_renders_main_ratios_without_colour():
    mem = R.case_record("idle-memory-50", "idle", "kB", {"labtui": [9000.0], "runc": [0.0], "podman": [600.0]})
    doc = doc_with(start_case(), mem)
    text = chart.render(doc, source="bench/results/x.json")
    assert "\x1b[" not in text
    assert "start-true / runc" in text and "idle-memory-50 / podman" in text
    assert "idle-memory-50 / runc" not in text  # runc keeps nothing per container: no ratio to draw
    assert "2.50x" in text and "15.00x" in text
    assert "crun: could not run here" in text
    assert chart.main_ratios(doc) == [("start-true / runc", 2.5), ("idle-memory-50 / podman", 15.0)]
