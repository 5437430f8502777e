"""Tiny, randomly initialised vision-language models built entirely offline, for tests and smoke runs.

One per supported family (`TINY_FAMILIES`: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, Gemma 3, Idefics3,
SmolVLM, LLaVA-OneVision). Everything is built in memory from configs: a byte-level BPE tokenizer trained on a
small built-in corpus (any text, non-ASCII included, round-trips through it) carrying the family's special
tokens, a chat template modelled on the real Instruct checkpoint's, the family's real image processor with a
small pixel budget (16-24 image tokens for a 64x64 image), its real processor class, and a tiny model of its
real model class whose token ids agree with the tokenizer. `save_tiny_vlm` writes the lot to a directory that
loads back through the ordinary auto classes (no ``trust_remote_code``)::

    path = save_tiny_vlm(tmp_path / "tiny", "gemma3")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)

The weights are random: generations are gibberish, but shapes, ids, templates, image layouts, attention masks
and the generation loop behave like the real families', and the image changes the model's output.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rap_hf.errors import RAPUserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

TINY_FAMILIES: tuple[str, ...] = (
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3_vl",
    "internvl",
    "gemma3",
    "idefics3",
    "smolvlm",
    "llava_onevision",
)
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
    *,
    special_tokens: Sequence[str] = QWEN_VL_SPECIAL_TOKENS,
    eos_token: str = "<|im_end|>",
    pad_token: str = "<|endoftext|>",
    unk_token: str | None = None,
    bos_token: str | None = None,
    add_bos_token: bool = False,
    named_tokens: dict[str, str] | None = None,
) -> PreTrainedTokenizerBase:
    """Train a tiny byte-level BPE in memory and wrap it as a `transformers.Qwen2Tokenizer`.

    The pre-tokenizer, normalizer (NFC) and decoder are those of the real Qwen2 tokenizer, so any text
    (non-ASCII included, provided it is NFC-normalised) round-trips through encode/decode. The trained
    vocabulary (256 byte symbols plus merges learnt from a small built-in corpus, at most ``vocab_size``,
    about 580 in practice) comes first, then ``special_tokens`` in their given order (by default
    `QWEN_VL_SPECIAL_TOKENS`, the real Qwen-VL order), then ``vocab_extra`` as ordinary (non-special) added
    tokens. The defaults are the Qwen-VL Instruct tokenizers': eos = ``<|im_end|>``, pad = unk =
    ``<|endoftext|>``, no bos. Deterministic.

    Other families pass their own special tokens, eos/pad/bos (``unk_token`` defaults to ``pad_token``),
    ``add_bos_token=True`` for tokenizers that prepend bos (Gemma, Llama 3), and ``named_tokens``: the
    model-specific token attributes their processors read, e.g. ``{"boi_token": "<start_of_image>"}`` gives
    ``tokenizer.boi_token`` and ``tokenizer.boi_token_id`` (saved in ``tokenizer_config.json``, as in the real
    checkpoints).
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
    # The special tokens go in the base vocabulary, right after the trained tokens, in their given order.
    named = dict(named_tokens or {})
    for token in [*special_tokens, *named.values()]:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]

    role_tokens = {eos_token, pad_token, unk_token or pad_token, bos_token}
    init_kwargs: dict[str, Any] = {}
    if add_bos_token:
        init_kwargs["add_bos_token"] = True
    if named:
        # Named model-specific tokens (``tokenizer.boi_token`` ...), the way real checkpoints declare them.
        init_kwargs["model_specific_special_tokens"] = named
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=unk_token or pad_token,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens=[
            t for t in dict.fromkeys([*special_tokens, *named.values()]) if t not in role_tokens
        ],
        model_max_length=32768,
        errors="replace",
        split_special_tokens=False,
        **init_kwargs,
    )
    extra = [t for t in dict.fromkeys(vocab_extra) if t not in tokenizer.get_vocab()]
    if extra:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    tokenizer.chat_template = chat_template
    return tokenizer


# ----------------------------------------------------------------------------------------------- families
#
# Every family is a processor builder and a model-config builder, registered in `_FAMILIES`. The processors
# are the real transformers classes with small image budgets; the configs are the real model classes at a
# tiny width. Chat templates and special tokens are modelled on the real Instruct checkpoints.


@dataclass(frozen=True)
class _Dims:
    """Sizes of a tiny model, validated once in `build_tiny_vlm`."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vision_hidden_size: int
    vision_depth: int
    vision_heads: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class _Family:
    """How to build one family: its processor, its model config and class, and its stop tokens."""

    processor: Callable[[str, Sequence[str], Sequence[str]], ProcessorMixin]
    model: Callable[[str, ProcessorMixin, _Dims], tuple[Any, type]]
    stop_tokens: tuple[str, ...]
    """Tokens that end a completion (``generation_config.eos_token_id``), the tokenizer's eos included."""
    post_init: Callable[[Any, int], None] | None = None
    """Fix-ups after random initialisation (e.g. parameters a family initialises to zeros)."""


def _text_config(dims: _Dims, tokenizer: PreTrainedTokenizerBase, **extra: Any) -> dict[str, Any]:
    """The fields every tiny decoder shares: sizes, vocabulary, special ids."""
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": dims.hidden_size,
        "intermediate_size": 2 * dims.hidden_size,
        "num_hidden_layers": dims.num_hidden_layers,
        "num_attention_heads": dims.num_attention_heads,
        "num_key_value_heads": dims.num_key_value_heads,
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }
    config.update(extra)
    return config


def _vision_sizes(dims: _Dims) -> dict[str, Any]:
    """The sizes of a tiny ViT in the naming most vision configs share (SigLIP, Idefics3, InternViT)."""
    return {
        "hidden_size": dims.vision_hidden_size,
        "intermediate_size": 2 * dims.vision_hidden_size,
        "num_hidden_layers": dims.vision_depth,
        "num_attention_heads": dims.vision_heads,
    }


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))


# -- Qwen2-VL / Qwen2.5-VL / Qwen3-VL


def _qwen_processor(family: str, vocab_extra: Sequence[str], corpus_extra: Sequence[str]) -> ProcessorMixin:
    """Qwen-VL processor: the torchvision `Qwen2VLImageProcessor` (the PIL one when torchvision is missing)
    resizes images to between `MIN_MERGED_CELLS` and `MAX_MERGED_CELLS` cells of ``(patch_size * 2) ** 2``
    pixels (patch size 14, or 16 for Qwen3-VL; temporal patch size 2; merge size 2: the same values as the
    model's vision config). A video processor with the same geometry is included because the processor
    classes require one (videos need torchvision)."""
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


def _qwen_model(family: str, processor: ProcessorMixin, dims: _Dims) -> tuple[Any, type]:
    tokenizer = processor.tokenizer
    # Qwen-VL has no bos; its config uses <|endoftext|> (the pad token) in that role.
    text_config = _text_config(dims, tokenizer, bos_token_id=tokenizer.pad_token_id)
    # Multimodal RoPE: half the head dimension split in (temporal, height, width) sections, in the real
    # models' proportions ([16, 24, 24] of 64 for Qwen2/2.5-VL, [24, 20, 20] of 64 for Qwen3-VL).
    half = dims.head_dim // 2
    if family == "qwen3_vl":
        h_section = max(1, half * 5 // 16)
        mrope_section = [half - 2 * h_section, h_section, h_section]
    else:
        t_section = max(1, half // 4)
        h_section = (half - t_section) // 2
        mrope_section = [t_section, h_section, half - t_section - h_section]

    vision_config = {
        "depth": dims.vision_depth,
        "num_heads": dims.vision_heads,
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
        text_config["max_window_layers"] = dims.num_hidden_layers
        vision_config.update(
            hidden_size=dims.vision_hidden_size,
            intermediate_size=2 * dims.vision_hidden_size,
            out_hidden_size=dims.hidden_size,
            window_size=112,
            fullatt_block_indexes=[dims.vision_depth - 1],
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
        text_config["max_window_layers"] = dims.num_hidden_layers
        vision_config.update(embed_dim=dims.vision_hidden_size, hidden_size=dims.hidden_size, mlp_ratio=2)
    else:  # qwen3_vl
        from transformers import Qwen3VLConfig as ConfigClass
        from transformers import Qwen3VLForConditionalGeneration as ModelClass

        text_config["head_dim"] = dims.head_dim
        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": mrope_section,
            "mrope_interleaved": True,
        }
        vision_config.update(
            hidden_size=dims.vision_hidden_size,
            intermediate_size=2 * dims.vision_hidden_size,
            out_hidden_size=dims.hidden_size,
            num_position_embeddings=64,  # an 8x8 grid of learnt position embeddings, interpolated
            deepstack_visual_indexes=[0],
        )

    config = ConfigClass(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=_token_id(tokenizer, "<|image_pad|>"),
        video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    return config, ModelClass


# -- InternVL (InternVL3-hf: InternViT + Qwen2.5 decoder)

INTERNVL_SPECIAL_TOKENS: tuple[str, ...] = (
    *QWEN_VL_SPECIAL_TOKENS,
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<video>",
)
# InternVLProcessor reads these tokenizer attributes (real InternVL3-hf tokenizer_config.json declares them).
_INTERNVL_NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML with one ``<IMG_CONTEXT>`` per image, like InternVL3-hf's (the processor expands it to
``<img><IMG_CONTEXT>*N</img>``)."""
# Tiles of 32x32 pixels, 8x8 patches, pixel shuffle 0.5: 4 image tokens per tile (real: 448, 14, 0.5 -> 256).
_INTERNVL_TILE = 32
_INTERNVL_PATCH = 8
_INTERNVL_MAX_TILES = 4  # real: 12; a 64x64 image -> 2x2 tiles + the thumbnail


def _internvl_image_seq_length() -> int:
    return int((_INTERNVL_TILE // _INTERNVL_PATCH) ** 2 * 0.5**2)


def _internvl_processor(
    family: str, vocab_extra: Sequence[str], corpus_extra: Sequence[str]
) -> ProcessorMixin:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    tile = {"height": _INTERNVL_TILE, "width": _INTERNVL_TILE}
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    tokenizer = build_tiny_tokenizer(
        vocab_extra=vocab_extra,
        corpus_extra=corpus_extra,
        chat_template=INTERNVL_CHAT_TEMPLATE,
        special_tokens=INTERNVL_SPECIAL_TOKENS,
        named_tokens=_INTERNVL_NAMED_TOKENS,
    )
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size=tile, crop_to_patches=True, min_patches=1, max_patches=_INTERNVL_MAX_TILES, **imagenet
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=tile, **imagenet),
        image_seq_length=_internvl_image_seq_length(),
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


def _internvl_model(family: str, processor: ProcessorMixin, dims: _Dims) -> tuple[Any, type]:
    from transformers import InternVLConfig, InternVLForConditionalGeneration, Qwen2Config

    tokenizer = processor.tokenizer
    config = InternVLConfig(
        vision_config={
            **_vision_sizes(dims),
            "image_size": [_INTERNVL_TILE, _INTERNVL_TILE],
            "patch_size": [_INTERNVL_PATCH, _INTERNVL_PATCH],
        },
        text_config=Qwen2Config(**_text_config(dims, tokenizer, bos_token_id=tokenizer.pad_token_id)),
        image_token_id=processor.image_token_id,
        image_seq_length=_internvl_image_seq_length(),
        downsample_ratio=0.5,
        tie_word_embeddings=False,
        dtype="float32",
    )
    return config, InternVLForConditionalGeneration


# -- Gemma 3 (SigLIP + Gemma 3 decoder)

GEMMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
# Gemma3Processor reads tokenizer.boi_token / eoi_token / image_token (and their ids).
_GEMMA3_NAMED_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% else %}{% set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' %}{% endif %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
"""Gemma 3 IT's template: ``<bos>`` first, the system turn folded into the first user turn, role ``model``,
one ``<start_of_image>`` per image (the processor expands it to ``\\n\\n<start_of_image><image_soft_token>*N
<end_of_image>\\n\\n``)."""
# Images are resized to 32x32, 4x4 patches -> 8x8 patch grid, average-pooled to 4x4 = 16 soft tokens
# (real: 896, 14 -> 64x64 grid pooled to 16x16 = 256).
_GEMMA3_IMAGE = 32
_GEMMA3_PATCH = 4
_GEMMA3_TOKENS_PER_IMAGE = 16
# The final decoder layer uses sliding-window attention (as in Gemma 3 4B and 27B), with a window short
# enough that the ACE test, whose sequences are longer, exercises the sliding mask.
_GEMMA3_SLIDING_WINDOW = 32


def _gemma3_processor(family: str, vocab_extra: Sequence[str], corpus_extra: Sequence[str]) -> ProcessorMixin:
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    tokenizer = build_tiny_tokenizer(
        vocab_extra=vocab_extra,
        corpus_extra=corpus_extra,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        special_tokens=GEMMA3_SPECIAL_TOKENS,
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        add_bos_token=True,  # like the real Gemma tokenizer, which the chat template's <bos> then duplicates
        named_tokens=_GEMMA3_NAMED_TOKENS,
    )
    image_processor = Gemma3ImageProcessor(
        size={"height": _GEMMA3_IMAGE, "width": _GEMMA3_IMAGE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=_GEMMA3_TOKENS_PER_IMAGE,
    )


def _gemma3_model(family: str, processor: ProcessorMixin, dims: _Dims) -> tuple[Any, type]:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tokenizer = processor.tokenizer
    layer_types = ["full_attention"] * (dims.num_hidden_layers - 1) + ["sliding_attention"]
    text_config = Gemma3TextConfig(
        **_text_config(dims, tokenizer),
        head_dim=dims.head_dim,
        query_pre_attn_scalar=dims.head_dim,
        sliding_window=_GEMMA3_SLIDING_WINDOW,
        layer_types=layer_types,
    )
    vision_config = SiglipVisionConfig(
        **_vision_sizes(dims), image_size=_GEMMA3_IMAGE, patch_size=_GEMMA3_PATCH, vision_use_head=False
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=_GEMMA3_TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    return config, Gemma3ForConditionalGeneration


def _gemma3_post_init(model: Any, seed: int) -> None:
    """Gemma 3 initialises the multimodal projection to zeros, so a randomly initialised model embeds every
    image to 0 and no test could see the image matter: draw it like the other linear weights instead."""
    import torch

    projection = model.model.multi_modal_projector.mm_input_projection_weight
    generator = torch.Generator().manual_seed(seed)
    std = model.config.initializer_range
    with torch.no_grad():
        projection.copy_(torch.randn(projection.shape, generator=generator) * std)


# -- Idefics3 / SmolVLM (SigLIP-style ViT, pixel shuffle, Llama / SmolLM2 decoder)

_IDEFICS_IMAGE_TOKENS: tuple[str, ...] = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
IDEFICS3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    *_IDEFICS_IMAGE_TOKENS,
)
SMOLVLM_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    *_IDEFICS_IMAGE_TOKENS,
)
_IDEFICS_TURNS = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IDEFICS3_CHAT_TEMPLATE = "<|begin_of_text|>" + _IDEFICS_TURNS
"""Idefics3-8B-Llama3's template: ``User:<image>question<end_of_utterance>\\nAssistant:``."""
SMOLVLM_CHAT_TEMPLATE = "<|im_start|>" + _IDEFICS_TURNS
"""SmolVLM-Instruct's template: Idefics3's turns after ``<|im_start|>``."""
# Images are resized to a longest edge of 64 and split into 32x32 tiles plus a global view; 8x8 patches
# and a pixel-shuffle factor of 2 give 4 image tokens per tile (real: 4 * 364 / 364, 14, 2 -> 169 / 81).
_IDEFICS_LONGEST_EDGE = 64
_IDEFICS_TILE = 32
_IDEFICS_PATCH = 8
_IDEFICS_SCALE = 2


def _idefics_image_seq_len() -> int:
    return (_IDEFICS_TILE // _IDEFICS_PATCH) ** 2 // _IDEFICS_SCALE**2


def _idefics3_processor(
    family: str, vocab_extra: Sequence[str], corpus_extra: Sequence[str]
) -> ProcessorMixin:
    geometry = {
        "size": {"longest_edge": _IDEFICS_LONGEST_EDGE},
        "max_image_size": {"longest_edge": _IDEFICS_TILE},
        "do_image_splitting": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    if family == "smolvlm":
        # The SmolVLM processor needs num2words (for video prompts): an ImportError here names it.
        from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

        tokenizer = build_tiny_tokenizer(
            vocab_extra=vocab_extra,
            corpus_extra=corpus_extra,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
            special_tokens=SMOLVLM_SPECIAL_TOKENS,
            eos_token="<end_of_utterance>",
            pad_token="<|im_end|>",
            unk_token="<|endoftext|>",
            bos_token="<|im_start|>",
        )
        return SmolVLMProcessor(
            image_processor=SmolVLMImageProcessor(**geometry),
            tokenizer=tokenizer,
            video_processor=SmolVLMVideoProcessor(
                size={"longest_edge": _IDEFICS_TILE}, max_image_size={"longest_edge": _IDEFICS_TILE}
            ),
            image_seq_len=_idefics_image_seq_len(),
            chat_template=SMOLVLM_CHAT_TEMPLATE,
        )
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    # The Idefics3 processor adds <fake_token_around_image>, <image> and <end_of_utterance> to the tokenizer
    # when it is built (and on every load): they are in the vocabulary already, so the vocabulary does not grow
    # past the model's embeddings.
    tokenizer = build_tiny_tokenizer(
        vocab_extra=vocab_extra,
        corpus_extra=corpus_extra,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
        special_tokens=IDEFICS3_SPECIAL_TOKENS,
        eos_token="<|end_of_text|>",
        pad_token="<|finetune_right_pad_id|>",
        unk_token="<|end_of_text|>",
        bos_token="<|begin_of_text|>",
        add_bos_token=True,  # like the Llama 3 tokenizer
    )
    return Idefics3Processor(
        image_processor=Idefics3ImageProcessor(**geometry),
        tokenizer=tokenizer,
        image_seq_len=_idefics_image_seq_len(),
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )


def _idefics3_model(family: str, processor: ProcessorMixin, dims: _Dims) -> tuple[Any, type]:
    from transformers import LlamaConfig

    if family == "smolvlm":
        from transformers import SmolVLMConfig as ConfigClass
        from transformers import SmolVLMForConditionalGeneration as ModelClass
    else:
        from transformers import Idefics3Config as ConfigClass
        from transformers import Idefics3ForConditionalGeneration as ModelClass

    tokenizer = processor.tokenizer
    config = ConfigClass(
        vision_config={**_vision_sizes(dims), "image_size": _IDEFICS_TILE, "patch_size": _IDEFICS_PATCH},
        text_config=LlamaConfig(**_text_config(dims, tokenizer)),
        scale_factor=_IDEFICS_SCALE,
        image_token_id=processor.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    return config, ModelClass


# -- LLaVA-OneVision (SigLIP + Qwen2 decoder, anyres tiling)

LLAVA_ONEVISION_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<video>",
)
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\\n' + message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""LLaVA-OneVision-Qwen2's template: ChatML, the images of a turn first, then its text."""
# 32x32 tiles of 16x16 patches: 4 tokens per tile; anyres grids up to 3x3 tiles (real: 384, 14, up to 6x6).
_LLAVA_OV_TILE = 32
_LLAVA_OV_PATCH = 16
_LLAVA_OV_PINPOINTS = [[_LLAVA_OV_TILE * h, _LLAVA_OV_TILE * w] for h in range(1, 4) for w in range(1, 4)]


def _llava_onevision_processor(
    family: str, vocab_extra: Sequence[str], corpus_extra: Sequence[str]
) -> ProcessorMixin:
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tile = {"height": _LLAVA_OV_TILE, "width": _LLAVA_OV_TILE}
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    tokenizer = build_tiny_tokenizer(
        vocab_extra=vocab_extra,
        corpus_extra=corpus_extra,
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
        special_tokens=LLAVA_ONEVISION_SPECIAL_TOKENS,
        named_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=tile, image_grid_pinpoints=_LLAVA_OV_PINPOINTS, do_pad=True, **norm
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=tile, **norm),
        num_image_tokens=(_LLAVA_OV_TILE // _LLAVA_OV_PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )


def _llava_onevision_model(family: str, processor: ProcessorMixin, dims: _Dims) -> tuple[Any, type]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = processor.tokenizer
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            **_vision_sizes(dims),
            image_size=_LLAVA_OV_TILE,
            patch_size=_LLAVA_OV_PATCH,
            vision_use_head=False,
        ),
        text_config=Qwen2Config(**_text_config(dims, tokenizer, bos_token_id=tokenizer.pad_token_id)),
        image_token_index=processor.image_token_id,
        video_token_index=processor.video_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=_LLAVA_OV_PINPOINTS,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
        dtype="float32",
    )
    return config, LlavaOnevisionForConditionalGeneration


_QWEN_STOPS = ("<|im_end|>", "<|endoftext|>")
_FAMILIES: dict[str, _Family] = {
    "qwen2_5_vl": _Family(_qwen_processor, _qwen_model, _QWEN_STOPS),
    "qwen2_vl": _Family(_qwen_processor, _qwen_model, _QWEN_STOPS),
    "qwen3_vl": _Family(_qwen_processor, _qwen_model, _QWEN_STOPS),
    "internvl": _Family(_internvl_processor, _internvl_model, _QWEN_STOPS),
    "gemma3": _Family(_gemma3_processor, _gemma3_model, ("<eos>", "<end_of_turn>"), _gemma3_post_init),
    "idefics3": _Family(_idefics3_processor, _idefics3_model, ("<|end_of_text|>", "<end_of_utterance>")),
    "smolvlm": _Family(_idefics3_processor, _idefics3_model, ("<end_of_utterance>",)),
    "llava_onevision": _Family(_llava_onevision_processor, _llava_onevision_model, _QWEN_STOPS),
}


# ----------------------------------------------------------------------------------------------- public API


def build_tiny_processor(
    family: str = "qwen2_5_vl", *, vocab_extra: Sequence[str] = (), corpus_extra: Sequence[str] = ()
) -> ProcessorMixin:
    """The processor of a tiny model of ``family``: tiny tokenizer, small-budget image processor, chat template.

    The processor is the family's real transformers class (e.g. `Gemma3Processor`), built from a tiny
    byte-level BPE tokenizer carrying the family's special tokens and chat template, and the family's own
    image (and, where the processor requires one, video) processor with a small pixel budget: 16-24 image
    tokens for a 64x64 image (Qwen-VL: between `MIN_MERGED_CELLS` and `MAX_MERGED_CELLS`).
    """
    _check_family(family)
    return _FAMILIES[family].processor(family, vocab_extra, corpus_extra)


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
        hidden_size: Width of the text decoder (also the output width of the vision projector).
        num_hidden_layers: Number of text decoder layers.
        num_attention_heads: Query heads of the text decoder; the head dimension
            ``hidden_size / num_attention_heads`` must be even and at least 6 (Qwen's multimodal RoPE splits
            half of it in three sections).
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
        ``(model, processor)``: the model (float32, eval mode, greedy ``generation_config`` whose
        ``eos_token_id`` lists the family's stop tokens, e.g. ``[<|im_end|>, <|endoftext|>]`` for Qwen or
        ``[<eos>, <end_of_turn>]`` for Gemma 3, and whose ``pad_token_id`` is the tokenizer's) and its
        processor.
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
    if vision_hidden_size % 8:
        raise ValueError(f"vision_hidden_size={vision_hidden_size} must be a multiple of 8")
    if vision_depth < 1 or num_hidden_layers < 1:
        raise ValueError("vision_depth and num_hidden_layers must be at least 1")
    dims = _Dims(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        vision_hidden_size=vision_hidden_size,
        vision_depth=vision_depth,
    )

    spec = _FAMILIES[family]
    processor = spec.processor(family, vocab_extra, corpus_extra)
    tokenizer = processor.tokenizer
    # Built after the processor: some processors (Idefics3) add tokens to the tokenizer when they are built,
    # and the embeddings must cover the final vocabulary.
    config, model_class = spec.model(family, processor, dims)
    # What from_pretrained(attn_implementation=...) sets; the tiny model is built from a config, not loaded.
    config._attn_implementation = attn_implementation

    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_class(config)
    finally:
        torch.random.set_rng_state(rng_state)
    if spec.post_init is not None:
        spec.post_init(model, seed)
    model = model.to(torch.float32).eval()
    stops = [_token_id(tokenizer, token) for token in spec.stop_tokens]
    model.generation_config = GenerationConfig(
        bos_token_id=config.get_text_config().bos_token_id,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
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
