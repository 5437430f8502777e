"""Where the scores come from, in terms that can be published: the scoring model as a Hub id plus a commit,
the source dataset as a Hub id, and the scoring run's metadata without a single local path.

`rap-hf score` records the model and dataset the way the user named them, which is often a local folder
(``/home/me/ckpt/step-500``). A pushed repo must not carry that path (it means nothing to a reader and may say
more than the user meant), so everything published about the scoring run goes through `public_scoring`:

- a Hub model id is kept, with the commit that was scored: the one recorded by the run (``model_commit``), a
  pinned 40-hex ``revision``, the commit of a Hugging Face cache snapshot the model was loaded from, or the
  commit the revision resolves to at push time (labelled as such, since a branch can move after scoring);
- a local checkpoint is labelled "local checkpoint" with its folder name only;
- the same for the source dataset (Hub id, ``builtin:NAME``, or "local dataset");
- every other field is copied only when it is on an allow-list of plain numbers and settings.

`find_local_paths` is the last guard: the push refuses to upload a text file that still contains one of the
local paths it was given.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from huggingface_hub.utils import HFValidationError, validate_repo_id

from rap_hf.config import RAPScoringConfig
from rap_hf.hub.metadata import SourceInfo

logger = logging.getLogger("rap_hf")

MODEL_PLACEHOLDER = "YOUR_SCORING_MODEL"
"""What the card's training snippet names when the scoring model is not a Hub id: a name that fails loudly."""
_SHA = re.compile(r"^[0-9a-f]{40}$")
# A Hugging Face cache snapshot: .../models--ORG--NAME/snapshots/<commit>[/...]
_CACHE_SNAPSHOT = re.compile(
    r"(?:^|/)(?P<kind>models|datasets)--(?P<repo>[^/]+)/snapshots/(?P<sha>[0-9a-f]{40})(?:/|$)"
)
# Numbers and settings of rap_scoring.json that say nothing about the machine's files.
_PUBLIC_NUMBERS = (
    "rows",
    "errors",
    "scoring_seconds",
    "model_load_seconds",
    "generated_tokens",
    "num_processes",
    "num_gpus",
    "resumed_rows",
)
_PUBLIC_SETTINGS = ("dataset_config", "split", "torch_dtype", "attn_implementation", "reward_fn")


@dataclass(frozen=True)
class ScoringModel:
    """The scoring model as the card and report show it."""

    kind: str
    """``hub`` (a Hub id), ``local`` (a local checkpoint) or ``unknown`` (not recorded)."""
    hub_id: str | None = None
    commit: str | None = None
    commit_source: str | None = None
    """How the commit is known: ``recorded`` (by the scoring run), ``pinned`` (the revision given was a commit),
    ``cache`` (the cache snapshot it was loaded from), ``resolved at push time``."""
    revision: str | None = None
    local_name: str | None = None
    """Folder name of a local checkpoint (never its path)."""

    @property
    def snippet_name(self) -> str:
        """The ``model=`` of the card's training snippet: the Hub id, else `MODEL_PLACEHOLDER`."""
        return self.hub_id or MODEL_PLACEHOLDER

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hub_id": self.hub_id,
            "commit": self.commit,
            "commit_source": self.commit_source,
            "revision": self.revision,
            "local_name": self.local_name,
        }


def _is_pathlike_name(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", "."))
        or "\\" in name
        or os.path.exists(name)
    )


def hub_id_or_none(name: Any) -> str | None:
    """``name`` when it reads as a Hub repo id (``org/name`` or ``name``, not an existing local path, valid per
    huggingface_hub's `validate_repo_id`); the id recovered from a Hugging Face cache snapshot path; else None."""
    if not isinstance(name, str) or not name or name.startswith("builtin:"):
        return None
    snapshot = _CACHE_SNAPSHOT.search(PurePath(name).as_posix())
    if snapshot:
        return snapshot.group("repo").replace("--", "/")
    if _is_pathlike_name(name) or name.count("/") > 1:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _recorded_local(scoring: Mapping[str, Any]) -> bool:
    """Whether the scoring run saw its model as a local folder (`model_identity` records its weight files)."""
    identity = (scoring.get("fingerprint_inputs") or {}).get("model") or {}
    return isinstance(identity, Mapping) and "weights" in identity


def describe_model(scoring: Mapping[str, Any] | None, *, resolve: Any = None) -> ScoringModel:
    """The scoring model of a run's metadata (``rap_scoring.json``) as a `ScoringModel`.

    Args:
        scoring: the metadata; its ``model``, ``revision`` and, when the run recorded it, ``model_commit``.
        resolve: ``(hub_id, revision) -> commit | None``, called only when no commit is known otherwise (the
            push passes `HfApi.model_info`); None: not resolved.
    """
    scoring = scoring or {}
    name = scoring.get("model")
    if not name:
        return ScoringModel(kind="unknown")
    name = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    revision = scoring.get("revision")
    revision = revision if isinstance(revision, str) and revision else None
    snapshot = _CACHE_SNAPSHOT.search(PurePath(name).as_posix())
    hub_id = hub_id_or_none(name)
    if hub_id is None or (snapshot is None and _recorded_local(scoring)):
        return ScoringModel(kind="local", local_name=PurePath(name.rstrip("/\\")).name or None)
    commit, source = None, None
    recorded = scoring.get("model_commit")
    if isinstance(recorded, str) and _SHA.match(recorded):
        commit, source = recorded, "recorded"
    elif revision and _SHA.match(revision):
        commit, source = revision, "pinned"
    elif snapshot is not None:
        commit, source = snapshot.group("sha"), "cache"
    elif resolve is not None:
        commit = resolve(hub_id, revision)
        source = "resolved at push time" if commit else None
    return ScoringModel(kind="hub", hub_id=hub_id, commit=commit, commit_source=source, revision=revision)


def describe_source(scoring: Mapping[str, Any] | None) -> SourceInfo | None:
    """The source dataset of a run's metadata: a Hub id, a built-in rap-hf dataset or a local one (named
    without its path); None when the run did not record it."""
    name = (scoring or {}).get("dataset")
    if not name:
        return None
    name = str(name)
    if name.startswith("builtin:"):
        builtin = name.split(":", 1)[1]
        return SourceInfo(name=f"rap-hf built-in dataset `{builtin}` (generated by `rap_hf.demo`)")
    hub_id = hub_id_or_none(name)
    if hub_id is None:
        return SourceInfo(name="a local dataset (not on the Hub)")
    return SourceInfo(name=hub_id, hub_id=hub_id)


def hardware(scoring: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """(hardware label, number of GPUs) of a run, from what it recorded: ``num_gpus``, ``device``
    (``cpu``/``cuda:N``/``mps``), ``hardware``, ``gpu_name``. (None, None) when nothing says: the number of
    processes alone does not tell CPU from GPU."""
    scoring = scoring or {}
    gpus = scoring.get("num_gpus")
    gpu_name = scoring.get("gpu_name")
    device = str(scoring.get("device") or "").lower()
    label = scoring.get("hardware")
    if isinstance(gpus, int) and gpus > 0:
        return (label or f"GPU{' (' + str(gpu_name) + ')' if gpu_name else ''}"), gpus
    if device.startswith("cuda"):
        processes = scoring.get("num_processes")
        return (label or "GPU"), processes if isinstance(processes, int) and processes > 0 else None
    if device == "cpu":
        return (label or "CPU"), 0
    if device.startswith("mps"):
        return (label or "Apple GPU (MPS)"), None
    return (str(label) if label else None), None


def public_scoring(
    scoring: Mapping[str, Any] | None, model: ScoringModel, source: SourceInfo | None
) -> dict[str, Any] | None:
    """The scoring metadata that may be published (card and ``rap/report.json``): the model and source as
    described above, allow-listed numbers and settings, the hardware, and the scoring fields of the run's
    ``rap_config``. Paths, fingerprints and error messages (which can quote file names) are left out."""
    if not scoring:
        return None
    public: dict[str, Any] = {"model": model.as_dict()}
    if source is not None:
        public["dataset"] = {"name": source.name, "hub_id": source.hub_id}
    for key in _PUBLIC_NUMBERS:
        value = scoring.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            public[key] = value
    for key in _PUBLIC_SETTINGS:
        value = scoring.get(key)
        if isinstance(value, str) and value and not _is_pathlike_name(value):
            public[key] = value
    label, gpus = hardware(scoring)
    public["hardware"] = label
    if gpus is not None:
        public["num_gpus"] = gpus
    warnings = scoring.get("warnings")
    if isinstance(warnings, list) and all(isinstance(w, str) for w in warnings):
        public["warnings"] = list(warnings)  # degenerate-score alarms of the run (redacted by the push)
    rap_config = scoring.get("rap_config")
    if isinstance(rap_config, Mapping):
        fields = RAPScoringConfig.field_names()
        public["rap_config"] = {key: rap_config[key] for key in fields if key in rap_config}
    return public


def local_path_candidates(*values: Any) -> list[str]:
    """The local paths a push must not publish: every given value that exists locally or looks like a path,
    as given and resolved, plus the user's home folder."""
    found: set[str] = set()
    for value in values:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value or value.startswith("builtin:"):
            continue
        if hub_id_or_none(value) is not None and not _CACHE_SNAPSHOT.search(value):
            continue  # a Hub id is meant to be published
        found.add(value.rstrip("/\\"))
        try:
            found.add(str(Path(value).expanduser().resolve()))
        except (OSError, RuntimeError):
            pass
    home = str(Path.home())
    if len(home) > 1:
        found.add(home)
    # "/" alone or a bare name would match everywhere: only strings that are recognisably paths.
    return sorted(p for p in found if len(p) > 1 and ("/" in p or "\\" in p))


LOCAL_PATH = "<local path>"
"""What `redact_local_paths` writes in place of a local path."""


def redact_local_paths(value: Any, paths: Iterable[str]) -> Any:
    """``value`` (strings, lists and mappings, nested) with every occurrence of ``paths`` replaced by
    `LOCAL_PATH`: messages quoted from the data (an unreadable image's file name in a scoring warning) keep
    their meaning without publishing where the user's files are."""
    paths = sorted(set(paths), key=len, reverse=True)  # the longest first: a folder inside another
    if isinstance(value, str):
        for path in paths:
            value = value.replace(path, LOCAL_PATH)
        return value
    if isinstance(value, Mapping):
        return {key: redact_local_paths(item, paths) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_local_paths(item, paths) for item in value]
    return value


def find_local_paths(texts: Mapping[str, str], paths: Iterable[str]) -> list[tuple[str, str]]:
    """The (file, path) pairs where one of ``paths`` occurs in one of ``texts`` (file -> text)."""
    return [(file, path) for file, text in texts.items() for path in paths if path in text]
