"""`rap-tiny-vl`: the project's reference model, a small Qwen2.5-VL trained on `visual-arith` with TRL's SFT.

No pretrained VLM can be downloaded here and a random model gives meaningless scores, so the project trains
its own. The recipe makes it behave like a real VLM in the ways RAP cares about: it reads digits from the
image, answers `text_leak` questions from the text with or without the image, and solves `hard` ones less
often. Two stages: vision pre-training (`pretrain_vision`, standing in for the pretrained vision encoder a
real VLM starts from), then SFT with TRL's `SFTTrainer`.
The trained files ship inside the package (`rap_hf/demo/assets/rap-tiny-vl`) and load offline with
`from_pretrained`; `trainers/train_reference_model.py` reproduces them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

REFERENCE_MODEL_NAME = "rap-tiny-vl"


def reference_model_path() -> Path:
    """Directory of the shipped reference model (inside the installed package)."""
    return Path(str(resources.files("rap_hf.demo") / "assets" / REFERENCE_MODEL_NAME))


def reference_model_available() -> bool:
    path = reference_model_path()
    return (path / "config.json").exists() and any(path.glob("*.safetensors"))


@dataclass
class ReferenceRecipe:
    """How `rap-tiny-vl` is built and trained (the defaults produce the shipped model)."""

    hidden_size: int = field(default=128, metadata={"help": "Text decoder width."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Text decoder layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Text attention heads (head dim 32)."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Text key/value heads (GQA)."})
    vision_hidden_size: int = field(default=64, metadata={"help": "Vision encoder width."})
    vision_depth: int = field(default=2, metadata={"help": "Vision encoder blocks."})
    vision_init_std: float = field(
        default=0.02,
        metadata={"help": "Std of the vision tower's initial weights (transformers' default 0.02)."},
    )
    vision_pretrain_steps: int = field(
        default=200,
        metadata={
            "help": "Steps of vision pre-training before SFT: the vision tower and a linear probe learn to name "
            "the digit (or 'blank') under each image token of train canvases. A real VLM starts from a "
            "pretrained vision encoder; without this stage the decoder learned to ignore the image tokens and "
            "never read the digits (SFT loss identical with shuffled images, four recipes tried). 0 skips it."
        },
    )
    vision_pretrain_batch_size: int = field(
        default=64, metadata={"help": "Images per vision pre-training step."}
    )
    train_rows: int = field(default=4000, metadata={"help": "Rows of the visual-arith train split."})
    text_only_leak_copies: float = field(
        default=1.0,
        metadata={
            "help": "Also train on text-only copies of this fraction of the text_leak rows, so the model answers "
            "them without the image as a language-prior sample should be answered."
        },
    )
    num_train_epochs: float = field(
        default=12.0, metadata={"help": "Passes over the SFT data (when max_steps <= 0)."}
    )
    max_steps: int = field(default=900, metadata={"help": "Optimizer steps (overrides epochs when > 0)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate (cosine decay)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size."})
    seed: int = field(
        default=0, metadata={"help": "Seed of the data, the initial weights and the shuffling."}
    )


def cell_labels(image: Any, digits: list[int]) -> list[int]:
    """The class of each image token of a `visual-arith` canvas, in token (row-major cell) order.

    A cell with ink holds the next digit of ``digits`` (digits are drawn in reading order); an empty cell is
    class 10 ("blank"). One merged Qwen2.5-VL token covers exactly one 28-px cell.
    """
    import numpy as np

    from rap_hf.demo.visual_arith import CELL, COLS, ROWS

    pixels = np.asarray(image.convert("L"))
    remaining = iter(digits)
    labels = []
    for row in range(ROWS):
        for col in range(COLS):
            cell = pixels[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL]
            labels.append(next(remaining) if cell.min() < 200 else 10)
    return labels


def pretrain_vision(
    model: Any, processor: Any, source: datasets.Dataset, recipe: ReferenceRecipe
) -> list[dict[str, float]]:
    """Vision pre-training: train ``model``'s vision tower (with a throw-away linear probe) to classify each
    image token of ``source``'s canvases as one of the ten digits or blank. Returns a small log.

    Written by hand because it trains a sub-module with a per-token head, which neither TRL's trainers nor
    `Trainer` do without a custom model wrapper of about the same size as this loop.
    """
    import torch

    visual = model.model.visual
    probe = torch.nn.Linear(visual.merger.mlp[-1].out_features, 11)
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(
        list(visual.parameters()) + list(probe.parameters()), lr=recipe.learning_rate, weight_decay=0.0
    )
    images = list(source["image"])
    labels = [cell_labels(image, digits) for image, digits in zip(images, source["digits"], strict=True)]
    log: list[dict[str, float]] = []
    visual.train()
    for step in range(recipe.vision_pretrain_steps):
        batch = torch.randint(len(images), (recipe.vision_pretrain_batch_size,), generator=generator).tolist()
        inputs = processor.image_processor(images=[images[i] for i in batch], return_tensors="pt")
        features = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        target = torch.tensor([label for i in batch for label in labels[i]])
        logits = probe(features)
        loss = torch.nn.functional.cross_entropy(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == recipe.vision_pretrain_steps - 1:
            accuracy = (logits.argmax(-1) == target).float().mean().item()
            log.append({"step": step, "loss": round(loss.item(), 4), "token_accuracy": round(accuracy, 4)})
    return log


def sft_rows(train: datasets.Dataset, text_only_leak_copies: float, seed: int) -> datasets.Dataset:
    """Prompt-completion rows for TRL's SFT: every train row with its image, plus text-only `text_leak` copies."""
    import random

    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"prompt": [], "completion": [], "images": []}
    for row in train:
        question = next(p["text"] for p in row["prompt"][0]["content"] if p["type"] == "text")
        completion = [
            {"role": "assistant", "content": [{"type": "text", "text": row["reference_completion"]}]}
        ]
        rows["prompt"].append(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        )
        rows["completion"].append(completion)
        rows["images"].append([row["image"]])
        if row["kind"] == "text_leak" and rng.random() < text_only_leak_copies:
            rows["prompt"].append([{"role": "user", "content": [{"type": "text", "text": question}]}])
            rows["completion"].append(completion)
            rows["images"].append([])
    return datasets.Dataset.from_dict(rows).shuffle(seed=seed)


def train_reference_model(
    output_dir: str | os.PathLike, recipe: ReferenceRecipe | None = None, **trainer_overrides: Any
) -> Path:
    """Build a tiny Qwen2.5-VL, SFT it on visual-arith with TRL's `SFTTrainer` (CPU is fine), save it.

    Writes the model, processor (with chat template), `training_log.json` and `recipe.json` to `output_dir`.
    `trainer_overrides` go to `SFTConfig` (e.g. `max_steps=5` for a smoke run).
    """
    import torch
    from trl import SFTConfig, SFTTrainer

    from rap_hf.demo.tiny_models import build_tiny_vlm
    from rap_hf.demo.visual_arith import visual_arith

    recipe = recipe or ReferenceRecipe()
    output_dir = Path(output_dir)
    torch.manual_seed(recipe.seed)
    source = visual_arith("train", recipe.train_rows, seed=recipe.seed)
    corpus = [p[0]["content"][1]["text"] for p in source["prompt"]] + list(source["reference_completion"])
    model, processor = build_tiny_vlm(
        "qwen2_5_vl",
        corpus_extra=corpus,
        seed=recipe.seed,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        vision_hidden_size=recipe.vision_hidden_size,
        vision_depth=recipe.vision_depth,
    )
    if recipe.vision_init_std != 0.02:
        for module in model.model.visual.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv3d)):
                torch.nn.init.normal_(module.weight, std=recipe.vision_init_std)
    start = time.perf_counter()
    vision_log = pretrain_vision(model, processor, source, recipe) if recipe.vision_pretrain_steps > 0 else []
    vision_seconds = time.perf_counter() - start
    model.train()
    train = sft_rows(source, recipe.text_only_leak_copies, recipe.seed)
    settings: dict[str, Any] = {
        "output_dir": str(output_dir / "_checkpoints"),
        "num_train_epochs": recipe.num_train_epochs,
        "max_steps": recipe.max_steps,
        "learning_rate": recipe.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 50,
        "per_device_train_batch_size": recipe.per_device_train_batch_size,
        "weight_decay": 0.0,
        "logging_steps": 25,
        "save_strategy": "no",
        "report_to": "none",
        "seed": recipe.seed,
        "max_length": None,
        "bf16": False,
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    settings.update(trainer_overrides)
    trainer = SFTTrainer(
        model=model, args=SFTConfig(**settings), train_dataset=train, processing_class=processor
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model = trainer.model.eval()
    model.generation_config.do_sample = False
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    log = {
        "vision_pretrain_seconds": vision_seconds,
        "train_seconds": seconds,
        "sft_rows": len(train),
        "vision_pretrain_log": vision_log,
        "log_history": trainer.state.log_history,
    }
    (output_dir / "training_log.json").write_text(json.dumps(log, indent=2))
    return output_dir


def greedy_accuracy(
    model_dir: str | os.PathLike, dataset: datasets.Dataset, *, batch_size: int = 32, max_new_tokens: int = 48
) -> dict[str, dict[str, float]]:
    """Greedy accuracy per `kind`, with and without the image, by RAP's own reward (for reports and tests)."""
    from rap_hf.config import RAPConfig
    from rap_hf.scoring.filter import RAPDataFilter

    config = RAPConfig(
        num_rollouts=1,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        compute_ace=False,
    )
    scored = RAPDataFilter(str(model_dir), config=config).score(
        dataset.remove_columns(["reference_completion"])
    )
    import numpy as np

    kinds = np.asarray(scored["kind"])
    acc_mm, acc_text = np.asarray(scored["rap_acc_mm"]), np.asarray(scored["rap_acc_text"])
    result: dict[str, dict[str, float]] = {}
    for kind in sorted(set(kinds)):
        mask = kinds == kind
        result[str(kind)] = {
            "n": int(mask.sum()),
            "with_image": float(acc_mm[mask].mean()),
            "without_image": float(acc_text[mask].mean()),
        }
    return result
