"""What ``charrnn train`` does before the loop: the tokenizer a run trains with, the same
data on every process, and the model size chosen from measured speed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import TrainConfig
from ..errors import CharrnnError, ConfigError, ResumeMismatchError, RunExistsError
from .app import err
from .common import TokenizerKind, explicit, flag, new_tokenizer, set_threads, show

# The regularisation options of the language model (models/regularize.py, TrainConfig.ar/tar).
LM_ONLY = ("weight_drop", "input_dropout", "embedding_dropout", "variational", "ar", "tar")
_MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights", "weight_drop",
                 "input_dropout", "embedding_dropout", "variational")


def default_out(out: Path | None, corpus: list[str]) -> Path:
    if out is not None:
        return out
    from ..text.io import plain_name

    stem = "stdin" if corpus[0] == "-" else plain_name(corpus[0]).stem or "corpus"  # corpus.txt.gz: "corpus"
    return Path("checkpoints") / stem


def _exists_message(out: Path) -> str:
    return f"{out} already holds a training run: pass --resume to continue it, --overwrite to replace it, or --out DIR"


def check_out_free(dist, out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before any data is read, to start a new run over an existing one."""
    from ..training import distributed

    def check() -> None:
        if not resume and not overwrite and any((out / n).exists() for n in ("best.safetensors", "latest.safetensors")):
            raise CharrnnError(_exists_message(out))

    distributed.main_first(dist, check)


def open_run_dir(dist, out: Path, overwrite: bool, resume: bool):
    """The run directory (rank 0 opens it; the others get None)."""
    from ..checkpoint import RunDirectory
    from ..training import distributed

    def open_run() -> RunDirectory:
        try:
            return RunDirectory(out, overwrite=overwrite, resume=resume)
        except RunExistsError:
            raise CharrnnError(_exists_message(out)) from None

    return distributed.main_first(dist, open_run)


def resumed_or_new(ctx, dist, out: Path, resume: bool, model_fields, defaults: TrainConfig):
    """(checkpoint to resume or None, the run's TrainConfig): on --resume the run's own
    configs, with the changes the user may make; else ``defaults`` with what was given."""
    from ..checkpoint import RunDirectory, load_checkpoint
    from ..config import check_model_matches, resume_train_config
    from ..training import distributed

    given_train = explicit(ctx, [f.name for f in dataclasses.fields(TrainConfig)])
    if not resume:
        return None, TrainConfig(**{**dataclasses.asdict(defaults), **given_train})
    # The run directory is rank 0's; the other ranks load a copy of its latest checkpoint.
    latest = distributed.main_first(dist, lambda: RunDirectory(out, resume=True).latest)
    local = distributed.share_file(dist, latest, ".safetensors")
    checkpoint = distributed.each(dist, lambda: load_checkpoint(local, resume=True))
    try:
        check_model_matches(checkpoint.model_config, explicit(ctx, model_fields))
        train_cfg = resume_train_config(checkpoint.train_config, given_train)
    except ResumeMismatchError as e:
        parts = ", ".join(f"{flag(n)} {show(v)} (the run has {show(old)})" for n, old, v in e.fields)
        raise ConfigError(f"cannot resume {out} with different settings: {parts}; only the limits, "
                          f"intervals, hardware and divergence options may change") from None
    return checkpoint, train_cfg


def tokenizer_spec(kind: TokenizerKind | None, vocab_size: int | None, tokenizer_file: Path | None, checkpoint):
    """What the data preparation gets as its tokenizer: the resumed run's, one from a file,
    None (a char tokenizer built while the data is read), or a function that trains one
    on the training text."""
    if checkpoint is not None:
        tokenizer_for_training(kind, vocab_size, tokenizer_file, "", True)  # refuses tokenizer options
        return checkpoint.tokenizer
    if tokenizer_file is not None:
        return tokenizer_for_training(kind, vocab_size, tokenizer_file, "", False)
    if (kind is None or kind.value == "char") and vocab_size is None:
        return None

    def train_one(train_text: str):
        return tokenizer_for_training(kind, vocab_size, None, train_text, False)

    return train_one


def with_display(quiet: bool, main: bool, run, tensorboard: Path | None = None):
    """``run(on_event)`` under the training progress display on stderr, and with
    ``tensorboard`` (--tensorboard DIR) the events written there too. SIGINT and SIGTERM
    during the loop stop it at the end of the step with a save (training/loop.py); a
    second one stops at once."""
    from .progress import TrainingDisplay
    from .tensorboard import events_to

    display = TrainingDisplay(err, enabled=not quiet and main)
    with display, events_to(tensorboard, display.handle) as on_event:
        return run(on_event)


def size_model(ctx, dist, data, model_cfg, train_cfg):
    """Choose the hidden size (and the batch size, unless given) when the size was not
    given, and fix the step count of a run given no limit; measure the training speed for
    the start line's prediction (sizing.py)."""
    from ..training import distributed
    from ..runtime import resolve_device, resolve_precision
    from ..training.sizing import SizeChoice, default_max_steps, measured_choice

    given = explicit(ctx, _MODEL_FIELDS)
    auto = "hidden_size" not in given and not (model_cfg.tie_weights and "embedding_dim" in given)
    if not auto and train_cfg.time_budget:
        return model_cfg, train_cfg, None  # nothing to choose, and the budget is the prediction
    if auto and model_cfg.tie_weights:
        model_cfg = dataclasses.replace(model_cfg, embedding_dim=model_cfg.hidden_size)
    batch_given = bool(explicit(ctx, ["batch_size"]))

    def measure() -> bytes:
        set_threads(train_cfg.threads)
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


def prepare_on_every_rank(dist, data, prepare):
    """Give every rank rank 0's tokenizer and the same token ids (checked by digest)."""
    import tempfile

    from ..training import distributed
    from ..errors import CorpusError
    from ..text.tokenizers import load_tokenizer, save_tokenizer

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


def tokenizer_for_training(kind: TokenizerKind | None, vocab_size: int | None, tokenizer_file: Path | None,
                            train_text: str, resume: bool):
    """The tokenizer a new run trains with (None on --resume: the run's own is used)."""
    from ..text.tokenizers import load_tokenizer

    if resume:
        given = [flag for flag, v in (("--tokenizer", kind), ("--vocab-size", vocab_size),
                                      ("--tokenizer-file", tokenizer_file)) if v is not None]
        if given:
            raise ConfigError(f"a resumed run keeps its tokenizer: drop {', '.join(given)}")
        return None
    if tokenizer_file is not None:
        if kind is not None or vocab_size is not None:
            raise ConfigError("--tokenizer-file gives the tokenizer: --tokenizer and --vocab-size do not apply with it")
        tok = load_tokenizer(tokenizer_file)
        if tok.kind == "pair":
            raise ConfigError(f"{tokenizer_file}: holds an encoder-decoder's two tokenizers (source and target), not "
                              f"one to train with")
        return tok
    return new_tokenizer(kind.value if kind is not None else "char", vocab_size, train_text)


def no_limit_given(ctx, checkpoint) -> bool:
    """A new run given none of --max-steps, --epochs and --time-budget: it trains its task's
    default length."""
    return checkpoint is None and not explicit(ctx, ("max_steps", "epochs", "time_budget"))


def task_run(ctx, dist, corpus: list[str], out: Path | None, resume: bool, overwrite: bool, task: str, model_fields,
             defaults: TrainConfig, default_epochs: float):
    """What every example-wise task (classify, seq2seq, tag, conditional) does first: the
    run directory, the checkpoint to resume (which must be a run of ``task``) or None, the
    TrainConfig (``defaults`` with what was given; ``default_epochs`` when no limit was
    given), the process's device, and a refusal to start over an existing run.
    Returns (out, checkpoint, train_cfg, dist)."""
    from ..training import distributed

    out = default_out(out, corpus)
    checkpoint, train_cfg = resumed_or_new(ctx, dist, out, resume, model_fields, defaults)
    if checkpoint is not None and checkpoint.task != task:
        raise ConfigError(f"{out} holds a {checkpoint.task} run: resume it without --task {task}")
    if no_limit_given(ctx, checkpoint):
        train_cfg = dataclasses.replace(train_cfg, epochs=default_epochs)
    if dist is not None:
        dist = distributed.use_device(dist, train_cfg.device)
    check_out_free(dist, out, resume, overwrite)
    return out, checkpoint, train_cfg, dist
