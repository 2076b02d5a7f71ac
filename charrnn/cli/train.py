"""``charrnn train``: train a model of any registered task on a corpus and save it in a run
directory. The options every task shares are declared here; each task's own come from its
declaration (tasks/specs/, or a plugin's ``TaskSpec.options``). Which options apply to which
task, and the whole run, are the core's (tasks/registry.py, training/run.py): this command
turns flags into that call and renders its progress."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import DEFAULT_EPOCHS, DEFAULT_SECONDS, SCHEDULES
from ..tasks.registry import all_tasks, task_options
from . import app as state
from . import runfile
from .app import app, err
from .completion import complete_run_file
from .common import (_M, _T, Cell, Device, DeviceOpt, JsonOpt, Precision, ReplaceOpt, TokenizerKind, VocabSizeOpt,
                     explicit, print_json, warn)

Schedule = Enum("Schedule", {s: s for s in SCHEDULES}, type=str)
TaskKind = Enum("TaskKind", {t.name: t.name for t in all_tasks()}, type=str)  # the registered tasks
TASK_HELP = "; ".join(f"{t.name}: {t.description}" for t in all_tasks()) + "."


def train(
    ctx: typer.Context,
    corpus: Annotated[list[str], typer.Argument(help="Text files (UTF-8), '-' for stdin, or a registered corpus name such as tinyshakespeare; for --task classify one labelled file (TSV/CSV with a header, fastText lines) or a folder with one file per label; for --task seq2seq one file of source<TAB>target lines. Files may be compressed (.gz, .bz2, .xz, .zst). Or 'corpus' in the --config run file.", show_default=False)],
    config: Annotated[Optional[Path], typer.Option("--config", help="Read options from this TOML run file: keys named as the flags (hidden-size = 256), at the top or in sections named as the help panels ([model], [optimisation], ...), and task and corpus too. Flags given here win. A run keeps its resolved configuration as RUN/config.toml: --config RUN/config.toml --out NEW repeats it.", is_eager=True, callback=runfile.load, autocompletion=complete_run_file, show_default=False)] = None,
    task: Annotated[TaskKind, typer.Option(help=TASK_HELP)] = TaskKind("lm"),
    cell: Annotated[Cell, typer.Option(help="Recurrent cell.", rich_help_panel="Model")] = Cell(_M.cell),
    layers: Annotated[int, typer.Option(min=1, max=64, help="Stacked recurrent layers.", rich_help_panel="Model")] = _M.layers,
    hidden_size: Annotated[int, typer.Option(min=1, help="Units per recurrent layer [default: chosen from this machine's measured training speed, the limits and the corpus size (and the batch size with it, unless given); the start line says what and why].", show_default=False, rich_help_panel="Model")] = _M.hidden_size,
    embedding_dim: Annotated[int, typer.Option(min=1, help="Size of the token embedding.", rich_help_panel="Model")] = _M.embedding_dim,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Dropout between recurrent layers and before the output layer.", rich_help_panel="Model")] = _M.dropout,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share the embedding and output matrices (needs embedding-dim == hidden-size).", rich_help_panel="Model")] = _M.tie_weights,
    tokenizer: Annotated[Optional[TokenizerKind], typer.Option(help="char (the default): one token per character; bpe, unigram: SentencePiece subwords; word: SentencePiece words. Trained on the training split.", show_default=False, rich_help_panel="Tokenizer")] = None,
    vocab_size: VocabSizeOpt = None,
    tokenizer_file: Annotated[Optional[Path], typer.Option(help="Use this tokenizer instead of training one: a file from 'charrnn tokenizer train', a checkpoint or a run directory.", rich_help_panel="Tokenizer")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this language model run (--task lm): the task takes its recurrent shape, and its embedding and recurrent layers (a classifier's, tagger's or encoder's forward direction; a conditioned generator's output layer too, and an encoder-decoder's decoder with --shared-vocab) start from the run's weights, the rest as usual (ULMFiT's transfer). A classifier or generator takes the run's tokenizer, an encoder-decoder for its sources; a tagger keeps its own words, each starting from the run's embedding of the same word where it has one. Also fine-tunes a language model on new text (--task lm).", show_default=False, rich_help_panel="Transfer")] = None,
    pretrain: Annotated[Optional[float], typer.Option(help="Two stages in one run: first a language model on the task's own training text (labels ignored, the task's tokenizer and shape) for this many seconds, in RUN/pretrain, then the task started from it as with --init. --time-budget covers both; --resume continues either stage.", show_default=False, rich_help_panel="Transfer")] = None,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="As --pretrain, the language model limited to this many steps instead of seconds.", show_default=False, rich_help_panel="Transfer")] = None,
    layer_lr_decay: Annotated[float, typer.Option(min=1.0, help="With --init: each layer's learning rate is the one above's divided by this (ULMFiT: 2.6), the task's new layers at --lr, so the language model's lower layers change least; 1 is off.", rich_help_panel="Transfer")] = _T.layer_lr_decay,
    unfreeze: Annotated[int, typer.Option(min=0, help="With --init: train only the task's new layers at first, then one more layer of the language model every this many steps, from the top down (gradual unfreezing); 0 trains every layer from the start.", rich_help_panel="Transfer")] = _T.unfreeze,
    batch_size: Annotated[int, typer.Option(min=1, help=f"Parallel streams per step (B) [default: {_T.batch_size}, or 16 or 8 when the size is chosen and a smaller batch buys the steps a short run needs].", show_default=False, rich_help_panel="Optimisation")] = _T.batch_size,
    bptt: Annotated[int, typer.Option(min=1, help="Steps per truncated-BPTT window (T).", rich_help_panel="Optimisation")] = _T.bptt,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (AdamW).", rich_help_panel="Optimisation")] = _T.lr,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Linear warmup steps before the cosine decay.", rich_help_panel="Optimisation")] = _T.warmup_steps,
    schedule: Annotated[Schedule, typer.Option(help="Learning-rate schedule: cosine (a linear warmup over --warmup-steps, then a cosine decay) or slanted (ULMFiT's slanted triangular: a linear rise over the first tenth of the run, then a linear decay).", rich_help_panel="Optimisation")] = Schedule(_T.schedule),
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
    patience: Annotated[Optional[int], typer.Option(min=0, help="Early stopping: after this many evaluations in a row without a better validation score, anneal the learning rate to its floor over as many evaluations again, then stop (the best checkpoint stays the run's model; the summary says stopped_early); 0 is off [default: 5 for classify, tag, seq2seq and conditional when neither --max-steps nor --epochs is given, else off].", show_default=False, rich_help_panel="Stopping")] = _T.patience,
    average_last: Annotated[int, typer.Option(min=0, max=1000, help="Average the weights of the last this many evaluations when the run ends (stochastic weight averaging): the mean is scored on the validation data and becomes the run's model if it is better than the best checkpoint; 0 is off.", rich_help_panel="Stopping")] = _T.average_last,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Last fraction of the characters used for validation (classify: a stratified random fraction of the examples).", rich_help_panel="Input")] = _T.val_fraction,
    val_max_chars: Annotated[int, typer.Option(min=2, help="At most this many characters of validation text (keeps validation quick on big corpora).", rich_help_panel="Input")] = _T.val_max_chars,
    val_file: Annotated[Optional[str], typer.Option(help="Validate on this file instead of the end of the corpus (or a split of the examples).", rich_help_panel="Input")] = None,
    replace_invalid: ReplaceOpt = False,
    device: DeviceOpt = Device(_T.device),
    precision: Annotated[Precision, typer.Option(help="auto: bf16 autocast where the hardware has it (AMX/AVX512-BF16 CPUs, recent GPUs), else fp32.", rich_help_panel="Hardware")] = Precision(_T.precision),
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice).", rich_help_panel="Hardware")] = _T.threads,
    nproc: Annotated[Optional[int], typer.Option(min=1, help="Train with this many processes on this machine (torchrun underneath; DistributedDataParallel): one per GPU, or CPU processes sharing the cores. --batch-size is the global batch, split among them.", show_default=False, rich_help_panel="Hardware")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory for checkpoints and metrics [default: checkpoints/<corpus name>].", rich_help_panel="Output")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the output directory.", rich_help_panel="Output")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint, exactly where it stopped. Only the limits (--max-steps, --epochs, --time-budget, counted over the whole run), --eval-interval, --log-interval, hardware and divergence options may change.", callback=runfile.on_resume, rich_help_panel="Output")] = False,
    eval_interval: Annotated[int, typer.Option(min=1, help="Steps between validations (and checkpoint saves).", rich_help_panel="Output")] = _T.eval_interval,
    log_interval: Annotated[int, typer.Option(min=1, help="Steps between progress updates.", rich_help_panel="Output")] = _T.log_interval,
    tensorboard: Annotated[Optional[Path], typer.Option(help="Also write the curves (train loss and bpc, validation figures, learning rate, throughput, epoch) as TensorBoard events in this directory: one per run, e.g. tb/NAME, and 'tensorboard --logdir tb' compares them. --resume continues its log. Needs pip install 'charrnn\\[tensorboard]'. Not kept in RUN/config.toml.", show_default=False, rich_help_panel="Output")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel="Output")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a language model (or, with --task classify, a classifier; seq2seq, an encoder-decoder; tag, a tagger; conditional, a label-conditioned generator) on CORPUS and save it in a run directory.

    With several processes (--nproc N, or started by torchrun) each trains its share of the
    --batch-size streams or examples; the first one writes the run directory and shows progress."""
    from ..display.progress import TrainingDisplay
    from ..training import distributed
    from ..training.launch import launch, start_time
    from ..training.run import default_out, run_task
    from .tensorboard import check as check_tensorboard, events_to

    t0 = start_time(state.command_start)
    given = explicit(ctx, [n for n in ctx.params if n not in NOT_OPTIONS])
    if tensorboard is not None:
        check_tensorboard(tensorboard)  # the package, before any work
    if (nproc or 1) > 1 or distributed.launched():
        code = launch(nproc, state.argv, corpus, out, resume, batch_size, device.value, "device" in given, t0)
        if code is not None:
            raise typer.Exit(code)
    dist = distributed.init() if distributed.launched() else None
    main = dist is None or dist.main
    # RUN/config.toml, written when this command saves a checkpoint (cli/runfile.py).
    keeper = runfile.Keeper(ctx, default_out(out, corpus), resume)
    display = TrainingDisplay(err, enabled=not quiet and main)
    with distributed.session(dist), keeper, display, events_to(tensorboard, display.handle) as on_event:
        result, _ = run_task(task.value if "task" in explicit(ctx, ["task"]) else None, corpus, given, out=out,
                             resume=resume, overwrite=overwrite, on_event=on_event, on_note=warn if main else _ignore,
                             on_prepare=display.prepare, start_time=t0, dist=dist)
    if json_out and main:
        print_json(result.summary)


def _ignore(message: str) -> None:
    """Warnings of the processes other than rank 0 (which says them)."""


# What the command takes that is not an option of the run: where and how to run it.
NOT_OPTIONS = {"corpus", "config", "task", "nproc", "out", "overwrite", "resume", "tensorboard", "quiet", "json_out"}


def _with_task_options(fn):
    """``fn`` with the options the registered tasks declare (tasks/specs/ and plugins), each
    once, as typer options of the same name, after the options every task shares."""
    sig = inspect.signature(fn, eval_str=True)  # the annotations as objects: typer reads their options
    have = set(sig.parameters)
    extra = []
    for opt in task_options():
        if opt.name in have:
            continue
        kind = opt.type if opt.choices is None else Enum(f"{opt.name}_choices", {c: c for c in opt.choices}, type=str)
        decls = [opt.flag] if opt.flag else []
        info = typer.Option(*decls, help=opt.help, rich_help_panel=opt.panel, min=opt.min, max=opt.max,
                            show_default=opt.show_default)
        default = kind(opt.default) if opt.choices is not None and opt.default is not None else opt.default
        hint = Annotated[kind if opt.default is not None else Optional[kind], info]
        extra.append(inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint))
    if not extra:
        return fn

    def command(ctx: typer.Context, **params):
        return fn(ctx, **{k: v for k, v in params.items() if k in have})

    command.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])
    command.__annotations__ = {**fn.__annotations__, **{p.name: p.annotation for p in extra}}
    command.__doc__, command.__name__ = fn.__doc__, fn.__name__
    return command


app.command(name="train", no_args_is_help=True)(_with_task_options(train))
