"""Image decoding that cannot blow memory: pixel caps before decoding, downscaling while decoding, 16-bit and
float images by their value range, the processor's real pixel budget, and no PIL global ever changed."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from rap_hf.scoring.images import (
    DEFAULT_MAX_DECODE_PIXELS,
    ImageError,
    decode_image,
    normalize_image,
    processor_pixel_budget,
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels but carries no pixel data: opening it reads the header
    only; decoding it would allocate the full image (and then fail)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _gradient_16bit(width: int = 64, height: int = 16) -> Image.Image:
    row = np.linspace(0, 65535, width).astype(np.uint16)
    return Image.fromarray(np.tile(row, (height, 1)))


def test_16bit_png_becomes_8bit_by_its_range():
    image = decode_image({"bytes": _png(_gradient_16bit()), "path": None})
    assert image.mode.startswith("I")  # decode keeps the mode; normalize converts
    rgb = np.asarray(normalize_image(image, None))
    assert rgb.shape == (16, 64, 3)
    first_row = rgb[0, :, 0].astype(int)
    assert first_row[0] <= 2 and first_row[-1] >= 253
    assert (np.diff(first_row) >= 0).all() and len(np.unique(first_row)) > 50


def test_12bit_values_in_a_16bit_png_are_stretched():
    row = np.linspace(0, 4095, 32).astype(np.uint16)  # a 12-bit sensor: PIL's own conversion clips it white
    rgb = np.asarray(normalize_image(decode_image(_png(Image.fromarray(np.tile(row, (4, 1))))), None))
    assert rgb[0, 0, 0] <= 2 and rgb[0, -1, 0] >= 253


def test_float_image_by_its_range():
    values = np.tile(np.linspace(-1.0, 3.0, 40, dtype=np.float32), (5, 1))
    rgb = np.asarray(normalize_image(Image.fromarray(values, mode="F"), None))
    assert rgb[0, 0, 0] <= 2 and rgb[0, -1, 0] >= 253 and (np.diff(rgb[0, :, 0].astype(int)) >= 0).all()


def test_constant_16bit_image_keeps_its_level():
    image = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert np.asarray(normalize_image(image, None)).min() == 255


def test_16bit_gradient_reaches_the_processor_intact(tiny_filter_factory):
    """Scored end to end: the image the processor receives is RGB and keeps the gradient."""
    import datasets

    flt = tiny_filter_factory(num_rollouts=1, max_new_tokens=2, compute_ace=False)
    seen = []
    processor = flt.engine.processor

    class Recording:
        def __call__(self, *args, **kwargs):
            seen.extend(img for imgs in (kwargs.get("images") or []) for img in (imgs or []))
            return processor(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(processor, name)

    flt.engine.processor = Recording()
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    ds = datasets.Dataset.from_dict(
        {"prompt": [prompt], "image": [{"bytes": _png(_gradient_16bit()), "path": None}], "solution": ["1"]},
        features=datasets.Features(
            {
                "prompt": [
                    {
                        "role": datasets.Value("string"),
                        "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                    }
                ],
                "image": datasets.Image(),
                "solution": datasets.Value("string"),
            }
        ),
    )
    scored = flt.score(ds)
    assert scored["rap_error"] == [None]
    assert seen and all(isinstance(img, Image.Image) for img in seen)
    pixels = np.asarray(seen[0])
    assert seen[0].mode == "RGB"
    row = pixels[0, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253 and (np.diff(row) >= 0).all()


def test_huge_png_is_refused_before_decoding():
    bomb = _png_header_only(13000, 13000)  # 169M pixels declared in a few dozen bytes
    start = time.perf_counter()
    with pytest.raises(ImageError, match="above the cap.*not decoded"):
        decode_image({"bytes": bomb, "path": None}, max_pixels=25_000_000)
    assert time.perf_counter() - start < 1.0


def test_png_above_the_default_cap_gets_an_error_not_a_decode():
    with pytest.raises(ImageError, match="refused|above the cap"):
        decode_image(_png_header_only(15000, 15000))  # 225M pixels > DEFAULT_MAX_DECODE_PIXELS
    assert 13000 * 13000 < DEFAULT_MAX_DECODE_PIXELS  # a 13000x13000 image is downscaled instead (benchmark)


def test_large_jpeg_is_downscaled_while_decoding():
    big = Image.new("RGB", (2400, 1600), (200, 30, 30))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG")
    image = decode_image(buffer.getvalue(), target_pixels=100_000)
    # JPEG draft decodes at 1/4 (600x400 = 240k) or less, never the full 3.84M pixels; reduce then halves it.
    assert image.width * image.height < 400_000 and image.width * image.height >= 100_000 / 4
    assert normalize_image(image, 100_000).width * normalize_image(image, 100_000).height <= 100_000


def test_large_png_is_reduced_in_its_own_mode():
    palette = Image.new("RGB", (1200, 900), (0, 120, 255)).convert("P")
    image = decode_image(_png(palette), target_pixels=50_000)
    assert image.width * image.height < 4 * 50_000
    out = normalize_image(image, 50_000)
    assert out.mode == "RGB" and out.width * out.height <= 50_000
    assert tuple(np.asarray(out)[5, 5]) == (0, 120, 255)


def test_paths_can_be_refused(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)
    assert decode_image(str(path)).size == (4, 4)
    with pytest.raises(ImageError, match="paths are not accepted"):
        decode_image({"bytes": None, "path": str(path)}, allow_paths=False)


def test_pil_globals_never_change_even_with_concurrent_decodes():
    before = Image.MAX_IMAGE_PIXELS
    bomb, ok = _png_header_only(13000, 13000), _png(Image.new("RGB", (300, 200)))
    errors = []

    def work():
        for _ in range(20):
            try:
                decode_image(bomb, max_pixels=1_000_000)
            except ImageError:
                pass
            decode_image(ok, target_pixels=10_000)
            if Image.MAX_IMAGE_PIXELS != before:
                errors.append(Image.MAX_IMAGE_PIXELS)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and Image.MAX_IMAGE_PIXELS == before


def _processor(size, **attributes):
    return SimpleNamespace(image_processor=SimpleNamespace(size=size, **attributes))


def test_pixel_budget_of_transformers5_size_dict():
    from transformers.image_utils import SizeDict

    qwen = _processor(SizeDict(longest_edge=12845056, shortest_edge=3136), merge_size=2)
    assert processor_pixel_budget(qwen) == 12845056  # Qwen2-VL: longest_edge is a pixel count, not an edge
    assert processor_pixel_budget(_processor({"max_pixels": 1000, "longest_edge": 9})) == 1000
    assert processor_pixel_budget(_processor(None, max_pixels=777)) == 777
    # Resizing processors: 4x their largest output, so a 4:1 image keeps the resolution they keep.
    assert processor_pixel_budget(_processor(SizeDict(longest_edge=1456))) == 4 * 1456 * 1456  # Idefics3
    assert processor_pixel_budget(_processor(SizeDict(height=896, width=896))) == 4 * 896 * 896  # Gemma 3
    internvl = _processor(SizeDict(height=448, width=448), crop_to_patches=True, max_patches=12)
    assert processor_pixel_budget(internvl) == 4 * 13 * 448 * 448  # 12 tiles + the thumbnail
    anyres = _processor(SizeDict(height=384, width=384), image_grid_pinpoints=[[384, 768], [2304, 2304]])
    assert processor_pixel_budget(anyres) == 4 * 2304 * 2304  # LLaVA-OneVision
    assert processor_pixel_budget(_processor({"shortest_edge": 224})) == 4 * 224 * 224
    assert processor_pixel_budget(_processor(None)) is None
    assert processor_pixel_budget(SimpleNamespace()) is None


def test_pixel_budget_of_the_reference_model():
    from transformers import AutoProcessor

    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    if not reference_model_available():
        pytest.skip("reference model not installed")
    processor = AutoProcessor.from_pretrained(str(reference_model_path()))
    assert processor_pixel_budget(processor) == 50176  # its size["longest_edge"], a pixel count (224 x 224)
