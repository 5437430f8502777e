"""Reproduce the paper's claim at small scale: GRPO on the RAP subset vs the full pool vs a random subset.

Arms (3 seeds each by default): (a) full pool, (b) RAP subset (paper thresholds), (c) random subset of the
same size, (d) RAP subset with online RAP, (e) RAP without DRM. All start from a weak checkpoint of the
reference model and train with `RAPGRPOTrainer` under the same settings; evaluation is greedy pass@1 (the
shipped `evaluate` metric) on held-out visual and hard items, with the image and text-only. RAP's scoring cost
is counted in its total. See `reproduction` for the details.

    python benchmarks/reproduce.py                      # defaults: under an hour on a 2-core CPU
    python benchmarks/reproduce.py --seeds 0 --pool_rows 120 --arms full rap random   # a quick look

Writes benchmarks/results/reproduce.{md,json,png} (see --output_dir); caches the weak model and the scored
pool in --work_dir.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reproduction import ReproduceConfig, run_reproduction
from transformers import HfArgumentParser


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (config,) = HfArgumentParser(ReproduceConfig).parse_args_into_dataclasses()
    results = run_reproduction(config)
    outputs = results["outputs"]
    print(Path(outputs["table"]).read_text())
    print(f"wall clock {results['wall_seconds']:.0f} s; wrote {', '.join(outputs.values())}")


if __name__ == "__main__":
    main()
