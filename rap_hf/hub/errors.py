"""`HubPushError` and the translation of huggingface_hub, HTTP and network failures into it.

A push fails for reasons the user can act on (offline mode, no or bad token, no write access, a misspelt
organization, rate limiting, a concurrent commit, a Hub outage, a dropped connection). `explain_failures`
turns any of them, however deeply the libraries wrapped it, into one `HubPushError` whose message names the
cause, the step and the fix, and never the token. Any other exception passes through unchanged: it is a bug,
not a Hub fault.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import huggingface_hub
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from rap_hf.errors import RAPUserError

_STATUS_CAUSES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "conflict"}
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{6,}")


class HubPushError(RAPUserError, RuntimeError):
    """A push to the Hub failed; the message names the cause and the step, never the token.

    A `RAPUserError` (so a `ValueError`: the command line prints it as one line) and, as before, a
    `RuntimeError`.

    Attributes:
        cause: one of ``offline``, ``network``, ``unauthorized``, ``forbidden``, ``not_found``,
            ``rate_limited``, ``conflict``, ``server_error``, ``http_error``, ``invalid_metadata`` (the Hub
            rejected the card's YAML; nothing was uploaded).
        status_code: the HTTP status when the Hub answered, else None.
        step: what the push was doing when it failed.
    """

    def __init__(self, message: str, *, cause: str, step: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.step = step
        self.status_code = status_code


def raise_if_offline(repo_id: str) -> None:
    """Raise a `HubPushError` (cause ``offline``) when huggingface_hub's offline mode is on.

    Called before any work: in offline mode huggingface_hub refuses every request, and finding out only
    after embedding all images into Parquet shards wastes minutes on a large dataset.
    """
    if huggingface_hub.constants.is_offline_mode():
        raise HubPushError(
            f"cannot push to {repo_id!r}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1), so no network "
            "call is allowed. Unset HF_HUB_OFFLINE (or set it to 0) and run the push again. Nothing was changed.",
            cause="offline",
            step="checking offline mode",
        )


@contextmanager
def explain_failures(repo_id: str, step: str, token: str | None) -> Iterator[None]:
    """Turn Hub and network failures raised inside the block into a `HubPushError` naming cause and step.

    ``token`` is the token the push was given (None: huggingface_hub's own sources); it decides the advice
    for HTTP 401 and is removed from the message.
    """
    try:
        yield
    except HubPushError:
        raise
    except Exception as exc:
        error = _explain(exc, repo_id, step, token)
        if error is None:
            raise
        raise error from None  # the chained traceback adds nothing the message lacks


def _root_failure(exc: BaseException) -> BaseException | None:
    """The Hub/network error behind `exc` (libraries wrap them, e.g. LFS upload in RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OfflineModeIsEnabled, HfHubHTTPError)) or _is_network_error(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _network_error_types() -> tuple[type[BaseException], ...]:
    # huggingface_hub's HTTP client changed over releases (requests, httpx, httpx2): accept the transport
    # errors of whichever is installed.
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        types += [getattr(module, name) for name in names if isinstance(getattr(module, name, None), type)]
    return tuple(types)


def _is_network_error(exc: BaseException) -> bool:
    return isinstance(exc, _network_error_types())


def _explain(exc: BaseException, repo_id: str, step: str, token: str | None) -> HubPushError | None:
    root = _root_failure(exc)
    if root is None:
        return None
    namespace = repo_id.split("/")[0]
    status: int | None = None
    if isinstance(root, OfflineModeIsEnabled):
        cause, reason = "offline", "Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1); unset it to push"
    elif isinstance(root, HfHubHTTPError):
        response = getattr(root, "response", None)
        status = getattr(response, "status_code", None)
        server = _server_message(root)
        if status == 401:
            cause = "unauthorized"
            if token is None and _ambient_token() is None:
                reason = "authentication required (HTTP 401): no Hugging Face token found; run `hf auth login` or set HF_TOKEN"
            else:
                reason = (
                    "authentication failed (HTTP 401): the Hub rejected the token (invalid, expired or revoked); "
                    "create one at https://huggingface.co/settings/tokens and log in again"
                )
        elif status == 403:
            cause = "forbidden"
            reason = (
                f"permission denied (HTTP 403): the token cannot write to {namespace!r}; use a token with write "
                "access to that user or organization (fine-grained tokens need write permission on it)"
            )
        elif status == 404:
            cause = "not_found"
            reason = (
                f"not found (HTTP 404): the namespace {namespace!r} (user or organization) or the repository "
                f"{repo_id!r} does not exist or is not visible to this token; check the spelling of the organization"
            )
        elif status == 429:
            cause = "rate_limited"
            retry_after = _retry_after(response)
            reason = "rate limited by the Hub (HTTP 429)" + (
                f"; retry after {retry_after} s" if retry_after is not None else "; wait a few minutes"
            )
        elif status in (409, 412):
            cause = "conflict"
            reason = f"conflict (HTTP {status}): another commit reached the repo during this push"
        elif status is not None and status >= 500:
            cause = "server_error"
            reason = f"Hub server error (HTTP {status}); try again later"
        else:
            cause = _STATUS_CAUSES.get(status or 0, "http_error")
            reason = f"the Hub answered HTTP {status}"
        if server:
            reason += f" [Hub: {server}]"
    else:
        cause = "network"
        text = str(root).strip().splitlines()[0] if str(root).strip() else ""
        reason = f"network error ({type(root).__name__}{': ' + text if text else ''}); check the connection or proxy"
    message = (
        f"push to {repo_id!r} failed while {step}: {reason}. Local data is unchanged. Fix the cause and run the "
        "same push again: it rewrites the same files and configs, so the repo ends up complete with nothing "
        "duplicated."
    )
    return HubPushError(_redact(message, token), cause=cause, step=step, status_code=status)


def _server_message(error: HfHubHTTPError) -> str:
    message = getattr(error, "server_message", None) or ""
    response = getattr(error, "response", None)
    if not message and response is not None:
        message = response.headers.get("X-Error-Message", "")
    return " ".join(str(message).split())[:200]


def _retry_after(response: Any) -> int | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is not None and value.strip().isdigit():
        return int(value)
    # IETF RateLimit header, as the Hub sends it: 'limit=..., remaining=0, reset=SECONDS'
    match = re.search(r"\breset=(\d+)", response.headers.get("RateLimit", ""))
    return int(match.group(1)) if match else None


def _ambient_token() -> str | None:
    """The token huggingface_hub would use (env, login file), or None; never raises."""
    try:
        return huggingface_hub.get_token()
    except Exception:  # e.g. a failing OIDC exchange: then there is no usable token either
        return None


def _redact(text: str, token: str | None) -> str:
    """Remove any token from a message (belt and braces: Hub messages do not echo tokens)."""
    secrets = [s for s in (token, _ambient_token()) if s]
    for secret in secrets:
        text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub("hf_***", text)
