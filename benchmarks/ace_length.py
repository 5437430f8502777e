"""Does ACE reject rows for being short? ACE rejection rate by response length, before and after the guard.

Scores visual-arith's test split with the shipped reference model twice, with a system prompt that asks for a
one-word answer and with one that asks for worked reasoning. The reference model was trained on worked answers
and ignores both prompts (its responses stay ~20-35 tokens), so two more conditions give real short responses:
the ACE pass reads the row's answer alone ("9", 1 token) or boxed ("\\boxed{9}", ~4 tokens) as the response,
teacher-forced after the one-word prompt: what a model that answers tersely emits. Those rows keep the CDE
scores of the one-word scoring.

For every condition and response-length bucket it prints the share of rows that passed CDE which ACE rejects:

* before: the paper's rule as written (``ace_mode="paper_exact"``: every response judged), the default before
  issue 13;
* after: the default (``ace_mode="paper"``: responses shorter than ``ace_min_length`` tokens not judged);

at the paper's ``lambda_a = 0.1`` and at a threshold that bites on this model (``lambda_a`` = the 90th
percentile of paper ACE over the worked-reasoning responses: ACE values of this tiny model sit far below 0.1).

    python benchmarks/ace_length.py [--rows 200] [--json benchmarks/results/ace_length.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ONE_WORD = "Answer with a single word or number only. Do not explain."
WORKED = (
    "Reason step by step: describe what you see in the image, work out the answer, then give the final answer "
    "in \\boxed{}."
)


def score(model_dir: str, dataset, system_prompt: str, rows: int):
    from rap_hf import RAPConfig, RAPDataFilter

    config = RAPConfig(num_rollouts=5, max_new_tokens=48, batch_size=24, system_prompt=system_prompt)
    flt = RAPDataFilter(model_dir, config=config, device="cpu")
    return flt, flt.score(dataset.select(range(rows)), desc=f"scoring ({system_prompt[:20]}...)")


def teacher_forced(flt, dataset, responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Paper ACE and response length when the ACE pass reads `responses` (one per row) after the prompt."""
    from rap_hf.estimators import ace_paper
    from rap_hf.scoring.engine import final_layer_attention
    from rap_hf.scoring.images import normalize_image
    from rap_hf.scoring.rollouts import build_messages, render_prompt

    tokenizer = flt.processor.tokenizer
    ace, length = [], []
    for row, response in zip(dataset, responses, strict=True):
        prompt = render_prompt(
            flt.processor, build_messages(row["prompt"], 1, with_images=True, system_prompt=ONE_WORD)
        )
        image = normalize_image(row["image"], flt.max_image_pixels)
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        attn = final_layer_attention(flt.model, flt.processor, prompt, [image], ids)
        ace.append(ace_paper(attn, flt.config.sigma, flt.config.ace_min_span))
        length.append(len(ids))
    return np.asarray(ace), np.asarray(length, dtype=np.float64)


def rejection_table(conditions: dict, lambda_a: float) -> list[dict]:
    from rap_hf.config import RAPSelectionConfig
    from rap_hf.report.ace_length import ace_rejections_by_length

    rows = []
    for name, c in conditions.items():
        before = ace_rejections_by_length(
            c["acc_mm"], c["cde"], c["ace"], c["error"], c["length"],
            RAPSelectionConfig(lambda_a=lambda_a, ace_mode="paper_exact"),
        )  # fmt: skip
        after = ace_rejections_by_length(
            c["acc_mm"], c["cde"], c["ace"], c["error"], c["length"], RAPSelectionConfig(lambda_a=lambda_a)
        )
        for b, a in zip(before, after, strict=True):
            if b["reached_ace"]:
                rows.append(
                    {
                        "condition": name,
                        "tokens": b["tokens"],
                        "reached_ace": b["reached_ace"],
                        "rejected_before": b["ace_rejected"],
                        "rejected_after": a["ace_rejected"],
                        "not_judged_after": a["not_judged"],
                    }
                )
    return rows


def print_table(rows: list[dict], lambda_a: float) -> None:
    print(f"\nACE rejections among rows that passed CDE, lambda_a = {lambda_a:.4g}")
    print(f"{'condition':<28}{'tokens':>8}{'rows':>7}{'before (paper_exact)':>24}{'after (default)':>20}")
    for r in rows:
        n = r["reached_ace"]
        before = f"{r['rejected_before']} ({100 * r['rejected_before'] / n:.0f}%)"
        after = f"{r['rejected_after']} ({100 * r['rejected_after'] / n:.0f}%)"
        print(f"{r['condition']:<28}{r['tokens']:>8}{n:>7}{before:>24}{after:>20}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--model", default=None, help="model directory (default: the shipped rap-tiny-vl)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.demo.visual_arith import visual_arith

    model_dir = args.model or str(reference_model_path())
    dataset = visual_arith("test").select(range(args.rows))
    started = time.perf_counter()
    conditions = {}
    flt = None
    for name, prompt in (("one-word prompt", ONE_WORD), ("worked-reasoning prompt", WORKED)):
        flt, scored = score(model_dir, dataset, prompt, args.rows)
        conditions[name] = {
            "acc_mm": np.asarray(scored["rap_acc_mm"], dtype=np.float64),
            "cde": np.asarray(scored["rap_cde"], dtype=np.float64),
            "ace": np.asarray(scored["rap_ace"], dtype=np.float64),
            "error": np.asarray([e is not None for e in scored["rap_error"]]),
            "length": np.asarray(scored["rap_ace_length"], dtype=np.float64),
        }
    base = conditions["one-word prompt"]
    for name, template in (
        ("terse answer, teacher-forced", "{}"),
        ("boxed answer, teacher-forced", "\\boxed{{{}}}"),
    ):
        ace, length = teacher_forced(flt, dataset, [template.format(row["solution"]) for row in dataset])
        conditions[name] = {**base, "ace": ace, "length": length}
    seconds = time.perf_counter() - started

    worked_ace = conditions["worked-reasoning prompt"]["ace"]
    calibrated = float(np.nanpercentile(worked_ace, 90))
    results = {"rows": args.rows, "seconds": seconds, "calibrated_lambda_a": calibrated, "tables": {}}
    for lambda_a in (0.1, calibrated):
        rows = rejection_table(conditions, lambda_a)
        print_table(rows, lambda_a)
        results["tables"][f"{lambda_a:.6g}"] = rows
    lengths = {
        k: [float(np.nanmin(c["length"])), float(np.nanmax(c["length"]))] for k, c in conditions.items()
    }
    results["length_range"] = lengths
    print(f"\nresponse lengths (min, max tokens): {lengths}\n{args.rows} rows, {seconds:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
