"""Do CDE, ACE and DRM find what they claim? Score visual-arith's test split with the reference model.

The `kind` column is the planted truth RAP never reads: `text_leak` rows give the answer away in the text
(language-prior samples CDE should reject), `visual` rows need the image, `hard` rows are rarely solved,
`distractor` rows pad a visual question with irrelevant text. For each seed this prints accuracies per kind,
the AUROC of -rap_cde for text_leak vs visual, ACE distributions per kind, the share of each kind in the
pool and in the selected subset (with and without DRM), and DRM's swap difficulty; then the mean and spread
over seeds.

    python benchmarks/planted_signal.py [--rows 400] [--seeds 0 1 2] [--num-rollouts 5] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def auroc(positive_scores: list[float], negative_scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    if not positive_scores or not negative_scores:
        return float("nan")
    labels = [1] * len(positive_scores) + [0] * len(negative_scores)
    return float(roc_auc_score(labels, positive_scores + negative_scores))


def analyse(scored, config) -> dict:
    from rap_hf import RAPConfig, select_cognitive_samples

    kinds = np.asarray(scored["kind"])
    acc_mm, acc_text = np.asarray(scored["rap_acc_mm"]), np.asarray(scored["rap_acc_text"])
    cde = np.asarray(scored["rap_cde"])
    ace, ace_norm = np.asarray(scored["rap_ace"]), np.asarray(scored["rap_ace_norm"])
    out: dict = {"per_kind": {}}
    for kind in sorted(set(kinds)):
        m = kinds == kind
        out["per_kind"][kind] = {
            "n": int(m.sum()),
            "acc_mm": float(np.nanmean(acc_mm[m])),
            "acc_text": float(np.nanmean(acc_text[m])),
            "cde": float(np.nanmean(cde[m])),
            "ace_median": float(np.nanmedian(ace[m])),
            "ace_p90": float(np.nanpercentile(ace[m], 90)),
            "ace_norm_median": float(np.nanmedian(ace_norm[m])),
            "ace_norm_p90": float(np.nanpercentile(ace_norm[m], 90)),
        }
    leak, visual = kinds == "text_leak", kinds == "visual"
    out["auroc_overall"] = auroc(list(-cde[leak]), list(-cde[visual]))
    solved = acc_mm >= 0.5
    out["auroc_acc_mm_ge_0.5"] = auroc(list(-cde[leak & solved]), list(-cde[visual & solved]))
    out["auroc_ace_distractor_vs_visual"] = auroc(list(ace[kinds == "distractor"]), list(ace[visual]))
    out["auroc_ace_norm_distractor_vs_visual"] = auroc(
        list(ace_norm[kinds == "distractor"]), list(ace_norm[visual])
    )

    for label, use_drm in (("with_drm", True), ("without_drm", False)):
        cfg = RAPConfig(**{**config.to_dict(), "use_drm": use_drm})
        annotated = select_cognitive_samples(scored, cfg)
        selected = np.asarray(annotated["rap_selected"])
        stages = np.asarray(annotated["rap_stage"])
        share = {}
        for kind in sorted(set(kinds)):
            pool_share = float((kinds == kind).mean())
            sel_share = float((kinds[selected] == kind).mean()) if selected.any() else float("nan")
            share[kind] = {"pool": pool_share, "selected": sel_share}
        out[label] = {
            "selected": int(selected.sum()),
            "share": share,
            "stages": {s: int((stages == s).sum()) for s in sorted(set(stages))},
        }
        if use_drm:
            drm_in, drm_out = stages == "drm_in", stages == "drm_out"
            out["drm_in_mean_acc_mm"] = float(acc_mm[drm_in].mean()) if drm_in.any() else float("nan")
            out["drm_out_mean_acc_mm"] = float(acc_mm[drm_out].mean()) if drm_out.any() else float("nan")
            out["drm_swaps"] = int(drm_in.sum())
    return out


def print_seed(seed: int, result: dict, seconds: float) -> None:
    print(f"\n=== seed {seed} (scoring {seconds:.0f}s) ===")
    print(
        f"{'kind':<11} {'n':>4} {'acc_mm':>7} {'acc_text':>8} {'cde':>6} {'ace p50':>9} {'ace p90':>9} {'ace_norm p50':>12} {'ace_norm p90':>12}"
    )
    for kind, r in result["per_kind"].items():
        print(
            f"{kind:<11} {r['n']:>4} {r['acc_mm']:>7.3f} {r['acc_text']:>8.3f} {r['cde']:>6.3f} {r['ace_median']:>9.3g} {r['ace_p90']:>9.3g} {r['ace_norm_median']:>12.3f} {r['ace_norm_p90']:>12.3f}"
        )
    print(
        f"AUROC(-rap_cde, text_leak vs visual): overall {result['auroc_overall']:.3f}; among rap_acc_mm >= 0.5: {result['auroc_acc_mm_ge_0.5']:.3f}"
    )
    print(
        f"AUROC(ACE, distractor vs visual): paper {result['auroc_ace_distractor_vs_visual']:.3f}; normalized {result['auroc_ace_norm_distractor_vs_visual']:.3f}"
    )
    print(f"{'kind':<11} {'pool share':>10} {'selected (DRM)':>15} {'selected (no DRM)':>18}")
    for kind in result["per_kind"]:
        w, wo = result["with_drm"]["share"][kind], result["without_drm"]["share"][kind]
        print(f"{kind:<11} {w['pool']:>10.3f} {w['selected']:>15.3f} {wo['selected']:>18.3f}")
    print(
        f"selected: {result['with_drm']['selected']} with DRM, {result['without_drm']['selected']} without; stages {result['with_drm']['stages']}"
    )
    print(
        f"DRM: {result['drm_swaps']} swaps; mean rap_acc_mm drm_in {result['drm_in_mean_acc_mm']:.3f} vs drm_out {result['drm_out_mean_acc_mm']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-rollouts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None, help="model directory (default: the shipped rap-tiny-vl)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    import datasets

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.demo.visual_arith import visual_arith

    datasets.disable_progress_bars()
    model = args.model or str(reference_model_path())
    data = visual_arith("test", args.rows, seed=0).remove_columns(["reference_completion", "digits"])
    results = {}
    for seed in args.seeds:
        config = RAPConfig(
            num_rollouts=args.num_rollouts,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            seed=seed,
        )
        start = time.perf_counter()
        scored = RAPDataFilter(model, config=config).score(data)
        seconds = time.perf_counter() - start
        results[seed] = analyse(scored, config)
        results[seed]["scoring_seconds"] = seconds
        print_seed(seed, results[seed], seconds)

    print(f"\n=== summary over seeds {args.seeds}: mean (std) ===")
    summary = defaultdict(list)
    for r in results.values():
        summary["AUROC overall"].append(r["auroc_overall"])
        summary["AUROC acc_mm>=0.5"].append(r["auroc_acc_mm_ge_0.5"])
        leak = r["with_drm"]["share"]["text_leak"]
        summary["text_leak share selected / pool"].append(leak["selected"] / leak["pool"])
        summary["DRM in acc_mm"].append(r["drm_in_mean_acc_mm"])
        summary["DRM out acc_mm"].append(r["drm_out_mean_acc_mm"])
        summary["AUROC ACE distractor vs visual"].append(r["auroc_ace_distractor_vs_visual"])
        summary["AUROC ACE_norm distractor vs visual"].append(r["auroc_ace_norm_distractor_vs_visual"])
        summary["selected rows"].append(r["with_drm"]["selected"])
    for name, values in summary.items():
        finite = [float(v) for v in values if not np.isnan(v)]
        if not finite:
            print(f"{name:<38} {'n/a':>8} (undefined in every seed)")
            continue
        spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
        print(
            f"{name:<38} {statistics.mean(finite):>8.3f} ({spread:.3f})  [{len(finite)}/{len(values)} seeds defined]"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
