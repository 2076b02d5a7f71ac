"""The ``charrnn`` command line: Typer commands over the core modules.

Each command parses its options into the core's config dataclasses, calls the core, and
renders progress with rich on stderr. stdout carries only the product (generated text,
tables, or JSON with ``--json``). Every ``CharrnnError`` and usage error ends as one line
on stderr and a non-zero exit code:

    0 success   1 bad input, file or checkpoint, or training diverged   2 bad option or usage
    130 interrupted (Ctrl-C)   143 terminated (SIGTERM)
"""

from __future__ import annotations

import os
import sys
import time

import typer

from ..errors import CharrnnError, ConfigError, InvalidUtf8Error, TrainingDiverged, TrainingInterrupted
from . import app as state
# Each module registers its command; the order here is the order of the help.
from . import train, sample, predict, info, evaluate, tokenizer  # noqa: F401,I001
from . import serve  # noqa: F401,I001
from . import export  # noqa: F401,I001
from . import average  # noqa: F401,I001
from . import plot  # noqa: F401,I001
from . import inspect_cmd  # noqa: F401,I001
from . import diagnose, diagnose_memory  # noqa: F401,I001
from .app import app, err
from .common import quiet_stdout

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]

__all__ = ["app", "main"]

# The page of the documentation each command's help points to (docs/, built with MkDocs).
DOCS = {
    "train": "tutorials/language-model.md (and a tutorial per task)", "sample": "tutorials/language-model.md",
    "predict": "tutorials/classification.md, tagging.md, seq2seq.md", "info": "concepts/checkpoints.md",
    "eval": "tutorials/language-model.md, classification.md", "tokenizer": "concepts/tokenizers.md",
    "serve": "tutorials/serving-and-export.md", "export": "tutorials/serving-and-export.md",
    "plot": "tutorials/seeing-inside.md", "inspect": "tutorials/seeing-inside.md",
    "diagnose": "tutorials/seeing-inside.md", "average": "concepts/checkpoints.md",
}


def _paragraphs(text: str) -> str:
    """Help written as wrapped paragraphs (docstrings), each joined into one line: rich
    wraps it to the terminal, instead of breaking lines where the source did."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


def _tidy(typer_app, top: str | None = None) -> None:
    """Every command's help as paragraphs, with a pointer to its page of the docs."""
    import inspect

    for info in typer_app.registered_commands:
        name = top or info.name or info.callback.__name__
        text = info.help or inspect.getdoc(info.callback) or ""
        info.help = _paragraphs(text)
        if name in DOCS and not info.epilog:
            info.epilog = f"Docs: docs/{DOCS[name]}; every option: docs/reference/cli.md."
    for group in typer_app.registered_groups:
        _tidy(group.typer_instance, top or group.name)


def _no_flag_metavars(command) -> None:
    """A flag takes no value: no "<bool>" beside it in the help."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _no_flag_metavars(sub)


_tidy(app)


def _other_rank() -> bool:
    """A process of a distributed run other than rank 0 (started by torchrun)."""
    return "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") not in ("", "0")


def _fail(message: str, code: int, prefix: str = "error: ", every_rank: bool = False) -> None:
    """One line on stderr and exit. In a distributed run, errors every process meets alike
    (options, interruptions, divergence) are reported by rank 0 alone."""
    if _other_rank() and not every_rank:
        sys.exit(code)
    message = " ".join(str(message).split())
    err.print(f"charrnn: {prefix}{message}", style="bold red", markup=False, highlight=False)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every user mistake into one line on stderr and an exit code."""
    state.command_start = state.import_time if state.import_time is not None else time.perf_counter()
    if sys.stdout is None:  # started with stdout closed (`>&-`): like a closed pipe, the product goes nowhere
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    state.import_time = None
    state.argv = list(argv if argv is not None else sys.argv[1:])
    command = typer.main.get_command(app)
    _no_flag_metavars(command)
    try:
        code = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="charrnn", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as e:
        text = e.ctx.get_help()  # rich help prints itself and returns ""; plain click returns it
        if text:
            sys.stdout.write(text + "\n")
        sys.exit(2)
    except click_exc.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        _fail(e.format_message() + hint, e.exit_code)
    except click_exc.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except TrainingInterrupted as e:
        _fail(str(e) + ("; continue with --resume" if e.saved and not e.forced else ""), e.exit_code, prefix="")
    except InvalidUtf8Error as e:
        _fail(f"{e} (--replace-invalid does that)", e.exit_code)
    except (ConfigError, TrainingDiverged) as e:
        _fail(str(e), e.exit_code)
    except CharrnnError as e:
        # Failures of one process (lost contact, a file missing on its machine) are its own to report.
        from ..training.distributed import PeerFailed

        if isinstance(e, PeerFailed):
            sys.exit(e.exit_code)
        rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
        _fail(str(e), e.exit_code, prefix="error: " if rank == "0" else f"error: process {rank}: ", every_rank=True)
    except BrokenPipeError:
        quiet_stdout()
    if isinstance(code, int) and code:
        sys.exit(code)
