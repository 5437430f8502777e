"""Every bound the explorer puts on what a visitor can make the server do, in one place.

`ExplorerLimits` holds the numbers (dataset download size, rows, pixels, text lengths, request size, queue
size, concurrency); `capped_text` applies a text cap; `RequestLimits` is the ASGI middleware that refuses
an oversized request body, or a file sent as a `data:` URL, before Gradio parses it. SECURITY.md at the repository root says what these
promise and which test checks each. Pure Python: no gradio import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from rap_hf.explorer.data import MAX_SHOWN_PIXELS, ExplorerDataError

MB = 2**20


@dataclass(frozen=True)
class ExplorerLimits:
    """The explorer's resource bounds (defaults fit a small CPU Space with a few dozen visitors).

    Attributes:
        max_download_mb: the largest Hub dataset a visitor may load (the files of the one split they asked
            for), checked on the Hub's file sizes before anything is downloaded. `rap-hf explore
            --max_download_mb`, Space variable RAP_EXPLORER_MAX_DOWNLOAD_MB.
        max_rows: the most rows of a visitor's dataset.
        max_decoded_mb: the largest a visitor's dataset may grow when its parquet is decoded to Arrow
            (parquet compresses, and a crafted file can decompress a thousandfold).
        max_visitor_data_mb: all visitors' loaded datasets together, on disk; a load that would exceed it is
            refused (nobody else's data is evicted).
        max_image_pixels: an uploaded image with more pixels is refused before it is decoded (PIL reads the
            size from the header); dataset images are held to `rap_hf.explorer.data.MAX_SHOWN_PIXELS`.
        max_upload_mb: the largest upload (the image to score).
        max_request_kb: the largest body of any other request (event payloads, API calls), which bounds a
            base64 `data:` URL in the queue payload too: Gradio's upload cap does not cover those.
        max_question_chars: "score a new sample" keeps the first this-many characters of the question.
        max_answer_chars, max_source_chars, max_split_chars, max_repo_chars: longer text is refused.
        queue_size: events waiting in Gradio's queue, all visitors together; more are refused at once.
        concurrency: events running at once (the model-bound ones share one slot of their own).
        session_ttl_s: a visitor's loaded dataset is dropped this long after it was loaded, or an hour after
            the tab closed, whichever comes first.
    """

    max_download_mb: float = 100.0
    max_rows: int = 100_000
    max_decoded_mb: float = 500.0
    max_visitor_data_mb: float = 2_000.0
    max_image_pixels: int = MAX_SHOWN_PIXELS
    max_upload_mb: float = 10.0
    max_request_kb: float = 1_024.0
    max_question_chars: int = 1_000
    max_answer_chars: int = 200
    max_source_chars: int = 200
    max_split_chars: int = 64
    max_repo_chars: int = 96
    queue_size: int = 64
    concurrency: int = 2
    session_ttl_s: float = 4 * 3600.0

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * MB)

    @property
    def max_decoded_bytes(self) -> int:
        return int(self.max_decoded_mb * MB)

    @property
    def max_visitor_data_bytes(self) -> int:
        return int(self.max_visitor_data_mb * MB)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_kb * 1024)


def capped_text(value: Any, limit: int, what: str) -> str:
    """`value` as a stripped string of at most `limit` characters; `ExplorerDataError` when longer (the
    message names the field and the cap, never echoes the text)."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise ExplorerDataError(f"{what} is too long ({len(text):,} characters; at most {limit:,}).")
    return text.strip()


def shown_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters for display, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestLimits:
    """ASGI middleware: refuse an HTTP request whose body is larger than its route allows (413), or an event
    payload that carries a file as a base64 ``data:`` URL (422), before Gradio reads it.

    Gradio's `max_file_size` bounds the files of an upload; nothing bounds the JSON of an event, where a
    ``data:`` URL can stand in for a file, and Gradio's image component decodes it in place of an upload
    before any handler runs. The page never sends one (it uploads files through the upload route). Here
    uploads may carry `upload_bytes` and every other request `other_bytes`. A declared Content-Length over
    the limit is refused at once; a body without one (chunked) is counted as it is read.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, upload_bytes: int, other_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.other_bytes = other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope.get("path", "").rstrip("/").endswith("/upload")
        limit = self.upload_bytes if upload else self.other_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"Request body too large (at most {limit:,} bytes).")
            return
        # Read the body here, within the limit, and hand it to the app whole.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, 413, f"Request body too large (at most {limit:,} bytes).")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not upload and _DATA_URL_FILE.search(body):
            await _refuse(send, 422, "Files must be uploaded, not sent as data: URLs.")
            return
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send
        )


# A file object in a JSON payload whose "url" is a data: URL. In raw JSON a key is an unescaped quoted string,
# so text a visitor typed (where quotes are escaped) cannot match.
_DATA_URL_FILE = re.compile(rb'"url"\s*:\s*"\s*data:', re.IGNORECASE)


def _replay(messages: list[MutableMapping[str, Any]], then: Receive | None = None) -> Receive:
    """A `receive` that returns `messages`, then defers to `then` (e.g. a disconnect)."""
    pending = list(messages)

    async def receive() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
