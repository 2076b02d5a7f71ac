"""What several commands share: option types declared once, JSON and text output, warnings."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from enum import Enum, EnumMeta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..config import CELLS, DEFAULT_VOCAB_SIZE, ModelConfig, SampleConfig, TrainConfig
from ..errors import CharrnnError, ConfigError
from .app import err
from .completion import complete_checkpoint

try:  # typer >= 0.22 carries its own copy of click
    from typer._click.core import ParameterSource
except ImportError:  # older typer runs on click itself
    from click.core import ParameterSource  # type: ignore[no-redef]

_M, _T, _S = ModelConfig(), TrainConfig(), SampleConfig()


class _RegisteredCells(EnumMeta):
    """Iterates over every name in config.CELLS: typer reads an option's choices by
    iterating its enum when the command is built, so ``--cell`` takes a cell registered
    with models.cells.register_cell before the command runs, besides the built-in three."""

    def __iter__(cls):
        return iter([cls(name) for name in CELLS])

    def __len__(cls) -> int:
        return len(CELLS)


class Cell(str, Enum, metaclass=_RegisteredCells):
    lstm = "lstm"
    gru = "gru"
    rnn = "rnn"

    @classmethod
    def _missing_(cls, value):
        """A registered cell's member, made on first use (how an Enum admits a value it
        was not created with); None, so a ValueError, for a name that is no cell."""
        if value not in CELLS:
            return None
        member = str.__new__(cls, value)
        member._name_ = member._value_ = value
        return cls._value2member_map_.setdefault(value, member)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


# Options shared by several commands, declared once.
CheckpointArg = Annotated[
    Path, typer.Argument(help="Run directory written by 'charrnn train --out' (its best checkpoint), or a checkpoint file.", show_default=False,
                         autocompletion=complete_checkpoint)
]
LatestOpt = Annotated[bool, typer.Option("--latest", help="Use the run directory's latest checkpoint instead of its best.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto uses CUDA when torch sees a GPU.", rich_help_panel="Hardware")]
EngineOpt = Annotated[Engine, typer.Option("--engine", help="What computes a language model's step on the CPU: charrnn's own (torch), ONNX Runtime (onnx: needs the onnx extra; the first run traces and caches the model's graph), or auto: onnx where it was measured faster on this machine and the graph is cached, else torch.", rich_help_panel="Hardware")]
ThreadsOpt = Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice, or OMP_NUM_THREADS).", rich_help_panel="Hardware")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.", rich_help_panel="Output")]
EnsembleOpt = Annotated[Optional[list[Path]], typer.Option(help="Decode with this encoder-decoder run too (repeat for more; the same data and tokenizers, e.g. other --seed): the models' probabilities are averaged.", rich_help_panel="Sequence to sequence")]
RescoreOpt = Annotated[Optional[list[Path]], typer.Option(help="Re-rank the beam with this encoder-decoder run too (repeat for an ensemble of them), typically one trained with --reverse-target: each candidate's log-probability under the run is mixed with its log-probability under these (see --rescore-weight and --rescore-candidates).", rich_help_panel="Sequence to sequence")]
class RescoreCandidates(str, Enum):
    own = "own"
    both = "both"


RescoreCandidatesOpt = Annotated[RescoreCandidates, typer.Option(help="With --rescore: the candidates re-ranked: 'both' beams (this run's and the rescoring runs' own, each hypothesis scored by both) or this run's 'own'.", rich_help_panel="Sequence to sequence")]
RescoreWeightOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="With --rescore: the rescoring runs' share of the mixed log-probability.", rich_help_panel="Sequence to sequence")]
ReplaceOpt = Annotated[
    bool, typer.Option("--replace-invalid", help="Replace invalid UTF-8 bytes with U+FFFD instead of stopping with an error.", rich_help_panel="Input")
]


class TokenizerKind(str, Enum):
    char = "char"
    bpe = "bpe"
    unigram = "unigram"
    word = "word"


def _vocab_help() -> str:
    d = DEFAULT_VOCAB_SIZE
    return (f"Vocabulary size of a bpe, unigram or word tokenizer, its 260 byte and special tokens included "
            f"(default: bpe {d['bpe']}, unigram {d['unigram']}, word {d['word']}; fewer, with a warning, when the "
            f"text has fewer distinct pieces).")


VocabSizeOpt = Annotated[Optional[int], typer.Option(min=1, help=_vocab_help(), show_default=False, rich_help_panel="Tokenizer")]
TokenizerFileOpt = Annotated[
    Path, typer.Option("--tokenizer", help="Tokenizer file (from 'charrnn tokenizer train'), checkpoint file, or run directory.", show_default=False)
]


def warn(message: str) -> None:
    err.print(f"charrnn: warning: {message}", style="yellow", markup=False, highlight=False)


@contextlib.contextmanager
def warnings_as_lines(*categories: type[Warning]):
    """Warnings of ``categories`` raised by the core inside the block are printed as they
    happen, each as one warning line on stderr (not Python's two-line form)."""
    previous = warnings.showwarning

    def show(message, category, *args, **kwargs):
        if issubclass(category, categories):
            warn(str(message))
        else:
            previous(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def quiet_stdout() -> None:
    """The reader of stdout went away (e.g. `| head`): that ends the product, not an error.
    Point stdout at /dev/null so the flush at exit does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (e.g. the bpc of a text with nothing
    scorable) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """One JSON object on stdout. A training summary (the object with ``run_dir``, whichever
    task made it) also says which charrnn wrote its run, as ``info --json`` does."""
    if isinstance(obj, dict) and "run_dir" in obj and "charrnn_version" not in obj:
        from .. import __version__

        obj = {**obj, "charrnn_version": __version__}
    try:
        sys.stdout.write(json.dumps(finite(obj), ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def explicit(ctx: typer.Context, names) -> dict[str, Any]:
    """The options among ``names`` that the user set: on the command line, in the
    environment, or in a run file (``train --config``, which fills click's default map)."""
    given = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT_MAP):
            value = ctx.params[name]
            given[name] = value.value if isinstance(value, Enum) else value
    return given


def show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def new_tokenizer(kind: str, vocab_size: int | None, text: str):
    from ..text.tokenizers import train_tokenizer

    if kind == "char" and vocab_size is not None:
        raise ConfigError("--vocab-size applies to --tokenizer bpe, unigram or word (a char vocabulary is the text's characters)")
    tok = train_tokenizer(kind, text, vocab_size)
    for note in tok.warnings:
        warn(note)
    return tok


def write_product(text: str) -> None:
    """Write ``text`` to stdout as UTF-8 bytes, exactly (no newline translation)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        quiet_stdout()


def require_language_model(model: Any, checkpoint: Path, instead: str) -> None:
    """Refuse a classifier or an encoder-decoder where a language model is needed, saying
    what to use instead."""
    from ..api import LanguageModel, Seq2SeqModel, SequenceTagger

    if isinstance(model, SequenceTagger):
        raise CharrnnError(f"{checkpoint}: a tagger, not a language model: 'charrnn predict' tags sentences with it "
                           f"and 'charrnn eval accuracy' measures it")
    if isinstance(model, Seq2SeqModel):
        raise CharrnnError(f"{checkpoint}: an encoder-decoder (seq2seq), not a language model: 'charrnn predict' "
                           f"decodes sources with it")
    if not isinstance(model, LanguageModel):
        raise CharrnnError(f"{checkpoint}: a classifier, not a language model: {instead}")


def rescoring(rescore, weight: float, candidates: RescoreCandidates, beam: int, device: str, latest: bool) -> dict:
    """The keyword arguments of Seq2SeqModel.predict/evaluate for the --rescore options
    (none without --rescore): the rescoring runs loaded as one model, its weight and the
    candidates."""
    from ..api import load_ensemble

    if not rescore:
        return {}
    if not beam:
        raise ConfigError("--rescore re-ranks the hypotheses of a beam search: give --beam K too")
    return dict(rescore=load_ensemble(rescore, device=device, latest=latest), rescore_weight=weight,
                rescore_candidates=candidates.value)


def load_model(checkpoint, ensemble, device: str, latest: bool):
    """The model of ``checkpoint``, or with --ensemble runs an encoder-decoder ensemble."""
    from ..api import load, load_ensemble

    if ensemble:
        return load_ensemble([checkpoint, *ensemble], device=device, latest=latest)
    return load(checkpoint, device=device, latest=latest)


def set_threads(threads: int | None) -> None:
    """Give torch this many CPU threads (--threads); None leaves its choice."""
    if threads:
        from ..runtime import set_threads as set_torch_threads

        set_torch_threads(threads)
