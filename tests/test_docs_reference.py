"""The command-line reference of the docs (charrnn/cli/reference.py, put into
docs/reference/cli.md when the site is built) against the Typer app itself, and the help's
pointers into the docs."""

from __future__ import annotations

import re

import typer

from conftest import ROOT

from charrnn.cli import DOCS, app
from charrnn.cli.reference import _commands, markdown, option_names


def _all():
    return [(path, c) for path, c in _commands(typer.main.get_command(app), ["charrnn"]) if not c.hidden]


def test_every_command_and_every_option_is_in_the_reference():
    text = markdown()
    commands = _all()
    assert len(commands) >= 15  # train, sample, predict, info, serve, export, plot, eval x2, tokenizer x3, ...
    for path, command in commands:
        section = text.split(f"## {' '.join(path)}\n", 1)
        assert len(section) == 2, f"no section for {' '.join(path)}"
        body = section[1].split("\n## ", 1)[0]
        for param in command.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            for name in option_names(param):
                assert f"`{name}`" in body, f"{' '.join(path)}: {name} missing from the reference"


def test_the_reference_shows_defaults_choices_and_ranges():
    train = markdown().split("## charrnn train\n", 1)[1].split("\n## ", 1)[0]
    row = {line.split("|")[1].strip(): line for line in train.splitlines() if line.startswith("| `")}
    assert "lstm | gru | rnn" in row["`--cell`"].replace("\\|", "|") and "`lstm`" in row["`--cell`"]
    assert "int (1..64)" in row["`--layers`"] and "`2`" in row["`--layers`"]
    assert "`--no-tie-weights`" in row["`--tie-weights`, `--no-tie-weights`"]
    assert "(Classification)" in row["`--pool`"]  # a task's option, under its panel


def test_every_command_points_to_a_page_that_exists():
    for name, page in DOCS.items():
        first = page.split(" ")[0].rstrip(",")
        assert (ROOT / "docs" / first).is_file(), f"{name}: docs/{first} does not exist"
    for path in re.findall(r"docs/([\w/.-]+\.md)", app.info.epilog or ""):
        assert (ROOT / "docs" / path).is_file(), path
