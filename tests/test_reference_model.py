"""The shipped reference model loads offline and behaves; its training script runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rap_hf.reference_model import reference_model_available, reference_model_path

ROOT = Path(__file__).resolve().parents[1]
needs_model = pytest.mark.skipif(
    not reference_model_available(), reason="reference model not shipped in this checkout"
)


@needs_model
def test_shipped_model_is_small_and_loads_offline():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = reference_model_path()
    assert sum(f.stat().st_size for f in path.iterdir() if f.is_file()) <= 50 * 1024 * 1024
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.model_type == "qwen2_5_vl" and processor.chat_template
    assert 1e6 <= sum(p.numel() for p in model.parameters()) <= 2e7


@needs_model
def test_answers_text_leak_questions_with_and_without_the_image():
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.visual_arith import visual_arith

    leak = (
        visual_arith("test", 80, seed=0)
        .filter(lambda k: k == "text_leak", input_columns="kind")
        .select(range(8))
    )
    config = RAPConfig(num_rollouts=1, temperature=0.0, max_new_tokens=48, compute_ace=False)
    scored = RAPDataFilter(str(reference_model_path()), config=config).score(leak)
    # greedy answers: most leak questions are answered from the text alone, image or not
    assert sum(scored["rap_acc_mm"]) >= 6 and sum(scored["rap_acc_text"]) >= 6
    assert "\\boxed{" in scored["rap_completions_mm"][0][0]


def test_training_script_runs_a_few_steps(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "trainers" / "train_reference_model.py"),
        "--output_dir",
        str(tmp_path / "ref"),
        "--max_steps",
        "2",
        "--train_rows",
        "16",
        "--per_device_train_batch_size",
        "4",
        "--eval_rows",
        "4",
        "--hidden_size",
        "32",
        "--num_attention_heads",
        "2",
        "--num_key_value_heads",
        "1",
        "--vision_hidden_size",
        "16",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads((tmp_path / "ref" / "training_log.json").read_text())
    assert log["log_history"][-1]["step"] == 2
    assert (tmp_path / "ref" / "greedy_accuracy.json").exists()
    assert "with image" in result.stdout
