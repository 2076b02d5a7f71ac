"""The ``charrnn`` command line: Typer commands over the core modules.

Each command parses its options into the core's config dataclasses, calls the core, and
renders progress with rich on stderr. stdout carries only the product (generated text,
tables, or JSON with ``--json``). Every ``CharrnnError`` and usage error ends as one line
on stderr and a non-zero exit code:

    0 success   1 bad input, file or checkpoint, or training diverged   2 bad option or usage
    130 interrupted (Ctrl-C)   143 terminated (SIGTERM)
"""

from __future__ import annotations

import time

# When the process started this module: the first command's time budget counts its
# imports too. main() moves it into _command_start for the command it runs.
_import_time: float | None = time.perf_counter()
_command_start: float | None = None

import contextlib
import dataclasses
import json
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .config import DEFAULT_EPOCHS, DEFAULT_LENGTH, DEFAULT_SECONDS, DEFAULT_VOCAB_SIZE, ModelConfig, SampleConfig, TrainConfig
from .errors import (
    CharrnnError,
    ConfigError,
    CorpusTooSmallError,
    InvalidUtf8Error,
    ResumeMismatchError,
    RunExistsError,
    TrainingDiverged,
    TrainingInterrupted,
)

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_exc
    from typer._click.core import ParameterSource
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]
    from click.core import ParameterSource  # type: ignore[no-redef]

app = typer.Typer(
    name="charrnn",
    help="Train recurrent (LSTM, GRU, RNN) language models on your own text, sample from them, measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
eval_app = typer.Typer(help="Measure a trained model on a text.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

err = Console(stderr=True, soft_wrap=True)

_M, _T, _S = ModelConfig(), TrainConfig(), SampleConfig()


class Cell(str, Enum):
    lstm = "lstm"
    gru = "gru"
    rnn = "rnn"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


# Options shared by several commands, declared once.
CheckpointArg = Annotated[
    Path, typer.Argument(help="Run directory written by 'charrnn train --out' (its best checkpoint), or a checkpoint file.", show_default=False)
]
LatestOpt = Annotated[bool, typer.Option("--latest", help="Use the run directory's latest checkpoint instead of its best.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto uses CUDA when torch sees a GPU.", rich_help_panel="Hardware")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.", rich_help_panel="Output")]
ReplaceOpt = Annotated[
    bool, typer.Option("--replace-invalid", help="Replace invalid UTF-8 bytes with U+FFFD instead of stopping with an error.", rich_help_panel="Input")
]


def _warn(message: str) -> None:
    err.print(f"charrnn: warning: {message}", style="yellow", markup=False, highlight=False)


def _quiet_stdout() -> None:
    """The reader of stdout went away (e.g. `| head`): that ends the product, not an error.
    Point stdout at /dev/null so the flush at exit does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (e.g. the bpc of a text with nothing
    scorable) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _print_json(obj: Any) -> None:
    try:
        sys.stdout.write(json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()


# --------------------------------------------------------------------------- train

_FLAG_OF = {"batch_size": "--batch-size", "bptt": "--bptt"}
_MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _explicit(ctx: typer.Context, names) -> dict[str, Any]:
    """The options among ``names`` that the user set (on the command line or environment)."""
    given = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            value = ctx.params[name]
            given[name] = value.value if isinstance(value, Enum) else value
    return given


@app.command(no_args_is_help=True)
def train(
    ctx: typer.Context,
    corpus: Annotated[list[str], typer.Argument(help="Text files (UTF-8), '-' for stdin, or a registered corpus name such as tinyshakespeare.", show_default=False)],
    cell: Annotated[Cell, typer.Option(help="Recurrent cell.", rich_help_panel="Model")] = Cell(_M.cell),
    layers: Annotated[int, typer.Option(min=1, max=64, help="Stacked recurrent layers.", rich_help_panel="Model")] = _M.layers,
    hidden_size: Annotated[int, typer.Option(min=1, help="Units per recurrent layer [default: chosen from this machine's measured training speed, the limits and the corpus size (and the batch size with it, unless given); the start line says what and why].", show_default=False, rich_help_panel="Model")] = _M.hidden_size,
    embedding_dim: Annotated[int, typer.Option(min=1, help="Size of the token embedding.", rich_help_panel="Model")] = _M.embedding_dim,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Dropout between recurrent layers and before the output layer.", rich_help_panel="Model")] = _M.dropout,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share the embedding and output matrices (needs embedding-dim == hidden-size).", rich_help_panel="Model")] = _M.tie_weights,
    tokenizer: Annotated[Optional[TokenizerKind], typer.Option(help="char (the default): one token per character; bpe, unigram: SentencePiece subwords; word: SentencePiece words. Trained on the training split.", show_default=False, rich_help_panel="Tokenizer")] = None,
    vocab_size: VocabSizeOpt = None,
    tokenizer_file: Annotated[Optional[Path], typer.Option(help="Use this tokenizer instead of training one: a file from 'charrnn tokenizer train', a checkpoint or a run directory.", rich_help_panel="Tokenizer")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help=f"Parallel streams per step (B) [default: {_T.batch_size}, or 16 or 8 when the size is chosen and a smaller batch buys the steps a short run needs].", show_default=False, rich_help_panel="Optimisation")] = _T.batch_size,
    bptt: Annotated[int, typer.Option(min=1, help="Steps per truncated-BPTT window (T).", rich_help_panel="Optimisation")] = _T.bptt,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (AdamW).", rich_help_panel="Optimisation")] = _T.lr,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Linear warmup steps before the cosine decay.", rich_help_panel="Optimisation")] = _T.warmup_steps,
    min_lr_ratio: Annotated[float, typer.Option(min=0.0, max=1.0, help="The decay ends at lr times this.", rich_help_panel="Optimisation")] = _T.min_lr_ratio,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW weight decay on weight matrices.", rich_help_panel="Optimisation")] = _T.weight_decay,
    grad_clip: Annotated[float, typer.Option(min=0.0, help="Clip the global gradient norm to this.", rich_help_panel="Optimisation")] = _T.grad_clip,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and dropout.", rich_help_panel="Optimisation")] = _T.seed,
    rollback_after: Annotated[int, typer.Option(min=1, help="Steps with a non-finite loss or gradient are skipped; after this many in a row, go back to the last checkpoint and lower the learning rate.", rich_help_panel="Divergence")] = _T.rollback_after,
    max_rollbacks: Annotated[int, typer.Option(min=0, help="Stop with an error after this many rollbacks.", rich_help_panel="Divergence")] = _T.max_rollbacks,
    rollback_lr_factor: Annotated[float, typer.Option(min=0.0, max=1.0, help="Multiply the learning rate by this at each rollback.", rich_help_panel="Divergence")] = _T.rollback_lr_factor,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many steps.", rich_help_panel="Stopping")] = _T.max_steps,
    epochs: Annotated[Optional[float], typer.Option(min=0.0, help=f"Stop after this many passes over the training text (with no limit given: {DEFAULT_EPOCHS:g}, or the steps that fit in about {DEFAULT_SECONDS / 60:g} min on this machine if fewer).", rich_help_panel="Stopping")] = _T.epochs,
    time_budget: Annotated[Optional[float], typer.Option(min=0.0, help="Stop within this many seconds, final evaluation and save included; the learning rate decays over it.", rich_help_panel="Stopping")] = _T.time_budget,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Last fraction of the characters used for validation.", rich_help_panel="Input")] = _T.val_fraction,
    val_max_chars: Annotated[int, typer.Option(min=2, help="At most this many characters of validation text (keeps validation quick on big corpora).", rich_help_panel="Input")] = _T.val_max_chars,
    val_file: Annotated[Optional[str], typer.Option(help="Validate on this file instead of the end of the corpus.", rich_help_panel="Input")] = None,
    replace_invalid: ReplaceOpt = False,
    device: DeviceOpt = Device(_T.device),
    precision: Annotated[Precision, typer.Option(help="auto: bf16 autocast where the hardware has it (AMX/AVX512-BF16 CPUs, recent GPUs), else fp32.", rich_help_panel="Hardware")] = Precision(_T.precision),
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice).", rich_help_panel="Hardware")] = _T.threads,
    nproc: Annotated[Optional[int], typer.Option(min=1, help="Train with this many processes on this machine (torchrun underneath; DistributedDataParallel): one per GPU, or CPU processes sharing the cores. --batch-size is the global batch, split among them.", show_default=False, rich_help_panel="Hardware")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory for checkpoints and metrics [default: checkpoints/<corpus name>].", rich_help_panel="Output")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the output directory.", rich_help_panel="Output")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint, exactly where it stopped. Only the limits (--max-steps, --epochs, --time-budget, counted over the whole run), --eval-interval, --log-interval, hardware and divergence options may change.", rich_help_panel="Output")] = False,
    eval_interval: Annotated[int, typer.Option(min=1, help="Steps between validations (and checkpoint saves).", rich_help_panel="Output")] = _T.eval_interval,
    log_interval: Annotated[int, typer.Option(min=1, help="Steps between progress updates.", rich_help_panel="Output")] = _T.log_interval,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel="Output")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a language model on CORPUS and save it in a run directory.

    With several processes (--nproc N, or started by torchrun) each trains its share of the
    --batch-size streams; the first one writes the run directory and shows progress."""
    from . import distributed

    t0 = _command_start if _command_start is not None else time.perf_counter()
    if distributed.launched() and os.environ.get(_START_ENV):
        # Started by --nproc: the time budget counts from when that command started.
        with contextlib.suppress(ValueError):
            t0 = time.perf_counter() - max(time.time() - float(os.environ[_START_ENV]), 0.0)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    several = (nproc or 1) > 1 or distributed.launched()
    if several and "-" in corpus:
        raise ConfigError("training with several processes reads the corpus from files, not '-' (stdin)")
    if nproc is not None and distributed.launched():
        raise ConfigError("--nproc starts its own processes: leave it out under torchrun")
    if (nproc or 1) > 1:
        # Say what the processes would all say, before starting them.
        batch = batch_size
        if resume:
            from .checkpoint import load_checkpoint

            with contextlib.suppress(CharrnnError):  # the processes report a missing or bad run
                batch = load_checkpoint(_default_out(out, corpus), latest=True).train_config.batch_size
        distributed.check_batch(batch, nproc)
        on_gpu = device.value == "cuda" or (device.value == "auto" and _cuda_available())
        if on_gpu and nproc > _cuda_count() and (not resume or _explicit(ctx, ["device"])):
            raise ConfigError(distributed.too_many_for_gpus(nproc))
        os.environ[_START_ENV] = repr(time.time() - (time.perf_counter() - t0))
        raise typer.Exit(distributed.launch(nproc, _without_option(_argv, "--nproc")))
    dist = distributed.init() if distributed.launched() else None
    with distributed.session(dist):
        _train(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet, json_out,
               val_file, replace_invalid, ModelConfig(cell=cell.value, layers=layers, hidden_size=hidden_size,
                                                     embedding_dim=embedding_dim, dropout=dropout,
                                                     tie_weights=tie_weights))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


_START_ENV = "CHARRNN_START_TIME"  # wall-clock start of a --nproc command, for its processes' time budget


def _default_out(out: Path | None, corpus: list[str]) -> Path:
    if out is not None:
        return out
    stem = "stdin" if corpus[0] == "-" else Path(corpus[0]).stem or "corpus"
    return Path("checkpoints") / stem


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` or ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def _train(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet, json_out,
           val_file, replace_invalid, new_model_cfg) -> None:
    from . import distributed
    from .checkpoint import RunDirectory, load_checkpoint
    from .config import check_model_matches, resume_train_config
    from .corpora import resolve_corpus
    from .prepare import prepare_corpus
    from .progress import PreparationDisplay
    from .training import train as run_training

    main = dist is None or dist.main
    out = _default_out(out, corpus)
    given_train = _explicit(ctx, [f.name for f in dataclasses.fields(TrainConfig)])
    checkpoint = None
    if resume:
        # The run directory is rank 0's; the other ranks load a copy of its latest checkpoint.
        latest = distributed.main_first(dist, lambda: RunDirectory(out, resume=True).latest)
        local = distributed.share_file(dist, latest, ".safetensors")
        checkpoint = distributed.each(dist, lambda: load_checkpoint(local, resume=True))
        try:
            check_model_matches(checkpoint.model_config, _explicit(ctx, _MODEL_FIELDS))
            train_cfg = resume_train_config(checkpoint.train_config, given_train)
        except ResumeMismatchError as e:
            parts = ", ".join(f"{_flag(n)} {_show(v)} (the run has {_show(old)})" for n, old, v in e.fields)
            raise ConfigError(f"cannot resume {out} with different settings: {parts}; only the limits, "
                              f"intervals, hardware and divergence options may change") from None
        model_cfg = checkpoint.model_config
    else:
        model_cfg = new_model_cfg
        train_cfg = TrainConfig(**{**dataclasses.asdict(_T), **given_train})
    if dist is not None:
        dist = distributed.use_device(dist, train_cfg.device)  # a resumed run keeps its device
    val_fraction, val_max_chars = train_cfg.val_fraction, train_cfg.val_max_chars
    exists_message = (f"{out} already holds a training run: pass --resume to continue it, --overwrite to replace "
                      f"it, or --out DIR")
    def check_out() -> None:
        if not resume and not overwrite and any((out / n).exists() for n in ("best.safetensors", "latest.safetensors")):
            raise CharrnnError(exists_message)  # say so before the corpus is prepared

    distributed.main_first(dist, check_out)
    distributed.main_first(dist, lambda: [resolve_corpus(c) for c in corpus])  # downloads once, on rank 0
    sources = distributed.each(dist, lambda: [resolve_corpus(c) for c in corpus])
    if resume:
        _tokenizer_for_training(tokenizer, vocab_size, tokenizer_file, "", resume)  # refuses tokenizer options
        tok_arg = checkpoint.tokenizer
    elif tokenizer_file is not None:
        tok_arg = _tokenizer_for_training(tokenizer, vocab_size, tokenizer_file, "", resume)
    elif (tokenizer is None or tokenizer.value == "char") and vocab_size is None:
        tok_arg = None  # char vocabulary, collected while the corpus streams by
    else:
        def tok_arg(train_text: str):
            return _tokenizer_for_training(tokenizer, vocab_size, None, train_text, False)

    def prepare(tok, on_progress=None):
        return prepare_corpus(sources, val_fraction=val_fraction, val_max_chars=val_max_chars,
                              replace_errors=replace_invalid, tokenizer=tok,
                              val_source=resolve_corpus(val_file) if val_file is not None else None,
                              on_progress=on_progress)

    # Rank 0 prepares the corpus (and trains the tokenizer); the others then encode with
    # its tokenizer, from the id cache when they share its machine.
    with PreparationDisplay(err, enabled=not quiet and main) as prep:
        data = distributed.main_first(dist, lambda: prepare(tok_arg, prep.update))
    if dist is not None and dist.world_size > 1:
        data = _prepare_on_every_rank(dist, data, prepare)

    def open_run() -> RunDirectory:
        try:
            return RunDirectory(out, overwrite=overwrite, resume=resume)
        except RunExistsError:
            raise CharrnnError(exists_message) from None

    sizing = None
    if not resume:
        model_cfg, train_cfg, sizing = _size_model(ctx, dist, data, model_cfg, train_cfg)
    run_dir = distributed.main_first(dist, open_run)

    from .progress import TrainingDisplay

    display = TrainingDisplay(err, enabled=not quiet and main)
    try:
        # SIGINT and SIGTERM during the loop stop it at the end of the step with a save
        # (see training.py); a second one stops at once.
        with display:
            result = run_training(None, None, model_cfg, train_cfg, run_dir, on_event=display.handle,
                                  start_time=t0, resume=checkpoint, corpus=data, dist=dist, sizing=sizing)
    except CorpusTooSmallError as e:
        raise CharrnnError(
            f"the {e.split} text has {e.tokens:,} tokens, too few for {_FLAG_OF['batch_size']} {e.batch_size} "
            f"and {_FLAG_OF['bptt']} {e.bptt} (needs {e.needed:,}): lower them or give a larger corpus"
        ) from None
    if json_out and main:
        _print_json(result.summary)


def _size_model(ctx, dist, data, model_cfg, train_cfg):
    """Choose the hidden size (and the batch size, unless given) when the size was not
    given, and fix the step count of a run given no limit; measure the training speed for
    the start line's prediction (sizing.py)."""
    from . import distributed
    from .runtime import resolve_device, resolve_precision
    from .sizing import SizeChoice, default_max_steps, measured_choice

    given = _explicit(ctx, _MODEL_FIELDS)
    auto = "hidden_size" not in given and not (model_cfg.tie_weights and "embedding_dim" in given)
    if not auto and train_cfg.time_budget:
        return model_cfg, train_cfg, None  # nothing to choose, and the budget is the prediction
    if auto and model_cfg.tie_weights:
        model_cfg = dataclasses.replace(model_cfg, embedding_dim=model_cfg.hidden_size)
    batch_given = bool(_explicit(ctx, ["batch_size"]))

    def measure() -> bytes:
        import torch

        if train_cfg.threads:
            torch.set_num_threads(train_cfg.threads)
        device = dist.device if dist is not None else resolve_device(train_cfg.device)
        choice = measured_choice(dataclasses.replace(model_cfg, vocab_size=data.tokenizer.vocab_size), train_cfg,
                                 data.train, device, resolve_precision(train_cfg.precision, device), auto,
                                 processes=dist.world_size if dist else 1,
                                 batch_given=batch_given)
        return json.dumps(choice.as_dict()).encode()

    # Rank 0 measures; every rank trains what it chose.
    raw = distributed.main_first(dist, measure)
    if dist is not None:
        raw = distributed.broadcast_bytes(dist, raw)
    choice = SizeChoice(**json.loads(raw))
    if auto:
        model_cfg = dataclasses.replace(model_cfg, hidden_size=choice.hidden_size,
                                        embedding_dim=choice.hidden_size if model_cfg.tie_weights
                                        else model_cfg.embedding_dim)
        train_cfg = dataclasses.replace(train_cfg, batch_size=choice.batch_size)
    return model_cfg, default_max_steps(train_cfg, choice, data.train.numel()), choice.as_dict()


def _prepare_on_every_rank(dist, data, prepare):
    """Give every rank rank 0's tokenizer and the same token ids (checked by digest)."""
    import tempfile

    from . import distributed
    from .errors import CorpusError
    from .tokenizers import load_tokenizer, save_tokenizer

    def write_tokenizer() -> Path:
        path = Path(tempfile.mkdtemp(prefix="charrnn-tok-")) / "tokenizer.safetensors"
        save_tokenizer(path, data.tokenizer)
        return path

    local = distributed.share_file(dist, distributed.main_first(dist, write_tokenizer), ".safetensors")
    if not dist.main:
        data = distributed.each(dist, lambda: prepare(load_tokenizer(local)))
    else:
        distributed.each(dist, lambda: None)
        local.unlink()
        local.parent.rmdir()
    other = distributed.same_everywhere(dist, data.fingerprint)
    if other:
        raise CorpusError(f"process(es) {', '.join(map(str, other))} read other text than process 0: every process "
                          f"of the run needs the same corpus files")
    return data


# --------------------------------------------------------------------------- sample

def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_prime(prime: str | None, prime_file: str | None, replace_invalid: bool) -> str:
    from .data import read_text

    if prime is not None and prime_file is not None:
        raise ConfigError("give the prime text with --prime or --prime-file, not both")
    if prime is not None:
        return prime
    if prime_file is not None:
        return read_text(prime_file, replace_errors=replace_invalid)
    if sys.stdin is not None and not sys.stdin.isatty():  # stdin may be closed (None)
        return read_text("-", replace_errors=replace_invalid)
    return ""


@app.command(no_args_is_help=True)
def sample(
    checkpoint: CheckpointArg,
    prime: Annotated[Optional[str], typer.Option("--prime", "-p", help="Text the model continues (else --prime-file, else stdin when it is not a terminal).", rich_help_panel="Prime")] = None,
    prime_file: Annotated[Optional[str], typer.Option("--prime-file", help="Read the prime text from this file ('-' for stdin).", rich_help_panel="Prime")] = None,
    echo_prime: Annotated[bool, typer.Option("--echo-prime/--no-echo-prime", help="Print the prime before the generated text.", rich_help_panel="Prime")] = True,
    length: Annotated[Optional[int], typer.Option("--length", "-n", min=0, help=f"Tokens to generate: characters for a char model, subwords or bytes for the others (default: {DEFAULT_LENGTH}; none with --max-chars alone).", show_default=False, rich_help_panel="Length and stopping")] = _S.length,
    max_chars: Annotated[Optional[int], typer.Option(min=0, help="End the generated text at this many characters (with -n too: whichever comes first).", rich_help_panel="Length and stopping")] = _S.max_chars,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="End the output before the first occurrence of this string (repeatable).", rich_help_panel="Length and stopping")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop generating after this many seconds.", rich_help_panel="Length and stopping")] = _S.max_time,
    temperature: Annotated[Optional[float], typer.Option("--temperature", "-t", help=f"Softmax temperature (> 0): lower is more conservative. [default: {_S.temperature}]", show_default=False, rich_help_panel="Sampling")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely next token.", rich_help_panel="Sampling")] = _S.greedy,
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Sample only among the k most likely tokens.", rich_help_panel="Sampling")] = _S.top_k,
    top_p: Annotated[Optional[float], typer.Option(help="Sample from the smallest set of tokens whose probability reaches p, in (0, 1].", rich_help_panel="Sampling")] = _S.top_p,
    min_p: Annotated[Optional[float], typer.Option(help="Drop tokens less likely than min-p times the most likely one, in [0, 1].", rich_help_panel="Sampling")] = _S.min_p,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed gives the same text (sample i of a batch uses seed + i).", rich_help_panel="Sampling")] = _S.seed,
    num_samples: Annotated[int, typer.Option("--num-samples", "-N", help="Samples to generate, as one batch.", rich_help_panel="Sampling")] = _S.num_samples,
    separator: Annotated[str, typer.Option(help="Printed between samples or hypotheses.", rich_help_panel="Output")] = "\n\n",
    repetition_penalty: Annotated[float, typer.Option(help="> 1 makes tokens already in the prime or output less likely (1 is off).", rich_help_panel="Repetition")] = _S.repetition_penalty,
    no_repeat_ngram: Annotated[int, typer.Option(help="Never produce the same n-gram of this many tokens twice (0 is off).", rich_help_panel="Repetition")] = _S.no_repeat_ngram,
    beam: Annotated[Optional[int], typer.Option(help="Beam search with this many beams (1 is greedy decoding).", rich_help_panel="Beam search")] = None,
    length_penalty: Annotated[float, typer.Option(help="Beam scores are divided by length to this power (0: no normalization).", rich_help_panel="Beam search")] = _S.length_penalty,
    num_return: Annotated[int, typer.Option(help="How many of the best hypotheses to print.", rich_help_panel="Beam search")] = _S.num_return,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate text from a trained model: sampling (streamed to stdout), greedy, or beam search."""
    if beam is not None:
        if beam < 1:
            raise ConfigError(f"--beam must be >= 1, not {beam}")
        given = [name for name, value in (("--temperature", temperature), ("--top-k", top_k), ("--top-p", top_p),
                                          ("--min-p", min_p), ("--greedy", greedy or None)) if value is not None]
        if given:
            raise ConfigError(f"sampling options do not apply to --beam: {', '.join(given)}")
        if num_samples != 1:
            raise ConfigError("--num-samples does not apply to --beam (use --num-return)")
    elif num_return != 1:
        raise ConfigError("--num-return applies to --beam only (use --num-samples)")
    config = SampleConfig(
        length=length, max_chars=max_chars, temperature=_S.temperature if temperature is None else temperature, greedy=greedy,
        top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty, no_repeat_ngram=no_repeat_ngram,
        stop=tuple(stop or ()), max_time=max_time, seed=seed, num_samples=num_samples, beam=beam or 0,
        length_penalty=length_penalty, num_return=num_return,
    )
    from .api import load

    lm = load(checkpoint, device=device.value, latest=latest)
    prime_text = _read_prime(prime, prime_file, replace_invalid)
    unknown = lm.count_unknown(prime_text)
    if unknown:
        _warn(f"the prime has {unknown} character(s) the model never saw in training; it reads them as unknown")
    head = prime_text if echo_prime else ""
    out = sys.stdout
    t = time.perf_counter()
    try:
        if json_out or config.beam or config.num_samples > 1:
            results = lm.sample(prime_text, config)
            secs = time.perf_counter() - t
            if json_out:
                tokens = sum(len(g.tokens) for g in results)
                _print_json({"prime": prime_text, "text": results[0].text, "samples": [g.as_dict() for g in results],
                             "tokens": tokens, "seconds": secs, "tokens_per_sec": tokens / secs if secs > 0 else None})
                return
            out.write(separator.join(head + g.text for g in results) + "\n")
            out.flush()
            return
        # One sample: stream it as it is generated.
        out.write(head)
        out.flush()
        for piece in lm.stream(prime_text, config):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()


# --------------------------------------------------------------------------- eval

@eval_app.command(no_args_is_help=True)
def perplexity(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Text to score (UTF-8), '-' for stdin, or a registered corpus name.", show_default=False)],
    streams: Annotated[int, typer.Option(min=1, help="Score as this many parallel streams, each warmed up on the 256 tokens before its part: about 3x faster than 1 stream and within 1e-6 bpc of it on tinyshakespeare; 1 is exact. Texts shorter than 512 tokens per stream use 1.")] = 16,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    precision: Annotated[Precision, typer.Option(help="fp32 is exact; bf16 (or auto) is faster where the hardware has it.", rich_help_panel="Hardware")] = Precision.fp32,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Perplexity per token and bits per character of a text under a trained model.

    Every token after the first is scored; bits per character divide the total loss by the
    characters those tokens cover (all characters after the first token's, less unknown
    ones), so char and subword models compare on the same text."""
    from .api import load
    from .corpora import resolve_corpus
    from .data import read_text

    from .runtime import bf16_fallback_note

    lm = load(checkpoint, device=device.value, latest=latest)
    note = bf16_fallback_note(precision.value, lm.device)
    if note:
        _warn(note)
    text = read_text(resolve_corpus(file), replace_errors=replace_invalid)
    if len(text) < 2:
        raise CharrnnError(f"{file}: needs at least 2 characters to score (the first one is only context)")
    t = time.perf_counter()
    result = lm.evaluate(text, streams=streams, precision=precision.value)
    secs = time.perf_counter() - t
    if result.tokens == 0 and not result.unknown:
        raise CharrnnError(f"{file}: needs at least 2 tokens to score (the first one is only context); this text is "
                           f"one {lm.tokenizer.kind} token")
    if result.unknown:
        _warn(f"{result.unknown} character(s) never seen in training were read but not scored (counted as 'unknown')")
    if json_out:
        _print_json({**result.as_dict(), "tokenizer": lm.tokenizer.kind, "seconds": secs})
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("perplexity (per token)", f"{result.perplexity:.4f}")
    table.add_row("bits per character", f"{result.bpc:.4f}")
    table.add_row("loss (nats/token)", f"{result.loss:.4f}")
    table.add_row(f"tokens scored ({lm.tokenizer.kind})", f"{result.tokens:,}")
    table.add_row("characters scored", f"{result.chars:,}")
    table.add_row("unknown (not scored)", f"{result.unknown:,}")
    table.add_row("chars/s", f"{result.chars / secs:,.0f}" if secs > 0 else "-")
    Console(soft_wrap=True).print(table)


# --------------------------------------------------------------------------- info

@app.command(no_args_is_help=True)
def info(checkpoint: CheckpointArg, latest: LatestOpt = False, json_out: JsonOpt = False) -> None:
    """Model and training configuration, size and results of a checkpoint."""
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, latest=latest)
    params = ck.params
    if json_out:
        _print_json(ck.summary())
        return
    m, mt = ck.model_config, ck.metrics
    console = Console(soft_wrap=True)
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("checkpoint", str(ck.path))
    table.add_row("model", f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, dropout {m.dropout}"
                  + (", tied weights" if m.tie_weights else ""))
    table.add_row("parameters", f"{params:,}")
    table.add_row("tokenizer", f"{ck.tokenizer.kind}, {ck.tokenizer.vocab_size} tokens")
    table.add_row("step", f"{ck.step:,}" + (f" (epoch {mt['epoch']:.2f})" if "epoch" in mt else ""))
    if "time" in mt:
        table.add_row("training time", f"{mt['time']:.0f} s")
    if "val_bpc" in mt:
        table.add_row("val bpc", f"{mt['val_bpc']:.4f} (loss {mt['val_loss']:.4f} nats)")
    if "best_val_bpc" in mt:
        table.add_row("best val bpc", f"{mt['best_val_bpc']:.4f} at step {mt.get('best_step', '?')}")
    tc = ck.train_config
    table.add_row("training", f"batch {tc.batch_size}, bptt {tc.bptt}, lr {tc.lr:g}, warmup {tc.warmup_steps}, "
                  f"grad clip {tc.grad_clip:g}, weight decay {tc.weight_decay:g}, seed {tc.seed}")
    if ck.sizing and ck.sizing.get("auto"):
        table.add_row("size", ck.sizing["reason"])
    console.print(table)


# --------------------------------------------------------------------------- tokenizer

tokenizer_app = typer.Typer(
    help="Train a tokenizer, or turn text into token ids and back (like spm_train, spm_encode, spm_decode).",
    no_args_is_help=True,
)
app.add_typer(tokenizer_app, name="tokenizer")


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


def _new_tokenizer(kind: str, vocab_size: int | None, text: str):
    from .tokenizers import train_tokenizer

    if kind == "char" and vocab_size is not None:
        raise ConfigError("--vocab-size applies to --tokenizer bpe, unigram or word (a char vocabulary is the text's characters)")
    tok = train_tokenizer(kind, text, vocab_size)
    for note in tok.warnings:
        _warn(note)
    return tok


def _tokenizer_for_training(kind: TokenizerKind | None, vocab_size: int | None, tokenizer_file: Path | None,
                            train_text: str, resume: bool):
    """The tokenizer a new run trains with (None on --resume: the run's own is used)."""
    from .tokenizers import load_tokenizer

    if resume:
        given = [flag for flag, v in (("--tokenizer", kind), ("--vocab-size", vocab_size),
                                      ("--tokenizer-file", tokenizer_file)) if v is not None]
        if given:
            raise ConfigError(f"a resumed run keeps its tokenizer: drop {', '.join(given)}")
        return None
    if tokenizer_file is not None:
        if kind is not None or vocab_size is not None:
            raise ConfigError("--tokenizer-file gives the tokenizer: --tokenizer and --vocab-size do not apply with it")
        return load_tokenizer(tokenizer_file)
    return _new_tokenizer(kind.value if kind is not None else "char", vocab_size, train_text)


def _write_product(text: str) -> None:
    """Write ``text`` to stdout as UTF-8 bytes, exactly (no newline translation)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _quiet_stdout()


@tokenizer_app.command("train", no_args_is_help=True)
def tokenizer_train(
    corpus: Annotated[list[str], typer.Argument(help="Text files (UTF-8), '-' for stdin, or a registered corpus name; all of it is training text.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokenizer file to write (replaced if it exists).", show_default=False)],
    kind: Annotated[TokenizerKind, typer.Option(help="bpe, unigram (subwords), word (SentencePiece words) or char.")] = TokenizerKind.bpe,
    vocab_size: VocabSizeOpt = None,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a tokenizer on CORPUS and write it to a file for 'train --tokenizer-file' and 'tokenizer encode'."""
    from .corpora import resolve_corpus
    from .data import read_corpus
    from .tokenizers import save_tokenizer

    text = read_corpus([resolve_corpus(c) for c in corpus], replace_errors=replace_invalid)
    tok = _new_tokenizer(kind.value, vocab_size, text)
    save_tokenizer(out, tok)
    tokens = int(tok.encode(text).numel())
    summary = {"kind": tok.kind, "vocab_size": tok.vocab_size, "chars": len(text), "tokens": tokens,
               "chars_per_token": len(text) / max(tokens, 1), "file": str(out)}
    if json_out:
        _print_json(summary)
    else:
        err.print(f"charrnn: {tok.kind} tokenizer, {tok.vocab_size:,} tokens, {summary['chars_per_token']:.2f} "
                  f"characters per token on the training text; written to {out}", markup=False, highlight=False)


@tokenizer_app.command("encode", no_args_is_help=True)
def tokenizer_encode(
    file: Annotated[str, typer.Argument(help="Text to encode (UTF-8), or '-' for stdin.", show_default=False)],
    tokenizer: TokenizerFileOpt,
    pieces: Annotated[bool, typer.Option("--pieces", help="Print the pieces (e.g. '▁the', '<0xE2>') instead of ids, for reading; 'tokenizer decode' takes ids.")] = False,
    replace_invalid: ReplaceOpt = False,
) -> None:
    """Print the token ids of each line of FILE, space-separated, one output line per input line."""
    from .data import read_text
    from .tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer)
    text = read_text(file, replace_errors=replace_invalid)
    lines = tok.encode_lines(text.split("\n"))
    # The line structure carries the line breaks: the output ends with one iff the input does.
    if pieces:
        out = "\n".join(" ".join([tok.piece(i) for i in ids]) for ids in lines)
    else:
        out = "\n".join(" ".join(map(str, ids)) for ids in lines)
    _write_product(out)


@tokenizer_app.command("decode", no_args_is_help=True)
def tokenizer_decode(
    file: Annotated[str, typer.Argument(help="Token ids, space-separated, one line of text per line, or '-' for stdin.", show_default=False)],
    tokenizer: TokenizerFileOpt,
) -> None:
    """Turn the token ids of each line of FILE back into a line of text (inverse of 'tokenizer encode')."""
    from .data import read_text
    from .tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer)
    name = "<stdin>" if file == "-" else file
    lines = read_text(file).split("\n")
    vocab = tok.vocab_size
    texts = []
    for number, line in enumerate(lines, 1):
        try:
            ids = [int(x) for x in line.split()]
        except ValueError:
            bad = next(x for x in line.split() if not x.lstrip("-").isdigit())
            raise CharrnnError(f"{name}: line {number}: {bad!r} is not a token id") from None
        if ids and not 0 <= min(ids) <= max(ids) < vocab:
            bad_id = next(i for i in ids if not 0 <= i < vocab)
            raise CharrnnError(f"{name}: line {number}: token id {bad_id} is outside the vocabulary (0 to {vocab - 1})")
        texts.append(tok.decode(ids))
    _write_product("\n".join(texts))


# --------------------------------------------------------------------------- entry point

_argv: list[str] = []  # the arguments of this command (--nproc passes them on)


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
    global _import_time, _command_start
    _command_start = _import_time if _import_time is not None else time.perf_counter()
    if sys.stdout is None:  # started with stdout closed (`>&-`): like a closed pipe, the product goes nowhere
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    _import_time = None
    global _argv
    _argv = list(argv if argv is not None else sys.argv[1:])
    command = typer.main.get_command(app)
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
        from .distributed import PeerFailed

        if isinstance(e, PeerFailed):
            sys.exit(e.exit_code)
        rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
        _fail(str(e), e.exit_code, prefix="error: " if rank == "0" else f"error: process {rank}: ", every_rank=True)
    except BrokenPipeError:
        _quiet_stdout()
    if isinstance(code, int) and code:
        sys.exit(code)
