"""``charrnn serve``'s API through FastAPI's test client: the OpenAI completions fields,
streaming, stop strings, n > 1, charrnn's own controls, label-conditioned generation,
/v1/predict for the other tasks, every client mistake as a 4xx in OpenAI's error shape,
continuous batching against the engine alone, and the command's one-line errors.

Expected texts come from the Python API (``LanguageModel.sample``), not from the server."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # the test client

from fastapi.testclient import TestClient  # noqa: E402

import charrnn  # noqa: E402
from charrnn.config import SampleConfig  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.batching import Batch, Job  # noqa: E402
from charrnn.serve.limits import Limits  # noqa: E402
from conftest import TINY_TEXT  # noqa: E402
from test_cli import assert_one_line_error, run  # noqa: E402
from test_cli_classify import ok  # noqa: E402

HW = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--quiet"]
TINY_LM = ["--layers", "1", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "8",
           "--max-steps", "30", *HW]


def train_tiny_lm(base: Path) -> Path:
    """A 1x16 LSTM on the tiny corpus (a second or two on one thread)."""
    corpus = base / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    ok("train", corpus, *TINY_LM, "--out", base / "lm")
    return base / "lm"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run of each task (a few steps each: these tests check the plumbing, not quality)."""
    base = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        out = {"lm": train_tiny_lm(base)}
        clf = base / "clf.txt"
        clf.write_text("".join(f"__label__{'pos' if i % 2 else 'neg'} {'a good fine film' if i % 2 else 'a dull bad mess'}"
                               f" {i}\n" for i in range(40)), encoding="utf-8")
        ok("train", "--task", "classify", clf, "--tokenizer", "char", "--hidden-size", "8", "--embedding-dim", "6",
           "--batch-size", "4", "--max-steps", "5", *HW, "-o", base / "clf")
        tags = base / "tags.conll"
        sents = [[("le", "DET"), ("chat", "NOUN"), ("dort", "VERB"), (".", "PUNCT")],
                 [("la", "DET"), ("souris", "NOUN"), ("court", "VERB"), (".", "PUNCT")]] * 10
        tags.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sents) + "\n", encoding="utf-8")
        ok("train", "--task", "tag", tags, "--hidden-size", "8", "--embedding-dim", "6", "--char-hidden-size", "4",
           "--char-embedding-dim", "4", "--batch-size", "4", "--max-steps", "5", *HW, "-o", base / "tag")
        pairs = base / "pairs.tsv"
        words = ["abc", "bca", "cab", "acb", "bac", "cba", "aab", "bba"] * 5
        pairs.write_text("".join(f"{w}\t{' '.join(reversed(w))}\n" for w in words), encoding="utf-8")
        ok("train", "--task", "seq2seq", pairs, "--target-tokenizer", "space", "--hidden-size", "8", "--embedding-dim",
           "6", "--batch-size", "4", "--max-steps", "5", *HW, "-o", base / "s2s")
        names = base / "names"
        names.mkdir()
        (names / "abc.txt").write_text("abca\nbcab\ncabc\naabb\n" * 5, encoding="utf-8")
        (names / "xyz.txt").write_text("xyzx\nyzxy\nzxyz\nxxyy\n" * 5, encoding="utf-8")
        ok("train", "--task", "conditional", names, "--hidden-size", "8", "--embedding-dim", "6", "--label-dim", "3",
           "--layers", "1", "--batch-size", "4", "--max-steps", "5", *HW, "-o", base / "cond")
        out.update(clf=base / "clf", tag=base / "tag", s2s=base / "s2s", cond=base / "cond")
    return out


@pytest.fixture(scope="module")
def models(runs):
    return {name: charrnn.load(path, device="cpu") for name, path in runs.items()}


@pytest.fixture(scope="module")
def client(models):
    limits = Limits(max_tokens=500, max_prompt_chars=200, max_request_bytes=20_000, max_choices=12, max_rows=8,
                    max_inputs=10)
    with TestClient(create_app(models, limits)) as c:
        yield c


def complete(client, **body):
    r = client.post("/v1/completions", json={"model": "lm", **body})
    assert r.status_code == 200, r.text
    return r.json()


def stream(client, **body) -> list[dict]:
    """The JSON chunks of a streamed completion (checking the SSE framing and the [DONE] end)."""
    with client.stream("POST", "/v1/completions", json={"model": "lm", "stream": True, **body}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    return [json.loads(e[6:]) for e in events[:-2]]


def joined(chunks: list[dict]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for c in chunks:
        for ch in c["choices"]:
            texts[ch["index"]] = texts.get(ch["index"], "") + ch["text"]
    return texts


def sample(model, prime: str, **options):
    return model.sample(prime, SampleConfig(**options))


# ----------------------------------------------------------------- models


def test_models_lists_each_model_with_its_task(client):
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    cards = {m["id"]: m for m in data["data"]}
    assert {k: v["task"] for k, v in cards.items()} == {
        "lm": "lm", "clf": "classify", "tag": "tag", "s2s": "seq2seq", "cond": "conditional"}
    assert all(m["object"] == "model" and m["owned_by"] == "charrnn" and isinstance(m["created"], int)
               for m in cards.values())
    assert cards["clf"]["labels"] == ["neg", "pos"] and cards["cond"]["labels"] == ["abc", "xyz"]
    assert set(cards["tag"]["tags"]) == {"DET", "NOUN", "VERB", "PUNCT"}
    assert client.get("/v1/models/lm").json() == cards["lm"]


# ----------------------------------------------------------------- completions


def test_completion_has_the_openai_fields_and_the_api_text(client, models):
    body = complete(client, prompt="the cat", max_tokens=25, seed=3, temperature=0.9)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "lm"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    ref = sample(models["lm"], "the cat", length=25, seed=3, temperature=0.9)[0]
    assert choice["text"] == ref.text and len(choice["text"]) == 25
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] == "length" and choice["charrnn_finish_reason"] == "length"
    assert choice["logprob"] == pytest.approx(ref.logprob)
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 25, "total_tokens": 32}
    assert "warnings" not in body


def test_max_tokens_defaults_to_openais_16(client):
    assert len(complete(client, prompt="a", seed=1)["choices"][0]["text"]) == 16


@pytest.mark.parametrize("prompt", ["the dog", "", "a", "한국 😀\n", "sat on\nthe"])
def test_streamed_chunks_join_to_the_completion(client, prompt):
    options = dict(prompt=prompt, max_tokens=30, seed=11, n=2)
    whole = complete(client, **options)
    chunks = stream(client, **options)
    texts = joined(chunks)
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    assert len(chunks) > 10  # piece by piece, not one lump
    ends = [ch for c in chunks for ch in c["choices"] if ch["finish_reason"] is not None]
    assert sorted(ch["index"] for ch in ends) == [0, 1] and all(ch["text"] == "" for ch in ends)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and all(c["object"] == "text_completion" for c in chunks)


def test_stream_options_include_usage_ends_with_a_usage_chunk(client):
    chunks = stream(client, prompt="the", max_tokens=9, seed=2, stream_options={"include_usage": True})
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}


def test_stop_strings_end_the_text_before_them(client, models):
    free = sample(models["lm"], "the ", length=60, seed=5)[0].text
    stop = free[20:23]  # a string the unconstrained text contains
    cut = free[: free.index(stop)]
    for stops in (stop, [stop, "\u2603"]):
        body = complete(client, prompt="the ", max_tokens=60, seed=5, stop=stops)
        assert body["choices"][0]["text"] == cut and body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["completion_tokens"] == len(cut)
        assert joined(stream(client, prompt="the ", max_tokens=60, seed=5, stop=stops)) == {0: cut}


def test_n_and_a_list_of_prompts_give_prompt_major_choices(client, models):
    body = complete(client, prompt=["the cat", "a dog"], n=3, max_tokens=12, seed=7)
    assert [c["index"] for c in body["choices"]] == list(range(6))
    for p, prompt in enumerate(["the cat", "a dog"]):
        ref = sample(models["lm"], prompt, length=12, seed=7, num_samples=3)
        assert [c["text"] for c in body["choices"][3 * p: 3 * p + 3]] == [g.text for g in ref]
    assert body["usage"]["prompt_tokens"] == 7 + 5 and body["usage"]["completion_tokens"] == 6 * 12


def test_temperature_zero_is_greedy_and_top_p_one_is_off(client, models):
    greedy = sample(models["lm"], "the", length=20, greedy=True)[0].text
    assert complete(client, prompt="the", max_tokens=20, temperature=0)["choices"][0]["text"] == greedy
    assert complete(client, prompt="the", max_tokens=20, top_k=1, seed=4)["choices"][0]["text"] == greedy
    default = complete(client, prompt="the", max_tokens=20, seed=4)["choices"][0]["text"]
    assert complete(client, prompt="the", max_tokens=20, seed=4, top_p=1)["choices"][0]["text"] == default
    assert default == sample(models["lm"], "the", length=20, seed=4)[0].text  # charrnn's default temperature 0.8


@pytest.mark.parametrize("extra", [
    dict(top_p=0.8, min_p=0.1), dict(repetition_penalty=1.5), dict(no_repeat_ngram=3), dict(max_chars=7),
    dict(temperature=1.3, top_k=4, repetition_penalty=1.2, no_repeat_ngram=4, n=2),
])
def test_charrnns_own_controls_match_the_api(client, models, extra):
    options = dict(extra)
    n = options.pop("n", 1)
    body = complete(client, prompt="the cat", max_tokens=30, seed=9, n=n, **options)
    ref = sample(models["lm"], "the cat", length=30, seed=9, num_samples=n, **options)
    assert [c["text"] for c in body["choices"]] == [g.text for g in ref]
    assert joined(stream(client, prompt="the cat", max_tokens=30, seed=9, n=n, **options)) == {
        i: g.text for i, g in enumerate(ref)}


def test_beam_search_returns_the_n_best(client, models):
    body = complete(client, prompt="the", max_tokens=15, beam=4, n=2, length_penalty=0.5)
    ref = sample(models["lm"], "the", length=15, beam=4, num_return=2, length_penalty=0.5)
    assert [c["text"] for c in body["choices"]] == [g.text for g in ref]
    assert joined(stream(client, prompt="the", max_tokens=15, beam=4, n=2, length_penalty=0.5)) == {
        0: ref[0].text, 1: ref[1].text}


def test_echo_puts_the_prompt_first(client):
    plain = complete(client, prompt="the cat", max_tokens=10, seed=1)["choices"][0]["text"]
    assert complete(client, prompt="the cat", max_tokens=10, seed=1, echo=True)["choices"][0]["text"] == "the cat" + plain
    assert joined(stream(client, prompt="the cat", max_tokens=10, seed=1, echo=True)) == {0: "the cat" + plain}


def test_unknown_prompt_characters_are_read_as_unknown_with_a_warning(client):
    body = complete(client, prompt="the 😀 cat", max_tokens=5, seed=1)
    assert len(body["choices"][0]["text"]) == 5
    assert body["warnings"] == ["the prompt has 1 character(s) the model never saw in training; it reads them as "
                                "unknown"]


def test_the_time_limit_ends_a_long_completion(models):
    with TestClient(create_app({"lm": models["lm"]}, Limits(timeout=0.05))) as c:
        body = c.post("/v1/completions", json={"model": "lm", "prompt": "the", "max_tokens": 4096}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["charrnn_finish_reason"] == "time"
    assert 0 < len(choice["text"]) < 4096


def _rows_become(worker, n: int, within: float = 5.0) -> bool:
    """Whether the worker is generating ``n`` rows (after each step) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while worker._active_rows != n and time.monotonic() < deadline:
        time.sleep(0.01)
    return worker._active_rows == n


@pytest.mark.parametrize("stream_it", [True, False])
def test_a_client_that_goes_away_stops_its_generation(models, stream_it):
    """A million tokens would take the tiny model close to a minute: a client that stops
    reading (a stream) or waiting (a plain request) must end the generation at once.
    A real server in a thread: the test client cannot give up on a request."""
    import httpx
    import uvicorn

    app = create_app({"lm": models["lm"]}, Limits(max_tokens=1_000_000, timeout=120))
    worker = app.state.served["lm"].worker
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/completions"
        body = {"model": "lm", "prompt": "the", "max_tokens": 1_000_000, "stream": stream_it}
        with httpx.Client(timeout=httpx.Timeout(10, read=0.5)) as http:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.01)
            if stream_it:
                with http.stream("POST", url, json=body) as r:
                    lines = r.iter_lines()  # kept: dropping the iterator would close the response
                    next(lines)
                    assert _rows_become(worker, 1)
            else:
                with pytest.raises(httpx.ReadTimeout):
                    http.post(url, json=body)
                assert _rows_become(worker, 1)
        assert _rows_become(worker, 0)
    finally:
        server.should_exit = True
        thread.join(10)


def test_concurrent_requests_all_complete(client, models):
    results: dict[int, dict] = {}

    def one(k):
        results[k] = client.post("/v1/completions", json={"model": "lm", "prompt": f"the {k}", "max_tokens": 40,
                                                          "seed": k}).json()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(6):
        assert len(results[k]["choices"][0]["text"]) == 40


# ----------------------------------------------------------------- conditional


def test_a_conditional_model_completes_with_a_label(client, models):
    body = complete(client, model="cond", label="xyz", n=3, seed=2, temperature=0.7)
    ref = models["cond"].sample("xyz", n=3, config=SampleConfig(seed=2, temperature=0.7, num_samples=3,
                                                                length=models["cond"].default_limit))
    assert [c["text"] for c in body["choices"]] == [g.text for g in ref]
    assert all(c["finish_reason"] in ("stop", "length") for c in body["choices"])
    assert joined(stream(client, model="cond", label="xyz", n=3, seed=2, temperature=0.7)) == {
        i: g.text for i, g in enumerate(ref)}
    beams = complete(client, model="cond", label="abc", prompt="b", beam=3, n=2)
    ref = models["cond"].sample("abc", n=2, prime="b", config=SampleConfig(beam=3, num_return=2,
                                                                           length=models["cond"].default_limit))
    assert [c["text"] for c in beams["choices"]] == [g.text for g in ref]


# ----------------------------------------------------------------- predict


def test_predict_with_a_classifier(client, models):
    texts = ["a good fine film", "a dull bad mess", ""]
    r = client.post("/v1/predict", json={"model": "clf", "input": texts, "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["task"] == "classify"
    ref = models["clf"].predict(texts, top_k=2)
    for d, text, best in zip(body["data"], texts, ref):
        assert d["input"] == text and d["label"] == best[0][0] and d["probability"] == pytest.approx(best[0][1])
        assert [(t["label"], pytest.approx(t["probability"])) for t in d["top"]] == best
        assert sum(t["probability"] for t in d["top"]) == pytest.approx(1.0)
    one = client.post("/v1/predict", json={"model": "clf", "input": "a good fine film"}).json()["data"]
    assert len(one) == 1 and len(one[0]["top"]) == 1


def test_predict_with_a_tagger(client, models):
    r = client.post("/v1/predict", json={"model": "tag", "input": ["le chat dort .", ["la", "souris", "court"], ""]})
    data = r.json()["data"]
    ref = models["tag"].predict([["le", "chat", "dort", "."], ["la", "souris", "court"], []])
    assert [d["tokens"] for d in data] == [["le", "chat", "dort", "."], ["la", "souris", "court"], []]
    for d, tags in zip(data, ref):
        assert d["tags"] == [t for t, _ in tags] and d["probabilities"] == pytest.approx([p for _, p in tags])


def test_predict_with_an_encoder_decoder(client, models):
    r = client.post("/v1/predict", json={"model": "s2s", "input": ["abc", "cab"], "beam": 3, "n_best": 2})
    data = r.json()["data"]
    ref = models["s2s"].predict(["abc", "cab"], beam=3, n_best=2)
    for d, best in zip(data, ref):
        assert d["output"] == best[0][0] and d["score"] == pytest.approx(best[0][1])
        assert [(x["output"], pytest.approx(x["score"])) for x in d["n_best"]] == best
    greedy = client.post("/v1/predict", json={"model": "s2s", "input": ["abc"]}).json()["data"][0]
    assert greedy["output"] == models["s2s"].predict(["abc"])[0][0][0]


# ----------------------------------------------------------------- errors


def _is_openai_error(r, status: int, param: str | None = "?") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param != "?":
        assert err["param"] == param, err
    return err


@pytest.mark.parametrize("body, status, param", [
    ({"model": "nope", "prompt": "a"}, 404, "model"),
    ({"prompt": "a"}, 400, "model"),
    ({"model": "lm", "max_tokens": -1}, 400, "max_tokens"),
    ({"model": "lm", "max_tokens": 501}, 400, "max_tokens"),
    ({"model": "lm", "max_tokens": "5"}, 400, "max_tokens"),
    ({"model": "lm", "max_tokens": 2.5}, 400, "max_tokens"),
    ({"model": "lm", "prompt": 5}, 400, "prompt"),
    ({"model": "lm", "prompt": [1, 2]}, 400, "prompt"),
    ({"model": "lm", "prompt": []}, 400, "prompt"),
    ({"model": "lm", "prompt": "x" * 201}, 400, "prompt"),
    ({"model": "lm", "temperature": "hot"}, 400, "temperature"),
    ({"model": "lm", "temperature": -0.5}, 400, "temperature"),
    ({"model": "lm", "top_p": 0}, 400, "top_p"),
    ({"model": "lm", "top_k": 0}, 400, "top_k"),
    ({"model": "lm", "min_p": 2}, 400, "min_p"),
    ({"model": "lm", "n": 0}, 400, "n"),
    ({"model": "lm", "n": 13}, 400, "n"),
    ({"model": "lm", "prompt": ["a"] * 5, "n": 3}, 400, "n"),
    ({"model": "lm", "stream": "yes"}, 400, "stream"),
    ({"model": "lm", "seed": 1.5}, 400, "seed"),
    ({"model": "lm", "stop": ""}, 400, "stop"),
    ({"model": "lm", "stop": 3}, 400, "stop"),
    ({"model": "lm", "stop": ["a"] * 17}, 400, "stop"),
    ({"model": "lm", "temprature": 0.5}, 400, "temprature"),
    ({"model": "lm", "logprobs": 2}, 400, "logprobs"),
    ({"model": "lm", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"model": "lm", "best_of": 3}, 400, "best_of"),
    ({"model": "lm", "suffix": "end"}, 400, "suffix"),
    ({"model": "lm", "beam": 2, "temperature": 0.5}, 400, "temperature"),
    ({"model": "lm", "beam": 2, "n": 3}, 400, "n"),
    ({"model": "lm", "repetition_penalty": 0}, 400, "repetition_penalty"),
    ({"model": "lm", "label": "abc"}, 400, "label"),
    ({"model": "lm", "n": 9}, 429, None),
    ({"model": "cond"}, 400, "label"),
    ({"model": "cond", "label": "nope"}, 400, "label"),
    ({"model": "clf", "prompt": "a"}, 400, "model"),
    ({"model": "s2s", "prompt": "a"}, 400, "model"),
])
def test_client_mistakes_are_4xx_in_openais_error_shape(client, body, status, param):
    for stream_it in (False, True):
        err = _is_openai_error(client.post("/v1/completions", json={**body, "stream": body.get("stream", stream_it)}),
                               status, param)
        assert err["type"] == ("rate_limit_error" if status == 429 else "invalid_request_error")


@pytest.mark.parametrize("body, param", [
    ({"model": "lm", "input": ["a"]}, "model"),
    ({"model": "cond", "input": ["a"]}, "model"),
    ({"model": "clf"}, "input"),
    ({"model": "clf", "input": 3}, "input"),
    ({"model": "clf", "input": [["a", "b"]]}, "input"),
    ({"model": "clf", "input": ["a"] * 11}, "input"),
    ({"model": "clf", "input": ["x" * 201]}, "input"),
    ({"model": "clf", "input": ["a"], "beam": 2}, "beam"),
    ({"model": "tag", "input": ["a"], "top_k": 2}, "top_k"),
    ({"model": "s2s", "input": ["a"], "n_best": 2}, "n_best"),
    ({"model": "s2s", "input": ["a"], "beam": 2, "n_best": 3}, "n_best"),
    ({"model": "clf", "input": ["a"], "top_k": 0}, "top_k"),
    ({"model": "clf", "input": ["a"], "extra": 1}, "extra"),
])
def test_predict_mistakes_are_400s(client, body, param):
    _is_openai_error(client.post("/v1/predict", json=body), 400, param)
    _is_openai_error(client.post("/v1/predict", json={"model": "zzz", "input": ["a"]}), 404, "model")


ODD_VALUES = ["NaN", "Infinity", "-Infinity", "1e308", "-1", "0", "2", "1e-30", "99999999999999999999999", "null",
              "true", "[]", "{}", '"x"', '[""]', '[1, "a"]']


@pytest.mark.parametrize("field", [
    "model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "stream_options", "echo",
    "logprobs", "best_of", "presence_penalty", "frequency_penalty", "logit_bias", "suffix", "user", "top_k", "min_p",
    "repetition_penalty", "no_repeat_ngram", "beam", "length_penalty", "max_chars", "label"])
def test_no_value_of_a_completion_field_is_a_server_error(client, field):
    """Odd JSON values in every field: an answer, or a 4xx in the error shape; never a 500."""
    for value in ODD_VALUES:
        extra = '"beam": 2, ' if field == "length_penalty" else ""
        body = '{"model": "lm", "prompt": "ab", "max_tokens": 5, %s"%s": %s}' % (extra, field, value)
        r = client.post("/v1/completions", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code < 500, (field, value, r.text)
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("model", ["clf", "tag", "s2s"])
def test_no_value_of_a_predict_field_is_a_server_error(client, model):
    for field in ("input", "top_k", "beam", "n_best", "length_penalty"):
        for value in ODD_VALUES:
            body = '{"model": "%s", "input": ["ab c"], "%s": %s}' % (model, field, value)
            r = client.post("/v1/predict", content=body.encode(), headers={"content-type": "application/json"})
            assert r.status_code < 500, (model, field, value, r.text)


def test_malformed_requests_are_4xx(client):
    _is_openai_error(client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"}),
                     400, None)
    _is_openai_error(client.post("/v1/completions"), 400, None)
    _is_openai_error(client.post("/v1/completions", json=[1, 2]), 400)
    _is_openai_error(client.post("/v1/completions", content=b'{"model": "lm", "prompt": "' + b"a" * 30_000 + b'"}',
                                 headers={"content-type": "application/json"}), 413, None)
    _is_openai_error(client.get("/v1/nothing"), 404, None)
    _is_openai_error(client.get("/v1/completions"), 405, None)
    _is_openai_error(client.get("/v1/models/nope"), 404, "model")


# ----------------------------------------------------------------- batching


def test_batched_jobs_joining_and_leaving_equal_each_run_alone(models):
    """Jobs of different primes, configs and lengths join a Batch at different steps; each
    gets what LanguageModel.sample gives it alone."""
    lm = models["lm"]
    specs = [("the cat", dict(length=30, seed=1)), ("a", dict(length=12, seed=2, num_samples=3, temperature=1.2)),
             ("", dict(length=25, seed=3, top_k=5, stop=("og",))), ("sat on", dict(length=20, greedy=True)),
             ("the dog", dict(length=18, seed=4, repetition_penalty=1.3, no_repeat_ngram=2)),
             ("mat", dict(length=0, seed=5))]
    import torch

    got: dict[int, list] = {}
    texts: dict[int, dict[int, str]] = {}

    def post(k):
        def f(event):
            if event[0] == "text":
                for row, piece in event[1]:
                    texts.setdefault(k, {}).setdefault(row, "")
                    texts[k][row] += piece
            elif event[0] == "done":
                got[k] = event[1]
            else:
                raise event[1]
        return f

    batch = Batch(lm)
    with torch.inference_mode():
        for k, (prime, opts) in enumerate(specs):
            batch.add(Job(lm.tokenizer.encode(prime), SampleConfig(**opts), post(k)))
            for _ in range(k + 2):  # the next one joins a few steps later
                if len(batch):
                    batch.step()
        while len(batch):
            batch.step()
    assert sorted(got) == list(range(len(specs)))
    for k, (prime, opts) in enumerate(specs):
        ref = sample(lm, prime, **opts)
        assert [g.text for g in got[k]] == [g.text for g in ref], k
        assert [g.tokens for g in got[k]] == [g.tokens for g in ref]
        assert [g.finish_reason for g in got[k]] == [g.finish_reason for g in ref]
        assert [g.logprob for g in got[k]] == pytest.approx([g.logprob for g in ref], abs=1e-4)
        assert {r: t for r, t in texts.get(k, {}).items()} == {r: g.text for r, g in enumerate(ref) if g.text}
    assert batch.rows == 0


def test_without_batching_the_answers_are_the_same(models):
    with TestClient(create_app({"lm": models["lm"]}, batching=False)) as c:
        body = c.post("/v1/completions", json={"model": "lm", "prompt": ["the", "a"], "n": 2, "max_tokens": 20,
                                               "seed": 6, "stop": "t"}).json()
    for p, prompt in enumerate(["the", "a"]):
        ref = sample(models["lm"], prompt, length=20, seed=6, num_samples=2, stop=("t",))
        assert [c["text"] for c in body["choices"][2 * p: 2 * p + 2]] == [g.text for g in ref]


# ----------------------------------------------------------------- the page


def test_the_page_and_its_script_are_served_and_need_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="model"', 'id="prime"', 'id="temperature"', 'id="length"', 'id="generate"', 'id="output"',
                    'id="predict-input"'):
        assert element in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "http" not in page.text.replace('"/', "")  # no CDN: users may be offline


# ----------------------------------------------------------------- the command


def test_serve_without_the_extra_says_how_to_install_it(capsys, monkeypatch, runs):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code, out, err = run(capsys, "serve", runs["lm"])
    assert_one_line_error(code, out, err, "pip install 'charrnn[serve]'")


def test_serve_mistakes_are_one_line(capsys, runs, tmp_path):
    code, out, err = run(capsys, "serve", tmp_path / "missing")
    assert_one_line_error(code, out, err, "missing")
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "serve", tmp_path / "empty")
    assert_one_line_error(code, out, err, "empty")
    code, out, err = run(capsys, "serve", runs["lm"], f"lm={runs['clf']}")
    assert_one_line_error(code, out, err, "two runs are named 'lm'")
    code, out, err = run(capsys, "serve", runs["lm"], "--port", "70000")
    assert code == 2 and "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "serve", runs["lm"], "--port", port)
    assert_one_line_error(code, out, err, f"cannot listen on 127.0.0.1:{port}")
