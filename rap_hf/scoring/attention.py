"""Final-layer attention capture for ACE, without materialising attention for every layer.

`output_attentions=True` forces the eager kernel in every layer and keeps an (H, S, S) tensor per layer. ACE
needs only the last decoder layer, and only the rows of the response. So we register a wrapper in
transformers' `AttentionInterface` that delegates every layer to the model's own kernel (sdpa, flash, eager)
and, for the final layer's self-attention module only, additionally computes softmax(QK^T) for the response
rows, in row chunks, averaged over heads on the fly.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_PREFIX = "rap_capture|"
# Rows of attention probabilities computed at once: bounds peak memory at H * chunk * S floats.
_ROW_CHUNK = 128


class _Recorder:
    """Collects the head-averaged attention of `num_rows` final query rows over `num_cols` final key columns."""

    def __init__(self, num_rows: int, num_cols: int) -> None:
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.result: torch.Tensor | None = None

    def record(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
    ) -> None:
        # query: (B, H, Q, D), key: (B, KV, S, D). We only support the single-sequence pass ACE uses.
        if query.shape[0] != 1:
            raise ValueError("attention capture runs one sequence at a time")
        num_heads, q_len, head_dim = query.shape[1], query.shape[2], query.shape[3]
        kv_heads, kv_len = key.shape[1], key.shape[2]
        groups = num_heads // kv_heads
        scale = scaling if scaling is not None else head_dim**-0.5
        rows = min(self.num_rows, q_len)
        cols = min(self.num_cols, kv_len)
        # (KV, G, Q, D): grouped-query heads share their key head without repeat_kv's copy.
        q = query[0, :, q_len - rows :].reshape(kv_heads, groups, rows, head_dim).float()
        k = key[0].float()  # (KV, S, D)
        # Absolute positions of the query rows (the response is at the end of the sequence).
        row_pos_all = torch.arange(kv_len - rows, kv_len, device=query.device)
        col_pos = torch.arange(kv_len, device=query.device)
        out = torch.empty(rows, cols, dtype=torch.float32, device=query.device)
        for start in range(0, rows, _ROW_CHUNK):
            stop = min(start + _ROW_CHUNK, rows)
            scores = torch.einsum("kgqd,ksd->kgqs", q[:, :, start:stop], k) * scale
            allowed = col_pos[None, :] <= row_pos_all[start:stop, None]
            mask_rows = _mask_rows(attention_mask, q_len - rows + start, q_len - rows + stop)
            if mask_rows is not None:
                if mask_rows.dtype == torch.bool:
                    allowed = allowed & mask_rows
                else:
                    scores = scores + mask_rows.float()
            scores = scores.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scores, dim=-1)  # (KV, G, rows, S)
            out[start:stop] = probs.mean(dim=(0, 1))[:, kv_len - cols :]
        self.result = out.cpu()


class _StepRecorder:
    """Records, at every decoding step, each sequence's final-layer attention row over the response keys.

    Used during `model.generate` (in-generation ACE): the first call is the prefill over the (left-padded)
    prompt of length `prompt_length` and is skipped; decoding step s (1-based) feeds the s-th generated token,
    whose query row over the keys at positions [prompt_length, prompt_length + s) is row s-1 of the response
    block. `rows` is a (B, T, T) float32 tensor on the model's device, lower triangular, head-averaged; entries
    after a sequence's end are simply never read (the caller slices each sequence to its response length).
    """

    def __init__(self, batch_size: int, prompt_length: int, max_steps: int) -> None:
        self.prompt_length = prompt_length
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.step = -1  # -1: the prefill has not run yet
        self.rows: torch.Tensor | None = None

    def record(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
    ) -> None:
        self.step += 1
        if self.step == 0:
            return  # prefill: prompt rows only
        step = self.step
        if step > self.max_steps:
            return
        batch, num_heads, q_len, head_dim = query.shape
        if q_len != 1:
            raise ValueError(f"expected one query position per decoding step, got {q_len}")
        kv_heads, kv_len = key.shape[1], key.shape[2]
        groups = num_heads // kv_heads
        scale = scaling if scaling is not None else head_dim**-0.5
        if self.rows is None:
            self.rows = torch.zeros(
                batch, self.max_steps, self.max_steps, dtype=torch.float32, device=query.device
            )
        q = query[:, :, -1].reshape(batch, kv_heads, groups, head_dim).float()
        scores = torch.einsum("bkgd,bksd->bkgs", q, key.float()) * scale  # (B, KV, G, S)
        if attention_mask is not None:
            if attention_mask.ndim == 4:  # (B, 1|H, Q, S'): bool (True = attend) or additive float
                mask = attention_mask[:, 0, -1, -kv_len:][:, None, None, :]
            else:  # (B, S') padding mask: 1 = attend
                mask = attention_mask[:, -kv_len:].bool()[:, None, None, :]
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask.float()
        probs = torch.softmax(scores, dim=-1).mean(dim=(1, 2))  # (B, S)
        # The response keys are the last `step` positions (the prompt is left padded to `prompt_length`).
        self.rows[:, step - 1, :step] = probs[:, kv_len - step :]


def _mask_rows(attention_mask: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Rows [start, stop) of a 4D (B, 1|H, Q, S) mask as (rows, S); 2D padding masks become (1, S)."""
    if attention_mask is None:
        return None
    if attention_mask.ndim == 4:
        return attention_mask[0, 0, start:stop]
    if attention_mask.ndim == 2:  # flash-style padding mask (B, S): 1 = attend
        return attention_mask[0].bool()[None, :]
    return None


def _inner_attention(module: torch.nn.Module, name: str):
    if name == "eager" or name not in ALL_ATTENTION_FUNCTIONS:
        # Each model file defines its own eager kernel; use the one of the module's model family.
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def _make_wrapper(inner_name: str):
    def capture_attention(module: torch.nn.Module, query, key, value, attention_mask, **kwargs: Any):
        recorder: _Recorder | _StepRecorder | None = getattr(module, "_rap_recorder", None)
        if recorder is not None:
            recorder.record(query, key, attention_mask, kwargs.get("scaling"))
        return _inner_attention(module, inner_name)(module, query, key, value, attention_mask, **kwargs)

    return capture_attention


def _ensure_registered(inner_name: str) -> str:
    name = _PREFIX + inner_name
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_wrapper(inner_name))
        # transformers has no public lookup of a registered mask function by name; the wrapper must use the
        # same mask as the kernel it wraps.
        mask_fn = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(inner_name)
        if mask_fn is not None:
            AttentionMaskInterface.register(name, mask_fn)
    return name


def final_self_attention(model: torch.nn.Module) -> torch.nn.Module:
    """The self-attention module of the language model's final decoder layer."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is not None and len(layers) > 0 and hasattr(layers[-1], "self_attn"):
        return layers[-1].self_attn
    # Fallback for families whose get_decoder does not expose `.layers`: the causal attention module with the
    # highest layer index (vision-tower attention is not causal).
    candidates = [
        m
        for m in model.modules()
        if getattr(m, "is_causal", False) and getattr(m, "layer_idx", None) is not None
    ]
    if not candidates:
        raise ValueError(f"cannot find the final decoder self-attention of {type(model).__name__}")
    return max(candidates, key=lambda m: m.layer_idx)


@contextlib.contextmanager
def _installed(model: torch.nn.Module, recorder: Any) -> Iterator[None]:
    target = final_self_attention(model)
    config = target.config
    # transformers' own (private) field: the only switch it reads at call time, per model, without reloading.
    original = config._attn_implementation or "eager"
    # The implementation name is read from the (text) config at every call, so swapping it for the duration of
    # the call routes the text layers through the wrapper and leaves the vision tower alone.
    config._attn_implementation_internal = _ensure_registered(original)
    target._rap_recorder = recorder
    try:
        yield
    finally:
        config._attn_implementation_internal = original
        del target._rap_recorder


@contextlib.contextmanager
def capture_generation_attention(
    model: torch.nn.Module, batch_size: int, prompt_length: int, max_steps: int
) -> Iterator[_StepRecorder]:
    """Within this context, `model.generate` records each sequence's final-layer response attention rows.

    The recorder's `rows` is a (batch_size, max_steps, max_steps) float32 tensor (on the model's device):
    `rows[b, i, :i + 1]` is the head-averaged attention of generated token i of sequence b over generated
    tokens 0..i, exactly row i of the matrix `capture_final_layer_attention` gives on a second pass. Row i is
    recorded when token i is fed back, so a completion of L tokens needs L decoding steps after the prefill
    (generate `max_new_tokens + 1` tokens to get the rows of a completion cut at `max_new_tokens`).
    """
    recorder = _StepRecorder(batch_size, prompt_length, max_steps)
    with _installed(model, recorder):
        yield recorder


@contextlib.contextmanager
def capture_final_layer_attention(
    model: torch.nn.Module, num_rows: int, num_cols: int | None = None
) -> Iterator[_Recorder]:
    """Within this context, a forward pass records the final layer's head-averaged attention.

    The recorder's `result` is a (num_rows, num_cols) float32 CPU tensor: the last `num_rows` query positions
    attending to the last `num_cols` key positions (for ACE both are the response length). Every other layer
    runs the model's own attention kernel unchanged.
    """
    recorder = _Recorder(num_rows, num_cols if num_cols is not None else num_rows)
    with _installed(model, recorder):
        yield recorder
