"""Every supported model family on its tiny random checkpoint: image tokens, scoring speed, ACE exactness, training.

One family after another, in one process, with the same settings for all:

- image tokens: placeholder tokens (``model.config.image_token_id``) of one 64x64 image in the prompt;
- scoring samples/s: `RAPDataFilter.score` on 8 `tiny-synthetic` rows (112x112 images), 2 rollouts per arm,
  8 new tokens, batch 4, after a 4-row warm-up (first calls, math-verify's parser); also per CPU-second of the
  process, which other load on a shared machine does not distort (with one torch thread it is the wall-clock
  rate of an idle machine);
- ACE max |diff|: the final-layer capture on the model's own kernel (sdpa) vs the last layer of an eager
  ``output_attentions=True`` pass, over a 12-token response block;
- trainer smoke: one `RAPGRPOTrainer` step (``rap_train_on="as_is"``, 2 generations of 4 tokens) that changes
  the weights.

    python benchmarks/families.py [--families gemma3 internvl] [--rows 8] [--threads 1]

Prints a Markdown table and writes ``benchmarks/results/families.json`` and ``.txt``. The models are random
and tiny (hidden size 64, 2 layers): speeds compare the per-family plumbing (processors, masks, vision towers),
not the real models.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time
import zlib
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def image_tokens(model: Any, processor: Any) -> int:
    from PIL import Image

    from rap_hf.scoring.rollouts import build_messages, processor_inputs, render_prompt

    prompt = render_prompt(processor, build_messages("How many dots?", 1, with_images=True))
    inputs = processor_inputs(processor, [prompt], [[Image.new("RGB", (64, 64), (200, 30, 30))]])
    return int((inputs["input_ids"] == model.config.image_token_id).sum())


def scoring_speed(path: pathlib.Path, rows: int) -> tuple[float, float, int]:
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.data import tiny_synthetic

    flt = RAPDataFilter(str(path), config=RAPConfig(num_rollouts=2, max_new_tokens=8, batch_size=4))
    flt.score(tiny_synthetic(4, seed=1))  # warm-up
    data = tiny_synthetic(rows, seed=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    scored = flt.score(data)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    errors = sum(e is not None for e in scored["rap_error"])
    return rows / seconds, rows / cpu_seconds, errors


def ace_difference(path: pathlib.Path) -> float:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rap_hf.scoring.engine import final_layer_attention
    from rap_hf.scoring.rollouts import build_messages, processor_inputs, render_prompt

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa").eval()
    eager = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()
    prompt = render_prompt(processor, build_messages("How many dots are there?", 1, with_images=True))
    image = Image.new("RGB", (80, 48), (200, 30, 30))
    response = processor.tokenizer("There are 3 dots, so \\boxed{3}.", add_special_tokens=False)["input_ids"]
    response = (response * 12)[:12]
    captured = final_layer_attention(model, processor, prompt, [image], response)
    inputs = processor_inputs(processor, [prompt], [[image]])
    shape = inputs["input_ids"].shape
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([response])], dim=1)
    for key, value in inputs.items():
        if key != "input_ids" and isinstance(value, torch.Tensor) and value.shape == shape:
            fill = 1 if key == "attention_mask" else 0
            full[key] = torch.cat([value, torch.full((1, len(response)), fill, dtype=value.dtype)], dim=1)
    with torch.no_grad():
        reference = eager(**full, output_attentions=True).attentions[-1][0].mean(0)
    block = reference[-len(response) :, -len(response) :].float()
    return float((captured - block).abs().max())


def trainer_smoke(path: pathlib.Path, work: pathlib.Path) -> bool:
    import torch

    from rap_hf import RAPGRPOConfig, RAPGRPOTrainer
    from rap_hf.demo.data import tiny_synthetic

    def varied_reward(completions, **kwargs):
        return [zlib.crc32(str(c).encode()) % 1000 / 1000 for c in completions]

    args = RAPGRPOConfig(
        output_dir=str(work),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        max_steps=1,
        learning_rate=1e-3,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        rap_train_on="as_is",
    )
    try:
        trainer = RAPGRPOTrainer(
            model=str(path), reward_funcs=varied_reward, args=args, train_dataset=tiny_synthetic(4)
        )
        before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        trainer.train()
    except Exception as exc:  # the table says no, and why
        print(f"  trainer failed: {type(exc).__name__}: {exc}")
        return False
    return any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def main() -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from rap_hf.demo.tiny_models import TINY_FAMILIES, save_tiny_vlm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(TINY_FAMILIES))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)"
    )
    parser.add_argument("--no-save", action="store_true", help="print only; do not write benchmarks/results")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    hf_logging.disable_progress_bar()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in options.families:
            path = save_tiny_vlm(pathlib.Path(tmp) / family, family, seed=0)
            model = AutoModelForImageTextToText.from_pretrained(path).eval()
            processor = AutoProcessor.from_pretrained(path)
            samples_per_s, samples_per_cpu_s, errors = scoring_speed(path, options.rows)
            row = {
                "family": family,
                "image_tokens_64x64": image_tokens(model, processor),
                "samples_per_s": round(samples_per_s, 2),
                "samples_per_cpu_s": round(samples_per_cpu_s, 2),
                "error_rows": errors,
                "ace_max_abs_diff": ace_difference(path),
                "trainer_smoke": trainer_smoke(path, pathlib.Path(tmp) / f"{family}-train"),
            }
            print(row, flush=True)
            results.append(row)

    lines = [
        "| family | image tokens (64x64) | scoring samples/s | samples per CPU-s | error rows "
        "| ACE max abs diff vs eager | trainer smoke |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['family']} | {r['image_tokens_64x64']} | {r['samples_per_s']:.2f} | {r['samples_per_cpu_s']:.2f} "
            f"| {r['error_rows']} "
            f"| {r['ace_max_abs_diff']:.1e} | {'yes' if r['trainer_smoke'] else 'no'} |"
        )
    table = "\n".join(lines)
    print(table)
    if not options.no_save:
        RESULTS.mkdir(exist_ok=True)
        settings = {"rows": options.rows, "num_rollouts": 2, "max_new_tokens": 8, "batch_size": 4}
        payload = {"settings": {**settings, "threads": options.threads}, "results": results}
        (RESULTS / "families.json").write_text(json.dumps(payload, indent=2) + "\n")
        (RESULTS / "families.txt").write_text(table + "\n")


if __name__ == "__main__":
    main()
