"""The YAML metadata of a RAP dataset card: defaults, merging, and a local check against the Hub's rules.

A derived dataset that redistributes someone else's images must say where they come from and under which
license. `card_metadata` builds the card's YAML (a `huggingface_hub.DatasetCardData`) from, lowest precedence
first:

1. defaults: ``task_categories: [image-text-to-text]``, ``size_categories`` from the row count,
   ``source_datasets`` and, when the source is a Hub dataset, its ``license`` and ``language`` (read from its
   card by `read_source_card`);
2. what the repo's card already holds (hand edits on the Hub survive a re-push);
3. what the caller passes (``card_metadata=``, ``rap-hf push --license ...``).

``tags`` are merged, never replaced. The keys rap-hf owns (``configs``, ``dataset_info``, ``size_categories``)
are always rewritten from the data.

`check_card_metadata` applies, locally and before any upload, the rules the Hub enforces when it validates a
card: the value types of `DatasetCardData`'s fields, the vocabularies `datasets` ships for them
(``datasets/utils/resources``: size categories, ISO 639 language codes, creators, multilinguality) and the
Hub's license identifiers. huggingface_hub itself has no offline validator (`RepoCard.validate` posts the card
to the Hub), so the license list below is copied by hand from https://huggingface.co/docs/hub/repositories-licenses;
the push then also runs `RepoCard.validate` (the Hub's own check) before uploading any data.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

logger = logging.getLogger("rap_hf")

DEFAULT_TASK_CATEGORIES = ("image-text-to-text",)
CARD_TAGS = ("rap", "rap-hf", "data-selection", "multimodal-reasoning", "reinforcement-learning")
OWNED_KEYS = ("configs", "dataset_info", "size_categories")
"""Card keys rap-hf rewrites from the data on every push (an explicit ``card_metadata`` value still wins for
``size_categories``)."""

# https://huggingface.co/docs/hub/repositories-licenses (the "region licenses" table), copied by hand: neither
# huggingface_hub nor datasets ships the list. Newer Hub licenses missing here can be given as
# `license: other` with `license_name` and `license_link`, which the Hub always accepts.
HUB_LICENSES = frozenset(
    """
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa
    unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3
    llama3.1 llama3.2 llama3.3 llama4 grok2-community gemma unknown other
    """.split()
)
# Fields of DatasetCardData that take a string or a list of strings, and the two that must be lists/strings.
_STR_OR_LIST_FIELDS = (
    "language",
    "license",
    "annotations_creators",
    "language_creators",
    "multilinguality",
    "size_categories",
    "task_categories",
    "task_ids",
    "tags",
)
_LIST_FIELDS = ("source_datasets",)
_STR_FIELDS = ("pretty_name", "license_name", "license_link", "paperswithcode_id")
# The Hub's size buckets, keyed by their upper bound (datasets/utils/resources/size_categories.json holds them).
_SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]*$")
_TASK_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@cache
def _resource(name: str) -> Any:
    """A vocabulary file `datasets` ships for card metadata (``datasets/utils/resources/NAME``)."""
    import datasets

    return json.loads((Path(datasets.__file__).parent / "utils" / "resources" / name).read_text("utf-8"))


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` bucket of a row count (``n<1K``, ``1K<n<10K``, ...)."""
    for bound, label in _SIZE_BUCKETS:
        if num_rows < bound:
            return label
    return "n>1T"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_card_metadata(metadata: Mapping[str, Any]) -> list[str]:
    """The problems the Hub would reject in card metadata, checked locally; an empty list when it is valid.

    Checks the value types `DatasetCardData` documents, ``size_categories``, ``language`` (ISO 639-1/2/3 codes
    as listed by `datasets`, plus ``multilingual``), ``annotations_creators``/``language_creators``,
    ``multilinguality``, ``license`` (a Hub license identifier; ``other`` needs ``license_name``), tag and task
    spelling, the ``configs`` entries (through `datasets`' own `MetadataConfigs` check), and keys left without
    a value (huggingface_hub drops them silently, the Hub flags them).
    """
    problems: list[str] = []
    if not isinstance(metadata, Mapping):
        return [f"metadata must be a mapping, got {type(metadata).__name__}"]
    for key, value in metadata.items():
        if not isinstance(key, str):
            problems.append(f"key {key!r} is not a string")
        elif value is None or value == [] or value == "":
            problems.append(f"{key!r} has no value (remove the key or give it one)")
    for key in _STR_OR_LIST_FIELDS:
        value = metadata.get(key)
        if value is not None and not (
            isinstance(value, str)
            or (isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value))
        ):
            problems.append(f"{key!r} must be a string or a list of non-empty strings, got {value!r}")
    for key in _LIST_FIELDS:
        value = metadata.get(key)
        if value is not None and not (
            isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)
        ):
            problems.append(f"{key!r} must be a list of strings, got {value!r}")
    for key in _STR_FIELDS:
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key!r} must be a string, got {value!r}")
    if problems:
        return problems  # the vocabulary checks below assume the types are right

    def unknown(key: str, allowed: Any, hint: str) -> None:
        bad = [v for v in _as_list(metadata.get(key)) if v not in allowed]
        if bad:
            problems.append(f"{key!r}: {bad} not accepted by the Hub ({hint})")

    unknown("size_categories", set(_resource("size_categories.json")), "one of n<1K, 1K<n<10K, ..., n>1T")
    unknown(
        "language",
        set(_resource("languages.json")) | {"multilingual"},
        "ISO 639-1/2/3 codes such as en, fr, zho: no region suffix like en-US",
    )
    creators = _resource("creators.json")
    unknown("annotations_creators", set(creators["annotations"]), f"one of {creators['annotations']}")
    unknown("language_creators", set(creators["language"]), f"one of {creators['language']}")
    unknown("multilinguality", set(_resource("multilingualities.json")), "monolingual, multilingual, ...")
    unknown(
        "license",
        HUB_LICENSES,
        "a license identifier from https://huggingface.co/docs/hub/repositories-licenses, e.g. cc-by-4.0; "
        "for another license use license: other with license_name and license_link",
    )
    if "other" in _as_list(metadata.get("license")) and not metadata.get("license_name"):
        problems.append("'license: other' needs 'license_name' (and 'license_link')")
    for key in ("task_categories", "task_ids"):
        bad = [v for v in _as_list(metadata.get(key)) if not _TASK_PATTERN.match(v)]
        if bad:
            problems.append(f"{key!r}: {bad} are not task ids (lowercase words joined by '-')")
    bad_tags = [t for t in _as_list(metadata.get("tags")) if not _TAG_PATTERN.match(t) or len(t) > 100]
    if bad_tags:
        problems.append(f"'tags': {bad_tags} are not valid tags (no spaces, at most 100 characters)")
    if metadata.get("configs") is not None:
        from datasets.utils.metadata import MetadataConfigs

        try:  # datasets' own check of the block `load_dataset` reads
            MetadataConfigs.from_dataset_card_data(DatasetCardData(configs=metadata["configs"]))
        except (ValueError, TypeError) as exc:
            problems.append(f"'configs': {exc}".strip())
    return problems


def merge_tags(*groups: Sequence[str] | str | None) -> list[str]:
    """The tags of every group, in order, each once."""
    merged: list[str] = []
    for group in groups:
        for tag in _as_list(group):
            if tag not in merged:
                merged.append(tag)
    return merged


def card_metadata(
    *,
    num_rows: int,
    existing: Mapping[str, Any] | None,
    explicit: Mapping[str, Any] | None,
    source: SourceInfo | None,
    pretty_name: str,
) -> dict[str, Any]:
    """The card's YAML metadata (without ``configs``/``dataset_info``, which `rap_hf.hub.shards` adds).

    Precedence, lowest first: defaults (task, size, source, the source's license and language), the repo's
    current card (``existing``), then ``explicit``. ``tags`` are the union of all three plus `CARD_TAGS`.
    ``size_categories`` always follows ``num_rows`` unless ``explicit`` sets it.
    """
    defaults: dict[str, Any] = {
        "task_categories": list(DEFAULT_TASK_CATEGORIES),
        "pretty_name": pretty_name,
    }
    if source is not None and source.hub_id:
        defaults["source_datasets"] = [source.hub_id]
        if source.license:
            defaults["license"] = source.license
        if source.language:
            defaults["language"] = source.language
    existing = {k: v for k, v in (existing or {}).items() if k not in OWNED_KEYS}
    explicit = dict(explicit or {})
    merged = {**defaults, **existing, **explicit}
    merged["tags"] = merge_tags(existing.get("tags"), CARD_TAGS, explicit.get("tags"))
    merged["size_categories"] = explicit.get("size_categories") or [size_category(num_rows)]
    return merged


# ------------------------------------------------------------------------------------------------ source card


@dataclass
class SourceInfo:
    """What the card says about the source dataset: how to name it, its Hub id (None when it is not on the
    Hub) and what its own card declares (license, language, citation; None when not found)."""

    name: str
    hub_id: str | None = None
    license: Any = None
    language: Any = None
    citation: str | None = None
    pretty_name: str | None = None
    card_found: bool = False


_BIBTEX_BLOCK = re.compile(r"```(?:bibtex|bib|latex|tex)?\s*\n(\s*@\w+\s*\{.*?)\n```", re.S | re.I)


def citation_from_card(text: str) -> str | None:
    """The first BibTeX entry of a card's body (the usual ``Citation`` code block), or None."""
    match = _BIBTEX_BLOCK.search(text)
    return match.group(1).strip() if match else None


def read_source_card(hub_id: str, *, token: str | None, revision: str | None = None) -> SourceInfo:
    """The license, language and citation a Hub dataset declares on its card, read through huggingface_hub
    (`HfFileSystem`, no file is cached on disk).

    Never raises: offline mode, a private or missing repo, a card without metadata or a network error all give
    a `SourceInfo` with only the id (logged), and the card then says the license was not found.
    """
    from huggingface_hub import HfFileSystem

    info = SourceInfo(hub_id, hub_id=hub_id)
    ref = f"@{revision}" if revision else ""
    try:
        text = HfFileSystem(token=token).read_text(f"datasets/{hub_id}{ref}/README.md", encoding="utf-8")
        card = DatasetCard(text, ignore_metadata_errors=True)
    except Exception as exc:  # any failure only costs the copied metadata, never the push
        logger.warning(
            "could not read the card of source dataset %r (%s): license and language not copied",
            hub_id,
            type(exc).__name__,
        )
        return info
    data = card.data.to_dict()
    info.card_found = True
    info.license = data.get("license")
    info.language = data.get("language")
    info.pretty_name = data.get("pretty_name")
    info.citation = citation_from_card(card.text)
    return info
