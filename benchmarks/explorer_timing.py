"""How long the RAP Score Explorer takes to paint and to re-select on a large scored dataset.

    python benchmarks/explorer_timing.py --rows 10000 [--browser]

The dataset is synthetic (`rap_hf.explorer.synthetic.synthetic_scored_dataset`: plausible score columns,
5 rollouts per arm, small PNG images), written to parquet and opened like `rap-hf explore PATH` opens one.
Server side, each step is timed in wall-clock and CPU seconds (CPU time does not grow when other processes
share the machine).
With --browser, headless Chromium (Debian's /usr/bin/chromium through Playwright) measures what a visitor
waits for: page load until the counts and the four plots are shown, and one slider move until the new count
and then the new plots are shown.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rap_hf.explorer.data import ExplorerData, read_parquet_dataset
from rap_hf.explorer.overview import overview_images
from rap_hf.explorer.render import selection_summary
from rap_hf.explorer.reselection import config_from_controls, run_selection
from rap_hf.explorer.samples import sample_table
from rap_hf.explorer.synthetic import synthetic_scored_dataset

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def timed(results: dict[str, dict[str, float]], name: str, fn: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    results[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    report(name, results[name])
    return value


def report(name: str, values: dict[str, float]) -> None:
    print(f"{name:<48} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()), flush=True)


def server_side(path: Path, results: dict[str, dict[str, float]]) -> None:
    data = timed(
        results,
        "load parquet + read score arrays",
        lambda: ExplorerData.from_dataset(read_parquet_dataset(path), "bench"),
    )
    first = config_from_controls(0.5, "paper", -1.0, 0.1, True, "all trivial", 10, 0.5, 0)
    moved = config_from_controls(0.3, "paper", -1.0, 0.1, True, "all trivial", 10, 0.5, 0)
    for label, config in (("first paint", first), ("re-selection", moved)):
        selection = timed(
            results, f"{label}: select_cognitive_samples", lambda c=config: run_selection(data, c)
        )
        timed(
            results,
            f"{label}: summary + table",
            lambda s=selection: (selection_summary(s), sample_table(data, s)),
        )
        timed(results, f"{label}: 4 plots", lambda s=selection: overview_images(s))


def browser_side(path: Path, results: dict[str, dict[str, float]]) -> None:
    from playwright.sync_api import sync_playwright

    from rap_hf.explorer.app import build_app, launch_kwargs

    demo = timed(results, "build_app (incl. first-paint content)", lambda: build_app(str(path), model=None))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(**launch_kwargs("127.0.0.1", port, prevent_thread_lock=True, quiet=True))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            summary = page.locator("#rap-summary")
            summary.get_by_text("Selected").wait_for(timeout=120_000)
            _record(results, "browser: page load -> counts shown", start)
            page.wait_for_function("document.querySelectorAll('.rap-plot img').length >= 4", timeout=120_000)
            _record(results, "browser: page load -> counts + 4 plots shown", start)
            before = summary.inner_text()
            plot_sources = page.eval_on_selector_all(".rap-plot img", "els => els.map(e => e.src)")
            # One change event: type the value into the slider's number box (arrow keys would send one
            # event per step). 0.5 -> 0.3 moves rows with rap_cde = 0.4 into the selection.
            box = page.locator("#lambda-c input[type=number]")
            box.fill("0.3")
            start = time.perf_counter()
            box.press("Enter")
            while not (
                "λc 0.3," in summary.inner_text() and not re.match(r"^\s*[\d.]+s", summary.inner_text())
            ):
                page.wait_for_timeout(10)
            _record(results, "browser: slider move -> new count shown", start)
            page.wait_for_function(
                "old => { const now = [...document.querySelectorAll('.rap-plot img')].map(e => e.src);"
                " return now.length >= 4 && now.every((s, i) => s !== old[i]); }",
                arg=plot_sources,
                timeout=120_000,
            )
            _record(results, "browser: slider move -> new plots shown", start)
            assert summary.inner_text() != before
            browser.close()
    finally:
        demo.close()


def _record(results: dict[str, dict[str, float]], name: str, start: float) -> None:
    results[name] = {"wall_s": time.perf_counter() - start}
    report(name, results[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scored.parquet"
        dataset = timed(results, f"synthesise {args.rows} rows", lambda: synthetic_scored_dataset(args.rows))
        dataset.to_parquet(str(path))
        results["parquet size (MB)"] = {"value": path.stat().st_size / 1e6}
        report("parquet size (MB)", results["parquet size (MB)"])
        server_side(path, results)
        if args.browser:
            browser_side(path, results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
