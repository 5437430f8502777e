"""Resumable scoring: finished batches are checkpointed in the output directory and merged at the end.

Layout of a scoring output directory::

    OUTPUT/
      rap_checkpoint/                       while the run is in progress (removed after the merge)
        manifest.json                       the run's fingerprint and what it was computed from
        scores-000000000000-000000000008.arrow   score columns of rows [0, 8), Arrow IPC
        scores-000000000000-000000000008.json    marker: sha256, size, rows, fingerprint, statistics
      data-*.arrow, dataset_info.json, state.json   the merged scored dataset (`save_to_disk` format)
      rap_scoring.json                      written last: its presence means the run is complete

While a run is in progress its main process holds an exclusive lock on ``OUTPUT/.rap_score.lock``
(`OutputLock`: ``fcntl.flock``, the file names the holder), so a second run on the same directory stops at once
with a message naming the first; the other processes of a launch report liveness in
``OUTPUT/.rap_heartbeat-RANK.json`` (`write_heartbeat`), which the main process reads while it waits.

A batch counts as done only when its marker exists, carries this run's fingerprint, and the data file matches
the marker's sha256 and row count. Both files are written to a temporary name, fsynced and renamed, so a
SIGKILL leaves either nothing, a stray temporary file, or a data file without a marker, and each of those is
detected and redone. Batches are keyed by global row range, not by process, so a run may be resumed with
another number of processes or another batch size (scores do not depend on either).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_hf.config import RAPScoringConfig
from rap_hf.errors import RAPUserError

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger("rap_hf")

SCORING_METADATA = "rap_scoring.json"
CHECKPOINT_DIR = "rap_checkpoint"
# A finished decisive run's scores while a text_arm="full" run completes them (rap_hf.scoring.completion).
COMPLETION_DIR = "rap_completing_from"
MANIFEST = "manifest.json"
LOCK_FILE = ".rap_score.lock"
HEARTBEAT_PREFIX = ".rap_heartbeat-"
CHECKPOINT_FORMAT = "rap-checkpoint-v3"  # v2: fingerprint in every marker, model identity by content; v3: the
# rap_text_rollouts and rap_cde_bound columns (batches of a v2 run lack them and cannot be merged with new ones)
_BATCH_RE = re.compile(r"^scores-(\d{12})-(\d{12})\.json$")
# Files `save_to_disk` writes; the only ones (with ours) that --overwrite removes from an output directory.
_DATASET_FILES = ("dataset_info.json", "state.json")
_DATASET_GLOB = "data-*.arrow"


class CheckpointMismatchError(RAPUserError):
    """The output directory holds work from a run with another fingerprint (config, dataset or model).

    A `RAPUserError` (so a `ValueError`): the user chooses, with ``--overwrite`` or another ``--output``."""


class OutputLockedError(RAPUserError):
    """Another scoring run holds the output directory's lock; the message names it (pid, host, start)."""


# ------------------------------------------------------------------------------------------------ fingerprint


# Files of a model folder that change what the model generates: weights, configs, tokenizer and chat template,
# remote code. (A README or a training log does not, and editing one must not block a resume.)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_MODEL_FILE_SUFFIXES = (*_WEIGHT_SUFFIXES, ".json", ".jinja", ".txt", ".model", ".tiktoken", ".py", ".yaml")
# Files up to this size are hashed whole; larger ones by their safetensors header plus evenly spaced samples,
# so a 150 GB checkpoint costs a few MB of reads per file instead of minutes per process.
_WHOLE_HASH_BYTES = 64 * 2**20
_SAMPLES = 64
_SAMPLE_BYTES = 64 * 2**10
_MAX_SAFETENSORS_HEADER = 100 * 2**20
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_HUB_ID_RE = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def file_digest(path: str | os.PathLike[str]) -> str:
    """A content hash of a model file: sha256 of the whole file up to 64 MiB; above that, of its size, its
    safetensors header (tensor names, dtypes, shapes, offsets) and 64 evenly spaced 64 KiB samples.

    The samples see retrained weights (every tensor changes) at a fixed cost; a change confined to bytes no
    sample reads goes unnoticed, which is why small files, where that is cheap to rule out, are hashed whole.
    Deterministic across copies of a folder (no mtime), so processes on other machines agree.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= _WHOLE_HASH_BYTES:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
            return f"sha256:{digest.hexdigest()}"
        digest.update(str(size).encode())
        if path.suffix == ".safetensors":
            head = handle.read(8)
            (length,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
            digest.update(head + handle.read(min(length, _MAX_SAFETENSORS_HEADER)))
        for k in range(_SAMPLES):
            handle.seek(k * (size - _SAMPLE_BYTES) // (_SAMPLES - 1))
            digest.update(handle.read(_SAMPLE_BYTES))
    return f"sampled-sha256:{digest.hexdigest()}"


def resolve_hub_commit(repo_id: str, revision: str | None = None) -> tuple[str | None, str]:
    """The commit a Hub model id (at `revision`, default its main branch) points to, and where it came from:
    ``"hub"`` (asked the Hub), ``"cache"`` (offline: the commit of the locally cached snapshot), ``"given"``
    (`revision` is already a commit) or ``"unresolved"`` (offline and not cached: None)."""
    if revision is not None and _COMMIT_RE.match(revision):
        return revision, "given"
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return HfApi().model_info(repo_id, revision=revision).sha, "hub"
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError) as exc:
        logger.debug("cannot ask the Hub for the commit of %s: %s", repo_id, exc)
    try:
        # The cache keeps one folder per commit (snapshots/<commit>) and maps branches to commits.
        folder = snapshot_download(
            repo_id, revision=revision, local_files_only=True, allow_patterns=["config.json"]
        )
        commit = Path(folder).name
        if _COMMIT_RE.match(commit):
            return commit, "cache"
    except Exception as exc:  # huggingface_hub raises several types for "not in the cache"
        logger.debug("no cached snapshot of %s: %s", repo_id, exc)
    return None, "unresolved"


def model_identity(model: Any, revision: str | None = None) -> dict[str, Any]:
    """What identifies the scoring model: its name and revision, plus

    - for a local folder, a content hash of every file that changes generation (`file_digest`: weights,
      configs, tokenizer, chat template), so a model retrained or re-saved under the same path does not resume
      into the old model's scores;
    - for a Hub id, the commit `revision` resolves to (`resolve_hub_commit`), so a push to the model repo
      between two runs is seen; offline it is the cached snapshot's commit, or None with a warning;
    - for a loaded model object, a hash of its config (weights are not read).
    """
    if not isinstance(model, (str, os.PathLike)):
        config = getattr(model, "config", None)
        config_json = config.to_json_string() if config is not None else type(model).__name__
        return {
            "name": getattr(model, "name_or_path", type(model).__name__),
            "config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
        }
    name = os.fspath(model)
    identity: dict[str, Any] = {"name": name, "revision": revision}
    path = Path(name)
    if path.is_dir():
        identity["files"] = [
            [p.name, p.stat().st_size, file_digest(p)]
            for p in sorted(path.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix in _MODEL_FILE_SUFFIXES
        ]
    elif _HUB_ID_RE.match(name):
        commit, source = resolve_hub_commit(name, revision)
        identity["commit"] = commit
        if commit is None:
            logger.warning(
                "cannot pin the Hub model %s to a commit (offline and not cached): a resumed run will not "
                "notice if the model repo changes in between; pass --revision COMMIT to pin it",
                name,
            )
        elif source == "cache":
            logger.info("offline: %s pinned to the cached commit %s", name, commit)
    return identity


def scoring_fingerprint_inputs(
    *,
    dataset: datasets.Dataset,
    config: RAPScoringConfig,
    model: dict[str, Any],
    reward_fn: str,
    torch_dtype: str,
    attn_implementation: str | None,
) -> dict[str, Any]:
    """Everything a score depends on, as JSON-able values (stored in the manifest to explain a mismatch)."""
    # Only the scoring fields that change a score: re-running `rap-hf score` with another lambda_c or batch size
    # must resume, not be refused.
    scoring_config = RAPScoringConfig.of(config).fingerprint_values()
    inputs = {
        # datasets exposes no public fingerprint; this is the cache key it uses itself for the same data.
        "dataset_fingerprint": dataset._fingerprint,
        "num_rows": len(dataset),
        "rap_config": scoring_config,
        "model": model,
        "reward_fn": reward_fn,
        "torch_dtype": str(torch_dtype),
        "attn_implementation": attn_implementation,
        "format": CHECKPOINT_FORMAT,
    }
    # Through JSON once, so these compare equal to the copy read back from a manifest (tuples become lists).
    return json.loads(json.dumps(inputs, sort_keys=True, default=str))


def fingerprint_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which fingerprint inputs differ, e.g. "rap_config.seed (0 -> 1), dataset_fingerprint"."""
    parts = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) == b.get(sub):
                    continue
                if sub == "files" and isinstance(a.get(sub), list) and isinstance(b.get(sub), list):
                    # [name, size, digest] per model file: name the files, not their hashes.
                    old_files = {f[0]: f for f in a[sub]}
                    new_files = {f[0]: f for f in b[sub]}
                    changed = sorted(
                        n for n in set(old_files) | set(new_files) if old_files.get(n) != new_files.get(n)
                    )
                    parts.append(f"{key}.{sub} (changed: {', '.join(changed)})")
                else:
                    parts.append(f"{key}.{sub} ({a.get(sub)!r} -> {b.get(sub)!r})")
        elif key in ("num_rows", "torch_dtype", "attn_implementation", "reward_fn"):
            parts.append(f"{key} ({a!r} -> {b!r})")
        else:
            parts.append(key)
    return ", ".join(parts) or "unknown"


# ------------------------------------------------------------------------------------------------ files


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or all of the new one: a temporary
    file in the same folder (``.NAME.*.tmp``), fsynced, then renamed over `path`. Also used by the trainer
    for its online state."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------ the run's own files


def _holder_description(info: dict[str, Any] | None) -> str:
    if not info:
        return "details not written yet"
    started = info.get("started")
    when = (
        datetime.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds")
        if isinstance(started, (int, float))
        else "unknown time"
    )
    return f"pid {info.get('pid')} on {info.get('host')}, started {when}"


class OutputLock:
    """An exclusive lock on a scoring output directory (``OUTPUT/.rap_score.lock``), held by the main process
    of a run from before the directory is checked until after the merge.

    ``fcntl.flock`` on the lock file: the kernel releases it when the holder exits, however it exits, so a
    killed run never leaves a stale lock. The file records the holder (pid, host, start time, command) for the
    message a second run gets. Works on local filesystems and NFSv4; where the filesystem has no locks the run
    goes ahead with a warning (the fingerprint in every batch marker still refuses a mixed merge).
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_FILE
        self.info: dict[str, Any] = {}
        self._fd: int | None = None

    def acquire(self) -> dict[str, Any]:
        """Take the lock, or raise `OutputLockedError` naming the run that holds it. Returns the holder
        record written (pid, host, started, command), which also identifies the run."""
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise CheckpointMismatchError(f"--output {self.output_dir} exists and is not a directory")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX
            logger.warning(
                "cannot lock %s on this platform: make sure no other run writes into it", self.output_dir
            )
            return self._record(None)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputLockedError(
                    f"{self.output_dir} is in use by another scoring run ({_holder_description(_read_json(self.path))}). "
                    "Wait for it to finish or stop it, or choose another --output."
                ) from None
            except OSError as exc:  # e.g. ENOLCK: a filesystem without locks
                os.close(fd)
                logger.warning(
                    "cannot lock %s (%s): make sure no other run writes into it", self.output_dir, exc
                )
                return self._record(None)
            # The previous holder removes the file when it releases: if it did so between our open and our
            # flock, we hold a lock on a removed file that nobody else would see. Then start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._record(fd)
            os.close(fd)

    def _record(self, fd: int | None) -> dict[str, Any]:
        self._fd = fd
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": " ".join(sys.argv)[:1000],
        }
        if fd is not None:
            data = json.dumps(self.info).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        return self.info

    def release(self) -> None:
        """Remove the lock file and let go (removed while still held, so no other run can lock it first)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def heartbeat_path(output_dir: str | os.PathLike[str], rank: int) -> Path:
    return Path(output_dir) / f"{HEARTBEAT_PREFIX}{rank}.json"


def write_heartbeat(
    output_dir: str | os.PathLike[str],
    rank: int,
    run_id: str,
    beat: int,
    state: str,
    error: str | None = None,
) -> None:
    """Record that process `rank` of run `run_id` is alive (`state` "running"), has finished its share
    ("done") or has failed ("failed", with `error`). The main process only compares successive `beat`
    values with its own clock, so machines need not agree on the time."""
    record = {
        "run": run_id,
        "rank": rank,
        "beat": beat,
        "state": state,
        "error": error,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    atomic_write(heartbeat_path(output_dir, rank), json.dumps(record).encode())


def read_heartbeat(output_dir: str | os.PathLike[str], rank: int, run_id: str) -> dict[str, Any] | None:
    """Process `rank`'s last heartbeat of run `run_id`; None when it has not written one (a heartbeat left
    by an earlier run does not count)."""
    record = _read_json(heartbeat_path(output_dir, rank))
    return record if record is not None and record.get("run") == run_id else None


def remove_heartbeats(output_dir: str | os.PathLike[str]) -> None:
    for path in Path(output_dir).glob(f"{HEARTBEAT_PREFIX}*.json"):
        path.unlink(missing_ok=True)


def _batch_stem(start: int, end: int) -> str:
    return f"scores-{start:012d}-{end:012d}"


@dataclass
class BatchStats:
    """Per-batch counters, stored in each marker so totals survive restarts and sum over processes."""

    rows: int = 0
    errors: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    error_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchStats) -> None:
        self.rows += other.rows
        self.errors += other.errors
        self.generated_tokens += other.generated_tokens
        self.seconds += other.seconds
        for reason, count in other.error_reasons.items():
            self.error_reasons[reason] = self.error_reasons.get(reason, 0) + count


@dataclass
class CheckpointState:
    """What the main process found in the output directory before scoring."""

    complete: bool
    done: list[tuple[int, int]]
    redone: list[tuple[int, int]]
    discarded_tmp: int


class ScoreCheckpoint:
    """The checkpoint folder of one scoring run in `output_dir` (see the module docstring for the layout).

    Any process may write batches (`write_batch`); only the main process prepares the folder (`prepare`) and
    merges (`merge`). Picklable, so `datasets.map(num_proc=...)` workers can write batches too.
    """

    def __init__(
        self, output_dir: str | os.PathLike, fingerprint: str, inputs: dict[str, Any], features: Any
    ) -> None:
        self.output_dir = Path(output_dir)
        self.dir = self.output_dir / CHECKPOINT_DIR
        self.fingerprint = fingerprint
        self.inputs = inputs
        self.features = features  # datasets.Features of the score columns
        self.num_rows = int(inputs["num_rows"])

    # ---- checks before any model work ----

    def check(self, overwrite: bool = False) -> bool:
        """Refuse an output directory holding finished work from another fingerprint; True if already complete.

        Read-only, cheap: run it before loading the model. Finished work is a completed scored dataset or at
        least one checkpointed batch; a manifest alone (a run that died before finishing a batch) is not.
        """
        if not self.output_dir.exists():
            return False
        if not self.output_dir.is_dir():
            raise CheckpointMismatchError(f"--output {self.output_dir} exists and is not a directory")
        if overwrite:
            return False
        metadata_path = self.output_dir / SCORING_METADATA
        if metadata_path.exists():
            metadata = _read_json(metadata_path) or {}
            if metadata.get("fingerprint") == self.fingerprint:
                return self._final_dataset_present()
            old = metadata.get("fingerprint_inputs") or {}
            raise CheckpointMismatchError(
                f"{self.output_dir} already holds a scored dataset from a different run (differs in: "
                f"{describe_difference(old, self.inputs) if old else 'unknown: no fingerprint recorded'}). "
                "Pass --overwrite to replace it, or choose another --output."
            )
        manifest = _read_json(self.dir / MANIFEST)
        if manifest is not None and manifest.get("fingerprint") != self.fingerprint and self._markers():
            raise CheckpointMismatchError(
                f"{self.output_dir} holds an unfinished scoring run with a different fingerprint (differs in: "
                f"{describe_difference(manifest.get('inputs') or {}, self.inputs)}). Re-run with the original "
                "settings to resume it, pass --overwrite to discard it, or choose another --output."
            )
        if manifest is None:
            foreign = [
                p.name
                for p in self.output_dir.iterdir()
                if p.name not in (CHECKPOINT_DIR, COMPLETION_DIR) and not p.name.startswith(".")
            ]
            if foreign:
                raise CheckpointMismatchError(
                    f"--output {self.output_dir} is not empty and was not written by `rap-hf score` "
                    f"(found {sorted(foreign)[:5]}). Pass --overwrite to write into it anyway, or choose another "
                    "--output."
                )
        return False

    def prepare(self, overwrite: bool = False) -> CheckpointState:
        """Main process: discard stale or foreign work, drop corrupt batches, write the manifest.

        Call after `check` and after the model loaded (so a run that fails to start leaves no manifest behind
        that would pin the directory to a fingerprint)."""
        if self.check(overwrite):
            return CheckpointState(complete=True, done=[], redone=[], discarded_tmp=0)
        manifest = _read_json(self.dir / MANIFEST)
        stale = manifest is None or manifest.get("fingerprint") != self.fingerprint
        if overwrite or stale:
            self._remove_final_dataset()
            (self.output_dir / SCORING_METADATA).unlink(missing_ok=True)
            if self.dir.exists():
                shutil.rmtree(self.dir)
        elif (self.output_dir / SCORING_METADATA).exists():
            (self.output_dir / SCORING_METADATA).unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        discarded = 0
        for tmp in self.dir.glob(".*.tmp"):  # interrupted writes: never renamed, never trusted
            tmp.unlink(missing_ok=True)
            discarded += 1
        done, redone = [], []
        for start, end in self._markers():
            if self.verify(start, end):
                done.append((start, end))
            else:
                redone.append((start, end))
                self._remove_batch(start, end)
        # A data file without a marker was being written when the run died: redo it.
        marked = {(_batch_stem(s, e) + ".arrow") for s, e in done}
        for data_file in self.dir.glob("scores-*.arrow"):
            if data_file.name not in marked:
                data_file.unlink(missing_ok=True)
                discarded += 1
        if redone:
            logger.warning(
                "RAP checkpoint: %d corrupt or partial batch(es) will be redone: %s", len(redone), redone
            )
        atomic_write(
            self.dir / MANIFEST,
            json.dumps(
                {"fingerprint": self.fingerprint, "inputs": self.inputs, "created": time.time()}, indent=2
            ).encode(),
        )
        return CheckpointState(complete=False, done=done, redone=redone, discarded_tmp=discarded)

    def manifest_visible(self) -> bool:
        """Whether this process sees the main process's manifest (False: the output is not on a shared disk)."""
        manifest = _read_json(self.dir / MANIFEST)
        return manifest is not None and manifest.get("fingerprint") == self.fingerprint

    # ---- batches ----

    def _markers(self) -> list[tuple[int, int]]:
        if not self.dir.is_dir():
            return []
        found = []
        for path in self.dir.iterdir():
            match = _BATCH_RE.match(path.name)
            if match:
                found.append((int(match.group(1)), int(match.group(2))))
        return sorted(found)

    def done_ranges(self) -> list[tuple[int, int]]:
        """Row ranges whose markers exist (verified by `prepare` on the main process before scoring)."""
        return self._markers()

    def write_batch(self, start: int, outputs: dict[str, list], stats: BatchStats) -> None:
        """Checkpoint the score columns of rows [start, start + len): data file first, then its marker."""
        import pyarrow as pa

        rows = len(next(iter(outputs.values()))) if outputs else 0
        if rows == 0:
            return
        end = start + rows
        table = pa.Table.from_pydict(
            {name: outputs[name] for name in self.features}, schema=self.features.arrow_schema
        )
        buffer = io.BytesIO()
        with pa.ipc.new_file(buffer, table.schema) as writer:
            writer.write_table(table)
        data = buffer.getvalue()
        stem = _batch_stem(start, end)
        atomic_write(self.dir / f"{stem}.arrow", data)
        marker = {
            "start": start,
            "end": end,
            "rows": rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "fingerprint": self.fingerprint,  # checked at the merge: never merge another run's rows
            "stats": stats.__dict__,
        }
        atomic_write(self.dir / f"{stem}.json", json.dumps(marker).encode())

    def verify(self, start: int, end: int) -> bool:
        """True if rows [start, end) have a marker of this run's fingerprint and a data file that matches it
        byte for byte."""
        marker = _read_json(self.dir / f"{_batch_stem(start, end)}.json")
        data_path = self.dir / f"{_batch_stem(start, end)}.arrow"
        if marker is None or not data_path.is_file() or marker.get("fingerprint") != self.fingerprint:
            return False
        if data_path.stat().st_size != marker.get("bytes") or marker.get("rows") != end - start:
            return False
        return hashlib.sha256(data_path.read_bytes()).hexdigest() == marker.get("sha256")

    def _remove_batch(self, start: int, end: int) -> None:
        stem = _batch_stem(start, end)
        (self.dir / f"{stem}.json").unlink(missing_ok=True)
        (self.dir / f"{stem}.arrow").unlink(missing_ok=True)

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Row ranges of [0, num_rows) without a marker (work not finished yet)."""
        return complement(self._markers(), self.num_rows)

    # ---- merge ----

    def load_scores(self) -> tuple[datasets.Dataset, BatchStats]:
        """Verify every batch and concatenate them in row order; raise `CorruptBatchError` listing bad ones."""
        import datasets
        import pyarrow as pa

        ranges = self._markers()
        _check_tiling(ranges, self.num_rows)
        self._refuse_foreign_batches(ranges)
        bad = [r for r in ranges if not self.verify(*r)]
        if bad:
            for r in bad:
                self._remove_batch(*r)
            raise CorruptBatchError(bad)
        tables, totals = [], BatchStats()
        for start, end in ranges:
            stem = _batch_stem(start, end)
            with pa.memory_map(str(self.dir / f"{stem}.arrow")) as source:
                tables.append(pa.ipc.open_file(source).read_all())
            totals.add(BatchStats(**(_read_json(self.dir / f"{stem}.json") or {}).get("stats", {})))
        table = (
            pa.concat_tables(tables) if tables else self.features.arrow_schema.empty_table()
        ).combine_chunks()
        return datasets.Dataset(table, info=datasets.DatasetInfo(features=self.features)), totals

    def _refuse_foreign_batches(self, ranges: list[tuple[int, int]]) -> None:
        """Raise `CheckpointMismatchError` if a batch marker carries another fingerprint: another run wrote
        into this directory while this one ran (possible only where the lock could not be taken)."""
        foreign = {}
        for start, end in ranges:
            marker = _read_json(self.dir / f"{_batch_stem(start, end)}.json")
            if marker is not None and marker.get("fingerprint") != self.fingerprint:
                foreign[(start, end)] = marker.get("fingerprint")
        if foreign:
            rows = ", ".join(f"[{a}, {b})" for a, b in sorted(foreign))
            raise CheckpointMismatchError(
                f"{self.dir} holds rows {rows} written by another scoring run (fingerprint "
                f"{sorted({str(f) for f in foreign.values()})}, this run {self.fingerprint}): two runs wrote into "
                "the same --output. Nothing was merged. Make sure only one run uses it, then re-run with "
                "--overwrite (or choose another --output)."
            )

    def finalize(self, scored: datasets.Dataset, metadata: dict[str, Any], keep_checkpoints: bool) -> None:
        """Save the merged dataset into the output directory, then `rap_scoring.json` (the completion mark)."""
        self._remove_final_dataset()  # leftovers of a merge that was killed half-way
        scored.save_to_disk(str(self.output_dir))
        self.write_metadata(metadata)
        if not keep_checkpoints:
            shutil.rmtree(self.dir, ignore_errors=True)

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Write `rap_scoring.json` (with the run's fingerprint) atomically."""
        metadata = {**metadata, "fingerprint": self.fingerprint, "fingerprint_inputs": self.inputs}
        atomic_write(self.output_dir / SCORING_METADATA, json.dumps(metadata, indent=2, default=str).encode())

    def read_metadata(self) -> dict[str, Any]:
        return _read_json(self.output_dir / SCORING_METADATA) or {}

    def _final_dataset_present(self) -> bool:
        return (self.output_dir / "state.json").is_file() and any(self.output_dir.glob(_DATASET_GLOB))

    def _remove_final_dataset(self) -> None:
        remove_final_dataset(self.output_dir)


def remove_final_dataset(output_dir: str | os.PathLike) -> None:
    """Remove the ``save_to_disk`` files of a scored dataset from `output_dir` (nothing else)."""
    output_dir = Path(output_dir)
    for name in _DATASET_FILES:
        (output_dir / name).unlink(missing_ok=True)
    for path in output_dir.glob(_DATASET_GLOB):
        path.unlink(missing_ok=True)


class CorruptBatchError(RuntimeError):
    """Checkpointed batches failed verification at merge time (they were removed, to be scored again)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        super().__init__(f"corrupt checkpointed batches (removed, to be redone): {ranges}")
        self.ranges = ranges


def complement(ranges: Iterable[tuple[int, int]], num_rows: int) -> list[tuple[int, int]]:
    """The row ranges of [0, num_rows) not covered by `ranges` (sorted, non-overlapping)."""
    missing, cursor = [], 0
    for start, end in sorted(ranges):
        if start > cursor:
            missing.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < num_rows:
        missing.append((cursor, num_rows))
    return missing


def _check_tiling(ranges: list[tuple[int, int]], num_rows: int) -> None:
    cursor = 0
    for start, end in ranges:
        if start != cursor:
            what = "overlap" if start < cursor else "gap"
            raise RuntimeError(
                f"checkpointed batches do not tile the dataset: {what} at row {min(start, cursor)}"
            )
        cursor = end
    if cursor != num_rows:
        raise RuntimeError(f"checkpointed batches cover {cursor} of {num_rows} rows")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
