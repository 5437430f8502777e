"""Hub integration: push through the real `datasets`/`huggingface_hub` code, load back with `load_dataset`.

The Hub is unreachable here, so `LocalHub` stands in for it at the HTTP transport: huggingface_hub's public
`set_client_factory` hook gets an `httpx2.Client` whose transport is an `httpx2.MockTransport` answering the
Hub REST endpoints that a push uses (repo info, create repo/branch, preupload, LFS batch + upload, commit,
tree listing, paths info, file resolve (GET with ranges, and HEAD, as `hf_hub_download` and `load_dataset`
by repo id use it), model info, YAML validation with the Hub's metadata rules (also on every commit that
touches README.md, as the Hub does). Everything above the transport is the libraries' own code: `HfApi`,
`HfFileSystem`, `load_dataset` by repo id, request headers and token handling, error parsing
(`hf_raise_for_status`). Commits are also mirrored into a directory per repo (``<root>/<org>/<name>``, and
``<root>/<org>/<name>@<branch>`` for branches), which some tests load with `load_dataset(dir, config)`.

Known differences from the real Hub (see docs/hub.md): files go through the legacy LFS protocol because
Xet is switched off with huggingface_hub's own `HF_HUB_DISABLE_XET` setting (Xet's client is Rust code that
opens its own connections), and the status codes and messages for auth/namespace errors are modelled on the
documented behaviour, not recorded from the service.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import re
import runpy
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import datasets
import huggingface_hub
import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard, HfFileSystem
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook
from PIL import Image

from rap_hf import RAPConfig, select_cognitive_samples
from rap_hf.hub import HubPushError, load_scores, load_selected, push_rap_dataset
from rap_hf.report.plots import plot_score_histograms, plot_stage_counts
from rap_hf.selection import stage_counts

# huggingface_hub's HTTP client since its httpx2 releases; older clients have no transport to swap this way.
httpx2 = pytest.importorskip("httpx2", reason="the local Hub plugs into huggingface_hub's httpx2 client")
# huggingface_hub's own LFS upload passes a file object as `data=`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO_ROOT = Path(__file__).resolve().parents[1]
HISTOGRAMS = ("rap_cde", "rap_ace", "rap_ace_norm", "rap_acc_mm", "rap_acc_text", "rap_difficulty")
# The score columns of docs/scoring.md ("Score columns"), spelled out rather than imported from rap_hf.columns:
# the test data is hand-made and must not change when the code does.
SCORE_FEATURES = {
    "rap_acc_mm": datasets.Value("float64"),
    "rap_acc_text": datasets.Value("float64"),
    "rap_cde": datasets.Value("float64"),
    "rap_ace": datasets.Value("float64"),
    "rap_ace_norm": datasets.Value("float64"),
    "rap_difficulty": datasets.Value("float64"),
    "rap_completions_mm": datasets.List(datasets.Value("string")),
    "rap_completions_text": datasets.List(datasets.Value("string")),
    "rap_error": datasets.Value("string"),
}
WRITE_TOKEN = "hf_" + "WriteTokenForTests0123456789"
READ_TOKEN = "hf_" + "ReadOnlyTokenForTests98765"
USER, ORG = "alice", "rap-org"

# ------------------------------------------------------------------------------------------- local Hub


@dataclass
class Fault:
    """Answer matching requests with an HTTP status or raise a transport error, after `skip` matches."""

    method: str
    path: str  # regex searched in the URL path
    status: int | None = None
    error: type[Exception] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    skip: int = 0
    times: int = 1
    seen: int = 0

    def fire(self, request: httpx2.Request) -> httpx2.Response | None:
        if request.method != self.method or not re.search(self.path, request.url.path):
            return None
        self.seen += 1
        if self.seen <= self.skip or self.seen > self.skip + self.times:
            return None
        if self.error is not None:
            raise self.error("connection reset by peer", request=request)
        return httpx2.Response(self.status, headers=self.headers, json={"error": f"injected {self.status}"})


@dataclass
class Repo:
    private: bool
    refs: dict[str, str]
    commits: dict[str, dict[str, bytes]]  # sha -> snapshot (path -> content)
    history: list[str] = field(default_factory=list)  # commit summaries, oldest first


class LocalHub:
    """A small in-process Hugging Face Hub, reached through huggingface_hub's HTTP transport."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.tokens = {WRITE_TOKEN: {"write": True, "namespaces": {USER, ORG}}, READ_TOKEN: {"write": False}}
        self.namespaces = {USER, ORG, "someone-else"}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        self.models: dict[str, str] = {}  # model repo id -> head commit, for model_info

    # ---- helpers for tests
    def dir(self, repo_id: str, branch: str = "main") -> Path:
        return self.root / (repo_id if branch == "main" else f"{repo_id}@{branch}")

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs[branch]]

    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        """A repo pushed by someone else (e.g. the source dataset whose card the push reads)."""
        sha = _new_sha()
        self.repos[repo_id] = Repo(private=private, refs={"main": sha}, commits={sha: dict(files)})
        self.repos[repo_id].history.append("initial commit")

    # ---- transport entry point
    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append((request.method, request.url.path))
        if "authorization" in request.headers:
            self.auth_headers.append(request.headers["authorization"])
        for fault in self.faults:
            response = fault.fire(request)
            if response is not None:
                return response
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        if token is not None and token not in self.tokens:
            return _error(401, "Invalid credentials in Authorization header")
        path = unquote(request.url.path)
        routes = [
            ("POST", r"^/api/validate-yaml$", self._validate_yaml),
            ("POST", r"^/api/repos/create$", self._create_repo),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?$", self._repo_info),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)$", self._create_branch),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)$", self._preupload),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)$", self._commit),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rest>.+)$", self._tree),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>.+)$", self._paths_info),
            ("POST", r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", self._lfs_batch),
            ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", self._lfs_upload),
            ("GET", r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rest>.+)$", self._resolve),
            ("HEAD", r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rest>.+)$", self._resolve),
            ("GET", r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?$", self._model_info),
        ]
        for method, pattern, handler in routes:
            match = re.match(pattern, path)
            if request.method == method and match:
                return handler(request, token, **match.groupdict())
        return _error(404, f"no route for {request.method} {path}")

    # ---- access control, modelled on the Hub: anonymous reads of public repos, writes need a write token
    def _check_write(self, token: str | None, namespace: str) -> httpx2.Response | None:
        if token is None:
            return _error(401, "You must be authenticated to access this resource")
        if not self.tokens[token]["write"] or namespace not in self.tokens[token]["namespaces"]:
            return _error(403, f'You don\'t have the rights to write to the namespace "{namespace}"')
        return None

    def _repo(self, repo_id: str, token: str | None) -> Repo | httpx2.Response:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token is None):
            return _error(404, "Repository not found", code="RepoNotFound")
        return repo

    def _sha(self, repo: Repo, rev: str | None) -> str | httpx2.Response:
        rev = unquote(rev or "main")
        if rev in repo.refs:
            return repo.refs[rev]
        if rev in repo.commits:
            return rev
        return _error(404, f"Invalid rev id: {rev}", code="RevisionNotFound")

    # ---- endpoints
    def _validate_yaml(self, request, token):
        errors = hub_metadata_errors(json.loads(request.content)["content"])
        if errors:
            return httpx2.Response(400, json={"errors": [{"message": e} for e in errors]})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def _model_info(self, request, token, repo, rev=None):
        if repo not in self.models:
            return _error(404, "Repository not found", code="RepoNotFound")
        return httpx2.Response(200, json={"id": repo, "modelId": repo, "sha": self.models[repo]})

    def _create_repo(self, request, token):
        payload = json.loads(request.content)
        namespace = payload["organization"]
        if token is None:
            return _error(401, "You must be authenticated to access this resource")
        if namespace not in self.namespaces:
            return _error(404, f"Organization {namespace} not found")
        denied = self._check_write(token, namespace)
        if denied is not None:
            return denied
        repo_id = f"{namespace}/{payload['name']}"
        if repo_id in self.repos:
            return _error(409, "You already created this dataset repo")
        initial = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
        sha = _new_sha()
        self.repos[repo_id] = Repo(
            private=payload.get("visibility") == "private", refs={"main": sha}, commits={sha: initial}
        )
        self.repos[repo_id].history.append("initial commit")
        self._materialise(repo_id, "main")
        return httpx2.Response(
            200, json={"url": f"https://huggingface.co/datasets/{repo_id}", "name": repo_id}
        )

    def _repo_info(self, request, token, repo, rev=None):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        sha = self._sha(found, rev)
        if isinstance(sha, httpx2.Response):
            return sha
        siblings = [{"rfilename": p} for p in sorted(found.commits[sha])]
        return httpx2.Response(
            200, json={"id": repo, "sha": sha, "private": found.private, "siblings": siblings}
        )

    def _create_branch(self, request, token, repo, rev):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        denied = self._check_write(token, repo.split("/")[0])
        if denied is not None:
            return denied
        if rev in found.refs:
            return _error(409, "Reference already exists")
        found.refs[rev] = found.refs["main"]
        self._materialise(repo, rev)
        return httpx2.Response(200, json={})

    def _preupload(self, request, token, repo, rev):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        denied = self._check_write(token, repo.split("/")[0])
        if denied is not None:
            return denied
        sha = self._sha(found, rev)
        if isinstance(sha, httpx2.Response):
            return sha
        current = found.commits[sha]
        files = []
        for item in json.loads(request.content)["files"]:
            mode = "lfs" if _is_lfs(item["path"]) else "regular"
            existing = current.get(item["path"])
            oid = None
            if existing is not None:  # lets huggingface_hub skip unchanged files, as on the Hub
                oid = hashlib.sha256(existing).hexdigest() if mode == "lfs" else _git_sha1(existing)
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return httpx2.Response(200, json={"files": files, "commitOid": sha})

    def _lfs_batch(self, request, token, repo):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        denied = self._check_write(token, repo.split("/")[0])
        if denied is not None:
            return denied
        objects = []
        for obj in json.loads(request.content)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs:  # already stored: no upload action, the client skips it
                entry["actions"] = {"upload": {"href": f"https://lfs.local/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects})

    def _lfs_upload(self, request, token, oid):
        content = request.read()
        if hashlib.sha256(content).hexdigest() != oid:
            return _error(400, "sha256 mismatch")
        self.lfs[oid] = content
        return httpx2.Response(200)

    def _commit(self, request, token, repo, rev):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        denied = self._check_write(token, repo.split("/")[0])
        if denied is not None:
            return denied
        branch = unquote(rev)
        if branch not in found.refs:
            return _error(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
        lines = [json.loads(line) for line in request.content.splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, found.refs[branch]):
            return _error(412, "A commit has happened since. Please refresh and try again.")
        snapshot = dict(found.commits[found.refs[branch]])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                snapshot[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return _error(422, f"LFS object {value['oid']} was not uploaded")
                snapshot[value["path"]] = self.lfs[value["oid"]]
            elif key == "deletedFile":
                snapshot.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                snapshot = {p: c for p, c in snapshot.items() if not p.startswith(prefix)}
            else:
                return _error(400, f"unknown commit operation {key}")
        if "README.md" in snapshot and snapshot["README.md"] != found.commits[found.refs[branch]].get(
            "README.md"
        ):
            errors = hub_metadata_errors(snapshot["README.md"].decode("utf-8"))
            if errors:  # the Hub refuses a commit whose card metadata is invalid
                return _error(400, "Invalid metadata in README.md.\n- " + "\n- ".join(errors))
        sha = _new_sha()
        found.commits[sha] = snapshot
        found.refs[branch] = sha
        found.history.append(header["summary"])
        self._materialise(repo, branch)
        return httpx2.Response(
            200, json={"commitUrl": f"https://huggingface.co/datasets/{repo}/commit/{sha}", "commitOid": sha}
        )

    def _entries(self, snapshot: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        base = prefix.strip("/")
        entries: dict[str, dict] = {}
        for path, content in sorted(snapshot.items()):
            if base and not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :] if base else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(([base] if base else []) + parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder, {"type": "directory", "oid": _git_sha1(folder.encode()), "path": folder}
                    )
            if recursive or len(parts) == 1:
                entries[path] = {
                    "type": "file",
                    "oid": _git_sha1(content),
                    "size": len(content),
                    "path": path,
                }
                if _is_lfs(
                    path
                ):  # as the Hub: the git oid is the pointer's, the LFS oid the content's sha256
                    entries[path]["lfs"] = {
                        "oid": hashlib.sha256(content).hexdigest(),
                        "size": len(content),
                        "pointerSize": 134,
                    }
        return list(entries.values())

    def _tree(self, request, token, repo, rest):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        # the revision is one URL-quoted segment, the folder another
        raw = request.url.raw_path.decode().split("?")[0]
        raw_rest = raw.split("/tree/", 1)[1]
        rev, _, folder = raw_rest.partition("/")
        sha = self._sha(found, unquote(rev))
        if isinstance(sha, httpx2.Response):
            return sha
        snapshot = found.commits[sha]
        folder = unquote(folder)
        if folder and not any(p.startswith(folder.rstrip("/") + "/") for p in snapshot):
            return _error(404, f"{folder} does not exist", code="EntryNotFound")
        recursive = (
            parse_qs(urlsplit(str(request.url)).query).get("recursive", ["False"])[0].lower() == "true"
        )
        return httpx2.Response(200, json=self._entries(snapshot, folder, recursive))

    def _paths_info(self, request, token, repo, rev):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        sha = self._sha(found, rev)
        if isinstance(sha, httpx2.Response):
            return sha
        snapshot = found.commits[sha]
        wanted = parse_qs(request.content.decode()).get("paths", [])
        everything = {e["path"]: e for e in self._entries(snapshot, "", recursive=True)}
        return httpx2.Response(200, json=[everything[p] for p in wanted if p in everything])

    def _resolve(self, request, token, repo, rest):
        found = self._repo(repo, token)
        if isinstance(found, httpx2.Response):
            return found
        raw = request.url.raw_path.decode().split("?")[0].split("/resolve/", 1)[1]
        rev, _, file_path = raw.partition("/")
        sha = self._sha(found, unquote(rev))
        if isinstance(sha, httpx2.Response):
            return sha
        content = found.commits[sha].get(unquote(file_path))
        if content is None:
            return _error(404, "Entry not found", code="EntryNotFound")
        if request.method == "HEAD":  # hf_hub_download / get_hf_file_metadata: commit, etag and size, no body
            etag = hashlib.sha256(content).hexdigest() if _is_lfs(unquote(file_path)) else _git_sha1(content)
            headers = {
                "X-Repo-Commit": sha,
                "ETag": f'"{etag}"',
                "Content-Length": str(len(content)),
            }
            if _is_lfs(unquote(file_path)):
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(content))})
            return httpx2.Response(200, headers=headers)
        match = re.match(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(content)
            return httpx2.Response(206, content=content[start:end], headers={"X-Repo-Commit": sha})
        return httpx2.Response(200, content=content, headers={"X-Repo-Commit": sha})

    def _materialise(self, repo_id: str, branch: str) -> None:
        """Mirror the branch head into its directory: exactly the committed files, nothing else."""
        directory = self.dir(repo_id, branch)
        snapshot = self.files(repo_id, branch)
        if directory.exists():
            for path in sorted(directory.rglob("*"), reverse=True):
                relative = path.relative_to(directory).as_posix()
                if path.is_file() and relative not in snapshot:
                    path.unlink()
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        for relative, content in snapshot.items():
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _error(status: int, message: str, code: str | None = None) -> httpx2.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return httpx2.Response(status, headers=headers, json={"error": message})


def _is_lfs(path: str) -> bool:
    return path.endswith((".parquet", ".png", ".arrow"))


# The Hub's metadata rules as this stand-in enforces them (modelled on huggingface.co's documented behaviour,
# written independently of rap_hf.hub.metadata so that the two check each other): a YAML mapping; licenses
# from https://huggingface.co/docs/hub/repositories-licenses (a subset); ISO 639 codes without region;
# the size buckets; list-or-string task fields; `configs` entries with a config_name and data_files.
_HUB_LICENSES = {
    "apache-2.0",
    "mit",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc0-1.0",
    "odc-by",
    "other",
    "unknown",
}
_HUB_SIZES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "n>1T"}


def hub_metadata_errors(readme: str) -> list[str]:
    match = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    try:
        metadata = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {exc}"]
    if not isinstance(metadata, dict):
        return ["metadata is not a YAML mapping"]

    def values(key):
        value = metadata.get(key)
        return [] if value is None else [value] if isinstance(value, str) else value

    errors = []
    errors += [
        f'"license" must be one of the Hub licenses, got "{v}"'
        for v in values("license")
        if v not in _HUB_LICENSES
    ]
    errors += [
        f'"language" "{v}" is not an ISO 639 code'
        for v in values("language")
        if not re.fullmatch(r"[a-z]{2,3}", str(v))
    ]
    errors += [
        f'"size_categories" "{v}" is invalid' for v in values("size_categories") if v not in _HUB_SIZES
    ]
    for key in ("task_categories", "tags", "source_datasets"):
        if not isinstance(metadata.get(key, []), (list, str)):
            errors.append(f'"{key}" must be an array')
    for entry in metadata.get("configs") or []:
        if not isinstance(entry, dict) or "config_name" not in entry:
            errors.append('"configs" entries need a "config_name"')
    return errors


def _git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _new_sha() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Route huggingface_hub's HTTP client to a fresh `LocalHub`; online mode, Xet off, no ambient token."""
    local = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # datasets reads its own copy of the setting (tests/conftest.py sets HF_HUB_OFFLINE=1 for the suite)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    # loading by repo id downloads through huggingface_hub's cache: keep it inside the test
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    HfFileSystem.clear_instance_cache()
    huggingface_hub.set_client_factory(
        lambda: httpx2.Client(
            transport=httpx2.MockTransport(local.handle),
            event_hooks={"request": [hf_request_event_hook]},  # keeps the offline check and request ids
            follow_redirects=True,
        )
    )
    yield local
    huggingface_hub.set_client_factory(default_client_factory)
    HfFileSystem.clear_instance_cache()


# ------------------------------------------------------------------------------------------- scored data

# (acc_mm, acc_text, ace, error): each row aims at one stage with the default RAPConfig
# (lambda_c=0.5, lambda_a=0.1, DRM on).
_ROWS = [
    (0.8, 0.0, 0.01, None),  # kept
    (0.6, 0.0, 0.05, None),  # kept
    (1.0, 0.2, 0.02, None),  # trivial: replaced by DRM -> drm_out
    (0.4, 0.4, 0.01, None),  # cde_rejected (hard: acc_mm 0.4 -> DRM candidate -> drm_in)
    (0.8, 0.6, 0.01, None),  # cde_rejected
    (0.8, 0.0, 0.90, None),  # ace_rejected
    (0.0, 0.0, 0.01, None),  # cde_rejected, acc_mm 0: never a DRM candidate
    (math.nan, math.nan, math.nan, "generation failed: boom"),  # error
]


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(6, 5, 3), dtype=np.uint8))


def make_scored(rows=_ROWS, seed: int = 0, image_files: Path | None = None) -> datasets.Dataset:
    """A hand-made scored dataset: TRL-style prompt/image/solution plus every rap_* score column."""
    data: dict[str, list] = {name: [] for name in ("prompt", "image", "solution", *SCORE_FEATURES)}
    for i, (acc_mm, acc_text, ace, error) in enumerate(rows):
        data["prompt"].append(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Q{i}?"}]}]
        )
        image = _image(seed * 100 + i)
        if image_files is not None:  # images referenced by path: the push must embed their bytes
            image_files.mkdir(parents=True, exist_ok=True)
            path = image_files / f"{seed}-{i}.png"
            image.save(path)
            image = str(path)
        data["image"].append(image)
        data["solution"].append(str(i))
        data["rap_acc_mm"].append(acc_mm)
        data["rap_acc_text"].append(acc_text)
        data["rap_cde"].append(acc_mm - acc_text)
        data["rap_ace"].append(ace)
        data["rap_ace_norm"].append(math.log(ace) if ace == ace else math.nan)
        data["rap_difficulty"].append(1 - acc_mm)
        data["rap_completions_mm"].append([f"\\boxed{{{i}}}", "no idea"] if error is None else [])
        data["rap_completions_text"].append([f"guess {i}", "?"] if error is None else [])
        data["rap_error"].append(error)
    features = datasets.Features(
        {
            "prompt": datasets.List(
                {
                    "role": datasets.Value("string"),
                    "content": datasets.List(
                        {"type": datasets.Value("string"), "text": datasets.Value("string")}
                    ),
                }
            ),
            "image": datasets.Image(),
            "solution": datasets.Value("string"),
            **SCORE_FEATURES,
        }
    )
    return datasets.Dataset.from_dict(data, features=features)


@pytest.fixture
def scored() -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": make_scored(seed=0), "test": make_scored(_ROWS[:5], seed=1)})


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, Image.Image) and isinstance(b, Image.Image):
        return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def assert_same_rows(loaded: datasets.Dataset, expected: datasets.Dataset) -> None:
    assert loaded.features == expected.features
    assert len(loaded) == len(expected)
    for got, want in zip(loaded, expected, strict=True):
        for column in expected.column_names:
            assert _same_value(got[column], want[column]), (column, got[column], want[column])


def _stage_total(card_text: str, stage: str) -> int:
    match = re.search(rf"^\| {stage} \|(?: \d+ \|)* (\d+) \|$", card_text, re.M)
    assert match, f"no row for {stage} in the card"
    return int(match.group(1))


def _snapshot_dir(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------- helpers


def load_repo(repo_id: str, config: str | None, cache: Path, split: str | None = None, **kwargs):
    """`load_dataset` by repo id, through huggingface_hub against the local Hub, as a user would."""
    return datasets.load_dataset(repo_id, config, split=split, cache_dir=str(cache), **kwargs)


def load_dataset_dir(directory: Path, config: str, split: str, cache: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(directory), config, split=split, cache_dir=str(cache))


def pushed_card(hub: LocalHub, repo_id: str, branch: str = "main") -> DatasetCard:
    return DatasetCard(hub.files(repo_id, branch)["README.md"].decode("utf-8"))


def commits(hub: LocalHub, repo_id: str) -> list[str]:
    """The commit titles of a repo after its creation (the Hub's own initial commit left out)."""
    return hub.repos[repo_id].history[1:]


def uploads(hub: LocalHub) -> int:
    return sum(method == "PUT" for method, _ in hub.requests)


SOURCE_ID = "vision-lab/geo-vqa"
SOURCE_CARD = b"""---
license: cc-by-4.0
language:
- en
pretty_name: Geo VQA
---
# Geo VQA

## Citation

```bibtex
@article{geovqa2024,
  title={Geo VQA},
  author={Doe, Jane},
  year={2024}
}
```
"""
MODEL_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
MODEL_SHA = "0123456789abcdef0123456789abcdef01234567"


def scoring_metadata(**overrides) -> dict:
    """rap_scoring.json as `rap-hf score` writes it for a run on 8 GPUs, with scoring settings 48/24."""
    metadata = {
        "model": MODEL_ID,
        "revision": None,
        "dataset": SOURCE_ID,
        "dataset_config": None,
        "split": "train",
        "rows": 13,
        "scoring_seconds": 7200.0,
        "generated_tokens": 12345,
        "errors": 1,
        "num_processes": 8,
        "num_gpus": 8,
        "rap_config": RAPConfig(num_rollouts=5, max_new_tokens=48, batch_size=24).to_dict(),
    }
    metadata.update(overrides)
    return metadata


# ------------------------------------------------------------------------------------------- tests: data


def test_push_then_load_both_configs_row_for_row(hub, scored, tmp_path):
    """Both configs round-trip row for row, loaded by repo id (HEAD /resolve, tree, parquet) in one commit."""
    config = RAPConfig()
    annotated = select_cognitive_samples(scored, config)
    expected_counts = stage_counts(annotated)
    assert expected_counts["train"]["drm_in"] == 1 and expected_counts["train"]["error"] == 1  # data sanity

    repo = f"{ORG}/eureka-rap"
    result = push_rap_dataset(scored, repo, config=config, token=WRITE_TOKEN, private=True)

    assert hub.repos[repo].private and result.committed
    assert commits(hub, repo) == ["Upload RAP scores and selection"]  # one atomic commit
    assert all(header == f"Bearer {WRITE_TOKEN}" for header in hub.auth_headers)  # explicit token was used
    cache = tmp_path / "hf-datasets-cache"
    kwargs = {"token": WRITE_TOKEN}  # a private repo
    loaded_selected = load_repo(repo, "selected", cache, **kwargs)
    loaded_scores = load_repo(repo, "scores", cache, **kwargs)
    assert any(method == "HEAD" and "/resolve/" in path for method, path in hub.requests)
    assert sorted(loaded_selected) == sorted(loaded_scores) == ["test", "train"]
    for split in ("train", "test"):
        assert_same_rows(loaded_selected[split], annotated[split].filter(lambda r: r["rap_selected"]))
        assert_same_rows(loaded_scores[split], annotated[split])
    # the one-liners are thin wrappers over the same call
    assert (
        load_selected(repo, split="test", cache_dir=str(cache), **kwargs)["solution"]
        == loaded_selected["test"]["solution"]
    )
    assert len(load_scores(repo, cache_dir=str(cache), **kwargs)["train"]) == 8
    assert result.rows == {
        "selected": {
            "train": sum(annotated["train"]["rap_selected"]),
            "test": sum(annotated["test"]["rap_selected"]),
        },
        "scores": {"train": 8, "test": 5},
    }
    # `selected` is the default config: plain load_dataset(repo) gives the training subset
    default = load_repo(repo, None, cache, split="train", **kwargs)
    assert len(default) == result.rows["selected"]["train"]
    # the same files load from a folder laid out like the repo
    assert len(load_dataset_dir(hub.dir(repo), "selected", "train", cache)) == len(default)

    card = pushed_card(hub, repo)
    configs = {entry["config_name"]: entry for entry in card.data.to_dict()["configs"]}
    assert sorted(configs) == ["scores", "selected"] and configs["selected"].get("default") is True
    assert "default" not in configs["scores"]
    info = {entry["config_name"]: entry for entry in card.data.to_dict()["dataset_info"]}
    assert info["selected"]["splits"][0]["num_examples"] == result.rows["selected"]["train"]
    totals = {
        stage: sum(split[stage] for split in expected_counts.values()) for stage in expected_counts["train"]
    }
    for stage, total in totals.items():
        assert _stage_total(card.text, stage) == total
    n_selected = totals["kept"] + totals["drm_in"] + totals["budget_in"]
    n_scored = 13 - totals["error"]
    assert f"- selected: {n_selected} ({100 * n_selected / n_scored:.2f}% of scored rows)" in card.text
    assert f'load_dataset("{repo}", "selected", split="train")' in card.text
    assert "RAPGRPOTrainer(" in card.text and "arxiv.org/abs/2506.04755" in card.text
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        assert hub.files(repo)[figure].startswith(b"\x89PNG")
    report = json.loads(hub.files(repo)["rap/report.json"])
    assert report["counts"] == totals and report["selected"] == n_selected
    assert report["splits"]["test"]["counts"] == expected_counts["test"]


def test_images_are_embedded(hub, tmp_path):
    dataset = make_scored(seed=3, image_files=tmp_path / "images")
    expected = [np.asarray(image) for image in select_cognitive_samples(dataset)["image"]]
    push_rap_dataset(dataset, f"{USER}/embedded", token=WRITE_TOKEN)
    for path in (tmp_path / "images").iterdir():
        path.unlink()  # the pushed data must not point back at local files
    loaded = load_repo(f"{USER}/embedded", "scores", tmp_path / "cache", split="train")
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(loaded["image"], expected, strict=True))
    assert not any(str(tmp_path).encode() in content for content in hub.files(f"{USER}/embedded").values())


def test_shards_follow_max_shard_size(hub, tmp_path):
    """Several shards per split, named and listed as `push_to_hub` names them, all loaded back."""
    dataset = make_scored(_ROWS * 40, seed=4)
    result = push_rap_dataset(dataset, f"{USER}/sharded", token=WRITE_TOKEN, max_shard_size=5_000)
    shards = sorted(p for p in result.files if p.startswith("scores/"))
    assert len(shards) > 1 and shards[0] == f"scores/train-00000-of-{len(shards):05d}.parquet"
    assert len(load_repo(f"{USER}/sharded", "scores", tmp_path / "cache", split="train")) == 320
    # fewer rows now: the extra shards of the first push are deleted in the same commit
    smaller = push_rap_dataset(
        make_scored(seed=4), f"{USER}/sharded", token=WRITE_TOKEN, max_shard_size=5_000
    )
    assert set(shards) - {"scores/train-00000-of-00001.parquet"} <= set(smaller.deleted)
    assert len(load_repo(f"{USER}/sharded", "scores", tmp_path / "cache", split="train")) == 8
    assert len(commits(hub, f"{USER}/sharded")) == 2


def test_loaders_default_to_every_split(hub, tmp_path, monkeypatch, capsys):
    """split=None by default: one split comes back as that split, several as a DatasetDict (by repo id)."""
    cache = tmp_path / "cache"
    push_rap_dataset(make_scored(seed=5), f"{USER}/only-test", token=WRITE_TOKEN, split="test")
    only_test = load_selected(f"{USER}/only-test", cache_dir=str(cache))
    assert isinstance(only_test, datasets.Dataset) and len(only_test) == 3  # no "Unknown split 'train'"
    assert isinstance(load_scores(f"{USER}/only-test", cache_dir=str(cache)), datasets.Dataset)
    push_rap_dataset(
        datasets.DatasetDict({"train": make_scored(seed=6), "test": make_scored(seed=7)}),
        f"{USER}/two",
        token=WRITE_TOKEN,
    )
    both = load_selected(f"{USER}/two", cache_dir=str(cache))
    assert isinstance(both, datasets.DatasetDict) and sorted(both) == ["test", "train"]

    # the script: no --split, a single split is saved as a Dataset
    output = tmp_path / "copy"
    argv = [
        "load_selected.py",
        "--repo_id",
        f"{USER}/only-test",
        "--output",
        str(output),
        "--cache_dir",
        str(cache),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO_ROOT / "hub_scripts" / "load_selected.py"), run_name="__main__")
    assert done.value.code == 0 and "[selected]: 3 rows" in capsys.readouterr().out
    assert len(datasets.load_from_disk(str(output))) == 3


# ------------------------------------------------------------------------------------------- tests: commits


def test_one_commit_per_push_and_identical_repush_makes_none(hub, scored, tmp_path):
    repo = f"{ORG}/idem"
    first_result = push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    first = dict(hub.files(repo))
    sent = uploads(hub)
    assert first_result.committed and len(commits(hub, repo)) == 1

    again = push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    assert not again.committed and again.commit_sha == first_result.commit_sha
    assert len(commits(hub, repo)) == 1  # no new commit at all
    assert hub.files(repo) == first and uploads(hub) == sent  # nothing uploaded again

    # a re-selection pushed to a new branch: one commit there, main untouched, loadable by revision
    reselect = RAPConfig(lambda_c=-1.0, lambda_a=1e9)
    branch_result = push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=reselect, revision="rap-v2")
    assert branch_result.committed and hub.files(repo) == first and len(commits(hub, repo)) == 2
    branch = hub.files(repo, "rap-v2")
    assert sorted(branch) == sorted(first) and branch != first
    card = DatasetCard(branch["README.md"].decode())
    assert [(c["config_name"], c.get("default")) for c in card.data.to_dict()["configs"]] == [
        ("scores", None),
        ("selected", True),
    ]
    assert "λc = -1 (keep `rap_cde` ≥ λc)" in card.text and 'revision="rap-v2"' in card.text
    loaded = load_repo(repo, "selected", tmp_path / "cache", split="test", revision="rap-v2")
    assert len(loaded) == sum(select_cognitive_samples(scored, reselect)["test"]["rap_selected"])


def test_failed_commit_leaves_the_repo_loadable_then_repush_completes(hub, scored, tmp_path, capsys, caplog):
    """The push is one commit: a failure at any step leaves the previous state online, whole."""
    caplog.set_level(logging.DEBUG)
    saved = tmp_path / "scored"
    scored.save_to_disk(str(saved))
    on_disk = datasets.load_from_disk(str(saved))
    before = _snapshot_dir(saved)
    repo = f"{ORG}/flaky"
    push_rap_dataset(on_disk, repo, token=WRITE_TOKEN)
    online = dict(hub.files(repo))
    # a re-selection whose commit loses the connection
    hub.faults.append(Fault("POST", r"/commit/", error=httpx2.ConnectError))
    with pytest.raises(HubPushError) as failure:
        push_rap_dataset(on_disk, repo, token=WRITE_TOKEN, config=RAPConfig(lambda_c=0.0))
    assert failure.value.cause == "network" and "committing" in failure.value.step
    message = str(failure.value)
    assert "network error (ConnectError" in message and "run the same push again" in message
    assert hub.files(repo) == online  # nothing half-pushed: the old version is still whole
    assert len(load_repo(repo, None, tmp_path / "cache", split="train")) == 3
    assert _snapshot_dir(saved) == before  # nothing written next to the user's data (no cache files)

    push_rap_dataset(on_disk, repo, token=WRITE_TOKEN, config=RAPConfig(lambda_c=0.0))
    assert len(commits(hub, repo)) == 2
    figures = ["rap/figures/selection.png"]
    shards = [
        f"{config}/{split}-00000-of-00001.parquet" for config in ("scores", "selected") for split in scored
    ]
    assert sorted(hub.files(repo)) == sorted(
        [".gitattributes", "README.md", "rap/report.json", *figures, *shards]
    )
    loaded = load_repo(repo, "scores", tmp_path / "cache")
    assert_same_rows(loaded["test"], select_cognitive_samples(scored, RAPConfig(lambda_c=0.0))["test"])
    assert _snapshot_dir(saved) == before
    output = capsys.readouterr()
    assert WRITE_TOKEN not in caplog.text + output.out + output.err + message + repr(failure.value)


def test_concurrent_commit_is_detected_not_overwritten(hub, scored):
    """The commit names its parent: a commit that lands meanwhile makes the push fail (HTTP 412)."""
    repo = f"{ORG}/race"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    hub.faults.append(Fault("POST", r"/commit/", status=412))
    with pytest.raises(HubPushError) as failure:
        push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=RAPConfig(lambda_c=0.0))
    assert failure.value.cause == "conflict"


def test_push_with_zero_selected_rows(hub, scored, tmp_path):
    """Nothing selected: refused by default; opt-in pushes `scores` alone and removes an old `selected`."""
    repo = f"{ORG}/empty"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    assert any(p.startswith("selected/") for p in hub.files(repo))
    nothing = RAPConfig(lambda_c=1.5, use_drm=False)
    requests = len(hub.requests)
    with pytest.raises(ValueError, match="allow_empty_selection"):
        push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=nothing)
    assert len(hub.requests) == requests  # refused before any request

    result = push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=nothing, allow_empty_selection=True)
    assert result.committed and "selected" not in result.rows and result.counts["kept"] == 0
    assert sorted(p for p in result.deleted if p.startswith("selected/")) == [
        "selected/test-00000-of-00001.parquet",
        "selected/train-00000-of-00001.parquet",
    ]
    assert not any(p.startswith("selected/") for p in hub.files(repo))
    card = pushed_card(hub, repo)
    assert [(c["config_name"], c.get("default")) for c in card.data.to_dict()["configs"]] == [
        ("scores", True)
    ]
    assert card.data.to_dict()["dataset_info"]["config_name"] == "scores"  # one config: a mapping, not a list
    assert "No row passed this selection, so this push shares the scores only" in card.text
    assert "RAPGRPOTrainer(" not in card.text and "| `scores` (default) | 13 |" in card.text
    report = json.loads(hub.files(repo)["rap/report.json"])
    assert "selected" not in report["configs"] and report["selected"] == 0
    cache = tmp_path / "cache"
    assert len(load_repo(repo, None, cache, split="train")) == 8  # the default config is now `scores`
    with pytest.raises(ValueError):
        load_repo(repo, "selected", cache)

    # a fresh repo can be scores-only from the start
    fresh = push_rap_dataset(
        scored, f"{ORG}/empty2", token=WRITE_TOKEN, config=nothing, allow_empty_selection=True
    )
    assert fresh.rows == {"scores": {"train": 8, "test": 5}}


# ------------------------------------------------------------------------------------------- tests: card


def test_card_metadata_defaults_from_the_source_dataset(hub, scored):
    """license/language/citation copied from the source's card, size/task/source defaults, tags merged."""
    hub.add_repo(SOURCE_ID, {"README.md": SOURCE_CARD})
    hub.models[MODEL_ID] = MODEL_SHA
    repo = f"{USER}/geo-rap"
    push_rap_dataset(
        scored, repo, token=WRITE_TOKEN, scoring=scoring_metadata(), card_metadata={"tags": ["geometry"]}
    )
    card = pushed_card(hub, repo)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["language"] == ["en"]
    assert data["source_datasets"] == [SOURCE_ID] and data["task_categories"] == ["image-text-to-text"]
    assert data["size_categories"] == ["n<1K"] and data["pretty_name"] == "geo-rap (RAP selection)"
    assert data["tags"] == [
        "rap",
        "rap-hf",
        "data-selection",
        "multimodal-reasoning",
        "reinforcement-learning",
        "geometry",
    ]
    assert (
        f"- dataset: [`{SOURCE_ID}`](https://huggingface.co/datasets/{SOURCE_ID}), split `train`" in card.text
    )
    assert "- license: `cc-by-4.0` (from the source dataset's card)" in card.text
    assert "@article{geovqa2024," in card.text  # the source's citation
    assert "@misc{alice_geo_rap," in card.text and "## Limitations" in card.text
    assert "| image | Image | the image |" in card.text  # the source columns are documented
    report = json.loads(hub.files(repo)["rap/report.json"])
    assert report["source"]["license"] == "cc-by-4.0" and report["source"]["hub_id"] == SOURCE_ID

    # explicit metadata wins over the source's, and tags stay merged
    push_rap_dataset(
        scored,
        repo,
        token=WRITE_TOKEN,
        scoring=scoring_metadata(),
        card_metadata={"license": "mit", "tags": ["vqa"]},
    )
    data = pushed_card(hub, repo).data.to_dict()
    assert data["license"] == "mit" and {"geometry", "vqa", "rap"} <= set(data["tags"])
    assert "this dataset's card declares `mit`" in pushed_card(hub, repo).text


def test_source_card_unreachable_degrades_gracefully(hub, scored, caplog):
    push_rap_dataset(
        scored, f"{USER}/nosrc", token=WRITE_TOKEN, scoring=scoring_metadata(dataset="nobody/missing")
    )
    card = pushed_card(hub, f"{USER}/nosrc")
    assert "license" not in card.data.to_dict() and card.data.source_datasets == ["nobody/missing"]
    assert "the source dataset's card could not be read: check its terms before reuse" in card.text
    assert "could not read the card of source dataset 'nobody/missing'" in caplog.text


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"license": "Apache 2.0"}, "'license'"),
        ({"license": "other"}, "license_name"),
        ({"language": ["en-US"]}, "'language'"),
        ({"size_categories": "small"}, "'size_categories'"),
        ({"task_categories": "Image Text To Text"}, "'task_categories'"),
        ({"tags": ["has space"]}, "'tags'"),
        ({"language": None}, "has no value"),
        ({"source_datasets": "org/name"}, "list of strings"),
        ({"configs": [{"data_files": "x/*"}]}, "'configs'"),
    ],
)
def test_card_metadata_is_checked_locally_before_any_request(hub, scored, metadata, problem):
    from rap_hf.hub import check_card_metadata

    assert any(problem in p for p in check_card_metadata(metadata)), check_card_metadata(metadata)
    with pytest.raises(ValueError, match="nothing was uploaded"):
        push_rap_dataset(scored, f"{USER}/bad", token=WRITE_TOKEN, card_metadata=metadata)
    assert hub.requests == []


def test_valid_card_metadata_passes_the_local_check():
    from rap_hf.hub import check_card_metadata

    good = {
        "license": ["cc-by-4.0", "mit"],
        "language": ["en", "fr", "zh"],
        "size_categories": ["1K<n<10K"],
        "task_categories": ["image-text-to-text", "visual-question-answering"],
        "source_datasets": ["org/name"],
        "tags": ["rap", "math"],
        "pretty_name": "My set",
        "annotations_creators": ["machine-generated"],
    }
    assert check_card_metadata(good) == []
    assert (
        check_card_metadata({"license": "other", "license_name": "my-license", "license_link": "LICENSE"})
        == []
    )


def test_hub_validator_runs_before_any_upload(hub, scored):
    """A value the local rules accept but the Hub refuses stops the push before any data is uploaded."""
    with pytest.raises(HubPushError) as failure:
        push_rap_dataset(scored, f"{USER}/gpl", token=WRITE_TOKEN, card_metadata={"license": "gpl-3.0"})
    assert failure.value.cause == "invalid_metadata" and '"license" must be one of' in str(failure.value)
    assert uploads(hub) == 0 and f"{USER}/gpl" not in hub.repos  # nothing created, nothing uploaded


def test_bad_metadata_in_the_repos_current_card_is_reported(hub, scored):
    repo = f"{USER}/handbad"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    readme = hub.files(repo)["README.md"].decode().replace("tags:\n", "language:\n- en-US\ntags:\n", 1)
    hub.repos[repo].commits[hub.repos[repo].refs["main"]]["README.md"] = readme.encode()  # a bad hand edit
    with pytest.raises(ValueError, match="repo's current card.*'language'"):
        push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=RAPConfig(lambda_c=0.0))
    assert len(commits(hub, repo)) == 1


def test_local_hub_serves_head_and_rejects_bad_metadata(hub, scored, tmp_path):
    """The stand-in behaves like the Hub where the tests rely on it."""
    repo = f"{USER}/stand-in"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    api = huggingface_hub.HfApi(token=WRITE_TOKEN)
    url = huggingface_hub.hf_hub_url(repo, "rap/figures/selection.png", repo_type="dataset")
    meta = huggingface_hub.get_hf_file_metadata(url, token=WRITE_TOKEN)
    content = hub.files(repo)["rap/figures/selection.png"]
    assert meta.commit_hash == hub.repos[repo].refs["main"] and meta.size == len(content)
    assert meta.etag == hashlib.sha256(content).hexdigest()
    path = huggingface_hub.hf_hub_download(
        repo, "README.md", repo_type="dataset", cache_dir=str(tmp_path / "c")
    )
    assert Path(path).read_bytes() == hub.files(repo)["README.md"]
    bad = b"---\nlicense: Apache 2.0\n---\n# x\n"
    with pytest.raises(
        ValueError, match="Invalid metadata in README.md"
    ) as refused:  # huggingface_hub's wording
        api.upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    assert refused.value.__cause__.response.status_code == 400


def test_local_model_path_leaves_no_path_in_any_pushed_file(hub, tmp_path):
    """A local checkpoint is labelled as such: no path in the card, snippets, report or data."""
    model_dir = tmp_path / "home" / "me" / "ckpt" / "tiny-model"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    data_dir = tmp_path / "home" / "me" / "data" / "my-vqa"
    data_dir.mkdir(parents=True)
    scoring = {
        "model": str(model_dir),
        "revision": None,
        "dataset": str(data_dir),
        "split": "train",
        "rows": 8,
        "scoring_seconds": 30.0,
        "num_processes": 1,
        "device": "cpu",
        "errors": 1,
        "error_reasons": {f"cannot open {data_dir}/7.png": 1},
        "warnings": [
            f"RAP scoring failed on 1 of 8 rows (rap_error); the most common reason: 'cannot open {data_dir}/7.png'"
        ],
        "fingerprint": "abc",
        "fingerprint_inputs": {"model": {"name": str(model_dir), "weights": [["model.safetensors", 10]]}},
        "rap_config": RAPConfig(num_rollouts=5).to_dict(),
    }
    dataset = make_scored(seed=8, image_files=tmp_path / "home" / "me" / "images")
    repo = f"{USER}/local-model"
    push_rap_dataset(dataset, repo, token=WRITE_TOKEN, scoring=scoring)
    for name, content in hub.files(repo).items():
        for secret in (str(tmp_path), "/home/me", str(model_dir), str(data_dir)):
            assert secret.encode() not in content, (name, secret)
    card = pushed_card(hub, repo)
    assert "| scoring model | a local checkpoint `tiny-model` (not on the Hub) |" in card.text
    assert (
        'model="YOUR_SCORING_MODEL",  # replace: the data was scored with a local checkpoint (tiny-model)'
        in card.text
    )
    assert "- dataset: a local dataset (not on the Hub), split `train`" in card.text
    assert "| hardware | CPU |" in card.text and "GPU-hours" not in card.text
    report = json.loads(hub.files(repo)["rap/report.json"])
    assert report["scoring"]["model"] == {
        "kind": "local",
        "hub_id": None,
        "commit": None,
        "commit_source": None,
        "revision": None,
        "local_name": "tiny-model",
    }
    assert "fingerprint_inputs" not in report["scoring"] and "error_reasons" not in report["scoring"]
    # a warning quoting a file keeps its message, not the path
    assert report["scoring"]["warnings"] == [
        "RAP scoring failed on 1 of 8 rows (rap_error); the most common reason: 'cannot open <local path>/7.png'"
    ]
    assert "'cannot open <local path>/7.png'" in card.text  # the card shows the run's warnings


def test_last_guard_refuses_a_local_path(hub, scored, monkeypatch, tmp_path):
    """Should a path slip past the allow-list and the redaction, the push stops before uploading it."""
    import rap_hf.hub.push as push_module

    model_dir = tmp_path / "secret-model"
    model_dir.mkdir()
    monkeypatch.setattr(push_module, "redact_local_paths", lambda value, paths: value)
    real = push_module.public_scoring
    monkeypatch.setattr(push_module, "public_scoring", lambda *a: {**real(*a), "leak": str(model_dir)})
    with pytest.raises(RuntimeError, match="local path"):
        push_rap_dataset(scored, f"{USER}/guard", token=WRITE_TOKEN, scoring={"model": str(model_dir)})
    assert uploads(hub) == 0 and f"{USER}/guard" not in hub.repos


@pytest.mark.parametrize(
    ("scoring", "expected_kind", "hub_id", "commit", "source"),
    [
        ({"model": MODEL_ID, "model_commit": MODEL_SHA}, "hub", MODEL_ID, MODEL_SHA, "recorded"),
        ({"model": MODEL_ID, "revision": MODEL_SHA}, "hub", MODEL_ID, MODEL_SHA, "pinned"),
        ({"model": MODEL_ID}, "hub", MODEL_ID, "f" * 40, "resolved at push time"),
        (
            {
                "model": f"/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/snapshots/{MODEL_SHA}"
            },
            "hub",
            MODEL_ID,
            MODEL_SHA,
            "cache",
        ),
        ({"model": "./ckpt/step-500"}, "local", None, None, None),
        ({}, "unknown", None, None, None),
    ],
)
def test_scoring_model_is_a_hub_id_plus_commit(scoring, expected_kind, hub_id, commit, source):
    from rap_hf.hub.provenance import describe_model

    model = describe_model(scoring, resolve=lambda repo, revision: "f" * 40)
    assert (model.kind, model.hub_id, model.commit, model.commit_source) == (
        expected_kind,
        hub_id,
        commit,
        source,
    )
    assert model.snippet_name == (hub_id or "YOUR_SCORING_MODEL")


def test_card_names_the_model_commit_and_the_run_settings(hub, scored):
    hub.models[MODEL_ID] = MODEL_SHA
    repo = f"{USER}/qwen"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN, scoring=scoring_metadata(), drop_completions=True)
    card = pushed_card(hub, repo)
    assert (
        f"at commit [`{MODEL_SHA[:12]}`](https://huggingface.co/{MODEL_ID}/commit/{MODEL_SHA})" in card.text
    )
    assert "not recorded" not in card.text.split("## Scoring")[1].split("## Source data")[0]
    assert f'model="{MODEL_ID}",  # the model that scored the data' in card.text
    # the selection in one line, the scoring settings of the actual run (48/24, not the defaults 256/8)
    assert (
        "- **Selection:** λc = 0.5 (keep `rap_cde` ≥ λc); λa = 0.1 on `rap_ace` (ACE mode `paper`; reject above; "
        "responses under 16 tokens not judged); DRM on, no cap; no budget" in card.text
    )
    assert "max_new_tokens = 48" in card.text and "batch_size = 24 (does not change scores)" in card.text
    assert "M = 5 rollouts per arm" in card.text and "max_new_tokens = 256" not in card.text
    assert '"max_new_tokens": 256' not in card.text and '"lambda_c": 0.5' in card.text
    assert "| hardware | GPU |" in card.text and "| GPU-hours | 16.00 (8 GPUs) |" in card.text
    assert "| rows scored | 13 (1 not scored: stage `error`) |" in card.text
    assert "(rollout texts dropped)" in card.text
    report = json.loads(hub.files(repo)["rap/report.json"])
    assert report["scoring"]["model"]["commit"] == MODEL_SHA
    assert sorted(report["config"]) == sorted(RAPConfig().selection().to_dict())  # selection fields only
    assert report["grid"] == {"num_rollouts": 5, "on_grid": True, "source": "recorded"}


def test_card_without_scoring_metadata_uses_a_placeholder(hub, scored):
    push_rap_dataset(scored, f"{USER}/anon", token=WRITE_TOKEN)
    card = pushed_card(hub, f"{USER}/anon")
    assert 'model="YOUR_SCORING_MODEL",  # replace: the scoring model was not recorded' in card.text
    assert "Qwen" not in card.text and "Scoring metadata was not recorded" in card.text
    assert "exact multiples of 1/5 (M = 5 inferred from the scores: the run did not record it)" in card.text


def test_hardware_is_labelled_truthfully():
    from rap_hf.hub.provenance import hardware

    assert hardware({"device": "cpu", "num_processes": 1}) == ("CPU", 0)
    assert hardware({"num_processes": 4}) == (None, None)  # processes alone do not say CPU or GPU
    assert hardware({"device": "cuda:0", "num_processes": 2}) == ("GPU", 2)
    assert hardware({"num_gpus": 8, "gpu_name": "H100"}) == ("GPU (H100)", 8)


def test_hand_edits_outside_the_markers_survive_a_repush(hub, scored):
    from rap_hf.hub.card import MARKER_END, MARKER_START

    repo = f"{USER}/edited"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    readme = hub.files(repo)["README.md"].decode()
    yaml_part, body = readme.split("\n---\n", 1)
    edited = (
        yaml_part.replace("tags:\n", "tags:\n- hand-tag\n", 1)
        + "\n---\n"
        + "> Maintained by the vision lab.\n\n"
        + body
        + "\n## Our notes\n\nKept across pushes.\n"
    )
    api = huggingface_hub.HfApi(token=WRITE_TOKEN)
    api.upload_file(
        path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )
    # the same data again: the generated part is unchanged and the hand edits are kept, so nothing to commit
    assert not push_rap_dataset(scored, repo, token=WRITE_TOKEN).committed
    # another selection: the generated part changes, the hand edits stay
    push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=RAPConfig(lambda_c=0.0))
    card = pushed_card(hub, repo)
    assert card.text.startswith("> Maintained by the vision lab.\n\n" + MARKER_START)
    assert card.text.endswith(MARKER_END + "\n\n## Our notes\n\nKept across pushes.\n")
    assert "λc = 0 (keep" in card.text and "hand-tag" in card.data.tags and "rap" in card.data.tags


def test_a_hand_written_card_without_markers_is_kept(hub, scored):
    repo = f"{USER}/handwritten"
    hub.add_repo(repo, {"README.md": b"---\nlicense: mit\n---\n# Our dataset\n\nWritten by hand.\n"})
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    card = pushed_card(hub, repo)
    assert card.text.rstrip().endswith("<!-- rap-hf:generated:end -->\n\n# Our dataset\n\nWritten by hand.")
    assert card.data.license == "mit"  # the repo's metadata wins over the defaults
    assert not push_rap_dataset(scored, repo, token=WRITE_TOKEN).committed  # and the result is stable


def test_card_without_hub(scored):
    """The card is rendered from its template: no recorded config or scoring, an empty split left out."""
    from huggingface_hub import DatasetCardData

    from rap_hf.hub.card import (
        DATASET_CARD_TEMPLATE,
        MARKER_END,
        MARKER_START,
        build_dataset_card,
        build_hub_report,
    )

    assert DATASET_CARD_TEMPLATE.is_file()
    annotated = select_cognitive_samples(
        datasets.DatasetDict({"train": make_scored(), "validation": make_scored([_ROWS[4], _ROWS[6]])})
    )
    report = build_hub_report(annotated, None, selected_splits=["train"])
    card = build_dataset_card(
        annotated,
        f"{ORG}/plain",
        card_data=DatasetCardData(pretty_name="Plain"),
        report=report,
        config=None,
        revision="v1",
    )
    text = str(card)
    assert text.startswith("---\n") and text.endswith(MARKER_END + "\n")
    assert card.text.startswith(MARKER_START + "\n\n# Plain\n")
    assert "Scoring metadata was not recorded" in text and "- **Selection:** not recorded" in text
    assert "No row of `validation` is selected, so `selected` has no such split." in text
    assert f'load_selected("{ORG}/plain", revision="v1")' in text
    assert "![" not in text and "{{" not in text and "{%" not in text
    assert _stage_total(text, "error") == 1


# ------------------------------------------------------------------------------------------- tests: figures


def test_one_figure_grid_with_captions(hub, scored):
    from rap_hf.report.plots import SELECTION_GRID_CAPTIONS

    repo = f"{USER}/figs"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN, scoring=scoring_metadata())
    figures = [p for p in hub.files(repo) if p.startswith("rap/figures/")]
    assert figures == ["rap/figures/selection.png"]  # one compact grid, not a stack of images
    image = Image.open(io.BytesIO(hub.files(repo)[figures[0]]))
    assert image.format == "PNG" and image.size[0] <= 1200 and image.size[1] <= 800
    card = pushed_card(hub, repo)
    assert "![Four panels: (a) rows per selection stage;" in card.text  # alt text, not a file name
    for caption in SELECTION_GRID_CAPTIONS:
        assert f"- {caption}" in card.text
    assert "drm_in bars left of λc are rows DRM swapped in" in card.text


def test_figure_grid_is_deterministic_and_handles_missing_ace(tmp_path, scored):
    from rap_hf.report.plots import plot_selection_grid

    annotated = select_cognitive_samples(scored)
    a = plot_selection_grid(annotated, tmp_path / "a.png", config=RAPConfig())
    b = plot_selection_grid(annotated, tmp_path / "b.png", config=RAPConfig())
    assert a.read_bytes() == b.read_bytes()  # a re-push uploads nothing new
    no_ace = annotated["train"].map(lambda r: {"rap_ace": None}, keep_in_memory=True)
    assert Image.open(plot_selection_grid(no_ace, tmp_path / "c.png")).format == "PNG"
    with pytest.raises(ValueError, match="select_cognitive_samples first"):
        plot_selection_grid(scored["train"], tmp_path / "d.png")


def test_plots(tmp_path, scored):
    """The single-figure functions (rap-hf select, the explorer): grid bins, integer counts."""
    annotated = select_cognitive_samples(scored)
    paths = plot_score_histograms(
        annotated, tmp_path / "a", config=RAPConfig(), columns=("rap_ace", "rap_cde")
    )
    assert [p.name for p in paths] == ["hist_rap_ace.png", "hist_rap_cde.png"]
    assert Image.open(io.BytesIO(paths[0].read_bytes())).format == "PNG"
    again = plot_score_histograms(
        annotated, tmp_path / "b", config=RAPConfig(), columns=("rap_ace", "rap_cde")
    )
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
    # a column with no finite value (ACE off) or absent is skipped, not drawn empty
    no_ace = annotated["train"].map(lambda r: {"rap_ace": None}, keep_in_memory=True)
    assert plot_score_histograms(no_ace, tmp_path / "c", columns=("rap_ace", "not_a_column")) == []
    stages = plot_stage_counts({"kept": 3, "error": 1}, tmp_path / "c")
    assert Image.open(stages).format == "PNG"
    with pytest.raises(TypeError):
        plot_stage_counts([3, 1], tmp_path / "c")


# ------------------------------------------------------------------------------------------- tests: faults


@pytest.mark.parametrize(
    ("fault", "token", "repo", "cause", "expected"),
    [
        (None, "hf_" + "NotARealToken000000", f"{ORG}/x", "unauthorized", "rejected the token"),
        (None, None, f"{ORG}/x", "unauthorized", "no Hugging Face token found"),
        (None, READ_TOKEN, f"{ORG}/x", "forbidden", "cannot write to 'rap-org'"),
        (None, WRITE_TOKEN, "no-such-org/x", "not_found", "namespace 'no-such-org'"),
        (
            Fault("POST", r"/commit/", status=429, headers={"Retry-After": "30"}),
            WRITE_TOKEN,
            f"{ORG}/x",
            "rate_limited",
            "retry after 30 s",
        ),
        (
            Fault("POST", r"/api/repos/create", status=503),
            WRITE_TOKEN,
            f"{ORG}/x",
            "server_error",
            "HTTP 503",
        ),
    ],
    ids=["401-bad-token", "401-no-token", "403", "404-org", "429", "503"],
)
def test_faults_end_with_a_clear_message(hub, scored, fault, token, repo, cause, expected, caplog):
    caplog.set_level(logging.DEBUG)
    if fault is not None:
        hub.faults.append(fault)
    with pytest.raises(HubPushError) as failure:
        push_rap_dataset(scored, repo, token=token)
    assert failure.value.cause == cause
    assert expected in str(failure.value), str(failure.value)
    assert "Local data is unchanged" in str(failure.value)
    if token is not None:
        assert token not in str(failure.value) + caplog.text


def test_offline_fails_fast(hub, scored, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE=1") as failure:
        push_rap_dataset(scored, f"{ORG}/x", token=WRITE_TOKEN)
    assert failure.value.cause == "offline"
    assert hub.requests == []  # not a single request, and no shard was built


def test_bad_input_fails_before_any_request(hub, scored):
    with pytest.raises(ValueError, match="namespace/name"):
        push_rap_dataset(scored, "just-a-name", token=WRITE_TOKEN)
    with pytest.raises(ValueError, match="missing required score column"):
        push_rap_dataset(scored.remove_columns("rap_cde"), f"{ORG}/x", token=WRITE_TOKEN)
    with pytest.raises(ValueError, match="no row is selected"):
        push_rap_dataset(make_scored([_ROWS[4], _ROWS[6]]), f"{ORG}/x", token=WRITE_TOKEN)
    assert hub.requests == []


# ------------------------------------------------------------------------------------------- tests: CLI


def test_cli_push(hub, scored, tmp_path, monkeypatch, capsys):
    from rap_hf.cli import main

    folder = tmp_path / "scores"
    scored["train"].save_to_disk(str(folder))
    (folder / "rap_scoring.json").write_text(
        json.dumps(
            scoring_metadata(split="validation", dataset="builtin:visual-arith", device="cpu", num_gpus=None)
        )
    )
    card_file = tmp_path / "card.yaml"
    card_file.write_text("language: [en]\ntags: [geometry]\nlicense: cc-by-sa-4.0\n")
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    args = [
        "push", "--scores", str(folder), "--repo-id", f"{ORG}/cli", "--private", "--lambda_c", "-1",
        "--card_metadata", str(card_file), "--license", "cc-by-4.0", "--pretty_name", "My RAP set",
        "--task_categories", "image-text-to-text", "visual-question-answering",
    ]  # fmt: skip
    assert main(args) == 0
    assert hub.repos[f"{ORG}/cli"].private
    loaded = load_repo(f"{ORG}/cli", "selected", tmp_path / "cache", split="validation")
    # lambda_c=-1: CDE keeps all 7 scored rows, ACE rejects one, DRM swaps the trivial row for it: 6
    assert len(loaded) == 6
    out = capsys.readouterr().out
    assert "load_dataset('rap-org/cli', 'selected')" in out and WRITE_TOKEN not in out
    card = pushed_card(hub, f"{ORG}/cli")
    data = card.data.to_dict()
    assert (
        data["license"] == "cc-by-4.0" and data["pretty_name"] == "My RAP set" and data["language"] == ["en"]
    )
    assert data["task_categories"] == ["image-text-to-text", "visual-question-answering"]
    assert "geometry" in data["tags"] and "source_datasets" not in data
    assert "| hardware | CPU |" in card.text and "max_new_tokens = 48" in card.text
    assert "rap-hf built-in dataset `visual-arith`" in card.text

    # scoring flags are not push flags: they would only have been written onto the card
    assert main(["push", "--scores", str(folder), "--repo-id", f"{ORG}/cli", "--num_rollouts", "3"]) == 2
    assert "unknown arguments" in capsys.readouterr().err

    # nothing selected: an error naming the opt-in, then the scores-only push
    strict = [
        "push",
        "--scores",
        str(folder),
        "--repo-id",
        f"{ORG}/cli",
        "--lambda_c",
        "1.5",
        "--use_drm",
        "false",
    ]
    assert main(strict) == 2 and "--allow_empty_selection" in capsys.readouterr().err
    assert main([*strict, "--allow_empty_selection"]) == 0
    assert "scores only (8 rows, nothing selected)" in capsys.readouterr().out
    assert not any(p.startswith("selected/") for p in hub.files(f"{ORG}/cli"))

    # a HubPushError is a RAPUserError: one line on stderr, exit status 2, no traceback
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", "--scores", str(folder), "--repo-id", f"{ORG}/cli2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("error: push to 'rap-org/cli2' failed")
        and "no Hugging Face token found" in err[-1]
    )


def test_hub_scripts(hub, scored, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "scores"
    scored["train"].save_to_disk(str(folder))
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    for script in ("push_scores.py", "load_selected.py"):
        monkeypatch.setattr(sys, "argv", [script, "--help"])
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(REPO_ROOT / "hub_scripts" / script), run_name="__main__")
        assert done.value.code in (0, None)
        assert "--repo_id" in capsys.readouterr().out

    monkeypatch.setattr(
        sys, "argv", ["push_scores.py", "--scores", str(folder), "--repo_id", f"{USER}/script"]
    )
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO_ROOT / "hub_scripts" / "push_scores.py"), run_name="__main__")
    assert done.value.code == 0
    output = tmp_path / "selected-copy"
    argv = ["load_selected.py", "--repo_id", f"{USER}/script", "--split", "train", "--output", str(output)]
    monkeypatch.setattr(sys, "argv", [*argv, "--cache_dir", str(tmp_path / "cache")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO_ROOT / "hub_scripts" / "load_selected.py"), run_name="__main__")
    assert done.value.code == 0
    assert len(datasets.load_from_disk(str(output))) == sum(
        select_cognitive_samples(scored["train"])["rap_selected"]
    )


def test_public_names_and_error_type():
    """`rap_hf.hub` re-exports the API of its modules; a push failure is a user error (one CLI line)."""
    import rap_hf.hub as hub_package
    from rap_hf.errors import RAPUserError
    from rap_hf.hub import errors, load, push

    assert hub_package.push_rap_dataset is push.push_rap_dataset
    assert hub_package.load_selected is load.load_selected and hub_package.HubPushError is errors.HubPushError
    assert all(getattr(hub_package, name) is not None for name in hub_package.__all__)
    assert issubclass(HubPushError, RAPUserError) and issubclass(HubPushError, RuntimeError)
    error = HubPushError("boom", cause="network", step="pushing")
    assert (str(error), error.cause, error.step, error.status_code) == ("boom", "network", "pushing", None)
