"""Tiny offline vision-language models: build, save, reload through the auto classes, chat, generate."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from rap_hf.demo.tiny_models import (  # noqa: E402
    QWEN_VL_SPECIAL_TOKENS,
    TINY_FAMILIES,
    build_tiny_vlm,
    save_tiny_vlm,
)

NON_ASCII = "Ünïcødé 数学 ∑ x² = \\boxed{12} — naïve"
# The Qwen-VL families share tokens, template and vision geometry, checked here in detail; every family
# (Qwen included) goes through the scoring pipeline in tests/test_families.py.
QWEN_FAMILIES = tuple(f for f in TINY_FAMILIES if f.startswith("qwen"))


@pytest.fixture(scope="module", params=QWEN_FAMILIES)
def saved(request, tmp_path_factory):
    family = request.param
    path = save_tiny_vlm(tmp_path_factory.mktemp(family) / "tiny", family, seed=0)
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    processor = AutoProcessor.from_pretrained(path)
    return family, path, model, processor, info


def _image() -> Image.Image:
    pixels = torch.arange(56 * 84 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(56, 84, 3)
    return Image.fromarray(pixels.numpy(), mode="RGB")  # 84 wide, 56 high


def _prompts(processor) -> list[str]:
    with_image = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What is 3 + 4? Answer in \\boxed{}."}],
        }
    ]
    text_only = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Ünïcødé 数学: what is 2 + 2?"},
    ]
    return [processor.apply_chat_template(m, add_generation_prompt=True) for m in (with_image, text_only)]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_families():
    assert {"qwen2_5_vl", "qwen2_vl"} <= set(TINY_FAMILIES)
    with pytest.raises(ValueError, match="unknown tiny model family"):
        build_tiny_vlm("llava")


def test_reload_types_and_ids(saved):
    family, _, model, processor, info = saved
    assert model.config.model_type == family
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.dtype == torch.float32
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    for name, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]:
        assert getattr(model.config, name) == tok.convert_tokens_to_ids(token)
    assert processor.image_token_id == model.config.image_token_id
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    # special tokens are single tokens with distinct ids, in the vocabulary
    ids = [tok.convert_tokens_to_ids(t) for t in QWEN_VL_SPECIAL_TOKENS]
    assert len(set(ids)) == len(ids) and max(ids) < len(tok)
    assert tok("<|im_start|>user<|im_end|>")["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
    # processor and model agree on the vision geometry
    vision = model.config.vision_config
    assert processor.image_processor.patch_size == vision.patch_size
    assert processor.image_processor.merge_size == vision.spatial_merge_size
    assert processor.image_processor.temporal_patch_size == vision.temporal_patch_size
    assert processor.chat_template and tok.chat_template


def test_weights_roundtrip_and_seed(saved):
    family, _, loaded, _, _ = saved
    built, _ = build_tiny_vlm(family, seed=0)  # same seed as the saved one
    expected, got = _state(built), _state(loaded)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    other, _ = build_tiny_vlm(family, seed=1)
    other_state = _state(other)
    assert any(not torch.equal(expected[k], other_state[k]) for k in expected)


def test_seed_does_not_touch_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_vlm("qwen2_5_vl", seed=7)
    assert torch.equal(torch.rand(3), before)


def test_tokenizer_roundtrip(saved):
    _, _, _, processor, _ = saved
    tok = processor.tokenizer
    for text in (NON_ASCII, "12 + 30 = 42\n\\frac{1}{2}", "🙂 emoji and\ttabs  "):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert tok.decode(tok(NON_ASCII + "<|im_end|>")["input_ids"], skip_special_tokens=True) == NON_ASCII


def test_chat_template(saved):
    family, _, _, processor, _ = saved
    with_image, text_only = _prompts(processor)
    default_system = (
        "" if family == "qwen3_vl" else "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    )
    assert with_image == (
        default_system + "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "What is 3 + 4? Answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text_only == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nÜnïcødé 数学: what is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    )
    no_prompt = processor.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=False
    )
    assert no_prompt.endswith("<|im_start|>user\nhi<|im_end|>\n")
    # the tokenizer carries the same template
    assert processor.tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Ünïcødé 数学: what is 2 + 2?"},
        ],
        add_generation_prompt=True,
        tokenize=False,
    ) == (text_only)


def test_mixed_batch_generate(saved):
    family, path, model, processor, _ = saved
    prompts = _prompts(processor)
    inputs = processor(
        text=prompts, images=[_image()], padding=True, padding_side="left", return_tensors="pt"
    )
    grid = inputs["image_grid_thw"]
    assert grid.shape == (1, 3)
    n_image_tokens = int(grid.prod()) // processor.image_processor.merge_size**2
    image_id = model.config.image_token_id
    assert (inputs["input_ids"][0] == image_id).sum() == n_image_tokens
    assert (inputs["input_ids"][1] == image_id).sum() == 0
    mask = inputs["attention_mask"]
    assert mask[:, -1].all() and not mask.all()  # left padding
    prompt_len = inputs["input_ids"].shape[1]

    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and prompt_len < out.shape[1] <= prompt_len + 5
    assert torch.equal(out[:, :prompt_len], inputs["input_ids"])
    full = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert full.shape == (2, prompt_len + 5)

    eager = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    assert torch.equal(eager.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False), full)
    assert processor.batch_decode(full[:, prompt_len:], skip_special_tokens=True)[0] is not None


def test_decoder_layers_path():
    model, _ = build_tiny_vlm("qwen2_5_vl", num_hidden_layers=8, attn_implementation="eager")
    decoder = model.get_decoder()
    assert decoder is model.model.language_model
    assert len(decoder.layers) == 8
    assert decoder.layers[-1].self_attn.layer_idx == 7
    assert model.config._attn_implementation == "eager"
