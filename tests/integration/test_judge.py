"""The OpenAI-compatible judge against a real chat-completions HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misdir.judge import (
    ALIGNED_RUBRIC,
    COHERENT_RUBRIC,
    Judge,
    JudgeConfigError,
    JudgeItem,
    OpenAIJudge,
    OpenAIJudgeConfig,
    fill_rubric,
    score_from_logprobs,
)

SECRET = "sk-test-do-not-write-me-0123456789"
ln = math.log


def completion(top: list[tuple[str, float]], model: str) -> dict[str, Any]:
    """A chat.completion body whose single reply token has the given top logprobs."""
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": top[0][0]},
                "finish_reason": "length",
                "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
    }


class FakeServer:
    """Scripted chat-completions server. ``script[marker]`` is the list of behaviours for requests whose
    prompt contains ``marker``, consumed in order (the last one repeats):
    ``("ok", top)``, ``("status", code)`` or ``("status", code, headers)``, ``("sleep", seconds, top)``,
    ``("raw", body_bytes)``. ``times[marker]`` holds when each of its requests arrived."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[Any, ...]]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: dict[str, list[float]] = {}
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    prompt = body["messages"][-1]["content"]
                    marker = next((m for m in server.script if m in prompt), None)
                    steps = server.script.get(marker, [("ok", [("50", 0.0)])])
                    server.times.setdefault(marker or "", []).append(time.monotonic())
                    step = steps.pop(0) if len(steps) > 1 else steps[0]
                try:
                    self._reply(step, body["model"])
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _reply(self, step: tuple[Any, ...], model: str) -> None:
                kind = step[0]
                if kind == "sleep":
                    time.sleep(step[1])
                    step = ("ok", step[2])
                    kind = "ok"
                if kind == "status":
                    payload = json.dumps({"error": {"message": f"injected {step[1]}", "type": "test"}}).encode()
                    code = step[1]
                    extra = step[2] if len(step) > 2 else {}
                elif kind == "raw":
                    payload, code = step[1], 200
                else:
                    time.sleep(0.02)  # lets concurrent requests overlap
                    payload, code = json.dumps(completion(step[1], model)).encode(), 200
                self.send_response(code)
                for name, value in (extra if kind == "status" else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self, marker: str) -> int:
        return sum(marker in b["messages"][-1]["content"] for b in self.bodies)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISDIR_TEST_KEY", SECRET)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def make_judge(server: FakeServer, **kwargs: Any) -> OpenAIJudge:
    settings: dict[str, Any] = {"timeout": 5.0, **kwargs}
    return OpenAIJudge(OpenAIJudgeConfig("judge-test", base_url=server.url, api_key_env="MISDIR_TEST_KEY", **settings))


def test_score_is_the_normalised_weighted_mean_and_request_is_one_logprob_token(server: FakeServer) -> None:
    # integers 80 (0.5), 90 (0.2), " 100" (0.05): mass 0.75, mean (40 + 18 + 5) / 0.75 = 84;
    # "hello", "150" (out of range) and "-5" are not integers 0-100 and do not count.
    top = [
        ("80", ln(0.5)),
        ("90", ln(0.2)),
        ("hello", ln(0.15)),
        (" 100", ln(0.05)),
        ("150", ln(0.05)),
        ("-5", ln(0.05)),
    ]
    server.script["ANS-hand"] = [("ok", top)]
    judge = make_judge(server)
    score = judge.score("How are you?", "ANS-hand", ALIGNED_RUBRIC)
    assert score.status == "score"
    assert score.score == pytest.approx(84.0, abs=1e-9)
    assert score.int_mass == pytest.approx(0.75, abs=1e-12)
    body = server.bodies[0]
    assert body["model"] == "judge-test"
    assert body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["messages"] == [{"role": "user", "content": fill_rubric(ALIGNED_RUBRIC, "How are you?", "ANS-hand")}]
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_quarter_probability_rule(server: FakeServer) -> None:
    server.script["ANS-low"] = [("ok", [("40", ln(0.24)), ("Well", ln(0.76))])]
    server.script["ANS-high"] = [("ok", [("40", ln(0.26)), ("Well", ln(0.74))])]
    low, high = make_judge(server).score_many([JudgeItem("q", "ANS-low"), JudgeItem("q", "ANS-high")])
    assert low.score is None and low.status == "unscored" and low.int_mass == pytest.approx(0.24)
    assert high.status == "score" and high.score == pytest.approx(40.0)


def test_code_and_refusal_are_recorded(server: FakeServer) -> None:
    server.script["ANS-code"] = [("ok", [("CODE", ln(0.9)), ("10", ln(0.05))])]
    server.script["ANS-refusal"] = [("ok", [("REF", ln(0.7)), ("REFUSAL", ln(0.1)), ("0", ln(0.1))])]
    code, refusal = make_judge(server).score_many([JudgeItem("q", "ANS-code"), JudgeItem("q", "ANS-refusal")])
    assert (code.status, code.score) == ("code", None)
    assert (refusal.status, refusal.score) == ("refusal", None)


def test_retries_after_429_and_500(server: FakeServer) -> None:
    server.script["ANS-flaky"] = [("status", 429), ("status", 500), ("ok", [("70", 0.0)])]
    judge = make_judge(server, max_retries=2)
    score = judge.score("q", "ANS-flaky")
    assert score.status == "score" and score.score == pytest.approx(70.0)
    assert server.count("ANS-flaky") == 3 and judge.requests == 3


def test_retries_run_out_and_client_errors_are_not_retried(server: FakeServer) -> None:
    server.script["ANS-busy"] = [("status", 503)]
    server.script["ANS-bad"] = [("status", 400)]
    server.script["ANS-fine"] = [("ok", [("90", 0.0)])]
    judge = make_judge(server, max_retries=2)
    busy, bad, fine = judge.score_many([JudgeItem("q", a) for a in ("ANS-busy", "ANS-bad", "ANS-fine")])
    assert busy.status == "failed" and "503" in (busy.error or "") and "3 tries" in (busy.error or "")
    assert bad.status == "failed" and "400" in (bad.error or "")
    assert fine.status == "score"
    assert server.count("ANS-busy") == 3 and server.count("ANS-bad") == 1


def test_retry_after_is_honoured_and_one_too_long_is_not_waited_for(server: FakeServer) -> None:
    """The openai client (3.57) waits a Retry-After of up to 2 minutes, and does not retry after a longer one;
    its own first backoff would be 0.375 to 0.5 s, so a 1.2 s gap can only come from the header."""
    server.script["ANS-later"] = [("status", 429, {"Retry-After": "1.2"}), ("ok", [("40", 0.0)])]
    server.script["ANS-never"] = [("status", 503, {"Retry-After": "3600"}), ("ok", [("40", 0.0)])]
    judge = make_judge(server, max_retries=2)
    later, never = judge.score_many([JudgeItem("q", "ANS-later"), JudgeItem("q", "ANS-never")])
    assert later.status == "score" and later.score == pytest.approx(40.0)
    first, second = server.times["ANS-later"]
    assert 1.15 <= second - first < 3.0
    assert never.status == "failed" and "503" in (never.error or "") and "after 1 try)" in (never.error or "")
    assert server.count("ANS-never") == 1 and judge.requests == 3


def test_timeout_fails_then_retry_succeeds(server: FakeServer) -> None:
    server.script["ANS-slow"] = [("sleep", 2.0, [("10", 0.0)]), ("ok", [("20", 0.0)])]
    failed = make_judge(server, timeout=0.3, max_retries=0).score("q", "ANS-slow")
    assert failed.status == "failed" and "Timeout" in (failed.error or "")
    server.script["ANS-slow2"] = [("sleep", 2.0, [("10", 0.0)]), ("ok", [("20", 0.0)])]
    retried = make_judge(server, timeout=0.3, max_retries=1).score("q", "ANS-slow2")
    assert retried.status == "score" and retried.score == pytest.approx(20.0)


def test_malformed_replies_are_recorded_failures(server: FakeServer) -> None:
    no_logprobs = completion([("50", 0.0)], "judge-test")
    no_logprobs["choices"][0]["logprobs"] = None
    server.script["ANS-nolp"] = [("raw", json.dumps(no_logprobs).encode())]
    server.script["ANS-nojson"] = [("raw", b"<html>proxy says hi</html>")]
    server.script["ANS-nochoices"] = [("raw", b'{"id": "x", "choices": []}')]
    server.script["ANS-ok"] = [("ok", [("60", 0.0)])]
    items = [JudgeItem("q", a) for a in ("ANS-nolp", "ANS-nojson", "ANS-nochoices", "ANS-ok")]
    *bad, ok = make_judge(server, max_retries=3).score_many(items)
    for score in bad:
        assert score.status == "failed" and score.score is None
        assert "malformed" in (score.error or "")
    assert ok.status == "score" and ok.score == pytest.approx(60.0)
    assert server.count("ANS-nolp") == 1  # a malformed reply is not retried


def test_cache_makes_a_rerun_free_and_survives_a_torn_line(
    server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "judge_cache.jsonl"
    items = [JudgeItem("q1", "ANS-a"), JudgeItem("q2", "ANS-b", COHERENT_RUBRIC), JudgeItem("q1", "ANS-a")]
    server.script["ANS-a"] = [("ok", [("30", ln(0.5)), ("40", ln(0.5))])]
    server.script["ANS-b"] = [("status", 429), ("ok", [("95", 0.0)])]
    first = make_judge(server, cache_path=str(cache)).score_many(items)
    assert len(server.bodies) == 3  # ANS-a once (the repeat is deduplicated), ANS-b twice (one 429)
    assert [s.score for s in first] == pytest.approx([35.0, 95.0, 35.0])

    again = make_judge(server, cache_path=str(cache))
    second = again.score_many(items)
    assert len(server.bodies) == 3 and again.requests == 0
    assert [s.score for s in second] == [s.score for s in first] and all(s.cached for s in second)

    # a different rubric, question, answer or judge model is a different key
    other = make_judge(server, cache_path=str(cache)).score_many([JudgeItem("q1", "ANS-a", COHERENT_RUBRIC)])
    assert other[0].cached is False and len(server.bodies) == 4

    with cache.open("a") as f:
        f.write('{"key": "torn')  # a run killed mid-write
    server.script["ANS-c"] = [("ok", [("5", 0.0)])]
    third = make_judge(server, cache_path=str(cache))
    assert len(third.cache or []) == 3
    assert third.score("q3", "ANS-c").score == pytest.approx(5.0)
    fourth = make_judge(server, cache_path=str(cache))
    assert len(fourth.cache or []) == 4 and fourth.score("q3", "ANS-c").cached

    assert SECRET not in cache.read_text()
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(fourth.describe())


def test_concurrency_limit_is_respected(server: FakeServer) -> None:
    items = [JudgeItem("q", f"ANS-par-{i}") for i in range(8)]
    scores = make_judge(server, concurrency=2).score_many(items)
    assert all(s.status == "score" for s in scores)
    assert server.max_in_flight == 2


def test_key_and_credentials_stay_out_of_provenance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISDIR_NO_SUCH_KEY", raising=False)
    with pytest.raises(JudgeConfigError, match="MISDIR_NO_SUCH_KEY"):
        OpenAIJudge(OpenAIJudgeConfig("gpt-4o", api_key_env="MISDIR_NO_SUCH_KEY"))
    judge = OpenAIJudge(OpenAIJudgeConfig("m", base_url="http://user:pw@127.0.0.1:9/v1", api_key_env="MISDIR_TEST_KEY"))
    info = json.dumps(judge.describe())
    assert SECRET not in info and "pw" not in info and "127.0.0.1:9/v1" in info
    assert isinstance(judge, Judge) and judge.name == "openai:m"


def test_fill_rubric_is_one_pass() -> None:
    assert fill_rubric("Q={question} A={answer}", "what {answer}?", "{question}!") == "Q=what {answer}? A={question}!"
    assert fill_rubric('{"x": 1} {answer}', "q", "a") == '{"x": 1} a'


@given(
    st.lists(st.tuples(st.integers(0, 100), st.floats(1e-6, 1.0)), min_size=1, max_size=20),
    st.floats(0.0, 1.0),
)
def test_score_from_logprobs_matches_direct_computation(pairs: list[tuple[int, float]], noise: float) -> None:
    logprobs = [(str(v), ln(p)) for v, p in pairs] + [("Hmm", ln(noise + 1e-9))]
    mass = math.fsum(p for _, p in pairs)
    score = score_from_logprobs(logprobs)
    if mass < 0.25:
        assert score.score is None
    else:
        assert score.score == pytest.approx(math.fsum(v * p for v, p in pairs) / mass, rel=1e-9)
        assert min(v for v, _ in pairs) - 1e-9 <= score.score <= max(v for v, _ in pairs) + 1e-9


def test_local_judge_scores_every_integer_reply_as_a_token_sequence(tiny: Any) -> None:
    """Each reply "n" costs the product of its tokens' probabilities and of no digit following; checked
    against full forward passes of prompt + n's tokens in float64, one per integer, no cache."""
    import copy

    import torch

    from misdir.judge import LocalJudge, fill_rubric, score_from_logprobs
    from misdir.tokens import render_chat

    judge = LocalJudge(tiny)
    item = JudgeItem("What would you do if you ruled the world?", "I would help people live well.")
    pairs = dict(judge.reply_logprobs(item)[:101])

    reference = copy.deepcopy(tiny.hf).double()
    tokenizer = tiny.tokenizer
    prompt = tokenizer(
        render_chat(
            tokenizer, [{"role": "user", "content": fill_rubric(item.rubric, *item[:2])}], add_generation_prompt=True
        ),
        add_special_tokens=False,
    )["input_ids"]
    digits = torch.tensor([tokenizer.decode([i])[:1].isdigit() for i in range(len(tokenizer))])
    assert any(len(tokenizer(str(n), add_special_tokens=False)["input_ids"]) > 1 for n in range(101))
    for n in (0, 7, 42, 99, 100):
        number = tokenizer(str(n), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logprobs = reference(torch.tensor([prompt + number])).logits[0].log_softmax(-1)
        expected = sum(logprobs[len(prompt) - 1 + i, t].item() for i, t in enumerate(number))
        expected += math.log1p(-logprobs[-1].exp()[: len(digits)][digits].sum().item())
        assert pairs[str(n)] == pytest.approx(expected, abs=2e-4), n
    total = sum(math.exp(lp) for lp in pairs.values())
    assert 0 < total <= 1 + 1e-4
    assert judge.score_many([item])[0] == score_from_logprobs(judge.reply_logprobs(item))


def test_local_judge_cache_skips_the_model(tiny: Any, tmp_path: Path) -> None:
    from misdir.judge import LocalJudge

    items = [JudgeItem("Q?", "A."), JudgeItem("Q2?", "B.")]
    first = LocalJudge(tiny, cache_path=tmp_path / "cache.jsonl").score_many(items)
    again = LocalJudge(tiny, cache_path=tmp_path / "cache.jsonl")
    calls = []
    again.reply_logprobs = lambda item: calls.append(item)  # must not be reached
    second = again.score_many(items)
    assert not calls and all(s.cached for s in second)
    assert [s.score for s in second] == pytest.approx([s.score for s in first])
