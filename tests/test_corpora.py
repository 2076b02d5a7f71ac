import hashlib
import urllib.error
import urllib.request

import pytest

from charrnn.text import corpora
from charrnn.text.corpora import registry, resolve_corpus
from charrnn.errors import CorpusError
from conftest import SHARED_CORPORA


def test_registry_lists_tinyshakespeare_with_its_checksum():
    entry = registry()["tinyshakespeare"]
    assert entry.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert entry.size == 1_115_394 and entry.url.startswith("https://") and entry.license


def test_existing_paths_and_stdin_pass_through(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("x")
    assert resolve_corpus(str(p)) == str(p)
    assert resolve_corpus("-") == "-"


@pytest.mark.skipif(not (SHARED_CORPORA / "tinyshakespeare.txt").is_file(), reason="no shared corpora mirror")
def test_mirror_is_used_first():
    assert resolve_corpus("tinyshakespeare") == str(SHARED_CORPORA / "tinyshakespeare.txt")


def _fake_entry(monkeypatch, content: bytes):
    entry = corpora.CorpusEntry("fake", "fake/x.txt", "https://example.invalid/x.txt",
                                hashlib.sha256(content).hexdigest(), len(content), "test")
    monkeypatch.setattr(corpora, "registry", lambda: {"fake": entry})
    return entry


def test_cache_then_download_with_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARRNN_CORPORA", raising=False)
    _fake_entry(monkeypatch, b"hello corpus\n")

    class Resp:
        def __init__(self, data):
            self.data = [data]

        def read(self, n):
            return self.data.pop() if self.data else b""

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Resp(b"hello corpus\n"))
    path = resolve_corpus("fake")
    assert open(path, "rb").read() == b"hello corpus\n"
    assert path.startswith(str(tmp_path / "cache" / "charrnn" / "corpora"))
    # Second time: from the cache, no network needed.
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded twice"))
    assert resolve_corpus("fake") == path
    # A corrupted cache copy is refused.
    open(path, "wb").write(b"tampered")
    with pytest.raises(CorpusError, match="sha256"):
        resolve_corpus("fake")


def test_bad_download_checksum_is_an_error(monkeypatch):
    monkeypatch.delenv("CHARRNN_CORPORA", raising=False)
    _fake_entry(monkeypatch, b"expected")

    class Resp:
        def read(self, n, _d=[b"something else"]):
            return _d.pop() if _d else b""

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Resp())
    with pytest.raises(CorpusError, match="does not match"):
        resolve_corpus("fake")


def test_no_network_says_how_to_provide_the_file(monkeypatch):
    monkeypatch.delenv("CHARRNN_CORPORA", raising=False)
    _fake_entry(monkeypatch, b"x")

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CorpusError, match="CHARRNN_CORPORA") as e:
        resolve_corpus("fake")
    assert "fake/x.txt" in str(e.value)


def test_unknown_name_lists_the_registry():
    with pytest.raises(CorpusError, match="tinyshakespeare"):
        resolve_corpus("no-such-corpus")
