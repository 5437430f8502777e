"""A bounded load test of the RAP Score Explorer on loopback: N visitors re-selecting, one visitor scoring.

    python benchmarks/space_load.py --visitors 8 --seconds 60 [--model reference|tiny|DIR] [--json OUT]

The app is built as the Space builds it (`build_app` + `launch_kwargs`: the same queue size, concurrency and
caps) on the shipped scores and served on 127.0.0.1 only. Each visitor is its own `gradio_client.Client`
(its own session) and loops: move the thresholds to random values (`/reselect`: counts and table), then ask
for the figures (`/plots`), as the page does after a slider move. One more client scores a new sample
(`/score`: 2 x num_rollouts generations and the attention pass on the model) again and again. After
`--seconds` no new call starts; calls in flight get `--grace` seconds, then everything stops: the test ends
by itself (a watchdog ends the process if the server does not close).

Printed: per endpoint, calls, refusals (queue full) and errors, and p50/p95/max latency as seen by the client.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Recorder:
    """Latencies and outcomes per endpoint, from several threads."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.refused: dict[str, int] = defaultdict(int)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()

    def call(self, name: str, job: Any, timeout: float) -> Any:
        started = time.perf_counter()
        try:
            result = job.result(timeout=timeout)
        except Exception as exc:  # a refusal or an error: counted, the visitor goes on
            with self._lock:
                if "queue is full" in str(exc).lower():
                    self.refused[name] += 1
                else:
                    self.errors[name].append(f"{type(exc).__name__}: {str(exc)[:120]}")
            return None
        with self._lock:
            self.latencies[name].append(time.perf_counter() - started)
        return result

    def table(self) -> dict[str, dict[str, float]]:
        rows = {}
        for name in sorted(set(self.latencies) | set(self.refused) | set(self.errors)):
            values = self.latencies[name]
            rows[name] = {
                "calls": len(values),
                "refused": self.refused[name],
                "errors": len(self.errors[name]),
                "p50_s": percentile(values, 0.5),
                "p95_s": percentile(values, 0.95),
                "max_s": max(values) if values else float("nan"),
                "mean_s": statistics.fmean(values) if values else float("nan"),
            }
        return rows


def random_controls(rng: random.Random) -> tuple:
    """Slider values a visitor could set (the page's ranges)."""
    return (
        round(rng.uniform(-1, 1), 2),
        "paper",
        round(rng.uniform(-6, 0), 1),
        -0.5,
        rng.random() < 0.8,
        rng.choice(["all trivial", "k", "ratio"]),
        rng.randint(0, 50),
        round(rng.uniform(0.05, 1), 2),
        rng.choice([0, 0, 0.3, 0.5]),
    )


def visitor(url: str, seed: int, deadline: float, timeout: float, recorder: Recorder) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        controls = random_controls(rng)
        recorder.call("reselect", client.submit(*controls, api_name="/reselect"), timeout)
        if time.monotonic() >= deadline:
            break
        recorder.call("plots", client.submit(*controls, api_name="/plots"), timeout)


def scorer(url: str, image: str, deadline: float, timeout: float, recorder: Recorder) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    controls = random_controls(random.Random(0))
    while time.monotonic() < deadline:
        job = client.submit(handle_file(image), "How many dots are there?", "3", *controls, api_name="/score")
        recorder.call("score", job, timeout)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, default=8, help="concurrent visitors re-selecting")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long calls are started")
    parser.add_argument("--grace", type=float, default=60.0, help="how long calls in flight may still take")
    parser.add_argument(
        "--model", default="reference", help="scoring model: reference (shipped), tiny (random), or a folder"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    # However the server behaves, the process ends: the load test is bounded.
    limit = int(args.seconds + args.grace + 120)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(limit)

    from PIL import Image

    from rap_hf.explorer.app import build_app, launch_kwargs
    from rap_hf.explorer.limits import ExplorerLimits

    work = Path(tempfile.mkdtemp(prefix="space-load-"))
    model = args.model
    if model == "tiny":
        from rap_hf.demo.tiny_models import save_tiny_vlm

        model = str(save_tiny_vlm(work / "tiny", seed=0))
    limits = ExplorerLimits()
    demo = build_app(None, model=model, work_dir=work, limits=limits)
    if not demo.fns:  # pragma: no cover
        raise SystemExit("the app has no events")
    image = work / "sample.png"
    Image.new("RGB", (112, 56), "white").save(image)
    port = free_port()
    demo.launch(**launch_kwargs("127.0.0.1", port, limits, prevent_thread_lock=True, quiet=True))
    url = f"http://127.0.0.1:{port}/"
    recorder = Recorder()
    started = time.monotonic()
    deadline = started + args.seconds
    timeout = args.seconds + args.grace
    threads = [
        threading.Thread(target=visitor, args=(url, seed, deadline, timeout, recorder), daemon=True)
        for seed in range(args.visitors)
    ]
    threads.append(
        threading.Thread(target=scorer, args=(url, str(image), deadline, timeout, recorder), daemon=True)
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + args.grace - time.monotonic()))
    elapsed = time.monotonic() - started
    stragglers = sum(thread.is_alive() for thread in threads)
    demo.close()

    table = recorder.table()
    print(
        f"RAP Score Explorer on 127.0.0.1: {args.visitors} visitors re-selecting + 1 scoring for {args.seconds:g} s "
        f"({os.cpu_count()} CPUs, model {args.model}, queue size {limits.queue_size}, slots: view "
        f"{limits.concurrency}, figures 1, model 1); ended after {elapsed:.1f} s, {stragglers} client(s) still waiting"
    )
    print(
        f"{'endpoint':<10} {'calls':>6} {'refused':>8} {'errors':>7} {'p50 s':>8} {'p95 s':>8} {'max s':>8}"
    )
    for name, row in table.items():
        print(
            f"{name:<10} {row['calls']:>6} {row['refused']:>8} {row['errors']:>7} "
            f"{row['p50_s']:>8.2f} {row['p95_s']:>8.2f} {row['max_s']:>8.2f}"
        )
    for name, errors in recorder.errors.items():
        for error in errors[:3]:
            print(f"  {name} error: {error}")
    results = {
        "visitors": args.visitors,
        "seconds": args.seconds,
        "model": args.model,
        "cpus": os.cpu_count(),
        "elapsed_s": elapsed,
        "stragglers": stragglers,
        "endpoints": table,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    signal.alarm(0)
    return results


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # gradio_client threads may linger; the measurement is done
