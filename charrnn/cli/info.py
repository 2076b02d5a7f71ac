"""``charrnn info``: what a checkpoint holds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .. import __version__
from .app import app
from .common import CheckpointArg, JsonOpt, LatestOpt, print_json


@app.command(no_args_is_help=True)
def info(checkpoint: CheckpointArg, latest: LatestOpt = False, json_out: JsonOpt = False) -> None:
    """Model and training configuration, size and results of a checkpoint."""
    from ..checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, latest=latest)
    params = ck.params
    if json_out:
        print_json(ck.summary())
        return
    m, mt = ck.model_config, ck.metrics
    console = Console(soft_wrap=True)
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("checkpoint", str(ck.path))
    written = ck.charrnn_version or "an unrecorded version"
    table.add_row("charrnn", f"written by {written}" + ("" if written == __version__ else f" (this is {__version__})"))
    table.add_row("task", {"lm": "language model", "classify": "classifier",
                           "seq2seq": "sequence to sequence (encoder-decoder)", "tag": "tagger (a tag per token)",
                           "conditional": "generator conditioned on a label"}.get(ck.task, ck.task))
    table.add_row("model", _model_line(ck.task, m))
    table.add_row("parameters", f"{params:,}")
    if ck.task == "seq2seq":
        tok = ck.tokenizer
        shared = " (shared vocabulary)" if tok.shared else ""
        form = getattr(tok.source, "normalize", None)
        kind = f"{tok.source.kind} ({form})" if form else tok.source.kind
        table.add_row("source tokens", f"{kind}, {tok.source.vocab_size} tokens{shared}")
        table.add_row("target tokens", f"{tok.target.kind}, {tok.target.vocab_size} tokens (+ padding, SOS, EOS)")
    elif ck.task == "tag":
        words = len((ck.task_state or {}).get("words", []))
        table.add_row("vocabulary", f"{words:,} words (lower-cased), {ck.tokenizer.vocab_size} characters")
    else:
        table.add_row("tokenizer", f"{ck.tokenizer.kind}, {ck.tokenizer.vocab_size} tokens")
    table.add_row("step", f"{ck.step:,}" + (f" (epoch {mt['epoch']:.2f})" if "epoch" in mt else ""))
    if "time" in mt:
        table.add_row("training time", f"{mt['time']:.0f} s")
    if "val_bpc" in mt:
        table.add_row("val bpc", f"{mt['val_bpc']:.4f} (loss {mt['val_loss']:.4f} nats)")
    if "best_val_bpc" in mt:
        table.add_row("best val bpc", f"{mt['best_val_bpc']:.4f} at step {mt.get('best_step', '?')}")
    if "val_accuracy" in mt and "val_unseen_accuracy" in mt:
        unseen = mt["val_unseen_accuracy"]
        table.add_row("val accuracy", f"{mt['val_accuracy']:.4f} (tokens; unseen words "
                      f"{'-' if unseen is None or unseen != unseen else f'{unseen:.4f}'}, loss {mt['val_loss']:.4f} nats)")
    elif "val_accuracy" in mt and "val_ter" in mt:
        table.add_row("val accuracy", f"{mt['val_accuracy']:.4f} (greedy exact match; token error rate "
                      f"{mt['val_ter']:.2f}%, loss {mt['val_loss']:.4f} nats)")
    elif "val_accuracy" in mt:
        table.add_row("val accuracy", f"{mt['val_accuracy']:.4f} (macro-F1 {mt.get('val_macro_f1', float('nan')):.4f}, "
                      f"loss {mt['val_loss']:.4f} nats)")
    if "best_val_accuracy" in mt:
        table.add_row("best val accuracy", f"{mt['best_val_accuracy']:.4f} at step {mt.get('best_step', '?')}")
    state = ck.task_state or {}
    if "labels" in state:
        counts = state.get("label_counts", {})
        table.add_row("labels", ", ".join(f"{lab} ({counts[lab]:,})" if lab in counts else lab for lab in state["labels"])
                      + "  (training examples)")
    if ck.task == "tag" and "tags" in state:
        column = state.get("tag_column") or "the default column"
        table.add_row("tags", f"{', '.join(state['tags'])}  ({column})")
    if ck.task == "seq2seq":
        parts = [f"teacher forcing {state.get('teacher_forcing', 1.0):g}"]
        if state.get("label_smoothing"):
            parts.append(f"label smoothing {state['label_smoothing']:g}")
        if state.get("reverse_target"):
            parts.append("targets written right to left (--reverse-target)")
        table.add_row("decoder training", ", ".join(parts))
    if state.get("embeddings"):
        e = state["embeddings"]
        table.add_row("embeddings", f"{e['file']}: {e['found']:,} of {e['vocab']:,} tokens found"
                      + (", frozen" if state.get("freeze_embeddings") else ""))
    tc = ck.train_config
    bptt = f", bptt {tc.bptt}" if ck.task == "lm" else ""
    table.add_row("training", f"batch {tc.batch_size}{bptt}, lr {tc.lr:g}, warmup {tc.warmup_steps}, "
                  f"grad clip {tc.grad_clip:g}, weight decay {tc.weight_decay:g}, seed {tc.seed}")
    if ck.task == "lm" and _regularisation(ck.model_config, tc):
        table.add_row("regularisation", _regularisation(ck.model_config, tc))
    if ck.sizing and ck.sizing.get("auto"):
        table.add_row("size", ck.sizing["reason"])
    console.print(table)


def _regularisation(m, tc) -> str:
    """A language model's AWD-LSTM options that are on, as the flags name them ("" if none)."""
    parts = [f"{name.replace('_', ' ')} {getattr(src, name):g}" for src, name in
             ((m, "weight_drop"), (m, "input_dropout"), (m, "embedding_dropout"), (tc, "ar"), (tc, "tar"))
             if getattr(src, name, 0.0)]
    if getattr(m, "variational", False):
        parts.append("variational dropout")
    return ", ".join(parts)


def _model_line(task: str, m) -> str:
    if task == "classify":
        inp = "one-hot input" if m.one_hot else f"embedding {m.embedding_dim}"
        return (f"{m.layers}x{m.hidden_size} {'bidirectional ' if m.bidirectional else ''}{m.cell.upper()}, {inp}, "
                f"{m.pool} pooling, dropout {m.dropout}, {m.num_labels} labels")
    if task == "conditional":
        return (f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, label embedding "
                f"{m.label_dim}" + (" (also the initial state)" if m.label_init else "") + f" for {m.num_labels} "
                f"labels, dropout {m.dropout}" + (", tied weights" if m.tie_weights else ""))
    if task == "tag":
        chars = (f"character encoder 2x{m.char_hidden_size} (embedding {m.char_embedding_dim})" if m.char_hidden_size
                 else "no character encoder")
        return (f"{m.layers}x{m.hidden_size} {'bidirectional ' if m.bidirectional else ''}{m.cell.upper()}, word "
                f"embedding {m.embedding_dim}, {chars}, dropout {m.dropout}, "
                f"{'CRF' if m.crf else 'softmax'} over {m.num_tags} tags")
    if task == "seq2seq":
        enc = f"{'bidirectional ' if m.bidirectional else ''}{m.layers}x{m.hidden_size} {m.cell.upper()}"
        att = "no attention" if m.attention == "none" else (
            f"{m.attention} attention" + (" with input feeding" if m.input_feeding else ""))
        return (f"encoder {enc}, decoder {m.layers}x{m.hidden_size} {m.cell.upper()}, {att}, embedding "
                f"{m.embedding_dim}, dropout {m.dropout}" + (", tied target weights" if m.tie_weights else ""))
    return (f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, dropout {m.dropout}"
            + (", tied weights" if m.tie_weights else ""))
