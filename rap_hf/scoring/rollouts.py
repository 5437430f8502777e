"""Rollout generation: M completions per sample with the image(s) and M without (docs/method.md §1).

Sampling is reproducible per completion, whatever batch or process a sample lands in: every completion has
its own seed derived from (seed, row index, arm, rollout index), and each decoding step draws Gumbel noise
from a generator seeded by (that seed, step). Greedy decoding over logits/T + Gumbel noise is an exact sample
from softmax(logits/T) (the Gumbel-max trick), and no random state is shared between rows of a batch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, GenerationConfig, LogitsProcessor, LogitsProcessorList

from rap_hf.scoring.attention import capture_generation_attention

ARM_MM = "mm"
ARM_TEXT = "text"
_ARM_CODES = {ARM_MM: 1, ARM_TEXT: 2}


def completion_seed(seed: int, row_index: int, arm: str, rollout: int) -> int:
    """A 63-bit seed for one completion, independent of batch composition and process layout."""
    digest = hashlib.blake2b(
        f"{seed}/{row_index}/{_ARM_CODES[arm]}/{rollout}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


def _step_seed(row_seed: int, step: int) -> int:
    # A cheap, well-mixed combination (splitmix64-style) so consecutive steps get unrelated streams.
    z = (row_seed + 0x9E3779B97F4A7C15 * (step + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1


class SeededGumbelSampler(LogitsProcessor):
    """Turns greedy decoding into per-row seeded sampling at `temperature` with nucleus `top_p`.

    Each row adds Gumbel noise drawn from its own generator, seeded by (row seed, decoding step), to
    log-softmax(logits / temperature) restricted to the top-p nucleus; the argmax is then a sample from the
    nucleus distribution. With temperature 0 it leaves the logits alone (plain greedy decoding).
    """

    def __init__(
        self, row_seeds: Sequence[int], prompt_length: int, temperature: float = 1.0, top_p: float = 1.0
    ):
        self.row_seeds = list(row_seeds)
        self.prompt_length = prompt_length
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.temperature == 0:
            return scores
        if scores.shape[0] != len(self.row_seeds):
            raise ValueError(f"expected {len(self.row_seeds)} rows, got {scores.shape[0]}")
        step = input_ids.shape[1] - self.prompt_length
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            logp = _top_p_filter(logp, self.top_p)
        # One generator, re-seeded per row: each row's uniforms are its own stream, drawn straight into its row
        # of one matrix; the transform to Gumbel noise then runs once on the whole matrix. Element for element
        # this is the per-row computation (elementwise ops) at a fraction of its Python overhead, which was about
        # a tenth of a decoding step on the reference model (160 sequences: 3.4 ms -> 1.3 ms per step).
        generator = torch.Generator(device=logp.device)
        uniform = torch.empty_like(logp)
        for row, row_seed in enumerate(self.row_seeds):
            generator.manual_seed(_step_seed(row_seed, step))
            torch.rand(logp.shape[-1], generator=generator, out=uniform[row])
        # Clamp away from 0 and 1: -log(-log(u)) must stay finite.
        uniform.clamp_(1e-10, 1.0 - 1e-7)
        return logp - torch.log(-torch.log(uniform))


def _top_p_filter(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logp, order = torch.sort(logp, descending=True, dim=-1)
    cumulative = sorted_logp.exp().cumsum(dim=-1)
    # Drop a token when the mass *before* it already reaches top_p (the top token always survives).
    drop_sorted = (cumulative - sorted_logp.exp()) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logp.masked_fill(drop, float("-inf"))


# ----------------------------------------------------------------------------------------------- prompts


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for part in content or []:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif isinstance(part, dict):
            # datasets stores list-of-struct columns with every key present, unused ones as None.
            parts.append({k: v for k, v in part.items() if v is not None})
    return parts


def build_messages(
    prompt: Any, num_images: int, *, with_images: bool, system_prompt: str | None = None
) -> list[dict]:
    """Chat messages for one sample, in the multimodal arm (`with_images`) or the text-only arm.

    `prompt` is a plain question string or a conversational list of messages (TRL's VLM format, possibly with
    {"type": "image"} placeholders). The text-only arm is the same conversation with the image parts removed
    (docs/method.md: not a blank image, not a caption). In the multimodal arm, when the conversation has fewer image
    placeholders than images, the missing ones are put before the text of the first user message.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        messages = [
            {"role": m["role"], "content": _content_parts(m.get("content"))} for m in copy.deepcopy(prompt)
        ]
    else:
        raise ValueError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")
    if not any(
        p.get("type") == "text" and str(p.get("text", "")).strip() for m in messages for p in m["content"]
    ):
        raise ValueError("empty question: the prompt has no text")
    placeholders = sum(1 for m in messages for p in m["content"] if p.get("type") == "image")
    if with_images:
        if placeholders > num_images:
            raise ValueError(
                f"prompt has {placeholders} image placeholders but the row has {num_images} image(s)"
            )
        missing = num_images - placeholders
        if missing:
            user = next((m for m in messages if m["role"] == "user"), None)
            if user is None:
                raise ValueError("prompt has no user message to attach the image(s) to")
            user["content"] = [{"type": "image"} for _ in range(missing)] + user["content"]
    else:
        for m in messages:
            m["content"] = [p for p in m["content"] if p.get("type") != "image"]
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    return messages


# ----------------------------------------------------------------------------------------------- generation


@dataclass
class Rollouts:
    """Generated completions of one arm for a batch: texts and token ids, grouped per sample."""

    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    num_generated_tokens: int
    # With `capture_attention`: per sample, per completion, the (L, L) float32 CPU tensor of the final layer's
    # head-averaged attention over the completion's L tokens (the matrix ACE reads), recorded while decoding.
    attention: list[list[torch.Tensor]] | None = None


def processor_inputs(
    processor: Any, texts: Sequence[str], images: Sequence[Sequence[Image.Image]] | None = None
) -> BatchFeature:
    """Model inputs for a batch of rendered prompts, following the processor's own contract.

    - ``images[i]`` are the images of ``texts[i]``, passed nested (one list per sample): the form every
      processor accepts, and the only one some accept (Gemma 3 and SmolVLM count images per sample; LLaVA-
      OneVision derives ``batch_num_images`` from it and only tiles single-image samples). ``None``, or only
      empty lists, means no images: the text-only arm gets no pixel inputs at all.
    - Left padding, asked for in the call itself: every row's prompt then ends at the same position, so
      generation appends in lockstep. A call argument is the one setting every processor honours (a
      ``padding_side`` saved in the tokenizer config would override the tokenizer attribute).
    - No second bos: when the chat template already starts the prompt with the tokenizer's bos token (Gemma,
      Llama 3), the tokenizer must not add another one. This is the rule of transformers'
      ``ProcessorMixin.apply_chat_template(tokenize=True)``, which is how TRL's GRPO trainer tokenizes the same
      prompts, so scoring sees the token ids training will see.

    Everything else the processor returns (``pixel_values``, ``image_grid_thw``, ``pixel_attention_mask``,
    ``image_sizes``, ``batch_num_images``, ``token_type_ids``, ...) is passed on to the model unchanged.
    """
    texts = list(texts)
    kwargs: dict[str, Any] = {"text": texts, "padding": True, "padding_side": "left", "return_tensors": "pt"}
    if images is not None and any(images):
        kwargs["images"] = [list(sample) for sample in images]
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and texts and all(text.startswith(bos) for text in texts):
        kwargs["add_special_tokens"] = False
    return processor(**kwargs)


def render_prompt(processor, messages: list[dict]) -> str:
    """The model's prompt text for `messages`, through the processor's chat template."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def stop_token_ids(model, processor) -> list[int]:
    """Token ids that end a completion: the generation config's eos ids, else the tokenizer's."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(processor, "tokenizer", processor), "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]


def placeholder_token_ids(model) -> list[int]:
    """The model's image/video placeholder token ids: never sampled in a rollout (as in TRL's GRPOTrainer).

    A sampled placeholder would be a degenerate completion, and the ACE pass, which feeds the prompt and the
    completion back through the model, would fail with "image features and image tokens do not match".
    """
    config = getattr(model, "config", None)
    ids = [getattr(config, name, None) for name in ("image_token_id", "video_token_id")]
    return [int(i) for i in ids if isinstance(i, int)]


def _prefill_once(model, processor, prompts, images, repeats: Sequence[int]) -> dict[str, Any]:
    """Encode each prompt (and its images) once, then expand: the `model.generate` inputs of the repeated batch.

    The prompts without their last token run through the model once per row (image encoding included) into a
    KV cache, whose row i is then repeated `repeats[i]` times; `generate` resumes from it with the last prompt
    token, so every completion still samples with its own seed. The layout (left padding, prompt length) is the
    one of the repeated batch, since repeating a prompt does not change the padded length.

    Opt-in: the completions equal the repeated prefill's on the eight tiny families, in both arms, and on the
    reference model (tests/test_ace_generation.py), but the prefill runs at another batch shape, so the logits
    can differ at float-rounding level from a run without it (a rare sampled-token flip would change a score).
    """
    from transformers import DynamicCache

    with_images = bool(images) and any(images)
    inputs = processor_inputs(processor, prompts, [list(i or []) for i in images] if with_images else None)
    inputs = inputs.to(model.device)
    shape = inputs["input_ids"].shape
    index = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(list(repeats))).to(model.device)
    prefill: dict[str, Any] = dict(inputs)
    expanded: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.shape == shape:
            prefill[key] = value[:, :-1]
            expanded[key] = value.index_select(0, index)
    inner = getattr(model, "model", None)
    if hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None  # recomputed by a multimodal prefill (Qwen-VL's multimodal rope)
    # As `generate` does: positions count from each row's first real token (left padding). Not for Qwen-VL's
    # multimodal prompts, whose 3D positions the model builds itself from the image grid.
    if "attention_mask" in prefill and not (with_images and hasattr(inner, "rope_deltas")):
        mask = prefill["attention_mask"].long()
        prefill["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        prefill["logits_to_keep"] = 1  # the prefill's logits are not used
    cache = DynamicCache(config=model.config)
    model(**prefill, cache=cache, use_cache=True)
    cache.batch_select_indices(index)
    if getattr(inner, "rope_deltas", None) is not None:
        inner.rope_deltas = inner.rope_deltas.index_select(0, index.to(inner.rope_deltas.device))
    expanded["cache"] = cache
    return expanded


@torch.inference_mode()
def generate_rollouts(
    model,
    processor,
    prompts: Sequence[str],
    images: Sequence[Sequence[Image.Image]] | None,
    row_seeds: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    synced_gpus: bool | None = None,
    capture_attention: bool = False,
    shared_prefill: bool = False,
) -> Rollouts:
    """Generate `len(row_seeds[i])` completions for each prompt i, in one batched `model.generate` call.

    `images[i]` are the images of prompt i (None or empty lists for the text-only arm). Returns texts and
    token ids without the stop token; completions stop at the model's eos token(s) or `max_new_tokens`.
    `synced_gpus=True` keeps decoding until every process is done (needed when parameters are sharded, as
    under ZeRO-3); None lets transformers decide. `capture_attention=True` also records, for every completion,
    the final layer's attention over its own tokens while decoding (`Rollouts.attention`; in-generation ACE):
    it decodes one step more than `max_new_tokens` (row i is recorded when token i is fed back), whose token is
    dropped, so the completions are the same as without it. `shared_prefill=True` (opt-in, see
    `_prefill_once`) encodes each prompt and its images once instead of once per completion, in either arm;
    it is skipped when no prompt has more than one completion or some prompt has none.
    """
    repeats = [len(s) for s in row_seeds]
    # One sequence per completion: each prompt (and its images, still one list per sequence) repeated.
    flat_texts = [p for p, r in zip(prompts, repeats, strict=True) for _ in range(r)]
    flat_images: list[list[Image.Image]] | None = None
    if images is not None:
        flat_images = [list(imgs or []) for imgs, r in zip(images, repeats, strict=True) for _ in range(r)]
    flat_seeds = [s for seeds in row_seeds for s in seeds]
    if shared_prefill and min(repeats) >= 1 and max(repeats) > 1:
        inputs = _prefill_once(model, processor, prompts, images, repeats)
    else:
        inputs = processor_inputs(processor, flat_texts, flat_images).to(model.device)
    prompt_length = inputs["input_ids"].shape[1]
    tokenizer = getattr(processor, "tokenizer", processor)
    stops = stop_token_ids(model, processor)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    # Explicit greedy config: values we leave unset would be filled from the model's own generation_config
    # (e.g. a repetition penalty), and the rollouts must be plain samples at `temperature`/`top_p`.
    generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens + 1 if capture_attention else max_new_tokens,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=stops or None,
        pad_token_id=pad_id,
        suppress_tokens=placeholder_token_ids(model) or None,
    )
    sampler = SeededGumbelSampler(flat_seeds, prompt_length, temperature=temperature, top_p=top_p)
    capture: Any = contextlib.nullcontext()
    if capture_attention:
        capture = capture_generation_attention(model, len(flat_seeds), prompt_length, max_new_tokens)
    with capture as recorder:
        output = model.generate(
            **inputs,
            generation_config=generation_config,
            logits_processor=LogitsProcessorList([sampler]),
            synced_gpus=synced_gpus,
        )
    new_tokens = output[:, prompt_length : prompt_length + max_new_tokens].tolist()
    stop_set = set(stops)
    flat_ids: list[list[int]] = []
    for row in new_tokens:
        ids = []
        for token in row:
            if token in stop_set:
                break
            ids.append(token)
        flat_ids.append(ids)
    flat_decoded = tokenizer.batch_decode(flat_ids, skip_special_tokens=True)
    texts: list[list[str]] = []
    token_ids: list[list[list[int]]] = []
    attention: list[list[torch.Tensor]] | None = None
    flat_attention: list[torch.Tensor] = []
    if recorder is not None:
        rows = recorder.rows.cpu() if recorder.rows is not None else None
        for j, ids in enumerate(flat_ids):
            n = len(ids)
            if n and (rows is None or recorder.step < n):
                raise RuntimeError("attention capture missed decoding steps")
            flat_attention.append(rows[j, :n, :n].clone() if n else torch.zeros(0, 0, dtype=torch.float32))
        attention = []
    start = 0
    for r in repeats:
        texts.append(flat_decoded[start : start + r])
        token_ids.append(flat_ids[start : start + r])
        if attention is not None:
            attention.append(flat_attention[start : start + r])
        start += r
    return Rollouts(
        texts=texts,
        token_ids=token_ids,
        num_generated_tokens=sum(len(i) for i in flat_ids),
        attention=attention,
    )
