"""The final-layer capture equals the eager all-layer attention, for the rows and columns ACE needs."""

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from rap_hf.scoring.attention import capture_final_layer_attention, final_self_attention


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_capture_matches_output_attentions(tiny_model_dir, attn_implementation):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    reference = AutoModelForImageTextToText.from_pretrained(
        tiny_model_dir, attn_implementation="eager"
    ).eval()
    model = AutoModelForImageTextToText.from_pretrained(
        tiny_model_dir, attn_implementation=attn_implementation
    ).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    text = (
        processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        + "There are 3 dots."
    )
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 80), (200, 30, 30))], return_tensors="pt")
    rows = 6
    with torch.no_grad():
        full = reference(**inputs, output_attentions=True).attentions[-1][0].mean(0)  # (S, S), heads averaged
        with capture_final_layer_attention(model, num_rows=rows) as recorder:
            out = model(**inputs)
    expected = full[-rows:, -rows:]
    assert recorder.result.shape == (rows, rows)
    torch.testing.assert_close(recorder.result, expected.float(), atol=1e-5, rtol=1e-4)
    # The model's own output is untouched by the capture, and the implementation is restored afterwards.
    torch.testing.assert_close(out.logits, model(**inputs).logits)
    assert final_self_attention(model).config._attn_implementation == attn_implementation
    assert not hasattr(final_self_attention(model), "_rap_recorder")


def test_capture_only_touches_the_final_layer(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    target = final_self_attention(model)
    layers = model.get_decoder().layers
    assert target is layers[-1].self_attn and target is not layers[0].self_attn
