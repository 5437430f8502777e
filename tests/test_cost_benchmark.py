"""benchmarks/cost.py: the wave policies' call and rollout counts, and a small side-by-side run of two modes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rap_hf.demo.reference_model import reference_model_available

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cost  # noqa: E402

needs_model = pytest.mark.skipif(
    not reference_model_available(), reason="reference model not shipped in this checkout"
)


@needs_model
@pytest.mark.parametrize("batch_size", [8, 32])
def test_wave_policies_trade_rollouts_for_calls(batch_size):
    result = cost.simulate_waves(batch_size)
    full, settled, two, one = (result[k] for k in ("full", "until_settled", "two_waves", "one_wave"))
    # one wave: no more calls than a full run, rollouts only for the rows that can pass CDE
    assert one["calls"] == full["calls"] and one["rollouts"] < full["rollouts"]
    assert one["rollouts"] % 5 == 0  # all M or nothing per row
    # two waves: fewer rollouts, more calls; waves until settled: fewest rollouts, most calls
    assert settled["rollouts"] <= two["rollouts"] < one["rollouts"]
    assert one["calls"] < two["calls"] <= settled["calls"]


@needs_model
def test_cost_runs_the_modes_side_by_side(tmp_path):
    out = tmp_path / "cost.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "cost.py"), "--rows", "8", "--chunks", "2"]
    command += ["--modes", "today", "cheap_1wave", "--max-new-tokens", "16", "--json", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    today, cheap = result["modes"]["today"], result["modes"]["cheap_1wave"]
    assert today["ratio_to_today"] == 1.0 and cheap["ratio_to_today"] > 0
    assert today["text_rollouts"] == 8 * 5 and cheap["text_rollouts"] % 5 == 0
    assert cheap["ms_per_sample"]["ace_pass"] < today["ms_per_sample"]["ace_pass"]
    assert cheap["settings"]["decisive_waves"] == 1
    assert "cheap_1wave" in run.stdout and "ratio" in run.stdout
