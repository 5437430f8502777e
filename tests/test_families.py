"""Every supported model family end to end, on tiny random checkpoints built offline and saved to disk.

Per family (`TINY_FAMILIES`, the same set as scoring's `SUPPORTED_MODEL_TYPES`): the image reaches the model,
both arms are built right (the text-only arm holds no image token and no pixel input), the ACE capture equals
the eager `output_attentions=True` last layer, batch size 1 and 4 give identical `rap_*` columns (through
`rap-hf score`), and `RAPGRPOTrainer` takes a step. Unsupported families fail before any model work.

Each saved checkpoint is built once per module; everything runs in a few seconds per family on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import zlib

import datasets
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from rap_hf import RAPConfig, RAPDataFilter
from rap_hf.cli import main
from rap_hf.demo.data import tiny_synthetic
from rap_hf.demo.tiny_models import TINY_FAMILIES, save_tiny_vlm
from rap_hf.errors import RAPUserError
from rap_hf.scoring.engine import final_layer_attention
from rap_hf.scoring.loading import SUPPORTED_MODEL_TYPES, load_model_and_processor
from rap_hf.scoring.rollouts import build_messages, processor_inputs, render_prompt

QUESTION = "How many red dots are in the image? Put the final answer in \\boxed{}."
# Inputs that carry pixels or describe images; none may reach the model in the text-only arm.
IMAGE_INPUTS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes", "batch_num_images")


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_dir(request, tmp_path_factory):
    family = request.param
    return family, save_tiny_vlm(tmp_path_factory.mktemp(family) / "tiny", family, seed=0)


@pytest.fixture(scope="module")
def loaded(family_dir):
    family, path = family_dir
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    return family, path, model, AutoProcessor.from_pretrained(path)


def _image(width: int = 64, height: int = 64, colour=(200, 30, 30)) -> Image.Image:
    pixels = torch.arange(height * width * 3).remainder(251).to(torch.uint8).reshape(height, width, 3)
    image = Image.fromarray(pixels.numpy(), mode="RGB")
    image.paste(colour, (width // 4, height // 4, width // 2, height // 2))
    return image


def _prompts(processor) -> tuple[str, str]:
    mm = render_prompt(processor, build_messages(QUESTION, 1, with_images=True))
    text = render_prompt(processor, build_messages(QUESTION, 0, with_images=False))
    return mm, text


def _varied_sizes(num_rows: int = 3) -> datasets.Dataset:
    """tiny-synthetic rows as an `images` list column, with images of different sizes and aspect ratios and
    one row of two images: in one batch they get different tile counts (InternVL, Idefics3/SmolVLM), anyres
    grids or none (LLaVA-OneVision tiles single-image samples only), grids (Qwen-VL) and padded pixel tensors."""
    data = tiny_synthetic(num_rows, seed=3)
    sizes = [(112, 112), (96, 48), (40, 120), (70, 70)]
    images = [[image.resize(sizes[i % len(sizes)])] for i, image in enumerate(data["image"])]
    images[1].append(data["image"][0].resize((56, 84)))
    columns = {name: data[name] for name in data.column_names if name != "image"}
    features = datasets.Features(
        {**{k: data.features[k] for k in columns}, "images": datasets.List(datasets.Image())}
    )
    return datasets.Dataset.from_dict({**columns, "images": images}, features=features)


def test_supported_families_are_the_tiny_families():
    assert set(SUPPORTED_MODEL_TYPES) == set(TINY_FAMILIES)


def test_image_changes_the_last_token_logits(loaded):
    family, _, model, processor = loaded
    mm, _ = _prompts(processor)
    with torch.no_grad():
        logits = [
            model(**processor_inputs(processor, [mm], [[_image(colour=c)]])).logits[0, -1]
            for c in ((200, 30, 30), (20, 20, 220))
        ]
    # Gemma 3 would show 0 here without re-initialising its zero-initialised multimodal projection.
    assert (logits[0] - logits[1]).abs().max() > 1e-3, family


def test_both_arms(loaded):
    family, _, model, processor = loaded
    mm, text = _prompts(processor)
    image_id = model.config.image_token_id
    tokenizer = processor.tokenizer

    mm_inputs = processor_inputs(processor, [mm], [[_image()]])
    assert (mm_inputs["input_ids"] == image_id).sum() > 0
    assert "pixel_values" in mm_inputs

    text_inputs = processor_inputs(processor, [text], None)
    assert not (text_inputs["input_ids"] == image_id).any()
    assert not set(IMAGE_INPUTS) & set(text_inputs), family
    for placeholder in {getattr(processor, "image_token", None), getattr(processor, "boi_token", None)} - {
        None
    }:
        assert placeholder not in text
    assert QUESTION.split("?")[0] in text
    # Per-token side inputs (e.g. Gemma 3's token_type_ids) come back for the text arm too, all text.
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in text_inputs:
            assert not text_inputs[key].any()

    # One bos at most, even where the chat template writes it and the tokenizer would add another (Gemma 3,
    # Idefics3): the prompt is tokenized as TRL's trainer tokenizes it.
    for inputs in (mm_inputs, text_inputs):
        ids = inputs["input_ids"][0].tolist()
        if tokenizer.bos_token_id is not None:
            assert ids.count(tokenizer.bos_token_id) <= 1

    # A batch of both lengths is left-padded, whatever the processor's own default (InternVL forces left,
    # the others follow the tokenizer), and each sample keeps its own images.
    batch = processor_inputs(
        processor, [mm, mm.replace("How many", "Count the")], [[_image()], [_image(96, 48)]]
    )
    assert batch["attention_mask"][:, -1].all()
    assert ((batch["input_ids"] == image_id).sum(dim=1) > 0).all()


def test_ace_capture_equals_eager_last_layer(loaded):
    """The capture, on the model's own kernel (sdpa) and on eager, equals the last layer of an eager
    `output_attentions=True` pass on the response block: the model's own mask (Gemma 3's bidirectional image
    blocks and sliding window included) is applied."""
    family, path, model, processor = loaded
    reference = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()
    mm, _ = _prompts(processor)
    response = processor.tokenizer("There are 3 dots: \\boxed{3}.", add_special_tokens=False)["input_ids"]
    image = _image(80, 48)

    inputs = processor_inputs(processor, [mm], [[image]])
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([response])], dim=1)
    for key, value in inputs.items():
        per_token = isinstance(value, torch.Tensor) and value.shape == inputs["input_ids"].shape
        if key != "input_ids" and per_token:
            fill = 1 if key == "attention_mask" else 0
            full[key] = torch.cat([value, torch.full((1, len(response)), fill, dtype=value.dtype)], dim=1)
    with torch.no_grad():
        eager = reference(**full, output_attentions=True).attentions[-1][0].mean(0)
    expected = eager[-len(response) :, -len(response) :].float()

    for candidate in (model, reference):
        implementation = candidate.get_decoder().config._attn_implementation
        captured = final_layer_attention(candidate, processor, mm, [image], response)
        assert captured.shape == expected.shape
        torch.testing.assert_close(captured, expected, atol=1e-5, rtol=1e-4, msg=f"{family} {implementation}")
        # The capture leaves the model as it was.
        assert candidate.get_decoder().config._attn_implementation == implementation
    assert model.get_decoder().config._attn_implementation == "sdpa"


def test_rap_hf_score_batch_4_equals_batch_1(family_dir, tmp_path):
    """`rap-hf score --model DIR` on the saved checkpoint, in batches of 4, writes the same columns as
    scoring row by row: images of different sizes in one batch (different tile counts, anyres grids,
    padded pixel tensors) do not change any row's completions or scores."""
    family, path = family_dir
    data = _varied_sizes(3)
    data.save_to_disk(str(tmp_path / "data"))
    settings = {"num_rollouts": 2, "max_new_tokens": 5, "seed": 5}
    args = [
        "score",
        "--model",
        str(path),
        "--dataset",
        str(tmp_path / "data"),
        "--output",
        str(tmp_path / "out"),
    ]
    for name, value in {**settings, "batch_size": 4}.items():
        args += [f"--{name}", str(value)]
    assert main(args) == 0
    batched = datasets.load_from_disk(str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "rap_scoring.json").read_text())
    assert batched["rap_error"] == [None] * len(data), batched["rap_error"]
    assert all(math.isfinite(v) for v in batched["rap_ace_norm"])

    one_by_one = RAPDataFilter(str(path), config=RAPConfig(**settings, batch_size=1)).score(data)
    for column in [c for c in batched.column_names if c.startswith("rap_")]:
        assert batched[column] == one_by_one[column], (family, column)


def test_a_failing_family_gives_clear_error_rows(tmp_path):
    """When a family's processor rejects the batch (here: every image dropped, as a broken batching rule
    would), every row says why in rap_error instead of scoring silently."""
    path = save_tiny_vlm(tmp_path / "gemma3", "gemma3")
    flt = RAPDataFilter(str(path), config=RAPConfig(num_rollouts=1, max_new_tokens=2, batch_size=2))
    processor = flt.processor

    class DropsImages:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, *args, images=None, **kwargs):
            return processor(*args, **kwargs)

    flt.engine.processor = DropsImages()
    scored = flt.score(tiny_synthetic(2))
    assert all(e and e.startswith("generation failed: ") for e in scored["rap_error"]), scored["rap_error"]
    assert all(math.isnan(v) for v in scored["rap_acc_mm"])


def test_gemma3_quirks(tmp_path):
    """What makes Gemma 3 different, as the tiny checkpoint reproduces it (transformers 5.24)."""
    path = save_tiny_vlm(tmp_path / "gemma3", "gemma3")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    tokenizer = processor.tokenizer
    # The processor's image token is <start_of_image>; the image positions in input_ids are the soft tokens.
    assert processor.image_token_id == tokenizer.convert_tokens_to_ids("<start_of_image>")
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image_soft_token>")
    # token_type_ids come back for a text-only prompt as well.
    _, text = _prompts(processor)
    assert "token_type_ids" in processor_inputs(processor, [text])
    # The projection transformers initialises to zeros was redrawn, and survives save/load.
    assert model.model.multi_modal_projector.mm_input_projection_weight.abs().sum() > 0
    # The tokenizer adds <bos> like the real one; the chat template writes it too: one <bos> in the end.
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id and text.startswith("<bos>")
    assert processor_inputs(processor, [text])["input_ids"][0].tolist().count(tokenizer.bos_token_id) == 1
    # The final decoder layer is a sliding-window layer (as in Gemma 3 4B and 27B).
    assert model.config.text_config.layer_types[-1] == "sliding_attention"


# tests/test_trainer.py trains the Qwen2.5-VL tiny model; Qwen2-VL and Qwen3-VL share its code paths in TRL.
@pytest.mark.parametrize("family", [f for f in TINY_FAMILIES if not f.startswith("qwen")])
def test_trainer_takes_a_step(family, tmp_path):
    from rap_hf import RAPGRPOConfig, RAPGRPOTrainer

    path = save_tiny_vlm(tmp_path / family, family)
    args = RAPGRPOConfig(
        output_dir=str(tmp_path / "out"),
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
        rap_train_on="as_is",
    )

    def varied_reward(completions, **kwargs):
        # Different completions, different rewards: a non-zero advantage, so the step changes the weights.
        return [zlib.crc32(str(c).encode()) % 1000 / 1000 for c in completions]

    trainer = RAPGRPOTrainer(
        model=str(path), reward_funcs=varied_reward, args=args, train_dataset=tiny_synthetic(4)
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)}
    assert any("lm_head" in n or "embed_tokens" in n for n in changed), family
    # The images reached the model in training: the vision tower got gradients.
    assert any("vision" in n or "visual" in n for n in changed), family


def test_unsupported_family_fails_before_loading_weights(tmp_path):
    folder = tmp_path / "llava-1.5"
    folder.mkdir()
    # A config and no weights at all: the family check must fail first, on the config alone.
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["X"]}))
    with pytest.raises(RAPUserError) as info:
        load_model_and_processor(str(folder))
    message = str(info.value)
    assert "'llava'" in message and "Supported families" in message
    assert all(name in message for name in SUPPORTED_MODEL_TYPES)

    (folder / "config.json").write_text(json.dumps({"model_type": "internvl_chat"}))
    with pytest.raises(RAPUserError, match="-hf"):
        RAPDataFilter(str(folder))

    tmp = tmp_path / "data"
    tiny_synthetic(2).save_to_disk(str(tmp))
    args = ["score", "--model", str(folder), "--dataset", str(tmp), "--output", str(tmp_path / "o")]
    assert main(args) == 2
