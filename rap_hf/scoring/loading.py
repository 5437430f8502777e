"""Loading the scoring model and processor: a Hub id, a local directory, or objects the user already has."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from rap_hf.errors import RAPUserError

logger = logging.getLogger("rap_hf")


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
    could not be loaded, before any data is touched.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        if os.path.isdir(name) and not os.path.exists(os.path.join(name, "config.json")):
            raise RAPUserError(f"model directory {name!r} has no config.json: not a saved transformers model")
        if not os.path.exists(name) and (name.startswith((".", "/", "~")) or name.count("/") > 1):
            raise RAPUserError(f"model path {name!r} does not exist")
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
    elif device is not None:
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
