"""GPU check of RAP scoring at the scale of a real model, without downloading one.

Builds a randomly initialised model with the real Qwen2.5-VL-3B-Instruct configuration (values below, from
its config.json) in bf16 on the GPU, scores 64 synthetic samples (448x448 images: 256 image tokens each)
with num_rollouts=5 and up to 256 new tokens through the real scoring path (`rap_hf.scoring.distributed.
score_to_disk`, one process), and reports samples/s, generated tokens/s and peak GPU memory. A random model
almost never emits its stop token, so every rollout runs the full 256 tokens: a worst case for time.

Then a 1-process DeepSpeed ZeRO-3 smoke run: `accelerate launch --config_file <shipped zero3.yaml>
--num_processes 1 -m rap_hf score` on a few rows of the saved model, once with the sharded lock-step path
and once with `--zero3_gather_params true`; it reports whether each ran and whether their scores agree.

    python benchmarks/gpu_scoring_check.py            # on a GPU machine (about 5 minutes on one H100)
    python benchmarks/gpu_scoring_check.py --tiny     # anywhere, CPU included: the tiny model, few rows

The tokenizer is the offline tiny one (no download): prompts tokenize to fewer tokens than with the real
tokenizer, and the special-token ids in the config are set to its ids.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Qwen2.5-VL-3B-Instruct's config.json (the special-token ids are replaced by the tiny tokenizer's below).
QWEN2_5_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
}
# The real Qwen2.5-VL image processor's pixel budget (min_pixels, max_pixels).
REAL_PIXEL_BUDGET = (56 * 56, 28 * 28 * 16384)


def build_model(tiny: bool, device: str):
    """(model, processor): random weights, bf16 on GPU (float32 on CPU), eval mode."""
    from transformers import (
        AutoModelForImageTextToText,
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2VLImageProcessor,
    )

    from rap_hf.demo.tiny_models import build_tiny_processor, build_tiny_vlm

    if tiny:
        model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
        return model.to(device).eval(), processor
    processor = build_tiny_processor("qwen2_5_vl")
    processor.image_processor = Qwen2VLImageProcessor(
        min_pixels=REAL_PIXEL_BUDGET[0],
        max_pixels=REAL_PIXEL_BUDGET[1],
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    tokenizer = processor.tokenizer
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("bos_token_id", "<|endoftext|>"),
            ("eos_token_id", "<|im_end|>"),
            ("pad_token_id", "<|endoftext|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
            ("vision_token_id", "<|vision_pad|>"),
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
        )
    }
    config = Qwen2_5_VLConfig(**QWEN2_5_VL_3B, **ids)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["eos_token_id"], ids["bos_token_id"]], pad_token_id=ids["pad_token_id"]
    )
    return model.eval(), processor


def synthetic_data(rows: int, image_size: int | None):
    from rap_hf.demo.data import tiny_synthetic

    data = tiny_synthetic(rows, seed=0)
    if image_size:
        data = data.map(lambda row: {"image": row["image"].resize((image_size, image_size))})
    return data


def score(model, processor, data, output: Path, config, device: str) -> dict:
    from rap_hf.scoring.distributed import score_to_disk

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = score_to_disk(model, data, output, config, processor=processor, device=device, overwrite=True)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return {
        **result.metadata,
        **{f"process_{k}": v for k, v in result.process_stats.items()},
        "peak_gib": peak,
    }


def zero3_smoke(model_dir: Path, data_dir: Path, workdir: Path, args) -> list[str]:
    """Two 1-process ZeRO-3 runs through the CLI under accelerate launch; returns the report lines."""
    if not torch.cuda.is_available():
        return ["ZeRO-3 smoke: skipped (needs a CUDA GPU; DeepSpeed ZeRO-3 does not run on this CPU)"]
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return ["ZeRO-3 smoke: skipped (DeepSpeed not installed: pip install 'rap-hf[deepspeed]')"]
    from rap_hf.accelerate_configs import resolve_accelerate_config

    lines, outputs = [], {}
    for mode, extra in (("sharded (lock-step)", []), ("gathered", ["--zero3_gather_params", "true"])):
        output = workdir / f"zero3-{'gathered' if extra else 'sharded'}"
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(resolve_accelerate_config("zero3")),
            "--num_processes",
            "1",
            "-m",
            "rap_hf",
            "score",
            "--model",
            str(model_dir),
            "--dataset",
            str(data_dir),
            "--output",
            str(output),
            "--max_rows",
            str(args.zero3_rows),
            "--num_rollouts",
            "2",
            "--max_new_tokens",
            "32",
            "--batch_size",
            "2",
            "--torch_dtype",
            "bfloat16",
            "--overwrite",
            "true",
            *extra,
        ]
        start = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            lines.append(f"ZeRO-3 smoke, {mode}: FAILED after {seconds:.0f}s\n{result.stderr[-3000:]}")
            continue
        metadata = json.loads((output / "rap_scoring.json").read_text())
        outputs[mode] = output
        lines.append(
            f"ZeRO-3 smoke, {mode}: ok, {metadata['rows']} rows in {metadata['scoring_seconds']:.1f}s "
            f"(command {seconds:.0f}s), {metadata['errors']} errors"
        )
    if len(outputs) == 2:
        import datasets

        a, b = (datasets.load_from_disk(str(p)) for p in outputs.values())
        same = all(
            x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
            for column in ("rap_acc_mm", "rap_acc_text", "rap_ace", "rap_completions_mm")
            for x, y in zip(a[column], b[column], strict=True)
        )
        lines.append(f"ZeRO-3 sharded vs gathered scores identical: {same}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model and a few rows (runs on CPU)")
    parser.add_argument("--rows", type=int, default=None, help="samples to score (64; --tiny: 8)")
    parser.add_argument("--num_rollouts", type=int, default=None, help="rollouts per arm (5; --tiny: 2)")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="(256; --tiny: 16)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--zero3_rows", type=int, default=4)
    parser.add_argument("--skip_zero3", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rows = args.rows or (8 if args.tiny else 64)
    rollouts = args.num_rollouts or (2 if args.tiny else 5)
    new_tokens = args.max_new_tokens or (16 if args.tiny else 256)

    from rap_hf import RAPConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rap-gpu-check-"))
    started = time.perf_counter()
    model, processor = build_model(args.tiny, device)
    params = sum(p.numel() for p in model.parameters())
    build_seconds = time.perf_counter() - started
    data = synthetic_data(rows, None if args.tiny else 448)
    config = RAPConfig(num_rollouts=rollouts, max_new_tokens=new_tokens, batch_size=args.batch_size)

    score(model, processor, data.select(range(1)), workdir / "warmup", config, device)  # CUDA init, kernels
    r = score(model, processor, data, workdir / "scores", config, device)
    seconds = r["scoring_seconds"]
    generation = r["process_seconds_generation"]
    lines = [
        f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; model: "
        f"{'tiny Qwen2.5-VL' if args.tiny else 'Qwen2.5-VL-3B config'}, {params / 1e9:.2f}B params, "
        f"{next(model.parameters()).dtype}, random weights (built in {build_seconds:.0f}s)",
        f"{rows} samples x {rollouts} rollouts x 2 arms, max_new_tokens={new_tokens}, batch_size={args.batch_size}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| samples/s | {rows / seconds:.3f} |",
        f"| generated tokens | {r['generated_tokens']} |",
        f"| generated tokens/s (whole scoring) | {r['generated_tokens'] / seconds:.0f} |",
        f"| generated tokens/s (generation only) | {r['generated_tokens'] / generation:.0f} |",
        f"| time: generation / attention pass / total (s) | {generation:.1f} / "
        f"{r['process_seconds_attention']:.1f} / {seconds:.1f} |",
        f"| peak GPU memory (GiB) | {r['peak_gib']:.2f} |",
        f"| errors | {r['errors']} |",
    ]
    if not args.skip_zero3:
        if torch.cuda.is_available():
            model_dir, data_dir = workdir / "model", workdir / "data"
            model.save_pretrained(str(model_dir))
            processor.save_pretrained(str(model_dir))
            data.save_to_disk(str(data_dir))
            del model
            torch.cuda.empty_cache()
        else:
            model_dir = data_dir = workdir
        lines += [""] + zero3_smoke(model_dir, data_dir, workdir, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
