"""DeepSpeed ZeRO-3 for real, on the CPU: DeepSpeed's CPU accelerator, 2 processes over gloo.

Scoring, sharded in lock-step and with gathered weights, gives exactly the columns of a one-process run, and a
SIGKILL mid-run followed by the same command gives them too. `ProcessContext` reads rank and world size right
under each launcher. GRPO training with ZeRO-3 runs a few steps with online selection, saves a checkpoint and
resumes from it. Needs the `deepspeed` extra (CI installs it); each launch takes 15-50 s on 2 cores.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import datasets
import pytest
import yaml

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'rap-hf[deepspeed]')")

import test_distributed as one_process  # noqa: E402

from rap_hf.accelerate_configs import resolve_accelerate_config  # noqa: E402
from rap_hf.scoring.checkpointing import CHECKPOINT_DIR, SCORING_METADATA  # noqa: E402
from rap_hf.scoring.processes import ProcessContext  # noqa: E402

# The one-process reference and the helpers of the plain multi-process tests, shared with them.
ROOT, _env, _score_argv, assert_same_dataset = (
    one_process.ROOT,
    one_process._env,
    one_process._score_argv,
    one_process.assert_same_dataset,
)
data_dir, reference, one_thread = one_process.data_dir, one_process.reference, one_process.one_thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _zero3_command(*args: str) -> list[str]:
    """``accelerate launch`` with the shipped zero3 config on 2 CPU processes, running ``python -m rap_hf``."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(resolve_accelerate_config("zero3")),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "rap_hf",
        *args,
    ]


def _kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torch's elastic agent puts its workers in their own
    process groups, so killing the launcher's group alone leaves them running)."""
    import psutil

    launcher = psutil.Process(pid)
    for process in [*launcher.children(recursive=True), launcher]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def _run(command: list[str], timeout: int = 600) -> None:
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-6000:]


@pytest.mark.parametrize("mode", ["sharded", "gathered"])
def test_zero3_scoring_on_cpu_equals_one_process(mode, tiny_model_dir, data_dir, reference, tmp_path):
    output = tmp_path / "scores"
    extra = ["--zero3_gather_params"] if mode == "gathered" else []
    _run(_zero3_command(*_score_argv(tiny_model_dir, data_dir, output, *extra)))
    metadata = json.loads((output / SCORING_METADATA).read_text())
    # Both processes took part: before, each believed it was alone and scored every row.
    assert metadata["num_processes"] == 2
    assert_same_dataset(reference, datasets.load_from_disk(str(output)))


def test_zero3_killed_run_resumes_to_the_same_dataset(tiny_model_dir, data_dir, reference, tmp_path):
    output = tmp_path / "scores"
    command = _zero3_command(*_score_argv(tiny_model_dir, data_dir, output))
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not list((output / CHECKPOINT_DIR).glob("scores-*.json")):
            assert process.poll() is None, "the launch ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.01)
        _kill_tree(process.pid)  # the launcher and both workers, with no cleanup, like a lost node
    finally:
        if process.poll() is None:
            _kill_tree(process.pid)
        process.wait()
    assert not (output / SCORING_METADATA).exists(), "killed too late: the run had finished"

    _run(_zero3_command(*_score_argv(tiny_model_dir, data_dir, output)))
    metadata = json.loads((output / SCORING_METADATA).read_text())
    assert metadata["resumed_rows"] > 0 and metadata["num_processes"] == 2
    assert_same_dataset(reference, datasets.load_from_disk(str(output)))


def test_process_context_of_a_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    context = ProcessContext.from_environment()
    assert (context.rank, context.world_size, context.is_main) == (0, 1, True)


def test_process_context_refuses_a_launcher_that_miscounts(monkeypatch):
    # What accelerate reported under DeepSpeed on a machine without GPUs: one process, in a launch of two.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="every process would score every row"):
        ProcessContext.from_state(0, 1, 0, None)


def test_zero3_grpo_training_on_cpu_saves_and_resumes(tmp_path):
    smoke = yaml.safe_load((ROOT / "trainers" / "configs" / "cpu_smoke.yaml").read_text())
    # No use_cpu: accelerate would then set DeepSpeed aside; RAPGRPOConfig names the gloo backend itself.
    smoke.pop("use_cpu")
    smoke.update(
        output_dir=str(tmp_path / "run"), save_strategy="steps", save_steps=2, max_steps=3, rap_online=True
    )
    config = tmp_path / "zero3_smoke.yaml"
    config.write_text(yaml.safe_dump(smoke))
    train = ["train", "--config", str(config), "--accelerate_config", "zero3", "--num_processes", "2"]
    train += ["--main_process_port", str(_free_port()), "--launch_args", "--mixed_precision no"]
    _run([sys.executable, "-m", "rap_hf", *train])

    run = tmp_path / "run"
    checkpoint = run / "checkpoint-2"
    # A DeepSpeed checkpoint of two processes (sharded states, one RNG state each) plus the selector's state.
    assert (checkpoint / "global_step2").is_dir() and (checkpoint / "latest").exists()
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert (checkpoint / "rap_online_state.json").exists()
    first = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]

    smoke.update(max_steps=4, resume_from_checkpoint=str(checkpoint))
    config.write_text(yaml.safe_dump(smoke))
    train[-3] = str(_free_port())
    _run([sys.executable, "-m", "rap_hf", *train])
    resumed = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]

    def online(history: list[dict], step: int) -> dict:
        entry = next(e for e in history if e.get("step") == step and "rap/active_pool" in e)
        return {k: v for k, v in entry.items() if k.startswith("rap/")}

    # Step 3 after resuming from step 2 sees the selector exactly as the uninterrupted run did.
    assert online(resumed, 3) == online(first, 3)
    assert online(resumed, 4)["rap/active_pool"] <= online(resumed, 3)["rap/active_pool"]
