"""Tiny, randomly initialised vision-language models built entirely offline, for tests and smoke runs.

Everything is built in memory from configs: a byte-level BPE tokenizer trained on a small built-in corpus
(any text, non-ASCII included, round-trips through it), a Qwen-style image processor with a small pixel
budget, a processor carrying a ChatML chat template like the real Qwen2-VL / Qwen2.5-VL one, and a tiny
model whose token ids agree with the tokenizer. `save_tiny_vlm` writes the lot to a directory that loads
back through the ordinary auto classes (no ``trust_remote_code``)::

    path = save_tiny_vlm(tmp_path / "tiny", "qwen2_5_vl")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)

The weights are random: generations are gibberish, but shapes, ids, templates and the generation loop
behave like the real families'.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rap_hf.errors import RAPUserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

TINY_FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")
"""Model families `build_tiny_vlm` can build (transformers ``model_type`` names)."""

# Special tokens of the real Qwen2-VL / Qwen2.5-VL tokenizers, in the order of their real ids
# (151643 ...). Here they are appended right after the trained byte-level vocabulary, in this order.
QWEN_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The chat template of Qwen2-VL-Instruct / Qwen2.5-VL-Instruct (ChatML; content may be a plain string or a
# list of {"type": "image"|"video"|"text"} items; a default system message is added when none is given).
_DEFAULT_SYSTEM_BLOCK = (
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
)
_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "__DEFAULT_SYSTEM__"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_VL_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("__DEFAULT_SYSTEM__", _DEFAULT_SYSTEM_BLOCK)
"""Chat template of Qwen2-VL / Qwen2.5-VL-Instruct (adds "You are a helpful assistant." when no system turn)."""
QWEN3_VL_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("__DEFAULT_SYSTEM__", "")
"""Same as `QWEN_VL_CHAT_TEMPLATE` without the default system turn, like Qwen3-VL-Instruct's (no tools)."""

# Pixel budget of the image processors: images are resized to between MIN_MERGED_CELLS and MAX_MERGED_CELLS
# cells of (patch_size * merge_size) ** 2 pixels, i.e. as many image tokens. Patch size 14 (Qwen2/2.5-VL) or
# 16 (Qwen3-VL), temporal patch size 2, merge size 2, as in the real models.
MIN_MERGED_CELLS = 4
MAX_MERGED_CELLS = 64
_PATCH_SIZE = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
_TEMPORAL_PATCH_SIZE = 2
_MERGE_SIZE = 2

_DEFAULT_BPE_VOCAB_SIZE = 1024


def _training_corpus() -> list[str]:
    """A small, deterministic corpus: digits, letters, arithmetic, LaTeX answers and chat-ish prose."""
    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789",
        "Question: What is shown in the image? Answer: a red square.",
        "Let's think step by step. First, count the objects in the picture.",
        "Therefore, the final answer is \\boxed{12}.",
        "The answer is \\boxed{\\frac{3}{4}} and the area is \\boxed{24\\pi}.",
        "Solve for x: 2x + 3 = 11, so x = 4.",
        "\\sqrt{16} = 4, \\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}, x^2 - 5x + 6 = 0.",
        "The angle is 45^\\circ, the triangle ABC has sides a, b and c.",
        "<think>\nThe image shows a graph.\n</think>\n<answer>\\boxed{7}</answer>",
        "You are a helpful assistant. Please reason step by step.",
        "user: describe the image\nassistant: It is a picture of a cat.",
        "Ünïcødé text, naïve café, 数学 题目, Ω ≈ π ≤ ∞.",
    ]
    for a in range(0, 30):
        for b in (1, 2, 3, 7, 10, 12, 25):
            lines.append(f"{a} + {b} = {a + b}; {a} * {b} = {a * b}; {a} - {b} = {a - b}")
    lines += [f"\\boxed{{{n}}}" for n in range(100)]
    return lines


def build_tiny_tokenizer(
    vocab_size: int = _DEFAULT_BPE_VOCAB_SIZE,
    vocab_extra: Sequence[str] = (),
    corpus_extra: Sequence[str] = (),
    chat_template: str = QWEN_VL_CHAT_TEMPLATE,
) -> PreTrainedTokenizerBase:
    """Train a tiny byte-level BPE in memory and wrap it as a `transformers.Qwen2Tokenizer`.

    The pre-tokenizer, normalizer (NFC) and decoder are those of the real Qwen2 tokenizer, so any text
    (non-ASCII included, provided it is NFC-normalised) round-trips through encode/decode. The trained
    vocabulary (256 byte symbols plus merges learnt from a small built-in corpus, at most ``vocab_size``,
    about 580 in practice) comes first, then the special tokens `QWEN_VL_SPECIAL_TOKENS` in their real
    order, then ``vocab_extra`` as ordinary (non-special) added tokens. eos = ``<|im_end|>``,
    pad = unk = ``<|endoftext|>``, no bos, as in the Qwen-VL Instruct tokenizers. Deterministic.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # A domain corpus (e.g. a dataset's questions) gives its frequent words their own tokens, which keeps
    # sequences, and so training and scoring time, short.
    bpe.train_from_iterator([*_training_corpus(), *corpus_extra], trainer=trainer)
    model_state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    # The special tokens go in the base vocabulary, right after the trained tokens, in their real order.
    for token in QWEN_VL_SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in QWEN_VL_SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        model_max_length=32768,
        errors="replace",
        split_special_tokens=False,
    )
    extra = [t for t in dict.fromkeys(vocab_extra) if t not in tokenizer.get_vocab()]
    if extra:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_processor(
    family: str = "qwen2_5_vl", *, vocab_extra: Sequence[str] = (), corpus_extra: Sequence[str] = ()
) -> ProcessorMixin:
    """The processor of a tiny model of ``family``: tiny tokenizer, small-budget image processor, chat template.

    The image processor is the torchvision `Qwen2VLImageProcessor` (the PIL one when torchvision is missing);
    it resizes images to between `MIN_MERGED_CELLS` and `MAX_MERGED_CELLS` cells of
    ``(patch_size * 2) ** 2`` pixels (patch size 14, or 16 for Qwen3-VL; temporal patch size 2; merge size 2:
    the same values as the model's vision config). A video processor with the same geometry is included
    because the processor classes require one (videos need torchvision).
    """
    _check_family(family)
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor as ImageProcessor
    else:  # pragma: no cover - depends on the environment
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor

    patch_size = _PATCH_SIZE[family]
    cell = (patch_size * _MERGE_SIZE) ** 2
    geometry = {
        "patch_size": patch_size,
        "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
        "merge_size": _MERGE_SIZE,
    }
    video_size = {"shortest_edge": MIN_MERGED_CELLS * cell, "longest_edge": 4 * MAX_MERGED_CELLS * cell}
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor as ProcessorClass
        from transformers import Qwen3VLVideoProcessor as VideoProcessor

        norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        chat_template = QWEN3_VL_CHAT_TEMPLATE
    else:
        from transformers import Qwen2VLVideoProcessor as VideoProcessor

        if family == "qwen2_5_vl":
            from transformers import Qwen2_5_VLProcessor as ProcessorClass
        else:
            from transformers import Qwen2VLProcessor as ProcessorClass
        norm = {}  # the OpenAI CLIP mean/std defaults, as in the real models
        chat_template = QWEN_VL_CHAT_TEMPLATE

    image_processor = ImageProcessor(
        min_pixels=MIN_MERGED_CELLS * cell, max_pixels=MAX_MERGED_CELLS * cell, **geometry, **norm
    )
    video_processor = VideoProcessor(size=video_size, **geometry, **norm)
    tokenizer = build_tiny_tokenizer(
        vocab_extra=vocab_extra, corpus_extra=corpus_extra, chat_template=chat_template
    )
    return ProcessorClass(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )


def build_tiny_vlm(
    family: str = "qwen2_5_vl",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    vocab_extra: Sequence[str] = (),
    corpus_extra: Sequence[str] = (),
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny randomly initialised vision-language model of ``family`` and its processor, offline.

    Args:
        family: One of `TINY_FAMILIES` (a transformers ``model_type``).
        seed: Weights are initialised right after ``torch.manual_seed(seed)``: same seed, same weights. The
            global torch RNG state is restored afterwards.
        hidden_size: Width of the text decoder (also the output width of the vision merger).
        num_hidden_layers: Number of text decoder layers.
        num_attention_heads: Query heads of the text decoder; the head dimension
            ``hidden_size / num_attention_heads`` must be even and at least 6 (multimodal RoPE splits half
            of it in three sections).
        num_key_value_heads: Key/value heads of the text decoder (GQA); must divide ``num_attention_heads``.
        vocab_extra: Extra strings added to the tokenizer as ordinary (non-special) added tokens, e.g.
            ``("<think>", "</think>")``; they get ids after the special tokens, and the model's vocabulary
            includes them.
        corpus_extra: Extra training text for the byte-level BPE (e.g. a dataset's questions and answers),
            so its frequent words get their own tokens.
        vision_hidden_size: Width of the vision encoder (2 heads); a multiple of 8.
        vision_depth: Number of vision encoder blocks. Qwen2.5-VL: the last block uses full attention, the
            others window attention; Qwen3-VL: the first block feeds the deepstack merger.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (set on the text and vision towers).

    Returns:
        ``(model, processor)``: the model (float32, eval mode, ``generation_config`` with
        ``eos_token_id=[<|im_end|>, <|endoftext|>]``, ``pad_token_id=<|endoftext|>``, greedy) and its
        processor (tokenizer, image and video processors, chat template).
    """
    _check_family(family)
    import torch
    from transformers import GenerationConfig

    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size={hidden_size} is not divisible by num_attention_heads={num_attention_heads}"
        )
    if num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"num_attention_heads={num_attention_heads} is not divisible by num_key_value_heads={num_key_value_heads}"
        )
    head_dim = hidden_size // num_attention_heads
    if head_dim % 2 or head_dim < 6:
        raise ValueError(
            f"the head dimension hidden_size / num_attention_heads = {head_dim} must be even and >= 6"
        )
    vision_heads = 2
    if vision_hidden_size % 8:
        raise ValueError(f"vision_hidden_size={vision_hidden_size} must be a multiple of 8")
    if vision_depth < 1 or num_hidden_layers < 1:
        raise ValueError("vision_depth and num_hidden_layers must be at least 1")

    processor = build_tiny_processor(family, vocab_extra=vocab_extra, corpus_extra=corpus_extra)
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_VL_SPECIAL_TOKENS}
    bos_id = pad_id = ids["<|endoftext|>"]
    eos_id = ids["<|im_end|>"]

    # Multimodal RoPE: half the head dimension split in (temporal, height, width) sections, in the real
    # models' proportions ([16, 24, 24] of 64 for Qwen2/2.5-VL, [24, 20, 20] of 64 for Qwen3-VL).
    half = head_dim // 2
    if family == "qwen3_vl":
        h_section = max(1, half * 5 // 16)
        mrope_section = [half - 2 * h_section, h_section, h_section]
    else:
        t_section = max(1, half // 4)
        h_section = (half - t_section) // 2
        mrope_section = [t_section, h_section, half - t_section - h_section]

    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": 4096,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "dtype": "float32",
    }
    vision_config = {
        "depth": vision_depth,
        "num_heads": vision_heads,
        "in_channels": 3,
        "patch_size": _PATCH_SIZE[family],
        "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
        "spatial_merge_size": _MERGE_SIZE,
        "dtype": "float32",
    }
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as ConfigClass
        from transformers import Qwen2_5_VLForConditionalGeneration as ModelClass

        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": mrope_section,
        }
        text_config["max_window_layers"] = num_hidden_layers
        vision_config.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
            window_size=112,
            fullatt_block_indexes=[vision_depth - 1],
            tokens_per_second=2,
        )
    elif family == "qwen2_vl":
        from transformers import Qwen2VLConfig as ConfigClass
        from transformers import Qwen2VLForConditionalGeneration as ModelClass

        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": mrope_section,
        }
        text_config["max_window_layers"] = num_hidden_layers
        vision_config.update(embed_dim=vision_hidden_size, hidden_size=hidden_size, mlp_ratio=2)
    else:  # qwen3_vl
        from transformers import Qwen3VLConfig as ConfigClass
        from transformers import Qwen3VLForConditionalGeneration as ModelClass

        text_config["head_dim"] = head_dim
        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": mrope_section,
            "mrope_interleaved": True,
        }
        vision_config.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
            num_position_embeddings=64,  # an 8x8 grid of learnt position embeddings, interpolated
            deepstack_visual_indexes=[0],
        )

    config = ConfigClass(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    # What from_pretrained(attn_implementation=...) sets; the tiny model is built from a config, not loaded.
    config._attn_implementation = attn_implementation

    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ModelClass(config)
    finally:
        torch.random.set_rng_state(rng_state)
    model = model.to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    return model, processor


def save_tiny_vlm(
    directory: str | os.PathLike[str], family: str = "qwen2_5_vl", **kwargs: Any
) -> pathlib.Path:
    """Build a tiny model of ``family`` (``kwargs`` go to `build_tiny_vlm`) and save model and processor.

    ``directory`` (created if needed) then loads with ``AutoModelForImageTextToText.from_pretrained`` and
    ``AutoProcessor.from_pretrained`` (``attn_implementation`` is not saved: pass it when loading).
    Returns ``directory`` as a `pathlib.Path`.
    """
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_vlm(family, **kwargs)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _check_family(family: str) -> None:
    if family not in TINY_FAMILIES:
        raise RAPUserError(f"unknown tiny model family {family!r}; expected one of {TINY_FAMILIES}")
