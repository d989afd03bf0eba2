"""``lite-rm serve``: a real uvicorn process on 127.0.0.1 and a real HTTP client (httpx).

Scores equal :class:`Scorer`'s, auth refusals, body/row limits, bad JSON and types, concurrent requests
batched together, and SIGTERM with a request in flight. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx  # the [dev] extra brings httpx and the [serve] extra: CI tests the server
import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.jobs.local_server import LocalServer, start_local_server
from lite_rm.jobs.serving import ServeLimits
from lite_rm.scoring.scorer import Scorer

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "How do I boil an egg?"
RESPONSES = ["Put it in boiling water for eight minutes.", "Eggs are nice.", "Boil.", "I don't know, sorry."]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("serve")
    valid = tmp / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": f"q{i}?", "chosen": f"answer {i} " * (i % 4 + 1),
                                         "rejected": "no"}) + "\n" for i in range(24)))
    export_bundle(tiny_checkpoint, tmp / "bundle", validation=valid)
    return tmp / "bundle"


@pytest.fixture(scope="module")
def scorer(bundle: Path) -> Scorer:
    return Scorer(bundle, threads=1)


def _start(bundle: Path, *args: str, key: str | None = KEY) -> tuple[subprocess.Popen[bytes], str]:
    """A ``lite-rm serve`` process on loopback and its URL, once /health answers 200 (30 s at most)."""
    server = start_local_server(bundle, "--threads", "1", "--log-level", "warning", *args, api_key=key,
                                capture_output=True)
    return server.process, server.url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    LocalServer(proc, "").stop()


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[str]:
    proc, url = _start(bundle, "--max-body-bytes", "20000", "--max-rows", "16", "--batch-window-ms", "20")
    yield url
    _stop(proc)


def test_scores_equal_scorer(server: str, scorer: Scorer) -> None:
    r = httpx.post(server + "/score", json={"prompt": PROMPT, "responses": RESPONSES}, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["scores"], scorer.score(PROMPT, RESPONSES), atol=1e-6)

    pairs = [{"prompt": f"question {i}", "response": RESPONSES[i]} for i in range(4)]
    pairs.append({"prompt": [{"role": "user", "content": PROMPT}], "response": RESPONSES[0]})  # chat messages
    r = httpx.post(server + "/score", json={"pairs": pairs}, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    expected = scorer.score_pairs([p["prompt"] for p in pairs], [p["response"] for p in pairs])
    np.testing.assert_allclose(r.json()["scores"], expected, atol=1e-6)


def test_preference_and_openrlhf_equal_scorer(server: str, scorer: Scorer) -> None:
    r = httpx.post(server + "/preference", json={"prompt": PROMPT, "a": RESPONSES[0], "b": RESPONSES[1]},
                   headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["probability"] == pytest.approx(
        scorer.compare([PROMPT], RESPONSES[:1], RESPONSES[1:2]).probabilities[0], abs=1e-6)
    items = [{"prompt": PROMPT, "a": RESPONSES[i], "b": RESPONSES[3 - i]} for i in range(4)]
    r = httpx.post(server + "/preference", json={"items": items}, headers=AUTH, timeout=10)
    np.testing.assert_allclose(r.json()["probabilities"], scorer.compare(
        [PROMPT] * 4, RESPONSES, RESPONSES[::-1]).probabilities, atol=1e-6)

    prompts = ["User: hi\nAssistant:", "User: 2+2?\nAssistant:"]
    answers = [" hello there", " 4"]
    body = {"query": [p + a for p, a in zip(prompts, answers, strict=True)], "prompts": prompts}
    r = httpx.post(server + "/openrlhf", json=body, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["rewards"], scorer.score_pairs(prompts, answers), atol=1e-6)
    bad = httpx.post(server + "/get_reward", json={"query": ["other text"], "prompts": ["User: hi"]}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["field"] == "query[0]"


def test_auth(server: str) -> None:
    body = {"prompt": PROMPT, "responses": RESPONSES[:1]}
    assert httpx.get(server + "/health", timeout=5).status_code == 200  # no key needed
    missing = httpx.post(server + "/score", json=body, timeout=5)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(server + "/score", json=body, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 403 and wrong.json()["field"] == "Authorization"
    assert httpx.post(server + "/score", json=body, headers={"Authorization": KEY}, timeout=5).status_code == 403


@pytest.mark.parametrize(("content", "status", "field", "says"), [
    ('{"prompt": "x", "responses": ["' + "y" * 30000 + '"]}', 413, "body", "20000"),
    (json.dumps({"prompt": "x", "responses": ["y"] * 17}), 422, "responses", "16"),
    (json.dumps({"items": [{"prompt": "x", "a": "y", "b": "z"}] * 9}), 422, "items", "8"),
    ('{"prompt": "x", "responses": [', 422, "body", "not valid JSON"),
    ("[" * 50000 + "]" * 50000, 413, "body", "20000"),
    ("[" * 9000 + "]" * 9000, 422, "body", "not valid JSON"),  # deeper than Python's recursion limit
    ('["prompt"]', 422, "body", "JSON object"),
    ('{"prompt": 5, "responses": ["a"]}', 422, "prompt", "found int"),
    ('{"prompt": "x", "responses": "a"}', 422, "responses", "non-empty list"),
    ('{"prompt": "x", "responses": []}', 422, "responses", "non-empty list"),
    ('{"responses": ["a"]}', 422, "prompt", "missing"),
    ('{"pairs": [{"prompt": "x", "response": "y"}, {"prompt": "x", "response": 3}]}', 422, "pairs[1].response",
     "found int"),
    ('{"pairs": [{"prompt": "x"}]}', 422, "pairs[0].response", "missing"),
    ('{"prompt": "x", "responses": ["\\ud800"]}', 422, "responses[0]", "surrogate"),
    ('{"prompt": [{"role": "user"}], "responses": ["a"]}', 422, "prompt", "content"),
    (b'{"prompt": "\xff", "responses": ["a"]}', 422, "body", "not valid JSON"),
])
def test_bad_requests_are_refused_and_server_lives(server: str, content: str | bytes, status: int, field: str,
                                                   says: str) -> None:
    url = server + ("/preference" if "items" in str(content) else "/score")
    r = httpx.post(url, content=content, headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and says in r.json()["error"], r.json()
    assert httpx.get(server + "/health", timeout=5).status_code == 200


def test_concurrent_requests_are_batched_and_correct(server: str, scorer: Scorer) -> None:
    before = httpx.get(server + "/health", headers=AUTH, timeout=5).json()["model_calls"]
    bodies = [{"prompt": f"question {i}?", "responses": [f"answer {i}", RESPONSES[i % 4]]} for i in range(32)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
            return await asyncio.gather(*(client.post(server + "/score", json=b) for b in bodies))

    answers = asyncio.run(asyncio.wait_for(send_all(), 60))
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["scores"], scorer.score(body["prompt"], body["responses"]),
                                   atol=1e-6)
    calls = httpx.get(server + "/health", headers=AUTH, timeout=5).json()["model_calls"] - before
    assert 1 <= calls < 32  # requests shared model calls


def test_sigterm_finishes_the_request_in_flight(bundle: Path, scorer: Scorer) -> None:
    # A long batch window keeps the request in the server when SIGTERM arrives.
    proc, url = _start(bundle, "--batch-window-ms", "1500", "--log-level", "info", key=None)
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: result.setdefault(
        "r", httpx.post(url + "/score", json={"prompt": PROMPT, "responses": RESPONSES}, timeout=20)))
    try:
        sender.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        sender.join(timeout=20)
        assert proc.wait(timeout=20) == 0  # a drained shutdown is a normal exit
    finally:
        _stop(proc)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert "Application shutdown complete" in log, log
    assert result["r"].status_code == 200
    np.testing.assert_allclose(result["r"].json()["scores"], scorer.score(PROMPT, RESPONSES), atol=1e-6)


def test_refuses_public_host_without_key(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITE_RM_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", str(bundle), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "without an API key" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["serve", str(bundle.parent / "nope")])
    assert missing.exit_code == 1 and "nope" in missing.output


def test_health_is_503_until_loaded(bundle: Path) -> None:
    from lite_rm.jobs.serving import RewardServer

    async def ask() -> tuple[int, int]:
        app = RewardServer(bundle).app()  # lifespan not run: the model is never loaded
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            health = await client.get("/health")
            score = await client.post("/score", json={"prompt": "x", "responses": ["y"]})
            return health.status_code, score.status_code

    assert asyncio.run(ask()) == (503, 503)


def test_a_server_scores_with_the_head_it_was_given(bundle: Path, tmp_path: Path) -> None:
    import shutil

    from lite_rm.jobs.serving import RewardServer
    from lite_rm.scoring.heads import LinearHead, save_into_bundle

    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    plain = Scorer(copy, threads=1)
    weight = np.linspace(-1, 1, plain.manifest.embedding_dim or 0).astype(np.float32)
    save_into_bundle(copy, LinearHead("alice", weight, backbone=plain.manifest.data["source"]["sha256"]))
    server = RewardServer(copy, threads=1, head="alice")

    async def ask() -> tuple[dict, dict]:
        app = server.app()
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                for _ in range(600):  # the model loads in the background
                    health = (await client.get("/health")).json()
                    if health["status"] != "loading":
                        break
                    await asyncio.sleep(0.05)
                scores = (await client.post("/score", json={"prompt": "q?", "responses": ["a", "bb"]})).json()
                return health, scores

    health, scores = asyncio.run(ask())
    assert health["head"] == "alice" and "alice" in health["heads"]
    expected = Scorer(copy, threads=1, head="alice").score("q?", ["a", "bb"])
    np.testing.assert_allclose(scores["scores"], expected, rtol=1e-5)
    result = CliRunner().invoke(main, ["serve", str(copy), "--head", "bob"])
    assert result.exit_code == 1 and "'bob'" in result.output


# -- issue 25: shutdown drain, auth scheme, what /health tells whom, roles ---------------------------------

def _stalled_upload(url: str) -> socket.socket:
    """A raw client that sends the headers and half of the body it announced, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
                 b"\r\n" + b'{"prompt": "stalled", ')
    return sock


def test_sigterm_drops_a_stalled_upload_after_the_graceful_timeout_and_exits_0(bundle: Path) -> None:
    proc, url = _start(bundle, "--graceful-timeout", "1", "--log-level", "info", key=None)
    sock = _stalled_upload(url)
    try:
        time.sleep(0.3)  # the server has the request
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=20)
        took = time.monotonic() - started
    finally:
        sock.close()
        _stop(proc)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert status == 0, log
    assert took < 8, (took, log)  # the stalled client no longer holds the shutdown
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
    assert "Application shutdown complete" in log, log


def test_a_client_that_goes_away_mid_upload_is_no_error(server: str) -> None:
    sock = _stalled_upload(server)
    time.sleep(0.2)
    sock.close()  # gone before the body was complete
    time.sleep(0.3)
    assert httpx.post(server + "/score", json={"prompt": PROMPT, "responses": RESPONSES}, headers=AUTH,
                      timeout=10).status_code == 200


def test_client_disconnect_is_logged_without_a_traceback(bundle: Path) -> None:
    proc, url = _start(bundle, "--log-level", "info", key=None)
    try:
        sock = _stalled_upload(url)
        time.sleep(0.3)
        sock.close()
        time.sleep(0.5)
        assert httpx.get(url + "/health", timeout=5).status_code == 200
    finally:
        _stop(proc)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in log and "ERROR" not in log, log


def test_bearer_scheme_is_case_insensitive(server: str) -> None:
    body = {"prompt": PROMPT, "responses": RESPONSES[:1]}
    for scheme in ("bearer", "BEARER", "Bearer"):
        answer = httpx.post(server + "/score", json=body, headers={"Authorization": f"{scheme} {KEY}"}, timeout=10)
        assert answer.status_code == 200, (scheme, answer.text)
    assert httpx.post(server + "/score", json=body, headers={"Authorization": f"Basic {KEY}"},
                      timeout=10).status_code == 403


def test_health_without_the_key_says_only_ready(server: str, bundle: Path) -> None:
    bare = httpx.get(server + "/health", timeout=5)
    assert bare.status_code == 200 and bare.json() == {"status": "ready"}
    wrong = httpx.get(server + "/health", headers={"Authorization": "Bearer nope"}, timeout=5).json()
    assert wrong == {"status": "ready"}
    full = httpx.get(server + "/health", headers=AUTH, timeout=5).json()
    assert full["status"] == "ready" and full["bundle"] == str(bundle) and "heads" in full


@pytest.mark.parametrize("role", [5, None, ["user"]])
def test_a_message_role_must_be_a_string(server: str, role: object) -> None:
    messages = [{"role": role, "content": "hi"}]
    answer = httpx.post(server + "/score", json={"prompt": messages, "responses": ["x"]}, headers=AUTH, timeout=10)
    assert answer.status_code == 422 and answer.json()["field"] == "prompt", answer.text


# -- issue 28: per-request head, /rank, the OpenRLHF reply, unknown fields, /openapi.json -------------------

def test_rank_answers_records_best_first(server: str, scorer: Scorer) -> None:
    r = httpx.post(server + "/rank", json={"prompt": PROMPT, "responses": RESPONSES}, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    expected = scorer.rank(PROMPT, RESPONSES, return_documents=True)
    results = r.json()["results"]
    assert [x["corpus_id"] for x in results] == [x["corpus_id"] for x in expected]
    assert [x["text"] for x in results] == [x["text"] for x in expected]
    np.testing.assert_allclose([x["score"] for x in results], [x["score"] for x in expected], atol=1e-6)
    top = httpx.post(server + "/rank", json={"prompt": PROMPT, "responses": RESPONSES, "top_k": 2}, headers=AUTH,
                     timeout=10).json()["results"]
    assert top == results[:2]
    for top_k in (0, -1, "2", True):
        bad = httpx.post(server + "/rank", json={"prompt": PROMPT, "responses": RESPONSES, "top_k": top_k},
                         headers=AUTH, timeout=10)
        assert bad.status_code == 422 and bad.json()["field"] == "top_k", (top_k, bad.text)
    assert httpx.post(server + "/rank", json={"prompt": PROMPT, "responses": RESPONSES}, timeout=10).status_code == 401


def test_openrlhf_reply_also_has_scores_and_extra_logs(server: str, scorer: Scorer) -> None:
    body = {"query": ["User: hi\nAssistant: hello"], "prompts": ["User: hi\nAssistant:"], "labels": ["x"]}
    for path in ("/openrlhf", "/get_reward"):
        reply = httpx.post(server + path, json=body, headers=AUTH, timeout=10).json()
        assert reply["scores"] == reply["rewards"] and reply["extra_logs"] == {}, reply
        np.testing.assert_allclose(reply["rewards"], scorer.score_pairs(body["prompts"], [" hello"]), atol=1e-6)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/score", {"prompt": PROMPT, "responses": ["x"], "top_k": 1}, "top_k"),
    ("/score", {"prompt": PROMPT, "response": ["x"]}, "response"),
    ("/score", {"pairs": [{"prompt": "p", "response": "r"}], "prompt": "p"}, "prompt"),
    ("/score", {"pairs": [{"prompt": "p", "response": "r", "weight": 2}]}, "pairs[0].weight"),
    ("/preference", {"prompt": "p", "a": "x", "b": "y", "c": "z"}, "c"),
    ("/preference", {"items": [{"prompt": "p", "a": "x", "b": "y", "tie": False}]}, "items[0].tie"),
    ("/rank", {"prompt": "p", "responses": ["x"], "topk": 1}, "topk"),
    ("/openrlhf", {"query": ["px"], "prompts": ["p"], "reward_key": "r"}, "reward_key"),
    ("/get_reward", {"query": ["px"], "prompts": ["p"], "head": "default"}, "head"),
])
def test_unknown_fields_are_refused(server: str, path: str, body: dict, field: str) -> None:
    answer = httpx.post(server + path, json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert "unknown field" in answer.json()["error"]


def test_unknown_head_is_refused_with_the_heads_available(server: str) -> None:
    for path, body in [("/score", {"prompt": "p", "responses": ["x"]}), ("/preference", {"prompt": "p", "a": "x", "b": "y"}),
                       ("/rank", {"prompt": "p", "responses": ["x"]})]:
        for head in ("nobody", 3, {"default": 1.0}, "/etc/passwd.json"):
            answer = httpx.post(server + path, json={**body, "head": head}, headers=AUTH, timeout=10)
            assert answer.status_code == 422 and answer.json()["field"] == "head", (path, head, answer.text)
            assert "available heads" in answer.json()["error"] and "'default'" in answer.json()["error"]
        ok = httpx.post(server + path, json={**body, "head": "default"}, headers=AUTH, timeout=10)
        assert ok.status_code == 200, ok.text


def test_a_request_chooses_its_head(bundle: Path, tmp_path: Path) -> None:
    import shutil

    from lite_rm.jobs.serving import RewardServer
    from lite_rm.scoring.heads import LinearHead, save_into_bundle

    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    plain = Scorer(copy, threads=1)
    weight = np.linspace(-1, 1, plain.manifest.embedding_dim or 0).astype(np.float32)
    save_into_bundle(copy, LinearHead("alice", weight, backbone=plain.manifest.data["source"]["sha256"]))
    server = RewardServer(copy, threads=1, limits=ServeLimits(batch_window_ms=50))
    texts = ["a", "bb", "a much longer answer"]

    async def ask() -> list[dict]:
        app = server.app()
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                for _ in range(600):  # the model loads in the background
                    if (await client.get("/health")).json()["status"] != "loading":
                        break
                    await asyncio.sleep(0.05)
                answers = await asyncio.gather(  # within one batch window: two heads, one batch each
                    client.post("/score", json={"prompt": "q?", "responses": texts, "head": "alice"}),
                    client.post("/score", json={"prompt": "q?", "responses": texts}),
                    client.post("/preference", json={"prompt": "q?", "a": "a", "b": "bb", "head": "alice"}),
                    client.post("/rank", json={"prompt": "q?", "responses": texts, "head": "alice", "top_k": 1}))
                return [a.json() for a in answers]

    alice_scores, plain_scores, preference, rank = asyncio.run(ask())
    alice = Scorer(copy, threads=1, head="alice")
    np.testing.assert_allclose(alice_scores["scores"], alice.score("q?", texts), rtol=1e-5)
    np.testing.assert_allclose(plain_scores["scores"], plain.score("q?", texts), rtol=1e-5)
    assert not np.allclose(alice_scores["scores"], plain_scores["scores"])  # the head made a difference
    assert preference["probability"] == pytest.approx(alice.compare(["q?"], ["a"], ["bb"]).probabilities[0], abs=1e-6)
    assert rank["results"] == [{**r, "score": pytest.approx(r["score"], rel=1e-5)}
                               for r in alice.rank("q?", texts, 1, return_documents=True)]


def test_openapi_describes_the_endpoints_and_needs_the_key(server: str) -> None:
    assert httpx.get(server + "/openapi.json", timeout=5).status_code == 401
    assert httpx.get(server + "/openapi.json", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    schema = httpx.get(server + "/openapi.json", headers=AUTH, timeout=5).json()
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "lite-rm serve"
    assert {"/health", "/score", "/preference", "/rank", "/openrlhf", "/get_reward"} <= set(schema["paths"])
    assert "head" in schema["paths"]["/score"]["post"]["description"]
