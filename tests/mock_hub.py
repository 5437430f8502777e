"""A minimal Hugging Face Hub on 127.0.0.1 for the explorer's security tests (not a test module).

It serves dataset repos held in memory through the few routes `huggingface_hub` and `datasets` use to read a
dataset (repo info, tree listing, paths-info, file resolve with HTTP ranges) and records every request with its
headers, so a test can assert what a load sent (an ``Authorization`` header) and what it fetched (a footer
range, or a whole file). A repo may be private: it then answers 401 ``RepoNotFound`` to any request without
the right token, as the Hub does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class MockRepo:
    """One dataset repo: its files, an optional token it requires, and sizes it claims (to fake big files)."""

    files: dict[str, bytes]
    token: str | None = None  # set: a private repo, readable only with this bearer token
    claimed_sizes: dict[str, int] = field(default_factory=dict)
    card_data: dict[str, Any] | None = None

    def size(self, path: str) -> int:
        return self.claimed_sizes.get(path, len(self.files[path]))


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class MockHub:
    """Serve `repos` ({"ns/name": MockRepo}) on 127.0.0.1; `url` is the endpoint, `requests` the log."""

    def __init__(self, repos: dict[str, MockRepo]) -> None:
        self.repos = repos
        self.requests: list[Request] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MockHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------------------ routes

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        path = unquote(url.path)
        self.requests.append(Request(method, path, {k.lower(): v for k, v in handler.headers.items()}))
        body = b""
        if method == "POST":
            body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        routes = (
            (r"^/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?$", self._info),
            (r"^/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", self._tree),
            (r"^/api/datasets/([^/]+/[^/]+)/paths-info/([^/]+)$", self._paths_info),
            (r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self._resolve),
        )
        for pattern, route in routes:
            match = re.match(pattern, path)
            if match is None:
                continue
            repo = self.repos.get(match.group(1))
            auth = handler.headers.get("Authorization")
            if repo is None or (repo.token is not None and auth != f"Bearer {repo.token}"):
                # What the Hub answers for a private repo without the right token, and for no repo at all.
                self._send(
                    handler, 401, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}
                )
                return
            route(handler, method, repo, match, parse_qs(url.query), body)
            return
        self._send(handler, 404, b'{"error":"not found"}', {"X-Error-Code": "EntryNotFound"})

    def _info(self, handler, method, repo: MockRepo, match, query, body) -> None:
        info = {
            "_id": "0" * 24,
            "id": match.group(1),
            "sha": SHA,
            "private": repo.token is not None,
            "gated": False,
            "disabled": False,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "tags": [],
            "siblings": [
                {"rfilename": p, "size": repo.size(p), "blobId": _oid(data)} for p, data in repo.files.items()
            ],
        }
        if repo.card_data is not None:
            info["cardData"] = repo.card_data
        self._json(handler, info)

    def _entries(self, repo: MockRepo, paths: list[str]) -> list[dict[str, Any]]:
        entries = []
        for path in paths:
            if path in repo.files:
                entries.append(
                    {"type": "file", "path": path, "size": repo.size(path), "oid": _oid(repo.files[path])}
                )
            elif any(p.startswith(path.rstrip("/") + "/") for p in repo.files) or path in ("", "."):
                entries.append({"type": "directory", "path": path, "size": 0, "oid": _oid(path.encode())})
        return entries

    def _tree(self, handler, method, repo: MockRepo, match, query, body) -> None:
        base = (match.group(3) or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = base + "/" if base else ""
        names: set[str] = set()
        for path in repo.files:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            if recursive:
                names.update(prefix + "/".join(rest[: i + 1]) for i in range(len(rest)))
            else:
                names.add(prefix + rest[0])
        if base and base not in repo.files and not names:
            self._send(handler, 404, b'{"error":"not found"}', {"X-Error-Code": "EntryNotFound"})
            return
        self._json(handler, self._entries(repo, sorted(names)))

    def _paths_info(self, handler, method, repo: MockRepo, match, query, body) -> None:
        try:
            paths = json.loads(body).get("paths", [])
        except ValueError:
            paths = parse_qs(body.decode()).get("paths", [])
        self._json(handler, self._entries(repo, [p.strip("/") for p in paths]))

    def _resolve(self, handler, method, repo: MockRepo, match, query, body) -> None:
        path = match.group(3)
        if path not in repo.files:
            self._send(handler, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
            return
        data = repo.files[path]
        headers = {
            "ETag": f'"{_oid(data)}"',
            "X-Repo-Commit": SHA,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, payload = 200, data
        ranged = re.match(r"bytes=(\d*)-(\d*)$", handler.headers.get("Range") or "")
        if ranged:
            first, last = ranged.groups()
            if first == "":
                start, end = max(0, len(data) - int(last)), len(data) - 1
            else:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            status, payload = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(handler, status, payload, headers, head=method == "HEAD")

    # ------------------------------------------------------------------------------------------ helpers

    def _json(self, handler, value: Any) -> None:
        self._send(handler, 200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def _send(handler, status: int, payload: bytes, headers: dict[str, str], head: bool = False) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if not head:
            handler.wfile.write(payload)

    def fetched(self, path: str) -> list[Request]:
        """The GET requests of file `path` (through /resolve/), with or without a Range."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.path.endswith("/" + path) and "/resolve/" in r.path
        ]


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def scores_repo_files(parquet: bytes, split: str = "train") -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files and card data of a repo laid out like `rap-hf push` writes it (config `scores`)."""
    path = f"scores/{split}-00000-of-00001.parquet"
    card = {
        "configs": [{"config_name": "scores", "data_files": [{"split": split, "path": f"scores/{split}-*"}]}]
    }
    readme = "---\n" + _yaml(card) + "---\n# scores\n"
    return {"README.md": readme.encode(), path: parquet}, card


def _yaml(card: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(card, sort_keys=False)
