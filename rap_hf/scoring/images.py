"""Image decoding and normalisation for scoring, one row at a time so one bad image cannot sink a batch.

The filter reads image columns undecoded (`datasets.Image(decode=False)`), because `datasets` decodes a
whole batch before our function runs and a single corrupt file would raise there, outside our reach.

Memory: a 13000x13000 PNG compresses to a few hundred KB and decodes to half a gigabyte per byte of pixel
depth. `decode_image` reads the size from the lazily opened image and refuses one above its pixel cap before
decoding anything, and reduces a large image towards the processor's pixel budget while decoding (JPEG:
`Image.draft`, decoding at 1/2, 1/4 or 1/8 scale; other formats: `Image.reduce` right after decoding, strip by
strip for modes `reduce` does not take), so no full-size converted copy is ever made. PIL's global
``Image.MAX_IMAGE_PIXELS`` is never changed (it is process-wide, and changing it is not thread-safe).

16-bit and float images (modes ``I;16``, ``I``, ``F``) become 8-bit by their value range: PIL's own conversion
clips at 255, which turns a 16-bit image nearly white.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import datasets

#: Default hard cap on an image's pixel count: PIL's own decompression-bomb limit at its default settings
#: (2 x 89,478,485). An image above it gets `rap_error` without being decoded; the explorer uses a lower cap.
DEFAULT_MAX_DECODE_PIXELS = 178_956_970
# Modes `Image.reduce` takes; others are converted strip by strip (`_reduce`).
_REDUCIBLE_MODES = {
    "L",
    "LA",
    "La",
    "I",
    "F",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "HSV",
    "LAB",
    "PA",
}
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Rows per strip when a mode must be converted before reducing: a strip is small next to the image.
_STRIP_ROWS = 512


class ImageError(ValueError):
    """A row's image could not be used; the message becomes the row's `rap_error`."""


def _open(value: Any, allow_paths: bool) -> Image.Image:
    """The lazily opened image (header read, pixels not decoded) behind an image value."""
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
    if not data and not allow_paths:
        raise ImageError(
            "image given as a file path, and paths are not accepted here (embed the image bytes)"
        )
    try:
        return Image.open(io.BytesIO(data)) if data else Image.open(path)
    except Image.DecompressionBombError as exc:  # above PIL's own limit: not even the header is trusted
        raise ImageError(f"image refused: {exc}") from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def _check_size(image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"empty image of size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} = {width * height:,} pixels is above the cap of {max_pixels:,} pixels; "
            "it was not decoded (downscale it, or raise max_pixels of decode_image)"
        )


def _reducible(image: Image.Image) -> Image.Image:
    """``image`` (a small strip) in a mode `Image.reduce` takes, keeping its information."""
    if image.mode in _REDUCIBLE_MODES:
        return image
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """``image`` shrunk by an integer ``factor`` (box average); modes `reduce` does not take are converted in
    strips, so a full-size converted copy never exists."""
    if image.mode in _REDUCIBLE_MODES:
        return image.reduce(factor)
    width, height = image.size
    rows = max(factor, _STRIP_ROWS - _STRIP_ROWS % factor)
    strips = [
        _reducible(image.crop((0, y, width, min(y + rows, height)))).reduce(factor)
        for y in range(0, height, rows)
    ]
    out = Image.new(strips[0].mode, (strips[0].width, sum(s.height for s in strips)))
    y = 0
    for strip in strips:
        out.paste(strip, (0, y))
        y += strip.height
    return out


def decode_image(
    value: Any,
    *,
    max_pixels: int | None = DEFAULT_MAX_DECODE_PIXELS,
    target_pixels: int | None = None,
    allow_paths: bool = True,
) -> Image.Image:
    """A decoded PIL image from a PIL image, a `datasets` {"bytes", "path"} dict, raw bytes or a file path.

    Args:
        value: the image value of a row.
        max_pixels: hard cap: an image with more pixels raises `ImageError` before it is decoded (its size is
            read from the lazily opened file). None: only PIL's own decompression-bomb limit applies.
        target_pixels: reduce the image towards this many pixels while decoding (JPEG draft, else an integer
            `Image.reduce`), keeping at least this many; `normalize_image` then resizes exactly. None: full size.
        allow_paths: False refuses a value that names a file instead of carrying its bytes.

    Thread-safe: no PIL global is changed (the cap is checked per call). The mode is kept (`normalize_image`
    converts it).
    """
    image = value if isinstance(value, Image.Image) else _open(value, allow_paths)
    _check_size(image, max_pixels)
    pixels = image.width * image.height
    try:
        if target_pixels is not None and pixels > target_pixels and getattr(image, "format", None) == "JPEG":
            scale = math.sqrt(target_pixels / pixels)
            image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        image.load()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    if target_pixels is not None:
        factor = math.isqrt(image.width * image.height // max(1, target_pixels))
        if factor >= 2:
            image = _reduce(image, factor)
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit or float image as 8-bit grayscale, stretched linearly over its own value range."""
    nominal = 65535.0 if image.mode.startswith("I;16") else None
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    low, high = image.getextrema()
    if high > low:
        scale = 255.0 / (high - low)
        offset = -low * scale
    else:  # a constant image: place its value on the type's nominal range
        top = nominal or (1.0 if image.mode == "F" and 0 <= low <= 1 else 255.0)
        scale, offset = 0.0, max(0.0, min(255.0, 255.0 * low / top))
    return image.point(lambda v: v * scale + offset).convert("L")


def normalize_image(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """RGB, at most `max_pixels` pixels (aspect ratio kept). Grayscale, RGBA, palette, 16-bit and float images
    become RGB (16-bit and float by their value range)."""
    if image.width < 1 or image.height < 1:
        raise ImageError(f"empty image of size {image.width}x{image.height}")
    if max_pixels is not None and image.width * image.height > max_pixels:
        factor = math.isqrt(image.width * image.height // max_pixels)
        if factor >= 2:  # shrink in the source mode first: no full-size converted copy
            image = _reduce(image, factor)
    if image.mode in _HIGH_DEPTH_MODES:
        image = _to_8bit(image)
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
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


def _size_value(size: Any, key: str) -> Any:
    """``size[key]`` of an image processor's size, a dict or transformers 5's `SizeDict` (attributes)."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _longest_edge_is_pixels(image_processor: Any, value: int) -> bool:
    """Qwen2-VL's family stores its pixel budget as ``size["longest_edge"]`` (min/max *pixels*, not an edge):
    recognisable by the patch merging it does (``merge_size``), or by a value no image edge would have."""
    return getattr(image_processor, "merge_size", None) is not None or value > 16384


def _largest_output(image_processor: Any, size: Any) -> int | None:
    """The most pixels a resizing processor (fixed size, bounded edge, tiles) keeps from one image."""
    pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
    if pinpoints:  # LLaVA-OneVision's "anyres": the largest grid resolution
        return max(int(h) * int(w) for h, w in pinpoints)
    height, width = _size_value(size, "height"), _size_value(size, "width")
    if height and width:
        tiles = 1
        if getattr(
            image_processor, "crop_to_patches", False
        ):  # InternVL: up to max_patches tiles (+ thumbnail)
            tiles = int(getattr(image_processor, "max_patches", 1) or 1) + 1
        if getattr(image_processor, "do_pan_and_scan", False):  # Gemma 3: crops + the whole image
            tiles = int(getattr(image_processor, "pan_and_scan_max_num_crops", 4) or 4) + 1
        return int(height) * int(width) * tiles
    longest = _size_value(size, "longest_edge")
    if longest:
        return int(longest) ** 2
    max_height, max_width = _size_value(size, "max_height"), _size_value(size, "max_width")
    if max_height and max_width:
        return int(max_height) * int(max_width)
    shortest = _size_value(size, "shortest_edge")
    return int(shortest) ** 2 if shortest else None


#: A resizing processor's output is a fixed shape or a bounded edge, not a pixel count: the budget is this many
#: times its largest output, so an image of aspect ratio up to 4:1 still reaches it at no less than the
#: resolution the processor keeps on either side.
ASPECT_ALLOWANCE = 4


def processor_pixel_budget(processor: Any) -> int | None:
    """The pixels to downscale an image to before the processor sees it, when the processor limits them.

    * An explicit budget is used as is: ``max_pixels`` (attribute, then ``size``), and Qwen2-VL's
      ``size["longest_edge"]``, which is a pixel count there (recognised by ``merge_size``), not an edge.
    * A resizing processor (a fixed ``height`` x ``width``, a ``longest_edge`` or ``shortest_edge``, tiles or
      anyres grids) keeps at most its largest output; the budget is `ASPECT_ALLOWANCE` times that.

    ``size`` may be a dict or transformers 5's `SizeDict`. None when the processor declares no limit.
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return None
    size = getattr(image_processor, "size", None)
    max_pixels = getattr(image_processor, "max_pixels", None) or _size_value(size, "max_pixels")
    if max_pixels:
        return int(max_pixels)
    longest = _size_value(size, "longest_edge")
    if longest and _longest_edge_is_pixels(image_processor, int(longest)):
        return int(longest)
    output = _largest_output(image_processor, size)
    return ASPECT_ALLOWANCE * output if output else None


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
