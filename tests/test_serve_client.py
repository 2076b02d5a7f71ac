"""The official ``openai`` Python client against ``charrnn serve`` run as a real server
(a subprocess on 127.0.0.1, any free port): a completion, a streamed completion, the
model list and errors as the client's own exceptions."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

import charrnn  # noqa: E402
from test_serve import train_tiny_lm  # noqa: E402

START = re.compile(r"at http://127\.0\.0\.1:(\d+)/")


@contextlib.contextmanager
def serving(*runs, cwd, env_extra=None):
    """``charrnn serve RUNS`` on a port the OS chooses (read from its start line); yields
    the base URL, and stops the server with Ctrl-C (SIGINT) at the end."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", *map(str, runs), "--port", "0", "--threads", "1",
                             "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        line = proc.stderr.readline()
        match = START.search(line)
        if not match:
            pytest.fail(f"no start line: {line}{proc.stderr.read()}")
        url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 30
        while True:  # the start line comes just before uvicorn takes over the bound socket
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve_client")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        run = train_tiny_lm(base)
    with serving(f"tiny={run}", cwd=base, env_extra={"XDG_CACHE_HOME": str(base / "cache")}) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        yield client, charrnn.load(run, device="cpu")


def test_a_completion(server):
    client, lm = server
    c = client.completions.create(model="tiny", prompt="the cat", max_tokens=30, seed=4, temperature=0.9)
    assert c.object == "text_completion" and c.model == "tiny"
    assert c.choices[0].text == lm.generate("the cat", length=30, seed=4, temperature=0.9)
    assert c.choices[0].finish_reason == "length"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (7, 30, 37)


def test_a_streamed_completion(server):
    client, lm = server
    pieces = []
    finish = None
    for chunk in client.completions.create(model="tiny", prompt="a dog", max_tokens=40, seed=8, stop=["\n\n"],
                                           stream=True):
        for choice in chunk.choices:
            pieces.append(choice.text)
            finish = choice.finish_reason or finish
    ref = charrnn.config.SampleConfig(length=40, seed=8, stop=("\n\n",))
    expected = lm.sample("a dog", ref)[0]
    assert "".join(pieces) == expected.text and len([p for p in pieces if p]) > 5
    assert finish == ("stop" if expected.finish_reason == "stop" else "length")


def test_models_and_errors_through_the_client(server):
    client, _ = server
    assert [m.id for m in client.models.list().data] == ["tiny"]
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="other", prompt="a")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", max_tokens=-3)
    assert e.value.body["param"] == "max_tokens"
