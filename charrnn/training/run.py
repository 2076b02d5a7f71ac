"""A whole training run of any registered task, as ``charrnn train`` and ``charrnn.train``
both start it: the options checked against the task, the run directory, the configs of a
new or resumed run, the task's data and model (its ``setup``), the model size chosen from
measured speed, and the loop.

    result = run_task("classify", ["sst2/train.tsv"], {"hidden_size": 128}, out=Path("runs/sst2"))

``given`` holds the options that were set (by keyword, on the command line or in a run
file), by name, as plain values; everything else takes the task's defaults. Errors are
``CharrnnError`` subclasses; nothing here prints (warnings go to ``on_note``, progress to
``on_event``). Several processes: each one calls ``run_task`` with its ``DistContext``;
rank 0 prepares data first and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, RunDirectory, load_checkpoint
from ..config import TrainConfig, check_model_matches, resume_train_config
from ..errors import CharrnnError, ConfigError, CorpusError, CorpusTooSmallError, ResumeMismatchError, RunExistsError
from ..tasks.registry import COMMON, TaskSpec, all_tasks, get_task
from . import distributed, pretrain
from .distributed import DistContext
from .events import Event, TrainResult
from .loop import Trainer

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_OTHER = ("tokenizer", "vocab_size", "tokenizer_file", "val_file", "replace_invalid", "init", "pretrain",
          "pretrain_steps")  # of no config


def flag(name: str) -> str:
    """How the command line spells option ``name`` (messages name options this way)."""
    return "--" + name.replace("_", "-")


def show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def default_out(out: Path | str | None, corpus: list[str]) -> Path:
    """The run directory: ``out``, or checkpoints/<the first corpus's name>."""
    if out is not None:
        return Path(out)
    from ..text.io import plain_name

    stem = "stdin" if corpus[0] == "-" else plain_name(corpus[0]).stem or "corpus"  # corpus.txt.gz: "corpus"
    return Path("checkpoints") / stem


def _exists_message(out: Path) -> str:
    return f"{out} already holds a training run: pass --resume to continue it, --overwrite to replace it, or --out DIR"


@dataclass
class RunSetup:
    """What a task's ``setup`` gets: the run's options and configs; it returns its Task and
    may change ``train_config`` (a length that depends on its data)."""

    spec: TaskSpec
    corpus: list[str]
    given: dict[str, Any]
    train_config: TrainConfig
    checkpoint: Checkpoint | None
    dist: DistContext | None
    on_note: Callable[[str], None]
    on_prepare: Callable[[str, int, int], None] | None = None
    sizing: dict[str, Any] | None = None  # how the model size was chosen (size_model)
    main: bool = field(init=False)

    def __post_init__(self) -> None:
        self.main = self.dist is None or self.dist.main

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None

    def option(self, name: str, default: Any = None) -> Any:
        """The value of a task option: as given, else its declared default, else ``default``."""
        if name in self.given:
            return self.given[name]
        for opt in self.spec.options:
            if opt.name == name:
                return opt.default
        return default

    def model_config(self):
        """The model config: the resumed run's, or the task's defaults with what was given."""
        return self.checkpoint.model_config if self.checkpoint is not None else self.spec.model_config(self.given)

    def no_limit_given(self) -> bool:
        """A new run given none of max_steps, epochs and time_budget."""
        return self.checkpoint is None and not any(n in self.given for n in ("max_steps", "epochs", "time_budget"))

    def one_file(self) -> str:
        if len(self.corpus) != 1 or self.corpus[0] == "-":
            raise ConfigError(f"--task {self.spec.name} reads {self.spec.reads} (validation data: --val-file)")
        return self.corpus[0]

    def tokenizer(self, per_data: bool = False):
        """What data preparation gets as its tokenizer: the resumed run's, one from a file,
        None (a char tokenizer built while the data is read), or a function that trains one
        on the training text (``text -> tokenizer``; with ``per_data``, the function takes the
        data's default kind too, which no kind given means)."""
        kind, size, file = (self.given.get(n) for n in ("tokenizer", "vocab_size", "tokenizer_file"))
        if self.checkpoint is not None:
            given = [flag(n) for n in ("tokenizer", "vocab_size", "tokenizer_file") if n in self.given]
            if given:
                raise ConfigError(f"a resumed run keeps its tokenizer: drop {', '.join(given)}")
            return self.checkpoint.tokenizer
        if file is not None:
            if kind is not None or size is not None:
                raise ConfigError("--tokenizer-file gives the tokenizer: --tokenizer and --vocab-size do not apply with it")
            from ..text.tokenizers import load_tokenizer

            tok = load_tokenizer(file)
            if tok.kind == "pair":
                raise ConfigError(f"{file}: holds an encoder-decoder's two tokenizers (source and target), not one to "
                                  f"train with")
            return tok
        if per_data and (kind is not None or size is not None):
            return lambda text, default: self.new_tokenizer(kind or default, size, text)
        if (kind is None or kind == "char") and size is None:
            return None
        return lambda text: self.new_tokenizer(kind or "char", size, text)

    def new_tokenizer(self, kind: str, vocab_size: int | None, text: str):
        from ..text.tokenizers import train_tokenizer

        if kind == "char" and vocab_size is not None:
            raise ConfigError("--vocab-size applies to --tokenizer bpe, unigram or word (a char vocabulary is the "
                              "text's characters)")
        tok = train_tokenizer(kind, text, vocab_size)
        for note in tok.warnings:
            self.on_note(note)
        return tok

    def main_first(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0 first, then on the others (None there): downloads, caches."""
        return distributed.main_first(self.dist, fn)

    def each(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on every process, one after another where that matters (a shared cache)."""
        return distributed.each(self.dist, fn)

    def same_data(self, data, prepare: Callable[[Any], Any]):
        """Rank 0's ``data`` on every rank: its tokenizer shared, the ids prepared again with
        it (``prepare(tokenizer)``) and compared by digest."""
        return prepare_on_every_rank(self.dist, data, prepare)

    def size_model(self, data, model_cfg):
        """Choose the hidden size (and the batch size, unless given) when the size was not
        given, and fix the step count of a run given no limit; measure the training speed
        for the start line's prediction (sizing.py). Returns the model config; the train
        config and ``sizing`` are updated here."""
        if self.checkpoint is not None:
            return model_cfg
        model_cfg, self.train_config, self.sizing = _size_model(self.given, self.dist, data, model_cfg,
                                                                self.train_config)
        return model_cfg


def _size_model(given, dist, data, model_cfg, train_cfg):
    from ..runtime import resolve_device, resolve_precision, set_threads
    from .sizing import SizeChoice, default_max_steps, measured_choice

    auto = "hidden_size" not in given and not (model_cfg.tie_weights and "embedding_dim" in given)
    if not auto and train_cfg.time_budget:
        return model_cfg, train_cfg, None  # nothing to choose, and the budget is the prediction
    if auto and model_cfg.tie_weights:
        model_cfg = dataclasses.replace(model_cfg, embedding_dim=model_cfg.hidden_size)

    def measure() -> bytes:
        set_threads(train_cfg.threads)
        device = dist.device if dist is not None else resolve_device(train_cfg.device)
        choice = measured_choice(dataclasses.replace(model_cfg, vocab_size=data.tokenizer.vocab_size), train_cfg,
                                 data.train, device, resolve_precision(train_cfg.precision, device), auto,
                                 processes=dist.world_size if dist else 1, batch_given="batch_size" in given)
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


def prepare_on_every_rank(dist: DistContext | None, data, prepare):
    """Give every rank rank 0's tokenizer and the same token ids (checked by digest)."""
    if dist is None or dist.world_size == 1:
        return data
    import tempfile

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


def check_options(spec: TaskSpec, given: dict[str, Any]) -> None:
    """Refuse, in one line, options that do not apply to ``spec`` (or that no task has)."""
    known = set(COMMON) | set(TRAIN_FIELDS) | set(_OTHER) | {n for t in all_tasks() for n in t.option_names}
    unknown = [n for n in given if n not in known]
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(flag(n) for n in unknown)} (the options of 'charrnn train "
                          f"--help', with underscores)")
    wrong = [n for n in given if not spec.accepts(n)]
    if wrong:
        owners = [t for t in all_tasks() if all(t.accepts(n) for n in wrong)]
        order = [n for t in owners or all_tasks() for n in (*t.model_fields, *t.shared, *(o.name for o in t.options))]
        wrong.sort(key=lambda n: order.index(n) if n in order else len(order))
        article = "an" if spec.title[0] in "aeiou" else "a"
        names = [t.name for t in owners]
        where = f"for --task {', '.join(names[:-1]) + ' or ' if len(names) > 1 else ''}{names[-1]} only " if names else ""
        raise ConfigError(f"{', '.join(flag(n) for n in wrong)}: {where}(not for {article} {spec.title}, --task "
                          f"{spec.name})")
    for opt in spec.options:
        if opt.name in given:
            given[opt.name] = opt.check(given[opt.name])


def _resumed(dist, out: Path) -> Checkpoint:
    """The latest checkpoint of the run in ``out``, with its training state. The run
    directory is rank 0's; the other ranks load a copy of it."""
    latest = distributed.main_first(dist, lambda: RunDirectory(out, resume=True).latest)
    local = distributed.share_file(dist, latest, ".safetensors")
    return distributed.each(dist, lambda: load_checkpoint(local, resume=True))


def _train_config(spec: TaskSpec, checkpoint: Checkpoint | None, out: Path, given: dict[str, Any]) -> TrainConfig:
    """The run's TrainConfig: on resume the run's own, with the changes the user may make;
    else the task's defaults with what was given."""
    given_train = {k: v for k, v in given.items() if k in TRAIN_FIELDS}
    if checkpoint is None:
        base = {**dataclasses.asdict(TrainConfig()), **spec.train_defaults}
        return TrainConfig(**{**base, **given_train})
    try:
        check_model_matches(checkpoint.model_config, {k: v for k, v in given.items() if k in spec.model_fields})
        train_cfg = resume_train_config(checkpoint.train_config, given_train)
    except ResumeMismatchError as e:
        parts = ", ".join(f"{flag(n)} {show(v)} (the run has {show(old)})" for n, old, v in e.fields)
        raise ConfigError(f"cannot resume {out} with different settings: {parts}; only the limits, "
                          f"intervals, hardware and divergence options may change") from None
    fixed = [flag(n) for n in spec.fixed_on_resume if n in given]
    if fixed:
        raise ConfigError(f"a resumed run keeps its data options: drop {', '.join(fixed)}")
    return train_cfg


def _init_source(spec: TaskSpec, given: dict[str, Any], checkpoint: Checkpoint | None) -> Checkpoint:
    """The language model of ``--init RUN``, checked; the run takes its tokenizer and its
    recurrent shape (``given`` is filled in with them)."""
    from ..config import ModelConfig

    if checkpoint is not None:
        raise ConfigError("a resumed run keeps the weights it has: drop --init")
    source = load_checkpoint(given["init"])
    m = source.model_config
    if not isinstance(m, ModelConfig):
        raise ConfigError(f"--init {given['init']}: a {source.task} run; --init takes a language model's (--task lm)")
    if spec.init_takes_tokenizer:
        mine = [flag(n) for n in ("tokenizer", "vocab_size", "tokenizer_file") if n in given]
        if mine:
            raise ConfigError(f"--init brings the language model's tokenizer: drop {', '.join(mine)}")
        given["tokenizer_file"] = Path(given["init"])
    for name in ("cell", "layers", "hidden_size", "embedding_dim"):
        if name not in spec.model_fields:
            continue
        if name in given and given[name] != getattr(m, name):
            raise ConfigError(f"--init {given['init']} is a {m.layers}x{m.hidden_size} {m.cell.upper()} with embedding "
                              f"{m.embedding_dim}: drop {flag(name)} or make it {getattr(m, name)}")
        given[name] = getattr(m, name)
    return source


def check_out_free(dist, out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before any data is read, to start a new run over an existing one (or in a
    place that cannot be a run directory)."""
    def check() -> None:
        if out.exists() and not out.is_dir():
            raise CharrnnError(f"{out}: exists and is not a directory")
        if not resume and not overwrite and any((out / n).exists() for n in ("best.safetensors", "latest.safetensors")):
            raise CharrnnError(_exists_message(out))

    distributed.main_first(dist, check)


def open_run_dir(dist, out: Path, overwrite: bool, resume: bool) -> RunDirectory | None:
    """The run directory (rank 0 opens it; the others get None)."""
    def open_run() -> RunDirectory:
        try:
            return RunDirectory(out, overwrite=overwrite, resume=resume)
        except RunExistsError:
            raise CharrnnError(_exists_message(out)) from None

    return distributed.main_first(dist, open_run)


def run_task(task: str | None, corpus: list[str], given: dict[str, Any], *, out: Path | str | None = None,
             resume: bool = False, overwrite: bool = False, on_event: Callable[[Event], None] = lambda e: None,
             on_note: Callable[[str], None] = lambda m: None, on_prepare: Callable[[str, int, int], None] | None = None,
             start_time: float | None = None, dist: DistContext | None = None) -> tuple[TrainResult, Path]:
    """Train (or, with ``resume``, continue) a run of ``task`` on ``corpus``; returns the
    loop's result and the run directory. ``task`` None: "lm" for a new run, the run's own
    task on resume."""
    t0 = start_time if start_time is not None else time.perf_counter()
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if not corpus:
        raise ConfigError("no corpus given: name a file, a registered corpus such as tinyshakespeare, or '-'")
    out = default_out(out, corpus)
    if "pretrain" in given or "pretrain_steps" in given or (resume and (out / pretrain.STAGE_DIR).is_dir()):
        spec = get_task(task or pretrain.stage_task(out) or "lm")
        return pretrain.run_with_pretraining(spec, list(corpus), dict(given), out, resume, overwrite, on_event, on_note,
                                             on_prepare, t0, dist, run_one)
    return run_one(task, corpus, given, out=out, resume=resume, overwrite=overwrite, on_event=on_event,
                   on_note=on_note, on_prepare=on_prepare, start_time=t0, dist=dist)


def run_one(task: str | None, corpus: list[str], given: dict[str, Any], *, out: Path, resume: bool = False,
            overwrite: bool = False, on_event: Callable[[Event], None] = lambda e: None,
            on_note: Callable[[str], None] = lambda m: None, on_prepare: Callable[[str, int, int], None] | None = None,
            start_time: float | None = None, dist: DistContext | None = None) -> tuple[TrainResult, Path]:
    """One run in ``out`` (``run_task`` without the two stages of --pretrain)."""
    t0 = start_time if start_time is not None else time.perf_counter()
    checkpoint = _resumed(dist, out) if resume else None
    if checkpoint is not None and task is not None and checkpoint.task != task:
        raise ConfigError(f"{out} holds a {checkpoint.task} run: resume it without --task {task}")
    spec = get_task(task or (checkpoint.task if checkpoint is not None else "lm"))
    given = dict(given)
    check_options(spec, given)
    train_cfg = _train_config(spec, checkpoint, out, given)
    if checkpoint is None and spec.default_epochs is not None and not any(
            n in given for n in ("max_steps", "epochs", "time_budget")):
        train_cfg = dataclasses.replace(train_cfg, epochs=spec.default_epochs)
    if checkpoint is None and spec.default_patience and not any(n in given for n in ("max_steps", "epochs", "patience")):
        train_cfg = dataclasses.replace(train_cfg, patience=spec.default_patience)
    if dist is not None:
        dist = distributed.use_device(dist, train_cfg.device)  # a resumed run keeps its device
    check_out_free(dist, out, resume, overwrite)  # say so before the data is prepared
    init = _init_source(spec, given, checkpoint) if "init" in given else None
    if init is None and checkpoint is None and (train_cfg.layer_lr_decay != 1.0 or train_cfg.unfreeze):
        raise ConfigError("--layer-lr-decay and --unfreeze order the layers of a language model: they need --init RUN")
    setup = RunSetup(spec, list(corpus), given, train_cfg, checkpoint, dist, on_note, on_prepare)
    try:
        task_obj = spec.load("setup")(setup)
        if init is not None:
            # The Trainer copies it into the model it builds.
            task_obj.init_from = (init, getattr(task_obj, "init_names", None) or spec.init_names)
        run_dir = open_run_dir(dist, out, overwrite, resume)
        result = Trainer(task_obj, setup.train_config, run_dir, on_event, t0, checkpoint, dist, setup.sizing).run()
    except CorpusTooSmallError as e:
        raise CharrnnError(
            f"the {e.split} text has {e.tokens:,} tokens, too few for --batch-size {e.batch_size} "
            f"and --bptt {e.bptt} (needs {e.needed:,}): lower them or give a larger corpus"
        ) from None
    return result, out

