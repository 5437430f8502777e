"""The seeded Gumbel sampler is exact sampling at temperature/top_p, and independent of its batch."""

import math

import torch

from rap_hf.scoring.rollouts import SeededGumbelSampler, build_messages, completion_seed

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def _draw(num, temperature=1.0, top_p=1.0, base=0):
    seeds = [completion_seed(base, i, "mm", 0) for i in range(num)]
    sampler = SeededGumbelSampler(seeds, prompt_length=3, temperature=temperature, top_p=top_p)
    logits = PROBS.log().repeat(num, 1)
    out = sampler(torch.zeros(num, 3, dtype=torch.long), logits)
    return out.argmax(-1)


def test_gumbel_argmax_matches_the_distribution():
    draws = _draw(20000)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    # 4 standard errors of a binomial proportion at n = 20000 is < 0.015
    assert torch.allclose(freq, PROBS, atol=0.015), freq


def test_temperature_sharpens_and_zero_is_greedy():
    cold = _draw(5000, temperature=0.25)
    assert (cold == 0).float().mean() > 0.85
    greedy = _draw(50, temperature=0.0)
    assert (greedy == 0).all()


def test_top_p_drops_the_tail():
    draws = _draw(20000, top_p=0.6)  # keeps tokens 0 and 1 (mass before token 2 is 0.8 >= 0.6)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[2] == 0 and freq[3] == 0
    assert math.isclose(freq[0].item(), 0.5 / 0.8, abs_tol=0.02)


def test_rows_do_not_depend_on_batch_neighbours():
    seeds = [completion_seed(7, i, "text", k) for i in range(3) for k in range(2)]
    logits = torch.randn(6, 50)
    batch = SeededGumbelSampler(seeds, prompt_length=5)(torch.zeros(6, 9, dtype=torch.long), logits.clone())
    for row in range(6):
        alone = SeededGumbelSampler([seeds[row]], prompt_length=5)(
            torch.zeros(1, 9, dtype=torch.long), logits[row : row + 1].clone()
        )
        assert torch.equal(alone[0], batch[row])


def test_noise_is_each_rows_own_seeded_stream():
    # The definition every stored score depends on: row r at decoding step s adds -log(-log(u)), u drawn from a
    # fresh CPU generator seeded with _step_seed(seed_r, s) and clamped; the batched sampler must stay exactly it.
    from rap_hf.scoring.rollouts import _step_seed

    seeds = [completion_seed(3, i, "mm", k) for i in range(4) for k in range(3)]
    logits = torch.randn(12, 700) * 3
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9)):
        out = SeededGumbelSampler(seeds, prompt_length=4, temperature=temperature, top_p=top_p)(
            torch.zeros(12, 10, dtype=torch.long), logits.clone()
        )
        logp = torch.log_softmax(logits / temperature, dim=-1)
        for row, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(_step_seed(seed, 6))
            uniform = torch.rand(700, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
            expected = logp[row] + -torch.log(-torch.log(uniform))
            kept = torch.isfinite(out[row])
            assert torch.equal(out[row][kept], expected[kept])
            assert kept.all() if top_p == 1.0 else 0 < kept.sum() < 700


def test_steps_and_arms_get_different_noise():
    seed = completion_seed(0, 0, "mm", 0)
    assert seed != completion_seed(0, 0, "text", 0) != completion_seed(0, 1, "mm", 0)
    sampler = SeededGumbelSampler([seed], prompt_length=2)
    logits = torch.zeros(1, 100)
    step0 = sampler(torch.zeros(1, 2, dtype=torch.long), logits.clone())
    step1 = sampler(torch.zeros(1, 3, dtype=torch.long), logits.clone())
    assert not torch.equal(step0, step1)


def test_text_only_arm_removes_image_parts():
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    mm = build_messages(prompt, 1, with_images=True)
    text = build_messages(prompt, 1, with_images=False)
    assert [p["type"] for p in mm[0]["content"]] == ["image", "text"]
    assert [p["type"] for p in text[0]["content"]] == ["text"]
    # plain strings get image placeholders added in the multimodal arm only
    assert [p["type"] for p in build_messages("Q?", 2, with_images=True)[0]["content"]] == [
        "image",
        "image",
        "text",
    ]
    assert build_messages("Q?", 2, with_images=False, system_prompt="S")[0]["role"] == "system"
