"""The benchmark command works from the command line and writes valid results (a smoke test, not a benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_quick_cold_start_benchmark_writes_json_and_markdown(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "cold_start", "--out", str(out)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads((out / "latest.json").read_text())
    assert payload["meta"]["quick"] is True and payload["meta"]["command"].startswith("python -m benchmarks --quick")
    [result] = payload["results"]
    assert result["name"] == "cold_start" and "error" not in result["details"]
    details = result["details"]
    assert details["floor"]["wall_s"] > 0
    for variant in ("stagger_0", "stagger_default"):
        assert 0 < details[variant]["all_ready_s"] < 60
        assert details[variant]["bots"] == 4
    assert isinstance(result["met"], bool)
    table = (out / "latest.md").read_text()
    assert "| 1 | Fleet cold start |" in table
    assert not (ROOT / "benchmarks" / "RESULTS.md").exists() or "--quick" not in (
        ROOT / "benchmarks" / "RESULTS.md").read_text()  # a quick run never replaces the committed table


def test_unknown_benchmark_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown benchmark" in done.stderr


@pytest.mark.parametrize("value", ["-1", "ten", "nan"])
def test_soak_minutes_must_be_a_number_of_minutes(value):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "fork", "--soak-minutes", value], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--soak-minutes" in done.stderr and "minutes from 0 to 1440" in done.stderr


def test_quick_snapshot_benchmark_reports_its_figures(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "snapshots", "--out", str(out)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = json.loads((out / "latest.json").read_text())["results"]
    assert result["name"] == "snapshots" and "error" not in result["details"]
    details = result["details"]
    guilds = details["guilds"]
    assert details["first"]["writes"] == guilds and details["snapshot_bytes"] > 0  # every player got its file
    steady = details["steady"]
    assert steady["passes"] > 0 and steady["changes"] > 0 and 0 < steady["writes"] <= steady["changes"]
    for figure in (steady["cpu_pct_core"], steady["longest_pass_ms"], details["burst"]["pass_ms"],
                   details["previous"]["cpu_pct_core"], details["previous"]["longest_pass_ms"]):
        assert isinstance(figure, float) and figure >= 0
    # Every guild changed at once is written (a busy machine may add a drift rewrite the sampler made meanwhile).
    assert guilds <= details["burst"]["writes"] <= 2 * guilds
    assert isinstance(result["met"], bool)
    assert "| 1 | Snapshot cost |" in (out / "latest.md").read_text()
