"""Offline stand-ins for the Hub models and datasets that TRL's GRPOTrainer tests load.

TRL's tests read tiny random models (``trl-internal-testing/tiny-*``) and small datasets
(``trl-internal-testing/zen``, ``zen-image``, ``zen-multi-image``) from the Hub. The Hub is unreachable here, so
`tests/test_trl_parity.py` uses what this module builds instead, in the same shapes:

* `TinyModels`: each TRL test model name (``"tiny-Qwen2ForCausalLM-2.5"`` ...) maps to a directory with a tiny,
  randomly initialised model of the same architecture and a tokenizer (or processor) with a matching chat
  template, built on first use. The tokenizers are rap-hf's offline byte-level BPE
  (`rap_hf.demo.tiny_models.build_tiny_tokenizer`); the VLMs are `rap_hf.demo.tiny_models.save_tiny_vlm`.
* `zen`, `zen_image`, `zen_multi_image`: in-memory `DatasetDict`s with TRL's column layouts (``prompt`` as a string
  or as a conversation; ``image`` / ``images`` for the VLM sets), built from the Zen of Python like the originals.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

# The Zen of Python, split into the prompt prefixes of `trl-internal-testing/zen` (17 train rows, 2 test rows, in
# the original order: TRL's `test_prepare_input_called_with_correct_data` checks the first 12 prompts).
ZEN_PROMPTS: tuple[str, ...] = (
    "Beautiful is better than",
    "Explicit is",
    "Simple is better",
    "Complex",
    "Flat is better than",
    "Sparse is better",
    "Readability",
    "Special cases aren't special",
    "Although practicality beats",
    "Errors should never",
    "Unless explicitly",
    "In the face of ambiguity, refuse",
    "There should be one-- and preferably",
    "Although that way may not be",
    "Now is better than",
    "Although never is often better than",
    "If the implementation is hard to explain,",
    "If the implementation is easy",
    "Namespaces are one honking great",
)
ZEN_TRAIN_ROWS = 17


def _splits(rows: dict[str, list[Any]]) -> DatasetDict:
    train = {name: values[:ZEN_TRAIN_ROWS] for name, values in rows.items()}
    test = {name: values[ZEN_TRAIN_ROWS:] for name, values in rows.items()}
    return DatasetDict({"train": Dataset.from_dict(train), "test": Dataset.from_dict(test)})


def zen(config_name: str) -> DatasetDict:
    """``trl-internal-testing/zen`` in config ``standard_prompt_only`` or ``conversational_prompt_only``."""
    if config_name == "standard_prompt_only":
        return _splits({"prompt": list(ZEN_PROMPTS)})
    if config_name == "conversational_prompt_only":
        return _splits({"prompt": [[{"role": "user", "content": p}] for p in ZEN_PROMPTS]})
    raise ValueError(f"no offline stand-in for zen config {config_name!r}")


def _image(index: int, size: int = 32):
    """A small deterministic RGB image (a different one per row)."""
    from PIL import Image

    rng = np.random.default_rng(index)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def zen_image() -> DatasetDict:
    """``trl-internal-testing/zen-image`` ``conversational_prompt_only``: one image and a question per row."""
    prompts = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}] for p in ZEN_PROMPTS
    ]
    return _splits({"image": [_image(i) for i in range(len(ZEN_PROMPTS))], "prompt": prompts})


def zen_multi_image() -> DatasetDict:
    """``trl-internal-testing/zen-multi-image`` ``conversational_prompt_only``: one to three images per row."""
    images, prompts = [], []
    for i, text in enumerate(ZEN_PROMPTS):
        count = 1 + i % 3
        images.append([_image(100 * i + k) for k in range(count)])
        prompts.append(
            [{"role": "user", "content": [{"type": "image"}] * count + [{"type": "text", "text": text}]}]
        )
    return _splits({"images": images, "prompt": prompts})


# ------------------------------------------------------------------------------------------------------ models

#: Tokens the Qwen3 chat template (tool calls, thinking) needs as single tokens, as in the real tokenizers.
QWEN3_EXTRA_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
#: The Llama 3.2 chat template's tokens (the "different reward model" of TRL's tests has a Llama tokenizer).
LLAMA_EXTRA_TOKENS = (
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)
_SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
_SMALL.update(num_key_value_heads=2, max_position_embeddings=1024)


def _tokenizer(kind: str):
    """The tokenizer of one tokenizer family (``qwen2_5``, ``qwen3`` or ``llama``), built offline."""
    import trl.chat_template_utils as templates

    from rap_hf.demo.tiny_models import build_tiny_tokenizer

    if kind == "qwen2_5":
        return build_tiny_tokenizer(chat_template=templates.qwen2_5_chat_template)
    if kind == "qwen3":
        return build_tiny_tokenizer(
            vocab_extra=QWEN3_EXTRA_TOKENS, chat_template=templates.qwen3_chat_template
        )
    if kind == "llama":
        # A different vocabulary (smaller BPE) and template: TRL's test checks a reward model that tokenizes
        # differently from the policy.
        tokenizer = build_tiny_tokenizer(
            vocab_size=400, vocab_extra=LLAMA_EXTRA_TOKENS, chat_template=templates.llama3_2_chat_template
        )
        tokenizer.bos_token = "<|begin_of_text|>"
        tokenizer.eos_token = "<|eot_id|>"
        tokenizer.pad_token = None  # like Llama's: the test sets its own pad token
        return tokenizer
    raise ValueError(kind)


def _text_model(name: str, tokenizer):
    """A tiny random model of TRL's test model ``name`` (architecture from the name), sized to ``tokenizer``."""
    import torch
    import transformers
    from transformers import GenerationConfig

    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    eos_id = tokenizer.eos_token_id
    ids.update(eos_token_id=eos_id, bos_token_id=tokenizer.bos_token_id)
    architecture = name.removeprefix("tiny-").split("-")[0]  # e.g. Qwen2ForCausalLM
    family = architecture.split("For")[0]  # e.g. Qwen2
    config_class = getattr(transformers, f"{family}Config")
    extra: dict[str, Any] = {}
    if family in ("Qwen3", "Qwen3Moe", "Gemma2"):
        extra["head_dim"] = 4
    if family == "Qwen3Moe":
        extra.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, decoder_sparse_step=1)
    if family == "Qwen3":
        extra["tie_word_embeddings"] = False  # as Qwen3 (TRL's lm-head test: untied here, tied for Gemma2)
    if family == "Gemma2":
        extra.update(tie_word_embeddings=True, sliding_window=64, query_pre_attn_scalar=4)
    if architecture.endswith("ForSequenceClassification"):
        extra["num_labels"] = 1
    config = config_class(**_SMALL, **ids, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config)
    if hasattr(model, "generation_config") and model.can_generate():
        model.generation_config = GenerationConfig(
            eos_token_id=[eos_id, ids["pad_token_id"]], pad_token_id=ids["pad_token_id"], bos_token_id=None
        )
    return model


#: TRL test model name -> (builder kind, tokenizer family). "vlm:<family>" models come from rap-hf's builder.
TINY_MODEL_SPECS: dict[str, tuple[str, str]] = {
    "tiny-Qwen2ForCausalLM-2.5": ("text", "qwen2_5"),
    "tiny-Qwen2ForSequenceClassification-2.5": ("text", "qwen2_5"),
    "tiny-Qwen3ForCausalLM": ("text", "qwen3"),
    "tiny-Qwen3ForSequenceClassification": ("text", "qwen3"),
    "tiny-Qwen3MoeForCausalLM": ("text", "qwen3"),
    "tiny-Gemma2ForCausalLM": ("text", "qwen2_5"),
    "tiny-LlamaForSequenceClassification-3.2": ("text", "llama"),
    "tiny-Qwen2_5_VLForConditionalGeneration": ("vlm", "qwen2_5_vl"),
    "tiny-Qwen2VLForConditionalGeneration": ("vlm", "qwen2_vl"),
}


class TinyModels:
    """TRL test model name -> local directory with a tiny stand-in, built on first request and then reused."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(root)
        self._lock = threading.Lock()
        self._tokenizers: dict[str, Any] = {}

    def __getitem__(self, name: str) -> str:
        name = name.removeprefix("trl-internal-testing/")
        if name not in TINY_MODEL_SPECS:
            raise KeyError(f"no offline stand-in for {name!r}; known: {sorted(TINY_MODEL_SPECS)}")
        path = self.root / name
        with self._lock:
            if not (path / "config.json").exists():
                self._build(name, path)
        return str(path)

    def _build(self, name: str, path: pathlib.Path) -> None:
        kind, family = TINY_MODEL_SPECS[name]
        if kind == "vlm":
            from rap_hf.demo.tiny_models import save_tiny_vlm

            # Small enough for CPU training steps, big enough for multimodal RoPE (head dim >= 6).
            save_tiny_vlm(path, family, seed=0, hidden_size=24, vision_hidden_size=16, vision_depth=1)
            return
        if family not in self._tokenizers:
            self._tokenizers[family] = _tokenizer(family)
        tokenizer = self._tokenizers[family]
        _text_model(name, tokenizer).save_pretrained(path)
        tokenizer.save_pretrained(path)
