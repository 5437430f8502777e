"""In-generation ACE (`ace_capture="generation"`): the final-layer attention rows recorded while the multimodal
rollouts are decoded equal the second pass (`final_layer_attention`) to 1e-5, for every completion (left
padding, completions that stop early, completions cut at `max_new_tokens`); batch 1 and batch 4 give the same
completions and the same rows up to float rounding (1e-7; not bitwise, unlike the second pass)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from rap_hf.demo.tiny_models import TINY_FAMILIES, build_tiny_vlm
from rap_hf.scoring.engine import final_layer_attention
from rap_hf.scoring.rollouts import build_messages, completion_seed, generate_rollouts, render_prompt

QUESTIONS = (
    "How many red dots?",
    "Count the red dots in the image and put the final answer in \\boxed{}.",
    "What is 2 + 3?",
    "Describe the image.",
)
MAX_NEW_TOKENS = 10


def _image(width: int, height: int) -> Image.Image:
    pixels = torch.arange(height * width * 3).remainder(251).to(torch.uint8).reshape(height, width, 3)
    image = Image.fromarray(pixels.numpy(), mode="RGB")
    image.paste((200, 30, 30), (width // 4, height // 4, width // 2, height // 2))
    return image


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def loaded(request):
    model, processor = build_tiny_vlm(request.param, seed=0)
    model.eval()
    return request.param, model, processor


def _rows(processor, n: int):
    prompts = [render_prompt(processor, build_messages(q, 1, with_images=True)) for q in QUESTIONS[:n]]
    images = [[_image(64, 64)], [_image(48, 80)], [_image(64, 64)], [_image(80, 48)]][:n]
    return prompts, images


def _generate(model, processor, prompts, images, indices, eos=None):
    seeds = [[completion_seed(0, i, "mm", k) for k in range(3)] for i in indices]
    if eos is not None:
        model.generation_config.eos_token_id = eos
    return generate_rollouts(
        model,
        processor,
        prompts,
        images,
        seeds,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=1.0,
        top_p=1.0,
        capture_attention=True,
    )


def _frequent_token(rollouts) -> int:
    counts: dict[int, int] = {}
    for sample in rollouts.token_ids:
        for ids in sample:
            for t in ids[1:]:
                counts[t] = counts.get(t, 0) + 1
    return max(counts, key=counts.get)


def test_generation_capture_equals_second_pass(loaded):
    family, model, processor = loaded
    prompts, images = _rows(processor, 4)
    original_eos = model.generation_config.eos_token_id
    try:
        first = _generate(model, processor, prompts, images, range(4))
        # Again with a frequent token as the stop token: completions of different lengths in one batch.
        eos = _frequent_token(first)
        runs = [first, _generate(model, processor, prompts, images, range(4), eos=[eos])]
    finally:
        model.generation_config.eos_token_id = original_eos
    lengths = {len(ids) for sample in runs[1].token_ids for ids in sample}
    assert len(lengths) > 1, "the stop token should end some completions early"
    # The tokens are the same with and without the capture (it decodes one extra, dropped, step).
    plain = generate_rollouts(
        model,
        processor,
        prompts,
        images,
        [[completion_seed(0, i, "mm", k) for k in range(3)] for i in range(4)],
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=1.0,
        top_p=1.0,
    )
    assert plain.token_ids == first.token_ids and plain.attention is None
    worst = 0.0
    for rollouts in runs:
        for prompt, imgs, sample, attns in zip(
            prompts, images, rollouts.token_ids, rollouts.attention, strict=True
        ):
            for ids, attn in zip(sample, attns, strict=True):
                if not ids:
                    assert attn.shape == (0, 0)
                    continue
                reference = final_layer_attention(model, processor, prompt, imgs, ids)
                assert attn.shape == reference.shape == (len(ids), len(ids))
                worst = max(worst, (attn - reference).abs().max().item())
                torch.testing.assert_close(attn, reference, atol=1e-5, rtol=0)
    print(f"{family}: max abs difference {worst:.2e}")


def test_generation_capture_batch_1_equals_batch_4(loaded):
    _, model, processor = loaded
    prompts, images = _rows(processor, 4)
    batched = _generate(model, processor, prompts, images, range(4))
    for i in range(4):
        alone = _generate(model, processor, prompts[i : i + 1], images[i : i + 1], [i])
        assert alone.token_ids[0] == batched.token_ids[i]
        for a, b in zip(alone.attention[0], batched.attention[i], strict=True):
            # Not bitwise: the model's batched forward is not batch-invariant in float32 (its prefill logits
            # differ by ~1e-7 between batch 1 and 4), and the recorded rows come from that batched forward.
            torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def test_engine_generation_mode_equals_second_pass(tiny_filter_factory):
    from rap_hf.demo.data import tiny_synthetic

    data = tiny_synthetic(4, seed=3)
    reference = tiny_filter_factory(ace_capture="second_pass").score(data)
    captured = tiny_filter_factory(ace_capture="generation").score(data)
    one_by_one = tiny_filter_factory(ace_capture="generation", batch_size=1).score(data)
    assert one_by_one["rap_completions_mm"] == captured["rap_completions_mm"]
    for a, b in zip(one_by_one["rap_ace_norm"], captured["rap_ace_norm"], strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7)
    assert captured["rap_completions_mm"] == reference["rap_completions_mm"]
    assert captured["rap_acc_mm"] == reference["rap_acc_mm"]
    for name in ("rap_ace", "rap_ace_norm"):
        for a, b in zip(captured[name], reference[name], strict=True):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert all(e is None for e in captured["rap_error"])


@pytest.mark.parametrize("arm", ["mm", "text"])
def test_shared_prefill_gives_the_same_completions(loaded, arm):
    """Prefill once per row and expand the cache (opt-in), in either arm and with a different number of
    completions per row (a decisive wave): same completions, same captured rows."""
    _, model, processor = loaded
    prompts, images = _rows(processor, 4)
    if arm == "text":
        prompts = [render_prompt(processor, build_messages(q, 1, with_images=False)) for q in QUESTIONS[:4]]
        images = None
    seeds = [[completion_seed(0, i, arm, k) for k in range(n)] for i, n in enumerate((3, 1, 2, 3))]
    kwargs = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 1.0, "top_p": 1.0, "capture_attention": True}
    repeated = generate_rollouts(model, processor, prompts, images, seeds, **kwargs)
    shared = generate_rollouts(model, processor, prompts, images, seeds, shared_prefill=True, **kwargs)
    assert shared.token_ids == repeated.token_ids
    for a_row, b_row in zip(shared.attention, repeated.attention, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_engine_shared_prefill_option(tiny_filter_factory, monkeypatch):
    """`prefill="shared"` reaches generation (both arms) with the same completions, and is fingerprinted."""
    from rap_hf import RAPConfig
    from rap_hf.demo.data import tiny_synthetic

    data = tiny_synthetic(3, seed=4)
    reference = tiny_filter_factory(compute_ace=False).score(data)
    flt = tiny_filter_factory(compute_ace=False, prefill="shared")
    calls = []
    import rap_hf.scoring.rollouts as rollouts

    original = rollouts._prefill_once

    def spy(*args, **kwargs):
        calls.append((len(args[2]), args[3] is not None))
        return original(*args, **kwargs)

    monkeypatch.setattr(rollouts, "_prefill_once", spy)
    shared = flt.score(data)
    assert calls == [(3, True), (3, False)]  # once per arm for the batch's three rows: images, then none
    assert shared["rap_completions_mm"] == reference["rap_completions_mm"]
    assert shared["rap_completions_text"] == reference["rap_completions_text"]
    assert "prefill" not in RAPConfig().scoring().fingerprint_values()
    assert RAPConfig(prefill="shared").scoring().fingerprint_values()["prefill"] == "shared"
