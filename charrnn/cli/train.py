"""``charrnn train``: train a model on a corpus and save it in a run directory."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import DEFAULT_EPOCHS, DEFAULT_SECONDS, ModelConfig
from ..errors import CharrnnError, ConfigError, CorpusTooSmallError
from . import app as state
from . import runfile
from .app import app, err
from .completion import complete_run_file
from .common import (_C, _G, _M, _Q, _T, Attention, Cell, ClassWeights, Device, DeviceOpt, JsonOpt, NormalForm, Pool,
                     Precision, ReplaceOpt, SideTokenizer, TaskKind, TokenizerKind, VocabSizeOpt, explicit, flag, print_json)
from .train_setup import (_MODEL_FIELDS, LM_ONLY, check_out_free, default_out, open_run_dir, prepare_on_every_rank, resumed_or_new,
                          size_model, tokenizer_spec, with_display)
from .train_classify import CLASSIFY_ONLY, ClassifyOptions, train_classify
from .train_conditional import CONDITIONAL_ONLY, DEFAULTS as _D, train_conditional
from .train_seq2seq import SEQ2SEQ_ONLY, Seq2SeqOptions, train_seq2seq
from .train_tag import TAG_ONLY, TagOptions, train_tag

_FLAG_OF = {"batch_size": "--batch-size", "bptt": "--bptt"}


@app.command(no_args_is_help=True)
def train(
    ctx: typer.Context,
    corpus: Annotated[list[str], typer.Argument(help="Text files (UTF-8), '-' for stdin, or a registered corpus name such as tinyshakespeare; for --task classify one labelled file (TSV/CSV with a header, fastText lines) or a folder with one file per label; for --task seq2seq one file of source<TAB>target lines. Files may be compressed (.gz, .bz2, .xz, .zst). Or 'corpus' in the --config run file.", show_default=False)],
    config: Annotated[Optional[Path], typer.Option("--config", help="Read options from this TOML run file: keys named as the flags (hidden-size = 256), at the top or in sections named as the help panels ([model], [optimisation], ...), and task and corpus too. Flags given here win. A run keeps its resolved configuration as RUN/config.toml: --config RUN/config.toml --out NEW repeats it.", is_eager=True, callback=runfile.load, autocompletion=complete_run_file, show_default=False)] = None,
    task: Annotated[TaskKind, typer.Option(help="lm: a language model of the text; classify: a label per example (sequence classification); seq2seq: an encoder-decoder from source<TAB>target pairs; tag: a tag per token (CoNLL-U or token<TAB>tag); conditional: a generator of sequences of a chosen label (labelled examples, as classify).")] = TaskKind.lm,
    cell: Annotated[Cell, typer.Option(help="Recurrent cell.", rich_help_panel="Model")] = Cell(_M.cell),
    layers: Annotated[int, typer.Option(min=1, max=64, help="Stacked recurrent layers.", rich_help_panel="Model")] = _M.layers,
    hidden_size: Annotated[int, typer.Option(min=1, help="Units per recurrent layer [default: chosen from this machine's measured training speed, the limits and the corpus size (and the batch size with it, unless given); the start line says what and why].", show_default=False, rich_help_panel="Model")] = _M.hidden_size,
    embedding_dim: Annotated[int, typer.Option(min=1, help="Size of the token embedding.", rich_help_panel="Model")] = _M.embedding_dim,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Dropout between recurrent layers and before the output layer.", rich_help_panel="Model")] = _M.dropout,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share the embedding and output matrices (needs embedding-dim == hidden-size).", rich_help_panel="Model")] = _M.tie_weights,
    weight_drop: Annotated[float, typer.Option(min=0.0, max=0.99, help="DropConnect on the hidden-to-hidden matrices: one mask per training window (AWD-LSTM; language model).", rich_help_panel="Regularisation")] = _M.weight_drop,
    input_dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Dropout on the embedded input (language model).", rich_help_panel="Regularisation")] = _M.input_dropout,
    embedding_dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Drop whole token types from the embedding for a window (language model).", rich_help_panel="Regularisation")] = _M.embedding_dropout,
    variational: Annotated[bool, typer.Option("--variational/--no-variational", help="Variational (locked) dropout: --dropout and --input-dropout masks shared by every time step of a window (language model).", rich_help_panel="Regularisation")] = _M.variational,
    ar: Annotated[float, typer.Option(min=0.0, help="Activation regularisation: add this times the mean square of the top layer's (dropped) outputs to the loss (language model).", rich_help_panel="Regularisation")] = _T.ar,
    tar: Annotated[float, typer.Option(min=0.0, help="Temporal activation regularisation: add this times the mean square of the change of the top layer's outputs from one step to the next (language model).", rich_help_panel="Regularisation")] = _T.tar,
    bidirectional: Annotated[bool, typer.Option("--bidirectional/--no-bidirectional", help="Read each example (classify), source (seq2seq encoder) or sentence (tag) in both directions (not a language model).", rich_help_panel="Model")] = _C.bidirectional,
    pool: Annotated[Pool, typer.Option(help="How the outputs over an example become one vector: last state (of each direction), mean, max, or learned attention (classify).", rich_help_panel="Classification")] = Pool(_C.pool),
    one_hot: Annotated[bool, typer.Option("--one-hot", help="Feed each token as a one-hot vector instead of a learned embedding (classify).", rich_help_panel="Classification")] = _C.one_hot,
    embeddings: Annotated[Optional[Path], typer.Option(help="Initialise the token embeddings from word vectors in word2vec/GloVe text format (.gz too); --embedding-dim must match them (classify).", rich_help_panel="Classification")] = None,
    freeze_embeddings: Annotated[bool, typer.Option("--freeze-embeddings", help="Keep the --embeddings vectors fixed during training (classify).", rich_help_panel="Classification")] = False,
    class_weights: Annotated[ClassWeights, typer.Option(help="balanced: weight each label's loss by n / (labels * its count), for skewed label sets (classify).", rich_help_panel="Classification")] = ClassWeights.none,
    text_column: Annotated[Optional[str], typer.Option(help="Column with the text in a TSV/CSV file [default: found from names such as text, sentence] (classify).", show_default=False, rich_help_panel="Classification")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column with the label in a TSV/CSV file [default: found from names such as label, class] (classify).", show_default=False, rich_help_panel="Classification")] = None,
    attention: Annotated[Attention, typer.Option(help="How the decoder looks at the source at each step: Luong dot (needs --no-bidirectional) or general, Bahdanau additive, or none (the encoder's final state only).", rich_help_panel="Sequence to sequence")] = Attention(_Q.attention),
    input_feeding: Annotated[bool, typer.Option("--input-feeding/--no-input-feeding", help="Feed the previous step's attentional vector to the decoder with each token (Luong).", rich_help_panel="Sequence to sequence")] = _Q.input_feeding,
    teacher_forcing: Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability of feeding the decoder the gold previous token in training; below 1 it is fed its own prediction otherwise (scheduled sampling).", rich_help_panel="Sequence to sequence")] = 1.0,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help="Give this share of the target probability to the other target tokens, evenly, in the training loss (0.1 is the usual value); validation loss and perplexity stay the plain negative log-likelihood.", rich_help_panel="Sequence to sequence")] = 0.0,
    reverse_target: Annotated[bool, typer.Option("--reverse-target", help="Train the decoder to write each target right to left (outputs still read left to right): a second model for rescoring a left-to-right model's n-best lists (predict and eval accuracy --rescore).", rich_help_panel="Sequence to sequence")] = False,
    source_tokenizer: Annotated[SideTokenizer, typer.Option(help="Tokens of the sources: char, space (whitespace-separated symbols, e.g. phones), bpe, unigram, word.", rich_help_panel="Sequence to sequence")] = SideTokenizer.char,
    target_tokenizer: Annotated[SideTokenizer, typer.Option(help="Tokens of the targets (as --source-tokenizer).", rich_help_panel="Sequence to sequence")] = SideTokenizer.char,
    source_normalize: Annotated[NormalForm, typer.Option(help="Bring every source to this Unicode normal form before the char tokenizer reads it, in training and prediction alike: nfd splits precomposed letters into base and marks (Hangul syllables into jamo, Vietnamese tones apart), so equivalent spellings share tokens.", rich_help_panel="Sequence to sequence")] = NormalForm.none,
    shared_vocab: Annotated[bool, typer.Option("--shared-vocab", help="One tokenizer trained on both sides (same language on both; needs the same kind).", rich_help_panel="Sequence to sequence")] = False,
    max_length: Annotated[int, typer.Option(min=1, help="Pairs with more tokens than this on either side are skipped (and counted), or refused with --strict.", rich_help_panel="Sequence to sequence")] = 200,
    strict: Annotated[bool, typer.Option("--strict", help="Stop with an error at a pair longer than --max-length instead of skipping it.", rich_help_panel="Sequence to sequence")] = False,
    label_dim: Annotated[int, typer.Option(min=1, help="Size of the label embedding fed with every token (--task conditional).", rich_help_panel="Conditional generation")] = _D.label_dim,
    label_init: Annotated[bool, typer.Option("--label-init/--no-label-init", help="Also start every layer's hidden state from the label (a learned map of its embedding) instead of zeros (--task conditional).", rich_help_panel="Conditional generation")] = _D.label_init,
    tag_column: Annotated[Optional[str], typer.Option(help="The tag column: a CoNLL-U column name (default UPOS; XPOS, DEPREL, ...), or in a token<TAB>tag file a column number (default the last).", show_default=False, rich_help_panel="Tagging")] = None,
    crf: Annotated[bool, typer.Option("--crf", help="A linear-chain CRF output layer with Viterbi decoding (for BIO/IOB tag sets), instead of a softmax per token.", rich_help_panel="Tagging")] = False,
    char_embedding_dim: Annotated[int, typer.Option(min=1, help="Size of the character embedding of the tagger's word-spelling encoder.", rich_help_panel="Tagging")] = _G.char_embedding_dim,
    char_hidden_size: Annotated[int, typer.Option(min=0, help="Units per direction of the bidirectional character encoder of each word (0: words only).", rich_help_panel="Tagging")] = _G.char_hidden_size,
    word_dropout: Annotated[float, typer.Option(min=0.0, help="In training, read a word seen c times as the unknown word with probability a / (a + c) (this is a; 0 is off), so the unknown word learns from rare ones.", rich_help_panel="Tagging")] = 0.25,
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
    from ..training import distributed

    t0 = state.command_start if state.command_start is not None else time.perf_counter()
    if distributed.launched() and os.environ.get(_START_ENV):
        # Started by --nproc: the time budget counts from when that command started.
        with contextlib.suppress(ValueError):
            t0 = time.perf_counter() - max(time.time() - float(os.environ[_START_ENV]), 0.0)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if tensorboard is not None:
        from .tensorboard import check as check_tensorboard

        check_tensorboard(tensorboard)  # the package, before any work
    several = (nproc or 1) > 1 or distributed.launched()
    if several and "-" in corpus:
        raise ConfigError("training with several processes reads the corpus from files, not '-' (stdin)")
    if nproc is not None and distributed.launched():
        raise ConfigError("--nproc starts its own processes: leave it out under torchrun")
    if (nproc or 1) > 1:
        # Say what the processes would all say, before starting them.
        batch = batch_size
        if resume:
            from ..checkpoint import load_checkpoint

            with contextlib.suppress(CharrnnError):  # the processes report a missing or bad run
                batch = load_checkpoint(default_out(out, corpus), latest=True).train_config.batch_size
        distributed.check_batch(batch, nproc)
        on_gpu = device.value == "cuda" or (device.value == "auto" and _cuda_available())
        if on_gpu and nproc > _cuda_count() and (not resume or explicit(ctx, ["device"])):
            raise ConfigError(distributed.too_many_for_gpus(nproc))
        os.environ[_START_ENV] = repr(time.time() - (time.perf_counter() - t0))
        raise typer.Exit(distributed.launch(nproc, _without_option(state.argv, "--nproc")))
    dist = distributed.init() if distributed.launched() else None
    # RUN/config.toml, written when this command saves a checkpoint (cli/runfile.py).
    keeper = runfile.Keeper(ctx, default_out(out, corpus), task.value, resume)
    with distributed.session(dist), keeper:
        given = [flag(n) for n in explicit(ctx, LM_ONLY)]
        if given and task != TaskKind.lm:
            raise ConfigError(f"{', '.join(given)}: for a language model (--task lm) only")
        given = [flag(n) for n in explicit(ctx, CONDITIONAL_ONLY)]
        if given and task != TaskKind.conditional:
            raise ConfigError(f"{', '.join(given)}: for --task conditional only")
        if task == TaskKind.conditional:
            given = [flag(n) for n in explicit(ctx, TAG_ONLY)]
            if given:
                raise ConfigError(f"{', '.join(given)}: not for --task conditional (options of --task tag)")
            train_conditional(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume,
                              quiet, json_out, val_file, text_column, label_column)
            return
        if task == TaskKind.classify:
            given = [flag(n) for n in explicit(ctx, SEQ2SEQ_ONLY + TAG_ONLY)]
            if given:
                raise ConfigError(f"{', '.join(given)}: not for --task classify (options of --task seq2seq or tag)")
            opts = ClassifyOptions(text_column, label_column, embeddings, freeze_embeddings,
                                   class_weights == ClassWeights.balanced)
            train_classify(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet,
                           json_out, val_file, opts)
            return
        if task == TaskKind.tag:
            given = [flag(n) for n in explicit(ctx, SEQ2SEQ_ONLY)]
            if given:
                raise ConfigError(f"{', '.join(given)}: for --task seq2seq only")
            train_tag(ctx, dist, t0, corpus, out, overwrite, resume, quiet, json_out, val_file,
                      TagOptions(tag_column, word_dropout, embeddings, freeze_embeddings))
            return
        if task == TaskKind.seq2seq:
            opts = Seq2SeqOptions(source_tokenizer.value, target_tokenizer.value, shared_vocab, teacher_forcing,
                                  max_length, strict,
                                  None if source_normalize == NormalForm.none else source_normalize.value.upper(),
                                  label_smoothing, reverse_target)
            train_seq2seq(ctx, dist, t0, corpus, vocab_size, out, overwrite, resume, quiet, json_out, val_file, opts)
            return
        given = [flag(n) for n in explicit(ctx, [n for n in CLASSIFY_ONLY if n != "bidirectional"] + list(SEQ2SEQ_ONLY)
                                          + list(TAG_ONLY))]
        if given:
            raise ConfigError(f"{', '.join(given)}: not for a language model (options of --task classify, seq2seq "
                              f"or tag)")
        if "bidirectional" in explicit(ctx, ["bidirectional"]):
            raise ConfigError("--bidirectional: for --task classify, seq2seq or tag (a language model reads text left "
                              "to right)")
        _train(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet, json_out,
               val_file, replace_invalid, ModelConfig(cell=cell.value, layers=layers, hidden_size=hidden_size,
                                                     embedding_dim=embedding_dim, dropout=dropout,
                                                     tie_weights=tie_weights, weight_drop=weight_drop,
                                                     input_dropout=input_dropout,
                                                     embedding_dropout=embedding_dropout, variational=variational))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


_START_ENV = "CHARRNN_START_TIME"  # wall-clock start of a --nproc command, for its processes' time budget


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
    from ..text.corpora import resolve_corpus
    from ..text.prepare import prepare_corpus
    from ..training import distributed
    from ..training import train as run_training
    from .progress import PreparationDisplay

    main = dist is None or dist.main
    out = default_out(out, corpus)
    checkpoint, train_cfg = resumed_or_new(ctx, dist, out, resume, _MODEL_FIELDS, _T)
    model_cfg = checkpoint.model_config if checkpoint is not None else new_model_cfg
    if dist is not None:
        dist = distributed.use_device(dist, train_cfg.device)  # a resumed run keeps its device
    val_fraction, val_max_chars = train_cfg.val_fraction, train_cfg.val_max_chars
    check_out_free(dist, out, resume, overwrite)  # say so before the corpus is prepared
    distributed.main_first(dist, lambda: [resolve_corpus(c) for c in corpus])  # downloads once, on rank 0
    sources = distributed.each(dist, lambda: [resolve_corpus(c) for c in corpus])
    tok_arg = tokenizer_spec(tokenizer, vocab_size, tokenizer_file, checkpoint)

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
        data = prepare_on_every_rank(dist, data, prepare)
    sizing = None
    if not resume:
        model_cfg, train_cfg, sizing = size_model(ctx, dist, data, model_cfg, train_cfg)
    run_dir = open_run_dir(dist, out, overwrite, resume)
    try:
        result = with_display(quiet, main, lambda on_event: run_training(
            None, None, model_cfg, train_cfg, run_dir, on_event=on_event, start_time=t0, resume=checkpoint,
            corpus=data, dist=dist, sizing=sizing), ctx.params.get("tensorboard"))
    except CorpusTooSmallError as e:
        raise CharrnnError(
            f"the {e.split} text has {e.tokens:,} tokens, too few for {_FLAG_OF['batch_size']} {e.batch_size} "
            f"and {_FLAG_OF['bptt']} {e.bptt} (needs {e.needed:,}): lower them or give a larger corpus"
        ) from None
    if json_out and main:
        print_json(result.summary)
