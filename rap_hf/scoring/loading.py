"""Loading the scoring model and processor: a Hub id, a local directory, or objects the user already has."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from rap_hf.errors import RAPUserError

logger = logging.getLogger("rap_hf")

SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "qwen3_vl": "Qwen3-VL",
    "internvl": "InternVL3 / InternVL2.5 (transformers-native '-hf' checkpoints)",
    "gemma3": "Gemma 3 (4B and larger)",
    "idefics3": "Idefics3",
    "smolvlm": "SmolVLM / SmolVLM2",
    "llava_onevision": "LLaVA-OneVision",
}
"""Model families (config ``model_type``) scoring is tested on, end to end, with the tiny models of
`rap_hf.demo.tiny_models` (the same keys as its ``TINY_FAMILIES``). docs/architecture.md says how to add one."""

# Checkpoints people reach for that are close to a supported family, and what to use instead.
_FAMILY_HINTS: dict[str, str] = {
    "internvl_chat": "this is the remote-code InternVL checkpoint; use its transformers-native twin, "
    "e.g. OpenGVLab/InternVL3-2B-hf",
    "gemma3_text": "this is a text-only Gemma 3 (1B): it has no vision tower",
    "qwen2_5_vl_text": "this is only the text decoder of a Qwen2.5-VL checkpoint",
}


def supported_families_text() -> str:
    """The supported families, one phrase each, for error messages and docs."""
    return ", ".join(f"{name} ({label})" for name, label in SUPPORTED_MODEL_TYPES.items())


def check_model_family(model_type: str | None, source: str) -> str:
    """Return ``model_type`` if scoring supports it, else raise `RAPUserError` listing what is supported.

    Called on the config alone, before any weights are loaded, so an unsupported checkpoint fails in seconds
    instead of after a download and a dataset's worth of error rows.
    """
    if model_type in SUPPORTED_MODEL_TYPES:
        return model_type
    hint = _FAMILY_HINTS.get(model_type or "")
    found = f"model_type {model_type!r}" if model_type else "no model_type in its config"
    raise RAPUserError(
        f"model {source!r} has {found}, which RAP scoring does not support"
        + (f" ({hint})" if hint else "")
        + f". Supported families: {supported_families_text()}."
    )


def read_model_type(name: str, *, revision: str | None = None) -> str | None:
    """The ``model_type`` in the config of ``name`` (a local folder or a Hub id), reading config.json only:
    no weights, no remote code."""
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(name, revision=revision)
    except Exception as exc:
        raise RAPUserError(f"cannot read the config of model {name!r}: {exc}") from exc
    return config_dict.get("model_type")


def load_model_and_processor(
    model: str | os.PathLike | Any,
    processor: Any = None,
    *,
    revision: str | None = None,
    torch_dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Return (model, processor) ready for scoring, in eval mode.

    `model` is a Hub id (e.g. "Qwen/Qwen2.5-VL-7B-Instruct"), a local directory saved with `save_pretrained`,
    or an already loaded `PreTrainedModel` (then `processor` may be given, or is loaded from the model's
    `name_or_path`). Remote code stays off unless `trust_remote_code=True`. Errors name the model and why it
    could not be loaded, before any data is touched; a model whose config ``model_type`` is not in
    `SUPPORTED_MODEL_TYPES` is refused from its config alone, before any weights are loaded.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        if os.path.isdir(name) and not os.path.exists(os.path.join(name, "config.json")):
            raise RAPUserError(f"model directory {name!r} has no config.json: not a saved transformers model")
        if not os.path.exists(name) and (name.startswith((".", "/", "~")) or name.count("/") > 1):
            raise RAPUserError(f"model path {name!r} does not exist")
        check_model_family(read_model_type(name, revision=revision), name)
        kwargs: dict[str, Any] = {
            "revision": revision,
            "trust_remote_code": trust_remote_code,
            "dtype": torch_dtype,
        }
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            loaded = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
        except Exception as exc:
            raise RAPUserError(f"cannot load model {name!r} as AutoModelForImageTextToText: {exc}") from exc
        if device is not None:
            loaded = loaded.to(device)
        model = loaded
        if processor is None:
            processor = name
    else:
        config = getattr(model, "config", None)
        check_model_family(
            getattr(config, "model_type", None), getattr(model, "name_or_path", "") or type(model).__name__
        )
        if device is not None:
            model = model.to(device)

    if processor is None or isinstance(processor, (str, os.PathLike)):
        source = os.fspath(processor) if processor is not None else getattr(model, "name_or_path", None)
        if not source:
            raise RAPUserError("pass `processor`: the model has no name_or_path to load one from")
        try:
            processor = AutoProcessor.from_pretrained(
                source, revision=revision, trust_remote_code=trust_remote_code
            )
        except Exception as exc:
            raise RAPUserError(f"cannot load a processor from {source!r}: {exc}") from exc

    if not getattr(processor, "chat_template", None):
        raise RAPUserError(
            "the processor has no chat template: RAP builds prompts with `processor.apply_chat_template`. "
            "Set `processor.chat_template` first."
        )
    model.eval()
    return model, processor
