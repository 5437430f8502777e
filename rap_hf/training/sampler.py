"""`OnlineRepeatSampler`: TRL's `RepeatSampler` contract, drawing its chunks from an `OnlineSelector`.

TRL's GRPO relies on this index layout (see ``trl.trainer.utils.RepeatSampler`` and the figure in
``GRPOTrainer._get_train_sampler``):

* the stream is a sequence of *chunks* of ``batch_size`` distinct prompts (one generation batch, all
  processes together);
* each chunk is emitted ``repeat_count`` times in a row (``steps_per_generation * num_iterations``: the
  trainer generates on the first repeat and reuses the completions for the others);
* inside a repeat, each index appears ``mini_repeat_count`` (= ``num_generations``) times in a row, so a
  prompt's group lands on consecutive slots, however the batch is split across processes;
* only full chunks; every process iterates the same sequence (same seed).

This sampler keeps all of it, with one difference: a chunk is decided only when its first index is requested
(a generator is lazy), by asking the selector for the next distinct active samples. The trainer feeds the
selector between generations, so later chunks reflect retirements. Every process draws its chunks at the same
points of the same program (the data loader's prefetch depth is the same everywhere) and feeds its selector the
same gathered rewards, so every process draws the same chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from rap_hf.training.online import OnlineSelector


class OnlineRepeatSampler(Sampler[int]):
    """Yield ``num_chunks`` chunks per epoch from ``selector``, laid out like TRL's `RepeatSampler`.

    Args:
        selector: the online pool; it persists across epochs (retirements are not undone by a new epoch).
        mini_repeat_count: times each index is repeated in a row (``num_generations``).
        batch_size: distinct indices per chunk (``generation_batch_size // num_generations``).
        repeat_count: times each chunk is repeated (``num_iterations * steps_per_generation``).
        num_chunks: chunks per epoch; default ``selector.initial_pool_size // batch_size``, what `RepeatSampler`
            yields for a dataset of the initial pool's size, so the trainer's step count is the usual one.
    """

    def __init__(
        self,
        selector: OnlineSelector,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        num_chunks: int | None = None,
    ) -> None:
        if batch_size < 1 or mini_repeat_count < 1 or repeat_count < 1:
            raise ValueError("batch_size, mini_repeat_count and repeat_count must all be >= 1")
        if batch_size > selector.min_pool:
            # The selector must never let the pool shrink below one chunk of distinct prompts.
            raise ValueError(
                f"batch_size={batch_size} distinct prompts per chunk, but the selector's min_pool is only "
                f"{selector.min_pool}; build the selector with min_pool >= batch_size"
            )
        self.selector = selector
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.num_chunks = selector.initial_pool_size // batch_size if num_chunks is None else num_chunks

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_chunks):
            chunk = self.selector.next_chunk(self.batch_size)
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        return self.num_chunks * self.batch_size * self.mini_repeat_count * self.repeat_count
