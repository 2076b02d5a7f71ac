"""The Typer applications and the state every command shares (the error console, the
command's start time, its arguments). Commands register themselves on these apps from
their own modules (one file per command)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

from .. import __version__

# When the process started this module: the first command's time budget counts its
# imports too. main() moves it into ``command_start`` for the command it runs.
import_time: float | None = time.perf_counter()
command_start: float | None = None
argv: list[str] = []  # the arguments of this command (--nproc passes them on)

app = typer.Typer(
    name="charrnn",
    help="Train recurrent networks (LSTM, GRU, RNN) on your own sequences: language models to sample from, classifiers, taggers and encoder-decoders to predict with, generators conditioned on a label; measure, serve and export them.",
    epilog="Docs: docs/index.md (a tutorial per shape of problem; docs/reference/cli.md lists every option).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print charrnn's version and exit.")] = False,
) -> None:
    pass

eval_app = typer.Typer(help="Measure a trained model: perplexity of a text, accuracy on labelled examples.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

err = Console(stderr=True, soft_wrap=True)

tokenizer_app = typer.Typer(
    help="Train a tokenizer, or turn text into token ids and back (like spm_train, spm_encode, spm_decode).",
    no_args_is_help=True,
)
app.add_typer(tokenizer_app, name="tokenizer")
