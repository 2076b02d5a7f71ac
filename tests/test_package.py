"""The package as an index would publish it: `python -m build` makes an sdist and a wheel
(the wheel built from the sdist, so the sdist is complete), their metadata is what an index
page shows, and the wheel installed alone into a fresh virtual environment runs.

The build runs without isolation (it uses this environment's setuptools: the dev extra
asks for a recent enough one) on a copy of the source, so nothing is written into the
working tree. The fresh environment gets the wheel with pip and its dependencies
(torch, typer, ...) from this environment through a .pth line: what is checked is the
wheel's own files and entry point, not a second download of torch."""

from __future__ import annotations

import email
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import charrnn

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(importlib.util.find_spec("build") is None,
                                reason="needs the 'build' package (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("package")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "charrnn", src / "charrnn", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    out = base / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_the_wheel_holds_every_module_and_the_data_files(dist):
    names = set(zipfile.ZipFile(_one(dist, "*.whl")).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "charrnn").rglob("*.py") if "__pycache__" not in p.parts}
    assert sources - names == set()
    assert "charrnn/text/registry.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_metadata_an_index_shows(dist):
    wheel = zipfile.ZipFile(_one(dist, "*.whl"))
    meta = email.message_from_bytes(wheel.read(next(n for n in wheel.namelist() if n.endswith("/METADATA"))))
    assert meta["Name"] == "charrnn" and meta["Version"] == charrnn.__version__
    assert meta["License-Expression"] == "MIT" and meta["Summary"]
    assert meta["Description-Content-Type"] == "text/markdown" and "charrnn train" in meta.get_payload()
    assert any(c.startswith("Programming Language :: Python :: 3") for c in meta.get_all("Classifier"))
    assert "lstm" in meta["Keywords"]
    assert {"seq2seq", "zstd", "dev"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    torch = [r for r in requires if r.startswith("torch")]
    assert torch == ["torch>=2.2"]  # a range, never a pin
    sdist = tarfile.open(_one(dist, "*.tar.gz"))
    members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert {"LICENSE", "README.md", "pyproject.toml", "charrnn/cli/runfile.py", "charrnn/text/registry.json"} <= members


def test_the_wheel_installs_into_a_fresh_environment_and_runs(dist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(_one(dist, "*.whl"))], check=True, timeout=300)
    # Dependencies from this environment, after the fresh one's own site-packages.
    (purelib,) = {Path(p) for p in subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.split()}
    (purelib / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    charrnn_exe = venv / ("Scripts/charrnn.exe" if os.name == "nt" else "bin/charrnn")

    def run(*argv):
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    where = run(python, "-c", "import charrnn; print(charrnn.__file__)")
    assert Path(where.strip()).is_relative_to(venv)  # the wheel's copy, not this checkout's
    assert run(charrnn_exe, "--version").strip() == f"charrnn {charrnn.__version__}"
    assert "train" in run(charrnn_exe, "--help")
    # A real command, through the modules it needs (text, tokenizers, the registry file).
    (tmp_path / "text.txt").write_text("hello wheel\n", encoding="utf-8")
    assert run(charrnn_exe, "tokenizer", "train", "text.txt", "--kind", "char", "--out", "tok.safetensors") is not None
    assert (tmp_path / "tok.safetensors").is_file()
