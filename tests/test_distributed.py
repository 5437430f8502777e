"""Scoring across processes and resuming (CPU, gloo): 2 processes == 1 process row for row, kill -9 and resume
== uninterrupted, corrupt or partial batches redone, another fingerprint refused, the ZeRO-3 lock-step
schedule keeps processes' model calls identical. Everything is compared with an in-process
`RAPDataFilter.score`, the one-process reference. DeepSpeed ZeRO-3 itself: tests/test_zero3_cpu.py."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import torch

from rap_hf import RAPConfig, RAPDataFilter
from rap_hf.cli import main
from rap_hf.demo.data import tiny_synthetic
from rap_hf.scoring.checkpointing import CHECKPOINT_DIR, SCORING_METADATA, CheckpointMismatchError, complement
from rap_hf.scoring.distributed import score_to_disk, split_rows

ROOT = Path(__file__).resolve().parents[1]
SCORING = {"num_rollouts": 2, "max_new_tokens": 8, "batch_size": 2}
SCORING_FLAGS = ["--num_rollouts", "2", "--max_new_tokens", "8", "--batch_size", "2"]


def _env() -> dict[str, str]:
    # One thread per process, like the in-process reference below: CPU kernels may round differently with
    # another thread count, and the comparisons are exact.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Score in this process with one thread, like every launched process (exact comparisons need the same
    kernels), and because two threads fighting other processes for 2 cores run 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(model_dir, data: datasets.Dataset) -> datasets.Dataset:
    return RAPDataFilter(str(model_dir), config=RAPConfig(**SCORING)).score(data)


def assert_same_dataset(expected: datasets.Dataset, actual: datasets.Dataset) -> None:
    """Same columns, types, row order and values (NaN == NaN; images compared as bytes)."""
    assert actual.column_names == expected.column_names
    assert actual.features == expected.features
    expected = expected.cast_column("image", datasets.Image(decode=False))
    actual = actual.cast_column("image", datasets.Image(decode=False))
    for column in expected.column_names:
        for i, (x, y) in enumerate(zip(expected[column], actual[column], strict=True)):
            if column == "image":
                x, y = (x or {}).get("bytes"), (y or {}).get("bytes")
            nan = isinstance(x, float) and math.isnan(x) and isinstance(y, float) and math.isnan(y)
            assert nan or x == y, (column, i, x, y)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny"
    tiny_synthetic(8, seed=4).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def reference(tiny_model_dir, data_dir) -> datasets.Dataset:
    return _reference(tiny_model_dir, datasets.load_from_disk(str(data_dir)))


def _score_argv(model_dir, data_dir, output, *extra) -> list[str]:
    return ["score", "--model", str(model_dir), "--dataset", str(data_dir), "--output", str(output)] + [
        *SCORING_FLAGS,
        *extra,
    ]


# ------------------------------------------------------------------------------------------ pure helpers


def test_split_rows_is_contiguous_balanced_and_complete():
    assert split_rows([(0, 10)], 2, 0) == [(0, 5)] and split_rows([(0, 10)], 2, 1) == [(5, 10)]
    pending = [(2, 4), (6, 7), (9, 15)]  # what a restart may find missing
    shares = [split_rows(pending, 3, r) for r in range(3)]
    assert [sum(b - a for a, b in s) for s in shares] == [3, 3, 3]
    assert sorted(r for s in shares for r in s) == [(2, 4), (6, 7), (9, 12), (12, 15)]
    assert split_rows([(0, 1)], 4, 0) == [] and split_rows([(0, 1)], 4, 3) == [(0, 1)]
    assert complement([(0, 2), (4, 6)], 8) == [(2, 4), (6, 8)] and complement([], 3) == [(0, 3)]


def test_zero3_inference_config_fills_every_auto_value():
    from accelerate.utils import DeepSpeedPlugin

    from rap_hf.scoring.zero3 import inference_deepspeed_config

    plugin = DeepSpeedPlugin(
        zero_stage=3, zero3_init_flag=True
    )  # what `accelerate launch` builds from zero3.yaml
    plugin.set_mixed_precision("bf16")
    user = {**plugin.deepspeed_config, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
    user["zero_optimization"] = {**user["zero_optimization"], "reduce_bucket_size": "auto"}
    config = inference_deepspeed_config(user, num_processes=8, hidden_size=64, mixed_precision="bf16")
    assert "optimizer" not in config and "auto" not in json.dumps(config)
    assert config["train_batch_size"] == 8 and config["train_micro_batch_size_per_gpu"] == 1
    assert config["zero_optimization"]["reduce_bucket_size"] == 64 * 64 and config["bf16"]["enabled"] is True
    with pytest.raises(ValueError, match="wall_clock_breakdown"):
        inference_deepspeed_config({"wall_clock_breakdown": "auto"}, num_processes=1, hidden_size=None)


# ------------------------------------------------------------------------------------------ processes


@pytest.fixture(scope="module")
def two_process_launch(tiny_model_dir, data_dir, tmp_path_factory):
    """One torchrun launch, 2 processes: `rap-hf score` as a user runs it, then the lock-step schedule."""
    root = tmp_path_factory.mktemp("launch")
    lockstep_data = root / "lockstep-data"
    # 5 rows, batches of 2: process 0 gets rows 0-1 (one batch, row 1 without image: fewer model calls),
    # process 1 gets rows 2-4 (two batches), so process 0 must idle through one batch.
    tiny_synthetic(5, seed=5).map(
        lambda row, i: {"image": None if i == 1 else row["image"]}, with_indices=True
    ).save_to_disk(str(lockstep_data))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port on localhost: parallel test runs do not collide
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "distributed_worker.py"),
        str(tiny_model_dir),
        str(data_dir),
        str(lockstep_data),
        str(root),
    ]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root, lockstep_data, result.stdout


def test_two_processes_equal_one_process(two_process_launch, reference):
    root, _, stdout = two_process_launch
    assert "on 2 process(es)" in stdout
    metadata = json.loads((root / "cli" / SCORING_METADATA).read_text())
    assert metadata["num_processes"] == 2 and metadata["rows"] == 8
    assert_same_dataset(reference, datasets.load_from_disk(str(root / "cli")))
    assert not (root / "cli" / CHECKPOINT_DIR).exists()  # removed after the merge


def test_lockstep_schedule_keeps_processes_in_step(two_process_launch, tiny_model_dir):
    root, lockstep_data, _ = two_process_launch
    stats = [json.loads((root / f"lockstep-rank{r}.json").read_text()) for r in (0, 1)]
    # Every parameterised module call was checked against the other process (the worker fails otherwise).
    assert stats[0]["module_calls"] == stats[1]["module_calls"] > 0
    assert stats[0]["lockstep_filler_generations"] > 0 and stats[0]["lockstep_filler_forwards"] > 0
    # The schedule changes which calls are made, never a score.
    expected = _reference(tiny_model_dir, datasets.load_from_disk(str(lockstep_data)))
    assert_same_dataset(expected, datasets.load_from_disk(str(root / "lockstep")))
    assert "missing image" in datasets.load_from_disk(str(root / "lockstep"))["rap_error"][1]


# ------------------------------------------------------------------------------------------ resume


def test_killed_run_resumes_to_the_same_dataset(tiny_model_dir, data_dir, reference, tmp_path):
    output = tmp_path / "scores"
    argv = _score_argv(tiny_model_dir, data_dir, output)
    process = subprocess.Popen(
        [sys.executable, "-m", "rap_hf", *argv],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((output / CHECKPOINT_DIR).glob("scores-*.json")):
            assert process.poll() is None, "the scoring process ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # like a preempted node: no cleanup, no atexit
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (output / SCORING_METADATA).exists(), "killed too late: the run had finished"
    done = len(list((output / CHECKPOINT_DIR).glob("scores-*.json")))

    assert main(argv) == 0  # the same command, again
    metadata = json.loads((output / SCORING_METADATA).read_text())
    assert metadata["resumed_rows"] == 2 * done > 0 and metadata["rows"] == 8
    assert_same_dataset(reference, datasets.load_from_disk(str(output)))


def test_corrupt_or_partial_batches_are_redone(tiny_model_dir, data_dir, reference, tmp_path):
    data = datasets.load_from_disk(str(data_dir))
    output = tmp_path / "scores"
    score_to_disk(str(tiny_model_dir), data, output, RAPConfig(**SCORING), keep_checkpoints=True)
    checkpoint = output / CHECKPOINT_DIR
    batches = sorted(checkpoint.glob("scores-*.arrow"))
    assert len(batches) == 4
    # A killed run, three ways: a truncated data file, a data file whose marker was never written, and a
    # temporary file that was never renamed.
    batches[1].write_bytes(batches[1].read_bytes()[:200])
    batches[3].with_suffix(".json").unlink()
    (checkpoint / f".{batches[0].name}.999.tmp").write_bytes(b"half a file")
    (output / SCORING_METADATA).unlink()

    result = score_to_disk(str(tiny_model_dir), data, output, RAPConfig(**SCORING))
    assert result.metadata["redone_batches"] == [[2, 4]]
    assert result.metadata["resumed_rows"] == 4  # batches 0 and 2 were reused, 1 and 3 scored again
    assert_same_dataset(reference, datasets.load_from_disk(str(output)))


def test_other_fingerprint_is_refused_unless_overwrite(tiny_model_dir, data_dir, tmp_path, capsys):
    output = tmp_path / "scores"
    argv = _score_argv(tiny_model_dir, data_dir, output, "--max_rows", "2")
    assert main(argv) == 0
    assert main(argv) == 0  # same settings: already complete, nothing to do
    assert "already scored" in capsys.readouterr().out
    assert main(argv + ["--lambda_c", "0.2"]) == 0  # a selection-only field is not part of the fingerprint

    assert main(argv + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "different run" in err and "rap_config.seed (0 -> 1)" in err and "--overwrite" in err
    assert main(_score_argv(tiny_model_dir, data_dir, output, "--max_rows", "3")) == 2  # other rows
    assert "dataset_fingerprint" in capsys.readouterr().err

    # An unfinished run (checkpoints, no final dataset) is protected the same way.
    data = datasets.load_from_disk(str(data_dir)).select(range(2))
    unfinished = tmp_path / "unfinished"
    score_to_disk(str(tiny_model_dir), data, unfinished, RAPConfig(**SCORING), keep_checkpoints=True)
    (unfinished / SCORING_METADATA).unlink()
    with pytest.raises(CheckpointMismatchError, match="unfinished scoring run"):
        score_to_disk(str(tiny_model_dir), data, unfinished, RAPConfig(**SCORING, temperature=0.5))

    assert main(argv + ["--seed", "1", "--overwrite", "true"]) == 0
    assert json.loads((output / SCORING_METADATA).read_text())["rap_config"]["seed"] == 1


def test_foreign_output_directory_is_refused(tiny_model_dir, data_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a rap-hf output")
    assert main(_score_argv(tiny_model_dir, data_dir, tmp_path, "--max_rows", "2")) == 2
    assert "not written by `rap-hf score`" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").exists()


# ------------------------------------------------------------------------------------------ alternatives


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("RAP_SLOW_TESTS") != "1",
    reason="num_proc=2 spawns two fresh interpreters that import torch/transformers and load the model "
    "(about 60-85 s on a loaded 2-core machine); set RAP_SLOW_TESTS=1 to run it",
)
def test_num_proc_workers_equal_one_process(tiny_model_dir, data_dir, reference, tmp_path):
    output = tmp_path / "scores"
    assert main(_score_argv(tiny_model_dir, data_dir, output, "--num_proc", "2")) == 0
    assert json.loads((output / SCORING_METADATA).read_text())["num_processes"] == 2
    assert_same_dataset(reference, datasets.load_from_disk(str(output)))
