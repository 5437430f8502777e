"""`rap_pass_at_1`: pass@1 of model completions under rap-hf's verifiable reward, as an `evaluate` metric.

The reward is `rap_hf.rewards.accuracy_reward`, the one RAP scores with and `RAPGRPOTrainer` trains with: the
answer is extracted from the completion (``\\boxed{}`` first) and compared with math-verify. Load it by local
path (no Hub access needed)::

    import evaluate
    from rap_hf.metrics import PASS_AT_1_PATH
    metric = evaluate.load(PASS_AT_1_PATH)
    metric.compute(predictions=["... \\\\boxed{7}"], references=["7"])  # {'pass@1': 1.0, 'correct': 1, 'n': 1}
"""

import datasets
import evaluate

from rap_hf.rewards import accuracy_reward

_DESCRIPTION = """pass@1 with rap-hf's verifiable reward (boxed-answer extraction + math-verify equivalence).
With one completion per item it is the accuracy; with several completions per item (listed one per
prediction, each with its item's reference) it is the mean correctness, the unbiased pass@1 estimate."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of completion texts.
    references: list of ground-truth answers (strings), one per prediction.
Returns:
    pass@1: fraction of predictions judged correct (NaN for no predictions).
    correct: number judged correct.
    n: number of predictions.
"""

_CITATION = """@article{rap2025truthinthefew,
  title={Truth in the Few: High-Value Data Selection for Efficient Multi-Modal Reasoning},
  journal={arXiv preprint arXiv:2506.04755},
  year={2025}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RapPassAt1(evaluate.Metric):
    """pass@1 under `rap_hf.rewards.accuracy_reward`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict:
        rewards = accuracy_reward(list(predictions), list(references))
        correct = int(sum(r > 0 for r in rewards))
        n = len(rewards)
        return {"pass@1": correct / n if n else float("nan"), "correct": correct, "n": n}
