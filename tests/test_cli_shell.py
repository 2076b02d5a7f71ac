"""What a shell user expects of the command: --version, and completion through Typer's own
mechanism (the scripts for bash, zsh and fish; commands, options, choices and run
directories completed)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

import charrnn
from test_cli import run


def cli(capsys, argv=(), env=None, monkeypatch=None) -> tuple[int, str, str]:
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return run(capsys, *argv)


def test_version_is_the_package_metadata(capsys):
    code, out, err = cli(capsys, ["--version"])
    assert code == 0 and err == ""
    assert out == f"charrnn {charrnn.__version__}\n"
    assert charrnn.__version__ == importlib.metadata.version("charrnn")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_completion_script_for_each_shell(capsys, monkeypatch, shell):
    code, out, _ = cli(capsys, env={"_CHARRNN_COMPLETE": f"source_{shell}"}, monkeypatch=monkeypatch)
    assert code == 0 and f"_CHARRNN_COMPLETE=complete_{shell}" in out and "charrnn" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_names_the_shell(shell):
    # As `charrnn --show-completion` does for the shell it runs in (detection off: the shell is given).
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = subprocess.run([sys.executable, "-m", "charrnn", "--show-completion", shell], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "_CHARRNN_COMPLETE=complete_" + shell in proc.stdout, proc.stderr


def _complete(capsys, monkeypatch, line: str) -> list[str]:
    words = line.split(" ")
    env = {"_CHARRNN_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    code, out, _ = cli(capsys, env=env, monkeypatch=monkeypatch)
    assert code == 0
    return out.split()


def test_commands_options_and_choices_complete(capsys, monkeypatch):
    assert _complete(capsys, monkeypatch, "charrnn sa") == ["sample"]
    assert "--hidden-size" in _complete(capsys, monkeypatch, "charrnn train --hid")
    assert _complete(capsys, monkeypatch, "charrnn train --cell ") == ["lstm", "gru", "rnn", "mingru", "minlstm"]
    assert "perplexity" in _complete(capsys, monkeypatch, "charrnn eval ")


def test_run_directories_and_checkpoints_complete_where_a_checkpoint_is(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    for name, files in {"shakespeare": ["best.safetensors"], "resumable": ["latest.safetensors", "config.toml"],
                        "empty": [], "notes": ["readme.txt"]}.items():
        (runs / name).mkdir(parents=True)
        for f in files:
            (runs / name / f).write_text("")
    (runs / "model.safetensors").write_text("")
    (runs / "other.txt").write_text("")
    got = _complete(capsys, monkeypatch, "charrnn sample runs/")
    assert got == ["runs/model.safetensors", "runs/resumable", "runs/shakespeare"]
    assert _complete(capsys, monkeypatch, "charrnn info runs/sh") == ["runs/shakespeare"]
    # Where nothing fits, nothing is offered: bash then completes file names itself.
    assert _complete(capsys, monkeypatch, "charrnn info runs/no") == []
    # A run file: .toml files, and the config.toml of a run directory.
    (tmp_path / "exp.toml").write_text("")
    assert _complete(capsys, monkeypatch, "charrnn train --config runs/re") == ["runs/resumable/config.toml"]
    assert _complete(capsys, monkeypatch, "charrnn train --config ex") == ["exp.toml"]
