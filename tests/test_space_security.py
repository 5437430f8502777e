"""A public Space no visitor can freeze, read from or spend (issue 15): one test per attack, each against the
real app on 127.0.0.1 or the real loading code against a mock Hub on 127.0.0.1 (tests/mock_hub.py).

1. freeze: a stored rollout answering 10^{10^{10}} is marked quickly, in a worker thread;
2. token: a visitor's load never sends the server's token, and a private repo reads like a missing one;
3. files: an image cell holding only a path is refused (it would name a file on the server);
4. queue and inputs: a flood of calls is cut at the queue's size, the model-bound events share one slot, every
   text and number is capped on the server, the question is truncated;
5. image bombs: a 13000x13000 upload is refused without decoding, and a data: URL in the event payload (which
   Gradio decodes past its upload cap) is refused, large or small;
6. disk and state: size and schema are checked before any download, only the requested split is fetched, one
   visitor's load never evicts another's data, downloads do not pile up;
7. push: only to new repos in the namespace the operator configured.
SECURITY.md maps each promise to these tests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Dataset
from PIL import Image

from rap_hf.config import RAPConfig
from rap_hf.explorer.data import ExplorerData, ExplorerDataError, load_explorer_data
from rap_hf.explorer.export import push_selection
from rap_hf.explorer.reselection import config_from_controls, run_selection
from rap_hf.explorer.samples import sample_view
from rap_hf.explorer.synthetic import synthetic_scored_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mock_hub import MockHub, MockRepo, scores_repo_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONTROLS = (0.5, "paper", -1.0, 0.1, True, "all trivial", 10, 0.5, 0)
SERVER_TOKEN = "hf_server_secret_0123456789"


def _parquet(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.to_parquet(buffer)
    return buffer.getvalue()


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------- 1. freeze


def test_marking_a_power_tower_rollout_returns_fast():
    """The explorer marks stored rollouts with the public reward code, in Gradio's worker threads (where
    math-verify has no timeout). 10^{10^{10}} once made sympy build a 10-billion-digit integer holding the GIL:
    run in a subprocess, so a regression fails this test instead of freezing the test run."""
    code = """
import threading, time
from rap_hf.explorer.rollouts import mark_rollouts
result, started = {}, time.monotonic()
worker = threading.Thread(target=lambda: result.update(marks=mark_rollouts(
    ["so \\\\boxed{10^{10^{10}}}", "\\\\boxed{(10^{10})!}", "\\\\boxed{9^{9^{9}}}", "\\\\boxed{4}"], "4")))
worker.start()
ticks = 0
while worker.is_alive():  # the main thread keeps running meanwhile
    time.sleep(0.05)
    ticks += 1
print(round(time.monotonic() - started, 2), ticks, [m.correct for m in result["marks"]])
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seconds, ticks, marks = result.stdout.split(maxsplit=2)
    assert float(seconds) < 10 and int(ticks) > 0
    assert marks.strip() == "[False, False, False, True]"


# --------------------------------------------------------------------- 2, 3, 6: a visitor's Hub load


@pytest.fixture(scope="module")
def visitor_loads(tmp_path_factory) -> dict[str, dict]:
    """Load one repo per attack from a mock Hub on 127.0.0.1, as text typed into the page does
    (`load_explorer_data(..., allow_local=False)`), in a subprocess whose environment holds the server's
    HF_TOKEN. Returns per repo: the outcome and the requests the mock Hub saw."""
    tmp = tmp_path_factory.mktemp("mock-hub")
    scored = synthetic_scored_dataset(20, seed=3, error_fraction=0)
    good = _parquet(scored)
    server_file = tmp / "server-secret.png"  # a file on the server a visitor's dataset points at
    server_file.write_bytes(_png((32, 32)))
    by_path = scored.cast_column("image", scored.features["image"].__class__(decode=False)).map(
        lambda row: {"image": {"bytes": None, "path": str(server_file)}}
    )
    unscored = scored.select_columns(["prompt", "image", "solution"])

    def repo(parquet: bytes, **kwargs) -> MockRepo:
        files, card = scores_repo_files(parquet)
        return MockRepo(files, card_data=card, **kwargs)

    two_splits = repo(good)
    two_splits.files["scores/test-00000-of-00001.parquet"] = good
    two_splits.card_data["configs"][0]["data_files"].append({"split": "test", "path": "scores/test-*"})
    data_file = "scores/train-00000-of-00001.parquet"
    repos = {
        "owner/private-scores": repo(good, token=SERVER_TOKEN),
        "visitor/path-image": repo(_parquet(by_path)),
        "visitor/huge": repo(good, claimed_sizes={data_file: 10 * 2**30}),
        "visitor/no-scores": repo(_parquet(unscored)),
        "visitor/two-splits": two_splits,
        "visitor/ok": repo(good),
    }
    names = [*repos, "nobody/nothing"]
    code = f"""
import json
from rap_hf.explorer.data import load_explorer_data
out = {{}}
for name in {names!r}:
    try:
        data = load_explorer_data(name, split="train", allow_local=False)
        out[name] = {{"outcome": "ok", "rows": len(data)}}
    except Exception as exc:
        out[name] = {{"outcome": "error", "type": type(exc).__name__, "message": str(exc)}}
print("RESULT " + json.dumps(out))
"""
    with MockHub(repos) as hub:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": SERVER_TOKEN,
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HOME": str(tmp / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr[-3000:]
        line = next(row for row in result.stdout.splitlines() if row.startswith("RESULT "))
        outcomes = json.loads(line.removeprefix("RESULT "))
        for name in names:
            outcomes[name]["requests"] = [
                r for r in hub.requests if f"/{name}/" in r.path or r.path.endswith(name)
            ]
            outcomes[name]["data_gets"] = [r for r in hub.fetched(data_file) if f"/{name}/" in r.path]
        outcomes["_all_requests"] = hub.requests
    return outcomes


def test_a_visitor_load_never_sends_the_server_token(visitor_loads):
    requests = visitor_loads["_all_requests"]
    assert any("owner/private-scores" in r.path for r in requests)  # the load did reach the Hub
    assert [r.path for r in requests if "authorization" in r.headers] == []
    private, missing = visitor_loads["owner/private-scores"], visitor_loads["nobody/nothing"]
    assert private["outcome"] == missing["outcome"] == "error"
    # The page cannot tell the owner's private repo from a repo that does not exist.
    assert private["message"].replace("owner/private-scores", "X") == missing["message"].replace(
        "nobody/nothing", "X"
    )
    assert "no public dataset" in private["message"]


def test_a_public_scored_dataset_loads(visitor_loads):
    assert visitor_loads["visitor/ok"] == {**visitor_loads["visitor/ok"], "outcome": "ok", "rows": 20}


def test_a_path_only_image_cell_is_refused(visitor_loads, tmp_path):
    outcome = visitor_loads["visitor/path-image"]
    assert outcome["outcome"] == "error" and "given only as a file path" in outcome["message"]
    # And where a visitor's row reaches the image code anyway, a path is never opened.
    server_file = tmp_path / "server.png"
    server_file.write_bytes(_png((8, 8)))
    dataset = Dataset.from_dict(
        {
            "rap_acc_mm": [1.0],
            "rap_cde": [0.5],
            "rap_ace": [0.01],
            "image": [{"bytes": None, "path": str(server_file)}],
        }
    )
    data = ExplorerData.from_dataset(dataset, "visitor", trusted=False)
    view = sample_view(data, run_selection(data, RAPConfig()), 0)
    assert view.image is None and "path" in view.header


def test_the_size_is_checked_before_any_download(visitor_loads):
    outcome = visitor_loads["visitor/huge"]
    assert outcome["outcome"] == "error" and "10,240 MB" in outcome["message"]
    assert not outcome["data_gets"]  # not a byte of the data file was requested


def test_the_schema_is_checked_before_any_download(visitor_loads):
    outcome = visitor_loads["visitor/no-scores"]
    assert outcome["outcome"] == "error" and "missing score column" in outcome["message"]
    gets = outcome["data_gets"]
    assert gets and all("range" in r.headers for r in gets)  # only ranged reads of the parquet footer


def test_only_the_requested_split_is_downloaded(visitor_loads):
    outcome = visitor_loads["visitor/two-splits"]
    assert outcome["outcome"] == "ok"
    assert not [r for r in outcome["requests"] if r.path.endswith("scores/test-00000-of-00001.parquet")]


# ------------------------------------------------------------------------------- the app, served


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeModel:
    """Stands in for the scoring model (patched onto `ExplorerModel`): records what reaches it."""

    calls: list[dict] = []

    @staticmethod
    def score_sample(self, image, question, answer):
        FakeModel.calls.append(
            {"size": getattr(image, "size", None), "question": len(question), "answer": answer}
        )
        scored = synthetic_scored_dataset(1, seed=0, error_fraction=0)
        return scored.map(lambda row: {"solution": answer})

    @staticmethod
    def attention_for_row(self, data, row, config):
        raise ExplorerDataError("no attention in this test")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The explorer on 127.0.0.1 with a stand-in model: (url, demo, work_dir)."""
    pytest.importorskip("gradio")
    from rap_hf.explorer.app import build_app, launch_kwargs

    tmp = tmp_path_factory.mktemp("served")
    parquet = tmp / "scored.parquet"
    synthetic_scored_dataset(60, seed=1).to_parquet(str(parquet))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("rap_hf.explorer.model.model_unavailable_reason", lambda model: None)
        patch.setattr("rap_hf.explorer.model.ExplorerModel.score_sample", FakeModel.score_sample)
        patch.setattr("rap_hf.explorer.model.ExplorerModel.attention_for_row", FakeModel.attention_for_row)
        work = tmp / "work"
        work.mkdir()
        demo = build_app(str(parquet), model="fake", work_dir=work)
        port = _free_port()
        demo.launch(**launch_kwargs("127.0.0.1", port, prevent_thread_lock=True, quiet=True))
        try:
            yield f"http://127.0.0.1:{port}/", demo, work
        finally:
            deadline = time.monotonic() + 60
            while any(job is not None for job in demo._queue.active_jobs) and time.monotonic() < deadline:
                time.sleep(0.1)
            demo.close()


def _fn_index(demo, api_name: str) -> int:
    return next(fn._id for fn in demo.fns.values() if fn.api_name == api_name)


def test_a_flood_of_queued_calls_is_cut_at_max_size(served, monkeypatch):
    import httpx

    url, demo, _ = served

    def slow_plots(*args, **kwargs):
        time.sleep(0.1)
        return [None, None, None, None]

    monkeypatch.setattr("rap_hf.explorer.handlers.overview_images", slow_plots)
    body = {"data": [None, *PAPER_CONTROLS], "fn_index": _fn_index(demo, "plots"), "event_data": None}

    async def flood(count: int) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            join = f"{url}gradio_api/queue/join"
            responses = await asyncio.gather(
                *[client.post(join, json={**body, "session_hash": f"flood{i}"}) for i in range(count)]
            )
        return [r.status_code for r in responses]

    codes = asyncio.run(flood(200))
    accepted, refused = codes.count(200), codes.count(503)
    assert accepted + refused == 200 and refused > 0
    assert accepted <= demo._queue.max_size + 8  # the queue's size, plus the few already running
    deadline = time.monotonic() + 120  # let the accepted ones drain before the next test
    while len(demo._queue) or any(job is not None for job in demo._queue.active_jobs):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_model_bound_events_share_one_slot(served):
    _, demo, _ = served
    score, attention = (next(f for f in demo.fns.values() if f.api_name == n) for n in ("score", "attention"))
    assert score.concurrency_id == attention.concurrency_id and score.concurrency_limit == 1
    # Every event is in a named group (Gradio's default is a group per function): the total is bounded.
    groups = {(f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()}
    assert len({group for group, _ in groups}) == len(groups) <= 5
    assert sum(limit for _, limit in groups) <= 8


def test_text_inputs_are_capped_on_the_server(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _, _ = served
    client = Client(url, verbose=False)
    image = tmp_path / "small.png"
    image.write_bytes(_png((56, 56)))
    FakeModel.calls.clear()
    report, _ = client.predict(handle_file(str(image)), "Q" * 6000, "3", *PAPER_CONTROLS, api_name="/score")
    assert FakeModel.calls[-1]["question"] == 1000 and "cut to its first 1,000 characters" in report
    started = time.monotonic()
    with pytest.raises(AppError, match="answer is too long"):  # unclosed \boxed{ x 20000: never parsed
        client.predict(handle_file(str(image)), "q", "\\boxed{" * 20_000, *PAPER_CONTROLS, api_name="/score")
    with pytest.raises(AppError, match="dataset id is too long"):
        client.predict("a/" + "b" * 10_000, "train", api_name="/load")
    with pytest.raises(AppError, match="greater than maximum"):  # Gradio checks a slider's range itself
        client.predict(1e9, *PAPER_CONTROLS[1:], api_name="/reselect")
    with pytest.raises(AppError, match="drm_k must be in"):  # a number field has no maximum: checked here
        client.predict(*PAPER_CONTROLS[:5], "k", 1e30, *PAPER_CONTROLS[7:], api_name="/reselect")
    assert time.monotonic() - started < 10 and len(FakeModel.calls) == 1


def test_out_of_range_controls_are_refused():
    with pytest.raises(ExplorerDataError, match="log10 lambda_a must be in"):
        config_from_controls(0.5, "paper", 1e6, 0.1, True, "all trivial", 10, 0.5, 0)  # 10 ** 1e6 overflowed
    with pytest.raises(ExplorerDataError, match="lambda_c must be a number"):
        config_from_controls("x", "paper", -1, 0.1, True, "all trivial", 10, 0.5, 0)


def test_a_huge_image_upload_is_refused_without_decoding(served, tmp_path):
    """13000 x 13000 pixels in a 20 KB 1-bit PNG: once 45 s and 4.5 GB of RSS; now refused from its header."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _, _ = served
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png((13_000, 13_000), mode="1"))
    assert bomb.stat().st_size < 1_000_000
    FakeModel.calls.clear()
    started = time.monotonic()
    with pytest.raises(AppError, match="169,000,000 pixels is above the cap"):
        Client(url, verbose=False).predict(
            handle_file(str(bomb)), "q", "3", *PAPER_CONTROLS, api_name="/score"
        )
    assert time.monotonic() - started < 10 and FakeModel.calls == []


def test_a_data_url_in_the_queue_payload_is_refused(served):
    """A base64 data: URL in the event payload stands in for an upload and skips Gradio's upload cap."""
    import httpx

    url, demo, _ = served
    join = f"{url}gradio_api/queue/join"
    fn_index = _fn_index(demo, "score")

    def payload(data_url: str) -> dict:
        image = {"path": "x.png", "url": data_url, "meta": {"_type": "gradio.FileData"}}
        return {
            "data": [image, "q", "3", *PAPER_CONTROLS],
            "fn_index": fn_index,
            "session_hash": "d",
            "event_data": None,
        }

    big = "data:image/png;base64," + base64.b64encode(os.urandom(27 * 2**20)).decode()
    response = httpx.post(join, json=payload(big), timeout=60)
    assert response.status_code == 413  # over the request cap, refused before it is parsed
    bomb = "data:image/png;base64," + base64.b64encode(_png((13_000, 13_000), mode="1")).decode()
    response = httpx.post(join, json=payload(bomb), timeout=60)
    assert response.status_code == 422 and "data: URLs" in response.text  # small, but never decoded


def test_one_visitor_cannot_evict_another(served, monkeypatch):
    from gradio_client import Client

    url, _, _ = served

    def fake_load(source, **kwargs):  # a Hub dataset of 17 + n rows per id
        rows = 17 + int(source.rsplit("-", 1)[-1])
        return ExplorerData.from_dataset(synthetic_scored_dataset(rows, seed=rows), f"{source} [train]")

    monkeypatch.setattr("rap_hf.explorer.handlers.load_explorer_data", fake_load)
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    assert "17 rows" in alice.predict("org/data-0", "train", api_name="/load")
    for n in range(1, 7):
        bob.predict(f"org/data-{n}", "train", api_name="/load")
    _, counts, _, _ = alice.predict(*PAPER_CONTROLS, api_name="/reselect")
    assert sum(counts.values()) == 17
    _, counts, _, _ = bob.predict(*PAPER_CONTROLS, api_name="/reselect")
    assert sum(counts.values()) == 23


def test_downloads_do_not_pile_up(served):
    from gradio_client import Client

    url, _, work = served
    client = Client(url, verbose=False)
    before = set(work.rglob("*.parquet"))
    for _ in range(3):
        client.predict(*PAPER_CONTROLS, api_name="/download")
    assert len(set(work.rglob("*.parquet")) - before) == 1  # a visitor holds their latest download only


def test_push_goes_only_to_new_repos_in_the_configured_namespace(monkeypatch):
    data = ExplorerData.from_dataset(synthetic_scored_dataset(30, seed=2), "scores")
    selection = run_selection(data, RAPConfig())
    pushed = []
    monkeypatch.setattr(
        "rap_hf.hub.push_rap_dataset",
        lambda dataset, repo_id, *, config, token: (
            pushed.append(repo_id) or type("R", (), {"url": repo_id})()
        ),
    )
    monkeypatch.setattr(
        "huggingface_hub.HfApi.repo_exists", lambda self, repo_id, **kw: repo_id.endswith("taken")
    )

    def push(name: str) -> str:
        return push_selection(data, selection, name, allow_push=True, namespace="rap-space", token="t")

    assert "pushes only to `rap-space/…`" in push("victim/important")
    assert "already exists" in push("taken")
    assert "letters, digits" in push("..") and "letters, digits" in push("a b")
    assert pushed == []
    assert "Pushed" in push("my-selection") and "Pushed" in push("rap-space/other")
    assert pushed == ["rap-space/my-selection", "rap-space/other"]


def test_push_needs_a_namespace_to_be_enabled():
    from rap_hf.errors import RAPUserError
    from rap_hf.explorer.app import build_app

    with pytest.raises(RAPUserError, match="--push_namespace"):
        build_app(allow_push=True, default_data=ExplorerData.from_dataset(synthetic_scored_dataset(4), "s"))


def test_local_paths_are_never_read_for_a_visitor(tmp_path):
    (tmp_path / "scored.parquet").write_bytes(_parquet(synthetic_scored_dataset(4)))
    with pytest.raises(ExplorerDataError, match="Only Hub datasets"):
        load_explorer_data(str(tmp_path / "scored.parquet"), allow_local=False)


def test_a_visitor_dataset_is_browsed_and_downloaded(served, monkeypatch, tmp_path):
    """The whole path of a visitor's dataset through the page: anonymous checked load from a (mock) Hub into
    the visitor's session, re-selection, the sample view with its embedded image, a download."""
    from gradio_client import Client
    from huggingface_hub import constants

    from rap_hf.explorer.data import read_parquet_dataset

    url, _, work = served
    files, card = scores_repo_files(_parquet(synthetic_scored_dataset(25, seed=5, error_fraction=0)))
    with MockHub({"visitor/scores": MockRepo(files, card_data=card)}) as hub:
        # What HF_ENDPOINT sets when the process starts (file URLs come from a template made at import).
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        client = Client(url, verbose=False)
        assert "visitor/scores [train] · 25 rows" in client.predict(
            "visitor/scores", "train", api_name="/load"
        )
    _, counts, _, _ = client.predict(*PAPER_CONTROLS, api_name="/reselect")
    assert sum(counts.values()) == 25
    image, header, *_ = client.predict(3, *PAPER_CONTROLS, api_name="/sample")
    assert header.startswith("### Row 3") and Image.open(image).size == (112, 56)
    path = client.predict(*PAPER_CONTROLS, api_name="/download")
    assert 0 < len(read_parquet_dataset(path)) <= 25
    assert list((work / "visitors").rglob("data.arrow"))  # the visitor's data lives in their own folder
