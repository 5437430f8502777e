"""Image decoding and normalisation for scoring, one row at a time so one bad image cannot sink a batch.

The filter reads image columns undecoded (`datasets.Image(decode=False)`), because `datasets` decodes a
whole batch before our function runs and a single corrupt file would raise there, outside our reach.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import datasets

# PIL refuses images over ~179M pixels as a decompression bomb; we downscale anyway, so allow a larger input
# but keep a hard ceiling far above any real training image.
_MAX_DECODE_PIXELS = 1_000_000_000


class ImageError(ValueError):
    """A row's image could not be used; the message becomes the row's `rap_error`."""


def decode_image(value: Any) -> Image.Image:
    """A PIL image from a decoded image, a `datasets` {"bytes", "path"} dict, raw bytes or a file path."""
    if isinstance(value, Image.Image):
        return value
    data: bytes | None = None
    path: str | None = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    elif value is None:
        raise ImageError("missing image")
    else:
        raise ImageError(f"unsupported image value of type {type(value).__name__}")
    if not data and not path:
        raise ImageError("missing image (no bytes and no path)")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = _MAX_DECODE_PIXELS
    try:
        image = Image.open(io.BytesIO(data)) if data else Image.open(path)
        image.load()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    return image


def normalize_image(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """RGB, at most `max_pixels` pixels (aspect ratio kept). Grayscale, RGBA and palette images become RGB."""
    if image.width < 1 or image.height < 1:
        raise ImageError(f"empty image of size {image.width}x{image.height}")
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparency on white: dropping alpha would expose arbitrary hidden colours.
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        else:
            image = image.convert("RGB")
    if max_pixels is not None and image.width * image.height > max_pixels:
        scale = math.sqrt(max_pixels / (image.width * image.height))
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def processor_pixel_budget(processor: Any) -> int | None:
    """The processor's own maximum pixel count (`max_pixels` / `size["longest_edge"]`), when it declares one."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return None
    max_pixels = getattr(image_processor, "max_pixels", None)
    size = getattr(image_processor, "size", None)
    if max_pixels is None and isinstance(size, dict):
        max_pixels = size.get("max_pixels")
        if max_pixels is None and size.get("longest_edge"):
            max_pixels = int(size["longest_edge"]) ** 2
    return int(max_pixels) if max_pixels else None


def undecoded_images(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """Cast an Image (or list-of-Image) column to ``decode=False``, so that decoding happens per row, under
    our control (`decode_image`), instead of for a whole batch inside `datasets`."""
    import datasets

    feature = dataset.features[column]
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image) and inner.decode:
        return dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset
