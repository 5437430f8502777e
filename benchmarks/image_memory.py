"""How much memory does scoring a huge image take? A 13000x13000 PNG, scored end to end.

A PNG of 13000x13000 pixels compresses to a few hundred KB and decodes to 507 MB (RGB). This script writes
such a PNG (streamed row by row, so writing it costs no memory), then, in a fresh process per case, scores a
one-row dataset holding it with the shipped reference model (1 rollout per arm, 8 new tokens) and samples the
process's resident memory every 5 ms. It prints the peak extra RSS over the memory before scoring (the goal:
under 1 GB) and the seconds, for an RGB and a 16-bit grayscale PNG, and for one above the pixel cap (refused).

    python benchmarks/image_memory.py [--size 13000] [--json benchmarks/results/image_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def write_png(path: Path, size: int, mode: str) -> int:
    """A size x size PNG (``mode`` "RGB" 8-bit or "I;16" 16-bit gray) with horizontal colour bands, written row
    by row; returns its size in bytes."""
    color_type, depth = (2, 8) if mode == "RGB" else (0, 16)
    compressor = zlib.compressobj(9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, depth, color_type, 0, 0, 0)))
        data = bytearray()
        for y in range(size):
            band = (y * 8) // size
            pixel = (
                bytes([40 * band % 256, 255 - 30 * band, 120])
                if mode == "RGB"
                else struct.pack(">H", 8000 * band)
            )
            data += compressor.compress(b"\x00" + pixel * size)
            if len(data) > 1 << 20:
                f.write(chunk(b"IDAT", bytes(data)))
                data.clear()
        data += compressor.flush()
        f.write(chunk(b"IDAT", bytes(data)))
        f.write(chunk(b"IEND", b""))
    return path.stat().st_size


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(png: str) -> dict:
    """In this process: score a one-row dataset holding the PNG; peak extra RSS while scoring."""
    import io
    import threading
    import time

    import datasets
    from PIL import Image

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path

    def one_row(image_bytes: bytes) -> datasets.Dataset:
        prompt = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}
        ]
        rows = {"prompt": [prompt], "image": [{"bytes": image_bytes, "path": None}], "solution": ["blue"]}
        return datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())

    small = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(small, format="PNG")
    ds = one_row(Path(png).read_bytes())
    config = RAPConfig(num_rollouts=1, max_new_tokens=8, batch_size=1)
    flt = RAPDataFilter(str(reference_model_path()), config=config, device="cpu")
    flt.score(one_row(small.getvalue()), desc="warm-up")  # imports and kernels: only the image's cost is left
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    before = _rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    scored = flt.score(ds, desc="huge image")
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {
        "peak_extra_rss_mb": (max(peak[0], _rss()) - before) / 2**20,
        "seconds": seconds,
        "rap_error": scored["rap_error"][0],
        "budget_pixels": flt.max_image_pixels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=13000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("RGB", args.size, "RGB"),
            ("16-bit gray", args.size, "I;16"),
            ("RGB above the cap", 15000, "RGB"),
        ]
        for name, size, mode in cases:
            png = Path(tmp) / f"{mode.replace(';', '')}_{size}.png"
            nbytes = write_png(png, size, mode)
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(png)], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(size=f"{size}x{size}", png_kb=nbytes / 1024)
            results[name] = result
            print(
                f"{name:<20} {size}x{size} PNG {nbytes / 1024:7.0f} KB: peak extra RSS "
                f"{result['peak_extra_rss_mb']:7.1f} MB, {result['seconds']:5.1f} s, rap_error={result['rap_error']!r}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
