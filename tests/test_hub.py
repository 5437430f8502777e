"""Hub integration: push through the real `datasets`/`huggingface_hub` code, load back with `load_dataset`.

The Hub is unreachable here, so `LocalHub` stands in for it at the HTTP transport: huggingface_hub's public
`set_client_factory` hook gets an `httpx2.Client` whose transport is an `httpx2.MockTransport` answering the
Hub REST endpoints that a push uses (repo info, create repo/branch, preupload, LFS batch + upload, commit,
tree listing, paths info, file resolve, YAML validation). Everything above the transport is the libraries'
own code: `DatasetDict.push_to_hub`, `HfApi`, `HfFileSystem`, request headers and token handling, error
parsing (`hf_raise_for_status`). Commits are written into a directory per repo (``<root>/<org>/<name>``, and
``<root>/<org>/<name>@<branch>`` for branches), which the tests load with `load_dataset(dir, config)`.

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
# The score columns of DESIGN.md, spelled out rather than imported from rap_hf.scoring.filter (which pulls in
# torch/transformers): the test data needs no model.
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

    # ---- helpers for tests
    def dir(self, repo_id: str, branch: str = "main") -> Path:
        return self.root / (repo_id if branch == "main" else f"{repo_id}@{branch}")

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs[branch]]

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
        content = json.loads(request.content)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        metadata = yaml.safe_load(match.group(1)) if match else None
        if not isinstance(metadata, dict):
            return httpx2.Response(400, json={"errors": [{"message": "metadata is not a YAML mapping"}]})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

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
            mode = "lfs" if item["path"].endswith((".parquet", ".png", ".arrow")) else "regular"
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


def _git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _new_sha() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Route huggingface_hub's HTTP client to a fresh `LocalHub`; online mode, Xet off, no ambient token."""
    local = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
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


# ------------------------------------------------------------------------------------------- tests


def test_push_then_load_both_configs_row_for_row(hub, scored, tmp_path):
    config = RAPConfig()
    annotated = select_cognitive_samples(scored, config)
    expected_counts = stage_counts(annotated)
    assert expected_counts["train"]["drm_in"] == 1 and expected_counts["train"]["error"] == 1  # data sanity

    result = push_rap_dataset(scored, f"{ORG}/eureka-rap", config=config, token=WRITE_TOKEN, private=True)

    assert hub.repos[f"{ORG}/eureka-rap"].private
    assert all(header == f"Bearer {WRITE_TOKEN}" for header in hub.auth_headers)  # explicit token was used
    repo_dir = hub.dir(f"{ORG}/eureka-rap")
    cache = tmp_path / "hf-datasets-cache"
    loaded_selected = datasets.load_dataset(str(repo_dir), "selected", cache_dir=str(cache))
    loaded_scores = datasets.load_dataset(str(repo_dir), "scores", cache_dir=str(cache))
    assert sorted(loaded_selected) == sorted(loaded_scores) == ["test", "train"]
    for split in ("train", "test"):
        assert_same_rows(loaded_selected[split], annotated[split].filter(lambda r: r["rap_selected"]))
        assert_same_rows(loaded_scores[split], annotated[split])
    # the one-liners are thin wrappers over the same call
    assert (
        load_selected(str(repo_dir), split="test", cache_dir=str(cache))["solution"]
        == loaded_selected["test"]["solution"]
    )
    assert len(load_scores(str(repo_dir), split=None, cache_dir=str(cache))["train"]) == 8
    assert result.rows == {
        "selected": {
            "train": sum(annotated["train"]["rap_selected"]),
            "test": sum(annotated["test"]["rap_selected"]),
        },
        "scores": {"train": 8, "test": 5},
    }
    # `selected` is the default config: plain load_dataset(repo) gives the training subset
    default = datasets.load_dataset(str(repo_dir), split="train", cache_dir=str(cache))
    assert len(default) == result.rows["selected"]["train"]

    card = DatasetCard.load(repo_dir / "README.md", repo_type="dataset")
    configs = {entry["config_name"]: entry for entry in card.data.to_dict()["configs"]}
    assert sorted(configs) == ["scores", "selected"] and configs["selected"].get("default") is True
    assert {"rap", "data-selection"} <= set(card.data.tags)
    totals = {
        stage: sum(split[stage] for split in expected_counts.values()) for stage in expected_counts["train"]
    }
    for stage, total in totals.items():
        assert _stage_total(card.text, stage) == total
    n_selected = totals["kept"] + totals["drm_in"] + totals["budget_in"]
    n_scored = 13 - totals["error"]
    assert f"- selected: {n_selected} ({100 * n_selected / n_scored:.2f}% of scored rows" in card.text
    assert '"lambda_c": 0.5' in card.text and '"num_rollouts": 5' in card.text  # the full RAPConfig
    assert f'load_dataset("{ORG}/eureka-rap", "selected", split="train")' in card.text
    assert "RAPGRPOTrainer(" in card.text and "arxiv.org/abs/2506.04755" in card.text
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        assert (repo_dir / figure).read_bytes().startswith(b"\x89PNG")
    report = json.loads((repo_dir / "rap" / "report.json").read_text())
    assert report["counts"] == totals and report["selected"] == n_selected
    assert report["splits"]["test"]["counts"] == expected_counts["test"]


def load_dataset_dir(directory: Path, config: str, split: str, cache: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(directory), config, split=split, cache_dir=str(cache))


def test_card_reports_scoring_cost_and_drop_completions(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)  # token from the environment, as after `hf auth login`
    scoring = {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "revision": "abc123",
        "dataset": "FanqingM/MM-Eureka-Dataset",
        "split": "train",
        "rows": 8,
        "scoring_seconds": 7200.0,
        "num_gpus": 8,
        "generated_tokens": 12345,
        "errors": 1,
        "rap_config": RAPConfig(num_rollouts=3).to_dict(),
    }
    # in `validation` nothing passes CDE and no trivial row calls DRM: an empty split of `selected`
    nothing_selected = make_scored([_ROWS[4], _ROWS[6]], seed=2)
    result = push_rap_dataset(
        datasets.DatasetDict({"train": make_scored(), "validation": nothing_selected}),
        f"{USER}/lean",
        drop_completions=True,
        scoring=scoring,
        card_metadata={"license": "apache-2.0"},
    )
    repo_dir = hub.dir(f"{USER}/lean")
    selected = load_dataset_dir(repo_dir, "selected", "train", tmp_path / "cache")
    assert (
        "rap_completions_mm" not in selected.column_names
        and "rap_completions_text" not in selected.column_names
    )
    scores = load_dataset_dir(repo_dir, "scores", "train", tmp_path / "cache")
    assert "rap_completions_mm" in scores.column_names
    # datasets cannot load an empty split, so it is left out of `selected` and kept in `scores`
    assert result.rows["selected"] == {"train": 3}
    assert len(load_dataset_dir(repo_dir, "scores", "validation", tmp_path / "cache")) == 2
    with pytest.raises(ValueError, match="Unknown split"):
        load_dataset_dir(repo_dir, "selected", "validation", tmp_path / "cache")
    card = DatasetCard.load(repo_dir / "README.md", repo_type="dataset")
    assert card.data.license == "apache-2.0"
    assert "| scoring model | `Qwen/Qwen2.5-VL-7B-Instruct` |" in card.text
    assert "| scoring wall-clock | 7200 s (2.00 h) |" in card.text
    assert "| GPUs | 8 |" in card.text and "| GPU-hours | 16.00 |" in card.text
    assert '"num_rollouts": 3' in card.text  # the scoring run's config
    assert result.counts["kept"] == _stage_total(card.text, "kept")
    assert "No row of `validation` is selected" in card.text


def test_images_are_embedded(hub, tmp_path):
    dataset = make_scored(seed=3, image_files=tmp_path / "images")
    expected = [np.asarray(image) for image in select_cognitive_samples(dataset)["image"]]
    push_rap_dataset(dataset, f"{USER}/embedded", token=WRITE_TOKEN)
    for path in (tmp_path / "images").iterdir():
        path.unlink()  # the pushed data must not point back at local files
    loaded = load_dataset_dir(hub.dir(f"{USER}/embedded"), "scores", "train", tmp_path / "cache")
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(loaded["image"], expected, strict=True))


def test_repush_is_idempotent_and_follows_a_branch(hub, scored, tmp_path):
    repo = f"{ORG}/idem"
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    first = dict(hub.files(repo))
    uploads = sum(method == "PUT" for method, _ in hub.requests)
    push_rap_dataset(scored, repo, token=WRITE_TOKEN)
    assert hub.files(repo) == first  # same paths, same bytes: nothing duplicated, card unchanged
    assert sum(method == "PUT" for method, _ in hub.requests) == uploads  # no data uploaded again

    # a re-selection pushed to a new branch: main untouched, the branch's configs replaced in place
    reselect = RAPConfig(lambda_c=-1.0, lambda_a=1e9)
    push_rap_dataset(scored, repo, token=WRITE_TOKEN, config=reselect, revision="rap-v2")
    assert hub.files(repo) == first
    branch = hub.files(repo, "rap-v2")
    assert sorted(branch) == sorted(first) and branch != first
    card = DatasetCard(branch["README.md"].decode())
    assert [(c["config_name"], c.get("default")) for c in card.data.to_dict()["configs"]] == [
        ("scores", None),
        ("selected", True),
    ]
    assert '"lambda_c": -1.0' in card.text and 'revision="rap-v2"' in card.text
    loaded = load_dataset_dir(hub.dir(repo, "rap-v2"), "selected", "test", tmp_path / "cache")
    assert len(loaded) == sum(select_cognitive_samples(scored, reselect)["test"]["rap_selected"])


def test_network_failure_part_way_then_repush_completes(hub, scored, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    saved = tmp_path / "scored"
    scored.save_to_disk(str(saved))
    on_disk = datasets.load_from_disk(str(saved))
    before = _snapshot_dir(saved)
    repo = f"{ORG}/flaky"
    # first config commits, the second commit loses the connection
    hub.faults.append(Fault("POST", r"/commit/", error=httpx2.ConnectError, skip=1))

    with pytest.raises(HubPushError) as failure:
        push_rap_dataset(on_disk, repo, token=WRITE_TOKEN)
    assert failure.value.cause == "network" and "'scores'" in failure.value.step
    message = str(failure.value)
    assert "network error (ConnectError" in message and "run the same push again" in message
    assert _snapshot_dir(saved) == before  # nothing written next to the user's data (no cache files)
    assert "selected/train-00000-of-00001.parquet" in hub.files(repo)  # half-pushed
    assert not any(p.startswith("scores/") for p in hub.files(repo))

    push_rap_dataset(on_disk, repo, token=WRITE_TOKEN)
    figures = [f"rap/figures/{name}.png" for name in ("stage_counts", *(f"hist_{c}" for c in HISTOGRAMS))]
    shards = [
        f"{config}/{split}-00000-of-00001.parquet" for config in ("scores", "selected") for split in scored
    ]
    assert sorted(hub.files(repo)) == sorted(
        [".gitattributes", "README.md", "rap/report.json", *figures, *shards]
    )
    card = DatasetCard(hub.files(repo)["README.md"].decode())
    assert [c["config_name"] for c in card.data.to_dict()["configs"]] == ["scores", "selected"]
    loaded = datasets.load_dataset(str(hub.dir(repo)), "scores", cache_dir=str(tmp_path / "cache"))
    assert_same_rows(loaded["test"], select_cognitive_samples(scored)["test"])
    assert _snapshot_dir(saved) == before
    output = capsys.readouterr()
    assert WRITE_TOKEN not in caplog.text + output.out + output.err + message + repr(failure.value)


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


def test_cli_push(hub, scored, tmp_path, monkeypatch, capsys):
    from rap_hf.cli import main

    folder = tmp_path / "scores"
    scored["train"].save_to_disk(str(folder))
    (folder / "rap_scoring.json").write_text(
        json.dumps({"model": "tiny", "split": "validation", "scoring_seconds": 3.0})
    )
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    args = ["push", "--scores", str(folder), "--repo-id", f"{ORG}/cli", "--private", "--lambda_c", "-1"]
    assert main(args) == 0
    assert hub.repos[f"{ORG}/cli"].private
    loaded = load_dataset_dir(hub.dir(f"{ORG}/cli"), "selected", "validation", tmp_path / "cache")
    # lambda_c=-1: CDE keeps all 7 scored rows, ACE rejects one, DRM swaps the trivial row for it: 6
    assert len(loaded) == 6
    out = capsys.readouterr().out
    assert "load_dataset('rap-org/cli', 'selected')" in out and WRITE_TOKEN not in out

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
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "load_selected.py",
            "--repo_id",
            str(hub.dir(f"{USER}/script")),
            "--output",
            str(output),
            "--cache_dir",
            str(tmp_path / "cache"),
        ],
    )
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


def test_card_without_hub(scored):
    """The card is rendered from its template: no recorded config or scoring, an empty split left out."""
    from rap_hf.hub.card import DATASET_CARD_TEMPLATE, build_dataset_card

    assert DATASET_CARD_TEMPLATE.is_file()
    annotated = select_cognitive_samples(
        datasets.DatasetDict({"train": make_scored(), "validation": make_scored([_ROWS[4], _ROWS[6]])})
    )
    card = build_dataset_card(annotated, f"{ORG}/plain", config=None, revision="v1")
    text = str(card)
    assert text.startswith("---\n") and text.endswith("}\n```\n")
    assert card.text.startswith("\n# plain: RAP scores and selected subset\n")
    assert card.data.pretty_name == "plain (RAP selection)" and "rap" in card.data.tags
    assert (
        "Scoring metadata was not recorded" in text and "The selection configuration was not recorded" in text
    )
    assert "No row of `validation` is selected, so `selected` has no such split." in text
    assert f'load_selected("{ORG}/plain", split="train", revision="v1")' in text
    assert "![" not in text and "{{" not in text and "{%" not in text
    assert _stage_total(text, "error") == 1


def test_plots(tmp_path, scored):
    """The figure functions on their own (the push tests draw the full set)."""
    annotated = select_cognitive_samples(scored)
    paths = plot_score_histograms(
        annotated, tmp_path / "a", config=RAPConfig(), columns=("rap_ace", "rap_cde")
    )
    assert [p.name for p in paths] == ["hist_rap_ace.png", "hist_rap_cde.png"]
    assert Image.open(io.BytesIO(paths[0].read_bytes())).format == "PNG"
    # same data, same bytes: a re-push uploads nothing new
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
