"""Scoring across processes, GPUs and machines, resumable: what `rap-hf score` runs.

Under ``accelerate launch`` / ``torchrun`` every process loads the model and scores a contiguous shard of the
rows that are not checkpointed yet, through `datasets.map` (`RAPDataFilter.score_batches`) with
``index_offset`` set to the shard's first global row, so every completion keeps the seed it has in a
one-process run. Each finished batch is written to ``OUTPUT/rap_checkpoint/`` (see `rap_hf.scoring.checkpointing`);
the main process waits for the others' batches by watching that folder (no collective, so no NCCL timeout
however unequal the shards), merges them in row order next to the input columns, and saves the result.

The same code path runs with one process, so a single-GPU run is resumable too. Alternatives:

* ``num_proc=N`` (one process, N GPUs): `datasets.map(num_proc=N, with_rank=True)` with the ``spawn`` start
  method, each worker loading its own copy of the model on ``cuda:rank``, as the `datasets` docs describe.
* DeepSpeed ZeRO-3 (``accelerate launch --config_file zero3.yaml``): the model is loaded sharded; see
  `rap_hf.scoring.zero3` for the two ways it is scored (gathered, or sharded in lock-step).

Multi-machine runs need OUTPUT on a filesystem every machine sees: the main process reads the other
processes' batches from there (checked at start-up).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rap_hf.config import RAPConfig
from rap_hf.errors import RAPUserError
from rap_hf.scoring.alarms import raise_score_alarms
from rap_hf.scoring.checkpointing import (
    BatchStats,
    CorruptBatchError,
    OutputLock,
    ScoreCheckpoint,
    fingerprint_of,
    model_identity,
    read_heartbeat,
    remove_heartbeats,
    scoring_fingerprint_inputs,
    write_heartbeat,
)
from rap_hf.scoring.completion import completion_summary, load_prior, prepare_completion
from rap_hf.scoring.processes import ProcessContext
from rap_hf.scoring.zero3 import all_reduce_max

logger = logging.getLogger("rap_hf")

# How often the main process looks for the other processes' batches.
POLL_SECONDS = 0.5
# How often the other processes report that they are alive, and how long the main process waits for one that
# stopped reporting before it gives up (`score_to_disk(wait_timeout=...)`, `rap-hf score --wait_timeout`).
HEARTBEAT_SECONDS = 10.0
DEFAULT_WAIT_TIMEOUT = 600.0


class ProcessLostError(RuntimeError):
    """Another process of the launch died, failed or stopped reporting before its rows were checkpointed."""


# ---------------------------------------------------------------------------------------------- processes


def split_rows(ranges: list[tuple[int, int]], world_size: int, rank: int) -> list[tuple[int, int]]:
    """This rank's contiguous share of the rows in `ranges` (sorted, disjoint), balanced to within one row.

    In a fresh run `ranges` is [(0, n)] and rank r gets rows [r * n // W, (r + 1) * n // W); after a restart
    it is whatever is left, split the same way, so the number of processes may change between restarts.
    """
    total = sum(end - start for start, end in ranges)
    lo, hi = rank * total // world_size, (rank + 1) * total // world_size
    mine, seen = [], 0
    for start, end in ranges:
        size = end - start
        a, b = max(lo - seen, 0), min(hi - seen, size)
        if a < b:
            mine.append((start + a, start + b))
        seen += size
    return mine


# ---------------------------------------------------------------------------------------------- scoring


@dataclass
class ScoringResult:
    """What `score_to_disk` returns: the scored dataset and its metadata on the main process, None elsewhere."""

    output_dir: Path
    is_main: bool
    dataset: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    already_complete: bool = False
    process_stats: dict[str, Any] = field(default_factory=dict)  # this process's own counters


class _BatchWriter:
    """`on_batch` callback: checkpoints each scored batch with the statistics it added (picklable)."""

    def __init__(self, checkpoint: ScoreCheckpoint, stats_source: Any = None) -> None:
        self.checkpoint = checkpoint
        self.stats_source = stats_source
        self._last = (0, 0, 0, {})
        self._clock = time.perf_counter()

    def __call__(self, start: int, outputs: dict[str, list]) -> None:
        stats = self.stats_source.stats
        rows, errors, tokens, reasons = self._last
        delta = BatchStats(
            rows=stats.rows - rows,
            errors=stats.errors - errors,
            generated_tokens=stats.generated_tokens - tokens,
            seconds=time.perf_counter() - self._clock,
            error_reasons={
                k: v - reasons.get(k, 0) for k, v in stats.error_reasons.items() if v - reasons.get(k, 0)
            },
        )
        self.checkpoint.write_batch(start, outputs, delta)
        self._last = (stats.rows, stats.errors, stats.generated_tokens, dict(stats.error_reasons))
        self._clock = time.perf_counter()


def score_to_disk(
    model: str | os.PathLike | Any,
    dataset: Any,
    output_dir: str | os.PathLike,
    config: RAPConfig,
    *,
    processor: Any = None,
    reward_fn: Any = None,
    trust_remote_code: bool = False,
    torch_dtype: str | torch.dtype = "auto",
    device: str | None = None,
    attn_implementation: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    keep_checkpoints: bool = False,
    num_proc: int | None = None,
    zero3_gather_params: bool = False,
    lockstep: bool | None = None,
    metadata: dict[str, Any] | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    context: ProcessContext | None = None,
) -> ScoringResult:
    """Score `dataset` into `output_dir` (``save_to_disk`` format + ``rap_scoring.json``), resumably.

    Call it in every process of a launch with the same arguments. Finished batches are checkpointed; calling
    it again after a crash (with any number of processes) scores only what is missing and ends with exactly
    the dataset an uninterrupted run writes. A directory holding work from another fingerprint (scoring
    config, dataset, model, reward function, dtype) raises `CheckpointMismatchError` unless `overwrite`; a
    directory another run is scoring into right now raises `OutputLockedError` (its main process holds
    ``OUTPUT/.rap_score.lock`` for the whole run).

    Args:
        model, processor, reward_fn, trust_remote_code, torch_dtype, attn_implementation, revision: as for
            `RAPDataFilter`.
        device: the device of a single-process run; with several processes each uses its own (accelerate's).
        overwrite: discard what `output_dir` holds (rap-hf's files only) and start over.
        keep_checkpoints: keep ``rap_checkpoint/`` after the merge (it is removed by default).
        num_proc: one process, `num_proc` workers of `datasets.map`, each with its own model copy on
            ``cuda:rank`` (CPU when there is no GPU). Not combinable with a multi-process launch.
        zero3_gather_params: under ZeRO-3, gather the full weights for scoring (TRL's default for generation)
            instead of scoring the sharded model in lock-step (see `rap_hf.scoring.zero3`).
        lockstep: force the lock-step call schedule on (True) or off (False); None: on exactly when ZeRO-3
            scores sharded weights. True without ZeRO-3 exercises the schedule on CPU.
        metadata: extra entries for ``rap_scoring.json``.
        wait_timeout: seconds the main process waits for a process of the launch that stopped reporting
            (the others write a heartbeat every `HEARTBEAT_SECONDS`) before it raises `ProcessLostError`.
        context: the process layout; by default read from the environment.
    """
    import datasets

    from rap_hf.columns import SCORE_COLUMNS, resolve_columns, score_features
    from rap_hf.rewards import resolve_reward_fn, reward_fn_name

    ctx = context or ProcessContext.from_environment()
    if num_proc is not None and ctx.world_size > 1:
        raise RAPUserError(
            "num_proc is the single-process alternative to a multi-process launch; use one or the other"
        )
    config.validate()
    resolve_columns(dataset, config)  # fail fast, before any model work
    existing = [c for c in SCORE_COLUMNS if c in dataset.column_names]
    if existing:
        raise RAPUserError(f"dataset already has score columns {existing}; remove them to score again")
    with _ExclusiveRun(output_dir, ctx, wait_timeout) as run:
        # Resolved once, on the main process (a Hub id's commit, a local folder's content hashes), so every
        # process fingerprints and loads the same model even if the Hub repo changes meanwhile.
        identity = ctx.on_main(lambda: model_identity(model, revision))
        load_revision = identity.get("commit") or revision
        inputs = scoring_fingerprint_inputs(
            dataset=dataset,
            config=config,
            model=identity,
            reward_fn=reward_fn_name(resolve_reward_fn(reward_fn)),
            torch_dtype=str(torch_dtype),
            attn_implementation=attn_implementation,
        )
        checkpoint = ScoreCheckpoint(
            output_dir, fingerprint_of(inputs), inputs, score_features(config.keep_completions)
        )
        # A full run on a finished decisive run's folder completes it (rap_hf.scoring.completion).
        stash = ctx.on_main(lambda: prepare_completion(output_dir, inputs, overwrite))
        prior = load_prior(stash) if stash is not None else None
        to_score = datasets.concatenate_datasets([dataset, prior], axis=1) if prior is not None else dataset
        if ctx.on_main(lambda: checkpoint.check(overwrite)):
            return _already_complete(checkpoint, ctx)
        if not ctx.is_main:
            datasets.disable_progress_bars()  # one progress bar per launch is enough

        started = time.perf_counter()
        flt, ds_engine = None, None
        if num_proc is None:
            flt, ds_engine = _load_filter(
                model,
                processor,
                config,
                reward_fn,
                ctx,
                trust_remote_code=trust_remote_code,
                torch_dtype=torch_dtype,
                device=device,
                attn_implementation=attn_implementation,
                revision=load_revision,
            )
        load_seconds = time.perf_counter() - started

        def plan() -> dict[str, Any]:
            state = checkpoint.prepare(overwrite)
            return {"pending": checkpoint.missing_ranges(), "state": state}

        planned = ctx.on_main(plan)
        if not ctx.is_main and not checkpoint.manifest_visible():
            raise RuntimeError(
                f"process {ctx.rank} cannot see {checkpoint.dir / 'manifest.json'} written by the main process: "
                "--output must be on a filesystem shared by every machine of the launch"
            )
        pending: list[tuple[int, int]] = planned["pending"]
        resumed_rows = len(dataset) - sum(b - a for a, b in pending)
        mine = split_rows(pending, ctx.world_size, ctx.rank)
        if resumed_rows:
            logger.info("RAP scoring resumes: %d of %d rows already checkpointed", resumed_rows, len(dataset))

        scoring_started = time.perf_counter()
        if num_proc is not None:
            _score_with_num_proc(
                model,
                to_score,
                mine,
                checkpoint,
                config,
                reward_fn,
                num_proc,
                model_kwargs={
                    "processor": processor,
                    "trust_remote_code": trust_remote_code,
                    "torch_dtype": torch_dtype,
                    "attn_implementation": attn_implementation,
                    "revision": load_revision,
                },
            )
        else:
            _score_ranges(flt, ds_engine, ctx, to_score, mine, checkpoint, zero3_gather_params, lockstep)
        scored_seconds = time.perf_counter() - scoring_started
        process_stats = _process_stats(flt, ctx, scored_seconds)
        if not ctx.is_main:
            return ScoringResult(Path(output_dir), is_main=False, process_stats=process_stats)

        waited = run.wait_for_others(checkpoint)
        merge_started = time.perf_counter()
        try:
            scores, totals = checkpoint.load_scores()
        except CorruptBatchError as exc:
            # Rescored here only when the other processes are not needed for a model call (they have left).
            if flt is None or ds_engine is not None or flt.engine.lockstep is not None:
                raise RuntimeError(f"{exc}; run the same command again to score them") from exc
            logger.warning("%s: rescoring them on the main process", exc)
            for start, end in exc.ranges:
                flt.score_batches(
                    to_score.select(range(start, end)), _BatchWriter(checkpoint, flt), index_offset=start
                )
            scores, totals = checkpoint.load_scores()
        scored = datasets.concatenate_datasets([dataset, scores], axis=1)
        total_seconds = time.perf_counter() - scoring_started
        meta = {
            **(metadata or {}),
            "rows": len(scored),
            "scoring_seconds": total_seconds,
            "model_load_seconds": load_seconds,
            "process_seconds": totals.seconds,
            "main_process_scoring_seconds": scored_seconds,
            "wait_seconds": waited,
            "generated_tokens": totals.generated_tokens,
            "errors": totals.errors,
            "error_reasons": totals.error_reasons,
            "num_processes": num_proc if num_proc is not None else ctx.world_size,
            # What the run scored on and with, for the Hub card: "cpu" or "cuda:N" (the main process's device),
            # and the Hub commit the model id resolved to (None for a local folder or offline without a cache).
            "device": _scoring_device(flt, ctx),
            "model_commit": identity.get("commit"),
            "resumed_rows": resumed_rows,
            "redone_batches": [list(r) for r in planned["state"].redone],
            "rap_config": config.to_dict(),
            **(completion_summary(prior, config.num_rollouts) if prior is not None else {}),
            # Degenerate scores (every reward 0 or identical, nearly every row an error), also logged loudly.
            "warnings": raise_score_alarms(scored, config.answer_column, where="RAP scoring"),
        }
        checkpoint.finalize(scored, {**meta, "merge_seconds": 0.0}, keep_checkpoints)
        if stash is not None:
            del prior, to_score  # memory-mapped from the folder removed next
            shutil.rmtree(stash, ignore_errors=True)
        meta["merge_seconds"] = time.perf_counter() - merge_started
        meta["scoring_seconds"] = time.perf_counter() - scoring_started
        # Written again with the merge's own duration (the first write marked the run complete, in case the
        # process dies right here).
        checkpoint.write_metadata(meta)
        return ScoringResult(
            Path(output_dir), is_main=True, dataset=scored, metadata=meta, process_stats=process_stats
        )


def _scoring_device(flt: Any, ctx: ProcessContext) -> str:
    """The device the main process scored on ("cpu", "cuda:0", ...); with ``num_proc`` workers and no model here,
    the workers' kind of device."""
    if flt is not None:
        return str(flt.model.device)
    if ctx.device is not None:
        return str(ctx.device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _process_stats(flt: Any, ctx: ProcessContext, seconds: float) -> dict[str, Any]:
    stats: dict[str, Any] = {"rank": ctx.rank, "seconds": seconds}
    if flt is not None:
        stats.update(
            rows=flt.stats.rows,
            generated_tokens=flt.stats.generated_tokens,
            errors=flt.stats.errors,
            seconds_generation=flt.stats.seconds_generation,
            seconds_attention=flt.stats.seconds_attention,
        )
        if flt.engine.lockstep is not None:
            stats.update(
                lockstep_filler_generations=flt.engine.lockstep.filler_generations,
                lockstep_filler_forwards=flt.engine.lockstep.filler_forwards,
            )
    return stats


def _already_complete(checkpoint: ScoreCheckpoint, ctx: ProcessContext) -> ScoringResult:
    import datasets

    logger.info(
        "RAP scoring: %s is already complete for this configuration; nothing to do", checkpoint.output_dir
    )
    if not ctx.is_main:
        return ScoringResult(checkpoint.output_dir, is_main=False, already_complete=True)
    return ScoringResult(
        checkpoint.output_dir,
        is_main=True,
        dataset=datasets.load_from_disk(str(checkpoint.output_dir)),
        metadata=checkpoint.read_metadata(),
        already_complete=True,
    )


def _load_filter(model, processor, config, reward_fn, ctx: ProcessContext, *, device, **kwargs):
    """Load the model for this process: on its own device, or sharded under ZeRO-3 (then also its DeepSpeed engine)."""
    from rap_hf.scoring.filter import RAPDataFilter

    if ctx.accelerator is not None:  # ZeRO-3: zero.Init places the shards; moving them would break them
        from rap_hf.scoring.zero3 import prepare_zero3_model

        flt = RAPDataFilter(model, processor, config, reward_fn, device=None, **kwargs)
        return flt, prepare_zero3_model(flt.model, ctx.accelerator, ctx.world_size)
    if ctx.world_size > 1 and not (device is not None and str(device) == "cpu"):
        device = ctx.device  # each process on its own GPU; one shared --device would stack them on one
    return RAPDataFilter(model, processor, config, reward_fn, device=device, **kwargs), None


def _score_ranges(
    flt: Any,
    ds_engine: Any,
    ctx: ProcessContext,
    dataset: Any,
    ranges: list[tuple[int, int]],
    checkpoint: ScoreCheckpoint,
    gather_params: bool,
    lockstep: bool | None,
) -> None:
    from rap_hf.scoring.zero3 import Lockstep, model_for_scoring

    if lockstep is None:
        lockstep = ds_engine is not None and not gather_params
    if ds_engine is not None:
        scope = model_for_scoring(ds_engine, ctx.accelerator, gather_params)
    else:
        scope = contextlib.nullcontext(flt.model)
    writer = _BatchWriter(checkpoint, flt)
    with scope as model:
        flt.engine.model = model
        flt.engine.lockstep = Lockstep() if lockstep else None
        if flt.engine.lockstep is not None:
            # Every process must run as many batches as the busiest one: the others idle through empty
            # ones at the end. Agreed on before scoring: any collective later would pair with the busy
            # processes' in-batch collectives.
            mine = sum(math.ceil((end - start) / flt.config.batch_size) for start, end in ranges)
            busiest = all_reduce_max(mine, flt.model.device)
        for start, end in ranges:
            flt.score_batches(
                dataset.select(range(start, end)),
                writer,
                index_offset=start,
                desc=f"RAP scoring [process {ctx.rank}/{ctx.world_size}]",
            )
        if flt.engine.lockstep is not None:
            columns = flt.resolve_columns(dataset)
            empty = {name: [] for name in dataset.column_names}
            for _ in range(busiest - mine):
                flt.engine.score_batch(empty, [], columns)


class _ExclusiveRun:
    """One scoring run's hold on its output directory, entered by every process of the launch.

    The main process takes `OutputLock` (the error, e.g. another run holding it, reaches every process through
    `ProcessContext.on_main`) and, after scoring its own share, waits for the others' batches
    (`wait_for_others`). Every other process writes a heartbeat while it runs and a last one saying "done"
    or "failed" (with the error) when it leaves, so the main process can tell a slow process from a dead one
    and stop with `ProcessLostError` instead of waiting forever for rows nobody will write.
    """

    def __init__(self, output_dir: str | os.PathLike, ctx: ProcessContext, wait_timeout: float) -> None:
        self.output_dir = Path(output_dir)
        self.ctx = ctx
        self.wait_timeout = float(wait_timeout)
        self.lock = OutputLock(output_dir) if ctx.is_main else None
        self.run_id = ""
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def __enter__(self) -> _ExclusiveRun:
        holder = self.ctx.on_main(lambda: self.lock.acquire())  # only the main process calls it
        # Heartbeats name the run, so one left behind by an earlier run is never mistaken for a live process.
        self.run_id = f"{holder.get('host')}:{holder.get('pid')}:{holder.get('started')}"
        if not self.ctx.is_main:
            self._beats = threading.Thread(target=self._beat, name="rap-heartbeat", daemon=True)
            self._beats.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        if self._beats is not None:
            self._stop.set()
            self._beats.join()
            state, error = ("done", None) if exc is None else ("failed", f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                write_heartbeat(self.output_dir, self.ctx.rank, self.run_id, -1, state, error)
        if self.lock is not None:
            remove_heartbeats(self.output_dir)
            self.lock.release()

    def _beat(self) -> None:
        beat = 0
        while True:
            try:
                write_heartbeat(self.output_dir, self.ctx.rank, self.run_id, beat, "running")
            except OSError as exc:  # a full or flaky disk must not kill the scoring itself
                logger.warning("process %d cannot write its heartbeat: %s", self.ctx.rank, exc)
            beat += 1
            if self._stop.wait(HEARTBEAT_SECONDS):
                return

    def wait_for_others(self, checkpoint: ScoreCheckpoint) -> float:
        """Main process: block until every row range is checkpointed, by polling the folder (not a collective,
        so unequal shards never hit an NCCL timeout); the seconds waited.

        Raises:
            ProcessLostError: a process reported a failure; or stopped reporting (died, or its machine did)
                for `wait_timeout` seconds with rows missing; or every process finished and rows are still
                missing `wait_timeout` seconds later.
        """
        started = time.monotonic()
        last_log = started
        # Per process: the last heartbeat seen and when it changed, by this process's clock (machines' clocks
        # may disagree, so heartbeats carry a counter, not a time).
        seen: dict[int, tuple[Any, float]] = {r: (None, started) for r in range(1, self.ctx.world_size)}
        while missing := checkpoint.missing_ranges():
            if self.ctx.world_size == 1:
                raise RuntimeError(f"rows {missing} were not scored")  # only if files were removed meanwhile
            now = time.monotonic()
            lost, running = [], 0
            for rank, (last, since) in seen.items():
                record = read_heartbeat(self.output_dir, rank, self.run_id)
                if record is not None and record.get("state") == "failed":
                    raise ProcessLostError(
                        f"process {rank} ({_where(record)}) failed: {record.get('error')}. Rows {_rows(missing)} "
                        "were not scored; run the same command again to resume (finished batches are kept)."
                    )
                key = None if record is None else (record.get("state"), record.get("beat"))
                if key != last:
                    seen[rank] = (key, now)
                elif now - since > self.wait_timeout and (record is None or record.get("state") != "done"):
                    lost.append((rank, record, now - since))
                running += record is None or record.get("state") != "done"
            if lost:
                rank, record, silent = lost[0]
                what = (
                    f"process {rank} ({_where(record)}) stopped reporting {silent:.0f} s ago"
                    if record is not None
                    else f"process {rank} never reported in {silent:.0f} s"
                )
                raise ProcessLostError(
                    f"{what} (--wait_timeout {self.wait_timeout:g}): it died or hangs, and rows "
                    f"{_rows(missing)} will not be scored. Run the same command again to resume (finished "
                    "batches are kept)."
                )
            if not running and now - max(since for _, since in seen.values()) > self.wait_timeout:
                raise ProcessLostError(
                    f"every process finished but rows {_rows(missing)} are still missing from "
                    f"{checkpoint.dir} after {self.wait_timeout:g} s (were files removed, or is --output not "
                    "shared by every machine?). Run the same command again to score them."
                )
            if now - last_log > 60:
                logger.info("waiting for %d rows from the other processes", sum(b - a for a, b in missing))
                last_log = now
            time.sleep(POLL_SECONDS)
        return time.monotonic() - started


def _where(record: dict[str, Any]) -> str:
    return f"pid {record.get('pid')} on {record.get('host')}"


def _rows(ranges: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"[{a}, {b})" for a, b in ranges[:5])
    return shown + (f" and {len(ranges) - 5} more ranges" if len(ranges) > 5 else "")


# ---------------------------------------------------------------------------------------------- num_proc

# Per worker process: the filter each `datasets.map` worker loaded (one model per GPU, loaded once).
_WORKER_FILTERS: dict[tuple[int, str], Any] = {}


class _PerRankScorer:
    """The `datasets.map` function of the ``num_proc`` mode: loads the model once per worker on
    ``cuda:rank`` (CPU without GPUs), scores the batch and checkpoints it. Picklable (no model inside)."""

    def __init__(self, model, config, reward_fn, columns, checkpoint, model_kwargs, num_proc) -> None:
        self.model = model
        self.config = config
        self.reward_fn = reward_fn
        self.columns = columns
        self.checkpoint = checkpoint
        self.model_kwargs = model_kwargs
        self.num_proc = num_proc

    def _filter(self, rank: int):
        from rap_hf.scoring.filter import RAPDataFilter

        key = (rank, self.checkpoint.fingerprint)
        if key not in _WORKER_FILTERS:
            if torch.cuda.is_available():
                device = f"cuda:{rank % torch.cuda.device_count()}"
            else:
                device = "cpu"
                # Workers share the CPU: without this each would start one thread per core.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_proc))
            flt = RAPDataFilter(
                self.model, config=self.config, reward_fn=self.reward_fn, device=device, **self.model_kwargs
            )
            _WORKER_FILTERS[key] = (flt, _BatchWriter(self.checkpoint, flt))
        return _WORKER_FILTERS[key]

    def __call__(
        self, batch: dict[str, list], indices: list[int], rank: int | None, index_offset: int
    ) -> None:
        flt, writer = self._filter(rank or 0)
        out = flt.engine.score_batch(batch, indices, self.columns, index_offset)
        if indices:
            writer(index_offset + indices[0], out)


def _score_with_num_proc(
    model, dataset, ranges, checkpoint, config, reward_fn, num_proc: int, model_kwargs: dict[str, Any]
) -> None:
    """Score `ranges` in this process with `num_proc` `datasets.map` workers, one model per GPU."""
    import multiprocess

    from rap_hf.columns import resolve_columns
    from rap_hf.scoring.images import undecoded_images

    if not isinstance(model, (str, os.PathLike)):
        raise RAPUserError("num_proc needs the model as a name or path: every worker loads its own copy")
    # CUDA cannot be used in a forked child; `datasets` uses multiprocess's default context.
    multiprocess.set_start_method("spawn", force=True)
    columns = resolve_columns(dataset, config)
    raw = undecoded_images(dataset, columns["image"])
    scorer = _PerRankScorer(model, config, reward_fn, columns, checkpoint, model_kwargs, num_proc)
    for start, end in ranges:
        batches = math.ceil((end - start) / config.batch_size)
        raw.select(range(start, end)).map(
            scorer,
            batched=True,
            batch_size=config.batch_size,
            with_indices=True,
            with_rank=True,
            num_proc=min(num_proc, batches),
            fn_kwargs={"index_offset": start},
            load_from_cache_file=False,
            desc=f"RAP scoring (num_proc={num_proc})",
        )
