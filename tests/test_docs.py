"""The documentation runs: every command a page of docs/ gives in a ```bash block is run
here, in order, so the tutorials cannot drift from the code.

How a page is run (the documented substitution, also said in docs/getting-started.md):

- one fresh directory per page, holding the data the tutorials name, cut short: ``sst2/``
  (GLUE SST-2, the first 400 lines of each split), ``g2p/`` (SIGMORPHON 2021 medium, the
  first 300 pairs of each file), ``gum/`` (UD English-GUM, the first 120 sentences of each
  file), ``data/`` (docs/data, as shipped); the registered corpora (tinyshakespeare,
  wikitext-2-valid, wikitext-2-test) come whole from the mirror (CHARRNN_CORPORA), since
  their digests are checked;
- ``charrnn train`` lines get ``--max-steps 3`` and a tiny model (FAST below) after their
  own options, which the last value of an option overrides; a resumed run gets 6 steps;
  ``--pretrain SECONDS`` becomes ``--pretrain-steps 3``;
- a line that is only a ``charrnn`` command runs in this process; a line with a pipe or a
  redirection runs in bash, with this environment's ``charrnn``;
- not run: installs (pip, venv, source), lines that start servers or TensorBoard, lines
  that need several processes or a GPU (``--nproc``, torchrun, ``--device cuda``): those
  paths have tests of their own (tests/test_serve.py, tests/test_distributed.py).

Every command must exit 0. A page whose data is missing here (no ../shared/corpora) is
skipped.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_CORPORA

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
STEPS = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
RUN_PYTHON = "<!-- test: run python -->"  # a page whose ```python blocks run too
FAST_KW = dict(max_steps=3, hidden_size=16, embedding_dim=16, layers=1, batch_size=4, eval_interval=3, threads=1)
FAST = ["--max-steps", "3", "--hidden-size", "16", "--embedding-dim", "16", "--layers", "1", "--batch-size", "4",
        "--eval-interval", "3", "--threads", "1"]
NOT_RUN = ("pip ", "python -m venv", "python3 -m venv", ". ", "source ", "git ", "torchrun ", "tensorboard ",
           "apt-get ", "sudo ", "open ", "xdg-open ")
NOT_RUN_CHARRNN = ("charrnn serve", "charrnn --install-completion", "charrnn train --nproc")
SHELL = re.compile(r"[|<>;&$`]")


def commands(page: Path) -> list[str]:
    """The command lines of the page's ```bash blocks, continuations joined, comments and
    blank lines dropped."""
    out = []
    for block in BLOCK.findall(page.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def steps(page: Path) -> list[tuple[str, str]]:
    """("bash", line) and, on a page marked RUN_PYTHON, ("python", block), in page order."""
    text = page.read_text(encoding="utf-8")
    out: list[tuple[str, str]] = []
    for kind, body in STEPS.findall(text):
        if kind == "python":
            if RUN_PYTHON in text:
                out.append(("python", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(("bash", line))
    return out


def fast_train(train):
    """``charrnn.train`` with the tiny settings over the page's own keywords."""
    def run(*args, **kw):
        extra = dict(max_steps=6, threads=1) if kw.get("resume") else FAST_KW
        if "pretrain" in kw:  # the pretraining stage: 3 steps instead of its seconds
            kw = {**{k: v for k, v in kw.items() if k != "pretrain"}, "pretrain_steps": 3}
        return train(*args, **{**kw, **extra})

    return run


def runnable(line: str) -> bool:
    if line.startswith(NOT_RUN) or line.startswith(NOT_RUN_CHARRNN):
        return False
    return not any(s in line for s in ("--nproc", "--device cuda", "&&"))


def fast(argv: list[str]) -> list[str]:
    """A ``charrnn train`` command with the tiny settings after its own (a resumed run keeps
    its model: it gets a limit and the threads only)."""
    if argv[:2] != ["charrnn", "train"]:
        return argv
    if "--resume" in argv:
        return argv + ["--max-steps", "6", "--threads", "1"]
    if "--pretrain" in argv:  # the pretraining stage: 3 steps instead of its seconds
        at = argv.index("--pretrain")
        argv = [*argv[:at], "--pretrain-steps", "3", *argv[at + 2:]]
    return argv + FAST


def _head(src: Path, dst: Path, lines: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= lines:
                break
            g.write(line)


def _sentences(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:n]
    dst.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def lay_out(where: Path) -> dict[str, str]:
    """The page's data in ``where``; returns the environment to run it with."""
    if (DOCS / "data").is_dir():
        shutil.copytree(DOCS / "data", where / "data")
    env = dict(os.environ)
    if SHARED_CORPORA.is_dir():
        for split in ("train", "dev", "test"):
            _head(SHARED_CORPORA / "sst2" / f"{split}.tsv", where / "sst2" / f"{split}.tsv", 400)
        for f in sorted((SHARED_CORPORA / "g2p-sigmorphon2021" / "medium").glob("*.tsv")):
            _head(f, where / "g2p" / f.name, 300)
        for f in sorted((SHARED_CORPORA / "ud-english-gum").glob("*.conllu")):
            _sentences(f, where / "gum" / f.name, 120)
        env["CHARRNN_CORPORA"] = str(SHARED_CORPORA)  # registered corpora are checked by digest: whole
    return env


def _needs_shared(lines: list[str]) -> bool:
    joined = " ".join(lines)
    return any(k in joined for k in ("sst2/", "g2p/", "gum/", "tinyshakespeare", "wikitext-2"))


@pytest.mark.parametrize("page", [p for p in PAGES if steps(p)], ids=lambda p: str(p.relative_to(DOCS)))
def test_every_command_of_the_page_runs(page, tmp_path, monkeypatch, capsys):
    import charrnn
    from charrnn.cli import main

    todo = [(kind, x) for kind, x in steps(page) if kind == "python" or runnable(x)]
    lines = [x for _, x in todo]
    if _needs_shared(lines) and not SHARED_CORPORA.is_dir():
        pytest.skip("the tutorial's data (../shared/corpora) is not here")
    env = lay_out(tmp_path)
    monkeypatch.chdir(tmp_path)
    if "CHARRNN_CORPORA" in env:
        monkeypatch.setenv("CHARRNN_CORPORA", env["CHARRNN_CORPORA"])
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    monkeypatch.setattr(charrnn, "train", fast_train(charrnn.train))
    for kind, line in todo:
        if kind == "python":
            exec(compile(line, f"{page.name} (python block)", "exec"), {})
            continue
        argv = shlex.split(line, comments=True)  # a trailing "# ..." is a comment, as in bash
        if argv[0] == "charrnn" and not SHELL.search(line):
            capsys.readouterr()
            # As in a script, standard input is empty (not a terminal): a command that reads
            # it when nothing else is given reads nothing.
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8"))
            try:
                main(fast(argv)[1:])
                code = 0
            except SystemExit as e:
                code = e.code or 0
            out, err = capsys.readouterr()
            assert code == 0, f"{page.name}: `{line}` exited {code}: {err[-2000:]}"
            continue
        if "charrnn train" in line:
            line = line.replace("charrnn train", "charrnn train " + " ".join(FAST[:2]), 1)
        proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{page.name}: `{line}` exited {proc.returncode}: {proc.stderr[-2000:]}"


def test_the_collector_reads_blocks_and_joins_continuations(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n```bash\n# a comment\ncharrnn train x \\\n  --epochs 2\n\nhead -3 a > b\n```\n\n"
                    "```python\nprint(1)\n```\n", encoding="utf-8")
    assert commands(page) == ["charrnn train x    --epochs 2", "head -3 a > b"]
    assert fast(["charrnn", "train", "x"])[:3] == ["charrnn", "train", "x"] and "--max-steps" in fast(["charrnn", "train", "x"])
    assert not runnable("charrnn serve run") and not runnable("pip install charrnn") and runnable("charrnn sample run")
