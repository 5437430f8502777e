"""Scoring runs that cannot mix (issue 15, attack 8): one run per output directory (a lock naming the other
run), the run's fingerprint in every batch marker and checked at the merge, a retrained model at the same path
or a moved Hub branch never resumed into old scores, the online trainer's state written atomically, and a main
process that stops with a clear error when another process of the launch dies, instead of waiting forever."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch

from rap_hf import RAPConfig
from rap_hf.cli import main
from rap_hf.columns import score_features
from rap_hf.demo.data import tiny_synthetic
from rap_hf.scoring.checkpointing import (
    CHECKPOINT_DIR,
    LOCK_FILE,
    SCORING_METADATA,
    CheckpointMismatchError,
    OutputLock,
    OutputLockedError,
    ScoreCheckpoint,
    model_identity,
)
from rap_hf.scoring.distributed import ProcessLostError, score_to_disk
from rap_hf.scoring.processes import ProcessContext

ROOT = Path(__file__).resolve().parents[1]
SCORING = {"num_rollouts": 2, "max_new_tokens": 8, "batch_size": 2}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: the machine's cores are shared with a scoring subprocess in one of the tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny"
    tiny_synthetic(8, seed=4).save_to_disk(str(path))
    return path


def _score_argv(model_dir, data_dir, output, *extra: str) -> list[str]:
    flags = ["--num_rollouts", "2", "--max_new_tokens", "8"]
    return [
        "score",
        "--model",
        str(model_dir),
        "--dataset",
        str(data_dir),
        "--output",
        str(output),
        *flags,
        *extra,
    ]


def test_a_second_run_on_the_same_output_is_refused(tiny_model_dir, data_dir, tmp_path, capsys):
    """Two `rap-hf score` runs on one --output (seed 0, then seed 1 while the first runs): the second stops
    at once, naming the first; the first finishes with its own rows only."""
    output = tmp_path / "scores"
    first = subprocess.Popen(
        [sys.executable, "-m", "rap_hf", *_score_argv(tiny_model_dir, data_dir, output, "--batch_size", "1")],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        # The first run is under way once it holds the lock (without a lock: once it has planned its batches).
        while not (output / LOCK_FILE).exists() and not (output / CHECKPOINT_DIR / "manifest.json").exists():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first run did not start within 120 s"
            time.sleep(0.02)
        assert main(_score_argv(tiny_model_dir, data_dir, output, "--batch_size", "2", "--seed", "1")) == 2
        err = capsys.readouterr().err
        assert f"{output} is in use by another scoring run (pid {first.pid} on {socket.gethostname()}" in err
        assert "choose another --output" in err
        assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    metadata = json.loads((output / SCORING_METADATA).read_text())
    assert metadata["rap_config"]["seed"] == 0 and metadata["rows"] == 8
    assert not (output / LOCK_FILE).exists()  # released (and removed) by the run that held it


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path):
    output = tmp_path / "scores"
    with OutputLock(output):
        with pytest.raises(
            OutputLockedError, match=rf"pid {os.getpid()} on {socket.gethostname()}, started 2"
        ):
            OutputLock(output).acquire()
    assert not (output / LOCK_FILE).exists()
    with OutputLock(output):  # free again
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointMismatchError, match="is not a directory"):
        OutputLock(tmp_path / "file").acquire()


def test_batches_of_another_run_are_never_merged(tiny_model_dir, data_dir, tmp_path):
    """Rows another run wrote into the checkpoint folder (its marker carries its fingerprint) stop the merge."""
    data = datasets.load_from_disk(str(data_dir)).select(range(4))
    output = tmp_path / "scores"
    config = RAPConfig(**SCORING)
    score_to_disk(str(tiny_model_dir), data, output, config, keep_checkpoints=True)
    metadata = json.loads((output / SCORING_METADATA).read_text())
    markers = sorted((output / CHECKPOINT_DIR).glob("scores-*.json"))
    foreign = json.loads(markers[1].read_text())
    foreign["fingerprint"] = "f" * 32  # as a concurrent run with seed 1 writes it
    markers[1].write_text(json.dumps(foreign))
    checkpoint = ScoreCheckpoint(
        output,
        metadata["fingerprint"],
        metadata["fingerprint_inputs"],
        score_features(config.keep_completions),
    )
    with pytest.raises(CheckpointMismatchError, match=r"rows \[2, 4\) written by another scoring run"):
        checkpoint.load_scores()


def test_a_retrained_model_at_the_same_path_does_not_resume(tiny_model_dir, data_dir, tmp_path):
    from rap_hf.demo.tiny_models import save_tiny_vlm

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = datasets.load_from_disk(str(data_dir)).select(range(2))
    output = tmp_path / "scores"
    score_to_disk(str(model), data, output, RAPConfig(**SCORING))
    sizes = {p.name: p.stat().st_size for p in model.iterdir()}
    save_tiny_vlm(model, seed=1)  # retrained: same architecture, file names and sizes; other weights
    assert {p.name: p.stat().st_size for p in model.iterdir()} == sizes
    with pytest.raises(CheckpointMismatchError, match=r"model\.files \(changed: model\.safetensors\)"):
        score_to_disk(str(model), data, output, RAPConfig(**SCORING))


def test_a_hub_model_is_pinned_to_its_commit(monkeypatch, tmp_path, caplog):
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    commit = "a" * 40
    monkeypatch.setattr(
        HfApi, "model_info", lambda self, repo_id, revision=None, **kw: SimpleNamespace(sha=commit)
    )
    assert model_identity("org/model") == {"name": "org/model", "revision": None, "commit": commit}
    assert model_identity("org/model", revision="b" * 40)["commit"] == "b" * 40  # a commit is kept as given

    def offline(self, repo_id, **kwargs):
        raise OfflineModeIsEnabled("offline")

    monkeypatch.setattr(HfApi, "model_info", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    # Offline, cached: the commit the cached main branch points to.
    repo = tmp_path / "models--org--model"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert model_identity("org/model")["commit"] == commit
    # Offline, not cached: unpinned, and said so.
    with caplog.at_level("WARNING", logger="rap_hf"):
        assert model_identity("org/other")["commit"] is None
    assert "cannot pin the Hub model org/other to a commit" in caplog.text


def test_a_dead_worker_fails_the_main_process_after_the_timeout(
    tiny_model_dir, data_dir, tmp_path, monkeypatch
):
    """The main process of a 2-process launch whose other process never shows up (died, its machine gone,
    and no launcher ends the group): it scores its share, waits `wait_timeout` seconds, then stops clearly."""
    monkeypatch.setattr(ProcessContext, "broadcast", lambda self, value: value)  # no process group needed
    data = datasets.load_from_disk(str(data_dir)).select(range(4))
    output = tmp_path / "scores"
    started = time.monotonic()
    with pytest.raises(
        ProcessLostError, match=r"process 1 never reported .* rows \[2, 4\) will not be scored"
    ):
        score_to_disk(
            str(tiny_model_dir),
            data,
            output,
            RAPConfig(**SCORING),
            context=ProcessContext(rank=0, world_size=2),
            wait_timeout=2,
        )
    assert time.monotonic() - started < 60
    assert len(list((output / CHECKPOINT_DIR).glob("scores-*.json"))) == 1  # its own batch, kept for a resume
    assert not (output / LOCK_FILE).exists()


def test_the_online_state_is_written_atomically(tmp_path, monkeypatch):
    from rap_hf.training.trainer import ONLINE_STATE_FILE, RAPGRPOTrainer

    trainer = SimpleNamespace(
        online_state=lambda: {"selector": {"step": 2}}, args=SimpleNamespace(should_save=True)
    )
    path = RAPGRPOTrainer.save_online_state(trainer, tmp_path)
    assert json.loads(path.read_text()) == {"selector": {"step": 2}}

    # The next save dies before its data is on disk (a full disk, a kill): the previous state stays whole.
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    trainer.online_state = lambda: {"selector": {"step": 3}}
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        RAPGRPOTrainer.save_online_state(trainer, tmp_path)
    assert json.loads(path.read_text()) == {"selector": {"step": 2}}
    assert [p.name for p in tmp_path.iterdir()] == [ONLINE_STATE_FILE]  # no temporary file left behind


def test_a_failed_worker_is_reported_at_once(tmp_path, monkeypatch):
    """A process that fails says so in its last heartbeat: the main process stops without waiting out the
    timeout, with that process's error."""
    from rap_hf.scoring.checkpointing import write_heartbeat
    from rap_hf.scoring.distributed import _ExclusiveRun

    monkeypatch.setattr(ProcessContext, "broadcast", lambda self, value: value)
    pending = SimpleNamespace(missing_ranges=lambda: [(4, 8)], dir=tmp_path / CHECKPOINT_DIR)
    with _ExclusiveRun(tmp_path, ProcessContext(rank=0, world_size=2), wait_timeout=600) as run:
        write_heartbeat(tmp_path, 1, "an earlier run", 7, "failed", "stale: must be ignored")
        run.wait_timeout = 0.0  # no waiting: the stale heartbeat alone must not count as a report
        with pytest.raises(ProcessLostError, match="process 1 never reported"):
            run.wait_for_others(pending)
        run.wait_timeout = 600.0
        write_heartbeat(tmp_path, 1, run.run_id, 3, "failed", "OutOfMemoryError: CUDA out of memory")
        started = time.monotonic()
        with pytest.raises(
            ProcessLostError, match=r"process 1 \(pid .*\) failed: OutOfMemoryError.*Rows \[4, 8\)"
        ):
            run.wait_for_others(pending)
        assert time.monotonic() - started < 5
    assert not list(tmp_path.glob(".rap_heartbeat-*")) and not (tmp_path / LOCK_FILE).exists()
