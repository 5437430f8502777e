"""Does RAP pay? Accuracy-versus-compute curves of GRPO at an equal budget of generations (issue 16).

Every arm (full pool, random subset of RAP's size, RAP, RAP with a budget, a pass-rate filter, an oracle
without the text_leak rows, online RAP; optional variants ``rap_learnable``, ``cde_passrate`` and
``passrate_no_text``) trains for the same number of GRPO steps from the same weak start, going round its own
rows as often as it takes, and is evaluated every ``--eval_every`` steps. The x axis is cumulative compute
(generated tokens, wall-clock seconds); arms that score first start at their scoring cost. See ``curves`` for the
details and definitions.

    python benchmarks/compute_curves.py                 # defaults: about 60 min on an idle 2-core CPU (curves.py)
    python benchmarks/compute_curves.py --quick --output_dir /tmp/curves_quick     # smoke run, 1.5 min
    python benchmarks/compute_curves.py --split validation --arms rap_learnable cde_passrate passrate_no_text
    python benchmarks/compute_curves.py --seeds 3 4 5 --arms cde_passrate     # the variant validation chose

Writes compute_curves.{json,md,png} to --output_dir (default benchmarks/results); caches the weak model, the
scored pools and every finished (arm, seed) curve in --work_dir, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from curves import CurvesConfig, run_curves
from transformers import HfArgumentParser


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (config,) = HfArgumentParser(CurvesConfig).parse_args_into_dataclasses()
    results = run_curves(config)
    outputs = results["outputs"]
    print(Path(outputs["table"]).read_text())
    print(f"wall clock {results['wall_seconds']:.0f} s; wrote {', '.join(outputs.values())}")


if __name__ == "__main__":
    main()
