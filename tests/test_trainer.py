"""RAP-GRPO training: the online selector (pure), the sampler contract, data preparation, the trainer on a tiny
model (CPU), the shipped configs, and the `rap-hf train` launch path.

Two end-to-end launches (a subprocess `rap-hf train` and a 2-process gloo run) take ~40 s each on a 2-core
machine; they are marked slow and run only with RAP_SLOW_TESTS=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from rap_hf.training.online import OnlineSelector, build_reserve

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "trainers" / "configs" / "cpu_smoke.yaml"
GPU8_CONFIG = REPO / "trainers" / "configs" / "qwen2_5_vl_7b_8gpu_zero3.yaml"
slow = pytest.mark.skipif(os.environ.get("RAP_SLOW_TESTS") != "1", reason="slow: set RAP_SLOW_TESTS=1")


# --------------------------------------------------------------------------------------------------
# OnlineSelector: scripted rewards
# --------------------------------------------------------------------------------------------------


def _observe(selector: OnlineSelector, outcome: dict[int, list[float]]):
    """Feed one generation batch: sample -> its group's rewards (rollouts interleaved, as after a gather)."""
    indices, rewards = [], []
    width = max(len(v) for v in outcome.values())
    for g in range(width):
        for index, values in outcome.items():
            if g < len(values):
                indices.append(index)
                rewards.append(values[g])
    return selector.observe(indices, rewards)


def test_retire_after_n_consecutive_all_correct_visits():
    sel = OnlineSelector([0, 1, 2, 3], [10, 11], retire_after=3, min_pool=2)
    for visit in range(2):
        update = _observe(sel, {0: [1, 1, 1], 1: [1, 0, 1]})
        assert update.retired == [] and sel.is_active(0), visit
    # a mixed group resets the streak
    _observe(sel, {0: [1, 0, 1]})
    for _ in range(2):
        assert _observe(sel, {0: [1, 1, 1]}).retired == []
    update = _observe(sel, {0: [1, 1, 1]})
    assert update.retired == [0] and update.replaced == [(0, 10)]
    assert not sel.is_active(0) and sel.is_active(10) and sel.active_pool == [1, 2, 3, 10]
    assert sel.visits(0) == 6 and sel.running_accuracy(0) == pytest.approx((5 + 2 / 3) / 6)
    assert sel.metrics()["rap/retired"] == 1 and sel.metrics()["rap/replaced"] == 1
    assert sel.metrics()["rap/reserve_left"] == 1


def test_all_wrong_retirement_threshold_and_nan_rewards():
    sel = OnlineSelector([0, 1, 2], retire_after=2, min_pool=1)
    _observe(sel, {0: [0, 0], 1: [0, 0], 2: [float("nan"), float("nan")]})
    update = _observe(sel, {0: [0, 0], 1: [0.4, 0.9]})  # 1: below the 1.0 threshold -> wrong as well
    assert update.retired == [0, 1] and sel.active_pool == [2]
    assert sel.visits(2) == 0  # all-NaN group: not a visit
    assert update.batch_difficulty == 1.0

    off = OnlineSelector([0, 1], retire_after=1, retire_all_wrong=False, correct_threshold=0.5)
    assert _observe(off, {0: [0, 0], 1: [0.5, 0.7]}).retired == [1]  # 0.5 >= threshold counts as correct


def test_replacement_order_is_drm_order_and_newcomers_come_first():
    acc_mm = np.array([0.5, 1.0, 0.8, 0.2, 0.0, 0.2, np.nan, 0.6])
    cde = np.array([0.9, 0.0, 0.1, 0.3, 0.4, 0.7, 0.5, 0.1])
    # candidates 1..7: 1 (trivial) 4 (all wrong) 6 (unscored) are not challenging; 5 and 3 tie on acc_mm and
    # the more image-dependent (cde 0.7) comes first
    assert build_reserve(range(1, 8), acc_mm, cde) == [5, 3, 7, 2]

    sel = OnlineSelector([0, 20, 21, 22], [5, 3, 7, 2], retire_after=1, min_pool=2, shuffle=False)
    assert sel.next_chunk(2) == [0, 20]
    update = _observe(sel, {20: [1, 1], 0: [1, 1]})
    assert update.replaced == [(0, 5), (20, 3)]  # ascending sample index takes the reserve in order
    assert sel.next_chunk(2) == [3, 5]  # newcomers are visited before the rest of the pass
    assert sel.next_chunk(2) == [21, 22]


def test_pool_exhaustion_shrinks_to_min_pool_then_blocks():
    sel = OnlineSelector([0, 1, 2, 3, 4], [9], retire_after=1, min_pool=3, shuffle=False)
    update = _observe(sel, {0: [1, 1], 1: [1, 1], 2: [1, 1], 3: [1, 1]})
    assert update.replaced == [(0, 9)]  # the only reserve sample
    assert update.retired == [0, 1, 2]  # then the pool shrinks to min_pool ...
    assert update.blocked == [3]  # ... and no further
    assert sel.active_pool == [3, 4, 9] and sel.metrics()["rap/retire_blocked"] == 1
    # every chunk is still full and distinct
    for _ in range(4):
        chunk = sel.next_chunk(3)
        assert sorted(chunk) == [3, 4, 9]
    with pytest.raises(ValueError, match="fewer than min_pool"):
        OnlineSelector([0, 1], min_pool=3)


def test_passes_visit_every_active_sample_once_and_carry_over():
    sel = OnlineSelector(range(7), shuffle=True, seed=3)
    drawn = [sel.next_chunk(3) for _ in range(7)]  # 21 draws = 3 passes of 7
    assert all(len(set(chunk)) == 3 for chunk in drawn)
    counts = Counter(i for chunk in drawn for i in chunk)
    assert set(counts.values()) == {3}


def test_state_dict_round_trip_through_json():
    a = OnlineSelector(range(8), [20, 21, 22], retire_after=1, min_pool=2, seed=5)
    a.next_chunk(2)
    _observe(a, {a.active_pool[0]: [1, 1]})
    b = OnlineSelector(range(8), [20, 21, 22], retire_after=1, min_pool=2, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.fingerprint() == a.fingerprint()
    assert [b.next_chunk(2) for _ in range(6)] == [a.next_chunk(2) for _ in range(6)]


# --------------------------------------------------------------------------------------------------
# The sampler: RepeatSampler's contract, and identical decisions on 2 simulated processes
# --------------------------------------------------------------------------------------------------


def _check_contract(stream: list[int], batch_size: int, mini: int, repeat: int) -> list[list[int]]:
    """Assert TRL's layout and return the chunks."""
    chunk_len = batch_size * mini
    assert len(stream) % (chunk_len * repeat) == 0
    chunks = []
    for start in range(0, len(stream), chunk_len * repeat):
        block = stream[start : start + chunk_len * repeat]
        reps = [block[r * chunk_len : (r + 1) * chunk_len] for r in range(repeat)]
        assert all(rep == reps[0] for rep in reps)  # the chunk is repeated repeat_count times
        rep = reps[0]
        groups = [rep[i : i + mini] for i in range(0, chunk_len, mini)]
        assert all(len(set(g)) == 1 for g in groups)  # each index mini_repeat_count times in a row
        chunk = [g[0] for g in groups]
        assert len(set(chunk)) == batch_size  # distinct prompts per chunk
        chunks.append(chunk)
    return chunks


def test_sampler_keeps_repeat_sampler_contract():
    from trl.trainer.utils import RepeatSampler

    from rap_hf.training.sampler import OnlineRepeatSampler

    sel = OnlineSelector(range(10), retire_after=1, min_pool=3, seed=0)
    sampler = OnlineRepeatSampler(sel, mini_repeat_count=2, batch_size=3, repeat_count=2)
    reference = RepeatSampler(range(10), mini_repeat_count=2, batch_size=3, repeat_count=2, seed=0)
    assert len(sampler) == len(reference) == len(list(reference))  # same step count as TRL's
    stream, retired_before_chunk = [], []
    for position, index in enumerate(sampler):
        if position % 12 == 0:
            retired_before_chunk.append(set(sel.retired))
        stream.append(index)
        if position % 12 == 11:  # after each chunk (3 prompts x 2 generations x 2 repeats): retire one
            _observe(sel, {index: [1, 1]})
    chunks = _check_contract(stream, batch_size=3, mini=2, repeat=2)
    assert len(chunks) == 3 and len(sel.retired) == 3 and len(sel.active_pool) == 7
    assert all(not set(chunk) & gone for chunk, gone in zip(chunks, retired_before_chunk, strict=True))
    with pytest.raises(ValueError, match="min_pool"):
        OnlineRepeatSampler(sel, mini_repeat_count=2, batch_size=4)


def test_two_processes_take_identical_decisions():
    """Two ranks, each with its own selector and accelerate's batch sharding, one-batch look-ahead like
    accelerate's DataLoaderShard, fed the same gathered rewards: same chunks, full groups, same state."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from rap_hf.training.sampler import OnlineRepeatSampler

    num_generations, per_device, steps_per_generation, world = 2, 2, 2, 2
    generation_batch = per_device * steps_per_generation * world  # 8 completions = 4 prompts
    prompts = generation_batch // num_generations

    def rank_iterator(rank: int, selector: OnlineSelector):
        sampler = OnlineRepeatSampler(
            selector, mini_repeat_count=num_generations, batch_size=prompts, repeat_count=steps_per_generation
        )
        shard = BatchSamplerShard(
            BatchSampler(sampler, per_device * steps_per_generation, drop_last=False),
            num_processes=world,
            process_index=rank,
        )
        iterator = iter(shard)
        pending = next(iterator)
        for batch in iterator:  # yield a batch only once the next one is fetched (DataLoaderShard)
            yield pending
            pending = batch
        yield pending

    # Scripted: even samples are trivial (retire after 2 visits), odd ones are half right.
    def rewards_for(index: int) -> list[float]:
        return [1.0, 1.0] if index % 2 == 0 else [1.0, 0.0]

    selectors = [
        OnlineSelector(range(12), range(12, 20), retire_after=2, min_pool=prompts, seed=7)
        for _ in range(world)
    ]
    for epoch in range(
        4
    ):  # the pool (12 prompts) gives 3 generation batches per epoch; the selector persists
        ranks = [rank_iterator(r, s) for r, s in enumerate(selectors)]
        for step in range(3):
            local = [next(it) for it in ranks]  # each rank's generation batch
            gathered = local[0] + local[1]  # accelerate's gather: rank 0's rows first
            assert sorted(Counter(gathered).values()) == [num_generations] * prompts, (epoch, step)
            indices, rewards = list(gathered), []
            seen: Counter = Counter()
            for i in gathered:
                rewards.append(rewards_for(i)[seen[i]])
                seen[i] += 1
            updates = [s.observe(indices, rewards) for s in selectors]
            assert updates[0] == updates[1]
            assert selectors[0].fingerprint() == selectors[1].fingerprint()
            for _ in range(steps_per_generation - 1):  # the reused repeats of the same chunk
                assert [next(it) for it in ranks] == local
        assert all(next(it, None) is None for it in ranks)  # full chunks only, same length on both ranks
    assert selectors[0].replacements and selectors[0].replacements == selectors[1].replacements


# --------------------------------------------------------------------------------------------------
# Data preparation and reward functions (no model)
# --------------------------------------------------------------------------------------------------


def _scored(n: int = 12, base: Dataset | None = None) -> Dataset:
    """Score columns: even rows image-dependent (cde 0.6, kept), odd rows language-prior (cde 0, rejected)
    with acc_mm 0.2, 0.4, 0.6, 0.8, 1.0, ... (1.0 is not challenging); row 11 failed to score."""
    acc_mm = [0.6 if i % 2 == 0 else round(0.2 * (1 + (i // 2) % 5), 1) for i in range(n)]
    cde = [0.6 if i % 2 == 0 else 0.0 for i in range(n)]
    columns = {
        "rap_acc_mm": acc_mm,
        "rap_acc_text": [a - c for a, c in zip(acc_mm, cde, strict=True)],
        "rap_cde": cde,
        "rap_ace": [0.0] * n,
        "rap_ace_norm": [0.0] * n,
        "rap_error": [None] * (n - 1) + ["rollout failed"],
        "rap_completions_mm": [["x"]] * n,
        "rap_completions_text": [["y"]] * n,
    }
    if base is None:
        base = Dataset.from_dict(
            {"prompt": [f"q{i}" for i in range(n)], "solution": [str(i) for i in range(n)]}
        )
    for name, values in columns.items():
        base = base.add_column(name, values)
    return base


def _config(tmp_path, **kwargs):
    from rap_hf.training.config import RAPGRPOConfig

    defaults = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "num_generations": 2,
    }
    defaults.update(kwargs)
    return RAPGRPOConfig(**defaults)


def test_prepare_training_data_selects_scored_and_builds_reserve(tmp_path):
    from rap_hf.selection import select_cognitive_samples
    from rap_hf.training.trainer import POOL_INDEX_COLUMN, prepare_training_data

    scored = _scored()
    offline = prepare_training_data(scored, _config(tmp_path))
    assert offline.dataset["prompt"] == ["q0", "q2", "q4", "q6", "q8", "q10"]
    assert "rap_completions_mm" not in offline.dataset.column_names
    assert offline.stage_counts["kept"] == 6 and offline.stage_counts["error"] == 1

    online = prepare_training_data(scored, _config(tmp_path, rap_online=True))
    assert online.active == list(range(6))
    # odd rows 1..9 (row 11 is an error); acc_mm 0.2 (rows 1) 0.4 (3) 0.6 (5) 0.8 (7) 1.0 (9, dropped)
    assert [online.source_rows[i] for i in online.reserve] == [1, 3, 5, 7]
    assert online.dataset[POOL_INDEX_COLUMN] == list(range(10))

    # an annotation is trusted as is (no re-selection with this config's thresholds)
    annotated = select_cognitive_samples(scored, _config(tmp_path, rap_lambda_c=-1.0).rap_selection_config())
    assert len(prepare_training_data(annotated, _config(tmp_path)).dataset) == 11

    assert len(prepare_training_data(scored, _config(tmp_path, rap_train_on="all")).dataset) == 12
    plain = Dataset.from_dict({"prompt": ["a", "b"], "solution": ["1", "2"]})
    assert len(prepare_training_data(plain, _config(tmp_path, rap_train_on="as_is")).dataset) == 2
    with pytest.raises(ValueError, match="rap_train_on='as_is'"):
        prepare_training_data(plain, _config(tmp_path))
    with pytest.raises(ValueError, match="rap_train_on"):
        _config(tmp_path, rap_train_on="everything")
    with pytest.raises(ValueError, match="lambda_a|target_ratio"):
        _config(tmp_path, rap_target_ratio=2.0)


def test_reward_functions_accuracy_first_and_weights_checked(tmp_path):
    from rap_hf.rewards import accuracy_reward
    from rap_hf.training.trainer import resolve_reward_funcs

    def extra(completions, **kwargs):
        return [0.0] * len(completions)

    assert resolve_reward_funcs(None, _config(tmp_path)) == [accuracy_reward]
    assert resolve_reward_funcs(extra, _config(tmp_path)) == [accuracy_reward, extra]
    assert resolve_reward_funcs([extra, accuracy_reward], _config(tmp_path)) == [extra, accuracy_reward]
    assert resolve_reward_funcs(extra, _config(tmp_path, rap_accuracy_reward=False)) == [extra]
    with pytest.raises(ValueError, match="give its weight first"):
        resolve_reward_funcs([extra], _config(tmp_path, reward_weights=[1.0]))


# --------------------------------------------------------------------------------------------------
# The trainer on a tiny model
# --------------------------------------------------------------------------------------------------


def _text(completion) -> str:
    return completion if isinstance(completion, str) else str(completion)


def varied_reward(completions, **kwargs):
    """Different completions get different rewards, so GRPO has a non-zero advantage to learn from."""
    return [zlib.crc32(_text(c).encode()) % 1000 / 1000 for c in completions]


def scripted_correct(completions, kind, **kwargs):
    """Visual rows always correct (they saturate), the others half right."""
    return [1.0 if k == "visual" else 0.5 for k in kind]


@pytest.fixture(scope="module")
def scored_vqa():
    from rap_hf.demo.data import tiny_synthetic

    # tiny_synthetic alternates visual (even) and text-leak (odd) rows, as _scored assumes.
    return _scored(12, base=tiny_synthetic(12, seed=0))


def test_trainer_trains_on_selected_subset_and_updates_parameters(tmp_path, tiny_model_dir, scored_vqa):
    import torch

    from rap_hf import RAPGRPOConfig, RAPGRPOTrainer

    args = RAPGRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    trainer = RAPGRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=varied_reward, args=args, train_dataset=scored_vqa
    )
    assert trainer.reward_func_names == ["accuracy_reward", "varied_reward"]
    assert set(trainer.train_dataset["kind"]) == {"visual"} and len(trainer.train_dataset) == 6
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert changed, "no parameter changed"
    assert trainer.state.global_step == 2
    assert trainer.rap_selector is None


def test_trainer_online_retires_and_replaces_from_reserve(tmp_path, tiny_model_dir, scored_vqa):
    from rap_hf import RAPGRPOConfig, RAPGRPOTrainer

    args = RAPGRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        max_steps=3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=3,
        report_to="none",
        rap_online=True,
        rap_retire_after=1,
        rap_retire_all_wrong=False,
        rap_correctness_reward="scripted_correct",
    )
    trainer = RAPGRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=scripted_correct, args=args, train_dataset=scored_vqa
    )
    reserve = trainer.rap_data.reserve
    assert [trainer.rap_data.source_rows[i] for i in reserve] == [1, 3, 5, 7]  # hardest rejected first
    trainer.train()
    selector = trainer.rap_selector
    newcomers = [new for _, new in selector.replacements]
    # every visual (selected) row seen was all-correct -> retired and replaced, in reserve order
    assert len(newcomers) >= 2 and newcomers == reserve[: len(newcomers)]
    assert selector.visits(newcomers[0]) >= 1  # the first newcomers were trained on in the third generation
    logged = [entry for entry in trainer.state.log_history if "rap/replaced" in entry]
    assert len(logged) == 3 and logged[-1]["rap/replaced"] == len(newcomers)
    assert {"rap/active_pool", "rap/retired", "rap/batch_difficulty", "frac_reward_zero_std"} <= set(
        logged[-1]
    )
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / "rap_online_state.json").read_text())
    assert saved["retired_source_rows"] == [trainer.rap_data.source_rows[i] for i in selector.retired]


def test_training_script_main_runs_the_smoke_config(tmp_path):
    """The script's main() in-process: tiny: model shorthand, builtin data, online pool, saved outputs."""
    from rap_hf.training.script import main, make_parser

    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", str(SMOKE_CONFIG), "--output_dir", str(tmp_path / "smoke"), "--max_steps", "1"]
    )
    assert model_args.model_name_or_path == "tiny:qwen2_5_vl"
    trainer = main(script_args, training_args, model_args)
    assert trainer.state.global_step == 1
    assert (tmp_path / "smoke" / "tiny_qwen2_5_vl" / "config.json").exists()
    assert (tmp_path / "smoke" / "model.safetensors").exists()
    assert (tmp_path / "smoke" / "rap_online_state.json").exists()


# --------------------------------------------------------------------------------------------------
# Configs and the launcher
# --------------------------------------------------------------------------------------------------


def test_shipped_accelerate_configs_resolve_and_load(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    from rap_hf.accelerate_configs import available_accelerate_configs, resolve_accelerate_config

    assert available_accelerate_configs() == ["multi_gpu", "single_gpu", "zero2", "zero3"]
    expected = {"single_gpu": ("NO", 1), "multi_gpu": ("MULTI_GPU", 8), "zero2": ("DEEPSPEED", 8)}
    expected["zero3"] = ("DEEPSPEED", 8)
    for name, (distributed_type, processes) in expected.items():
        path = resolve_accelerate_config(name)
        assert resolve_accelerate_config(f"{name}.yaml") == path
        config = load_config_from_file(str(path))
        assert (str(config.distributed_type).split(".")[-1], config.num_processes) == (
            distributed_type,
            processes,
        )
    assert load_config_from_file(str(resolve_accelerate_config("zero3"))).deepspeed_config["zero_stage"] == 3
    root = resolve_accelerate_config(str(REPO / "accelerate_config.yaml"))
    assert load_config_from_file(str(root)).num_processes == 8
    with pytest.raises(ValueError, match="shipped"):
        resolve_accelerate_config("zero9")


def test_8gpu_zero3_yaml_parses_into_config_objects(tmp_path):
    """Parses the documented 7B / 8-GPU / ZeRO-3 recipe with the training script's parser.

    Only `use_cpu` is added: TrainingArguments refuses bf16 on a machine without a GPU otherwise.
    """
    from trl import ModelConfig

    from rap_hf.cli.launcher import generation_geometry
    from rap_hf.training.config import RAPGRPOConfig
    from rap_hf.training.script import RAPScriptArguments, make_parser

    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", str(GPU8_CONFIG), "--output_dir", str(tmp_path / "q7"), "--use_cpu", "true"]
    )
    assert isinstance(script_args, RAPScriptArguments) and isinstance(model_args, ModelConfig)
    assert isinstance(training_args, RAPGRPOConfig)
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and model_args.dtype == "bfloat16"
    assert training_args.bf16 and training_args.gradient_checkpointing and training_args.rap_online
    assert training_args.rap_train_on == "selected" and training_args.num_generations == 8
    # 8 processes x 4 x 4 accumulation steps = 128 completions = 16 prompts of 8 generations
    assert generation_geometry(training_args, 8) == (128, 16)
    training_args.num_generations = 6
    with pytest.raises(ValueError, match="num_generations"):
        generation_geometry(training_args, 8)


def test_rap_hf_train_dry_run_forwards_what_was_set(tmp_path, capsys):
    import yaml

    from rap_hf.cli import main
    from rap_hf.training.script import make_parser

    out = tmp_path / "q7"
    code = main(
        ["train", "--config", str(GPU8_CONFIG), "--accelerate_config", "zero3", "--output_dir", str(out)]
        + ["--use_cpu", "true", "--learning_rate", "5e-7", "--dry_run"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "accelerate launch --config_file" in printed and "zero3.yaml -m rap_hf.training.script" in printed
    written = yaml.safe_load((out / "rap_train_config.yaml").read_text())
    assert written["learning_rate"] == 5e-7 and written["rap_online"] is True
    # derived from the launching process's count: must not be forwarded
    assert "generation_batch_size" not in written and "steps_per_generation" not in written
    _, reparsed, model_args = make_parser().parse_args_and_config(
        ["--config", str(out / "rap_train_config.yaml")]
    )
    assert reparsed.learning_rate == 5e-7 and reparsed.per_device_train_batch_size == 4
    assert model_args.attn_implementation == "flash_attention_2"
    # the 8-GPU geometry is checked against the accelerate config's process count
    bad = main(
        ["train", "--config", str(GPU8_CONFIG), "--accelerate_config", "zero3", "--output_dir", str(out)]
        + ["--use_cpu", "true", "--generation_batch_size", "48", "--dry_run"]
    )
    assert bad == 2  # fine for the launching process alone, not for 8 processes of 4


@slow
def test_rap_hf_train_launches_the_cpu_smoke_config(tmp_path):
    """`rap-hf train --config trainers/configs/cpu_smoke.yaml` through accelerate launch, as a user runs it."""
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "rap_hf.cli", "train", "--config", str(SMOKE_CONFIG)]
        + ["--output_dir", str(out), "--max_steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").exists() and (out / "rap_online_state.json").exists()


@slow
def test_two_process_cpu_run_with_gloo(tmp_path):
    """2 processes (torchrun, gloo on CPU): groups split across processes, rewards gathered, same decisions
    (the trainer raises if the processes' selectors diverge)."""
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
        + [str(REPO / "trainers" / "train_grpo.py"), "--config", str(SMOKE_CONFIG)]
        + ["--output_dir", str(out), "--max_steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "rap_online_state.json").read_text())
    # 2 processes x 4 completions / 2 generations = 4 prompts per step, all-wrong on a random model: 4 retired
    # per step (retire_after=1)
    assert state["metrics"]["rap/retired"] == 8
