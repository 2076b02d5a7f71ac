"""``charrnn eval``: measure a trained model on a text or a labelled file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CharrnnError
from .app import eval_app
from .common import (CheckpointArg, load_model, Device, DeviceOpt, JsonOpt, LatestOpt, Precision, ReplaceOpt, print_json,
                     require_language_model, warn)


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
    """Perplexity per token and bits per character of a text under a trained model (an
    encoder-decoder: the teacher-forced perplexity of the targets of a source<TAB>target file).

    Every token after the first is scored; bits per character divide the total loss by the
    characters those tokens cover (all characters after the first token's, less unknown
    ones), so char and subword models compare on the same text."""
    from ..api import load
    from ..text.corpora import resolve_corpus
    from ..runtime import bf16_fallback_note
    from ..text.io import read_text

    lm = load(checkpoint, device=device.value, latest=latest)
    if _is_seq2seq(lm):
        _seq2seq_perplexity(lm, file, json_out)
        return
    from ..api import ConditionalModel

    if isinstance(lm, ConditionalModel):
        _conditional_perplexity(lm, file, json_out)
        return
    require_language_model(lm, checkpoint, "'charrnn eval accuracy' measures it")
    note = bf16_fallback_note(precision.value, lm.device)
    if note:
        warn(note)
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
        warn(f"{result.unknown} character(s) never seen in training were read but not scored (counted as 'unknown')")
    if json_out:
        print_json({**result.as_dict(), "tokenizer": lm.tokenizer.kind, "seconds": secs})
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


@eval_app.command(no_args_is_help=True)
def accuracy(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Labelled examples in a training layout: TSV/CSV with a header, fastText lines, or a folder with one file per label; for an encoder-decoder, source<TAB>target lines (a source on several lines has several references).", show_default=False)],
    text_column: Annotated[Optional[str], typer.Option(help="Column with the text [default: found from common names].", show_default=False)] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column with the label [default: found from common names].", show_default=False)] = None,
    tag_column: Annotated[Optional[str], typer.Option(help="A tagger's gold tag column [default: the one it was trained on].", show_default=False, rich_help_panel="Tagging")] = None,
    beam: Annotated[int, typer.Option(min=0, help="Beam width for an encoder-decoder (0: greedy).", rich_help_panel="Sequence to sequence")] = 0,
    ensemble: Annotated[Optional[list[Path]], typer.Option(help="Decode with this encoder-decoder run too (repeat for more; the same data and tokenizers, e.g. other --seed): the models' probabilities are averaged.", rich_help_panel="Sequence to sequence")] = None,
    length_penalty: Annotated[float, typer.Option(min=0.0, help="Beam scores are divided by length ** this.", rich_help_panel="Sequence to sequence")] = 1.0,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    json_out: JsonOpt = False,
) -> None:
    """Accuracy, macro-F1, per-label precision, recall, F1 and support, and the confusion
    matrix of a classifier on labelled examples; for an encoder-decoder on source<TAB>target
    pairs, sequence accuracy (any reference), WER, token error rate, BLEU and chrF; for a
    tagger on CoNLL data, token, unseen-token and sentence accuracy, per-tag scores and,
    for BIO/IOB tags, span precision, recall and F1."""
    from ..api import Classifier, ConditionalModel, SequenceTagger
    from ..text.labelled import read_labelled

    model = load_model(checkpoint, ensemble, device.value, latest)
    if isinstance(model, ConditionalModel):
        raise CharrnnError(f"{checkpoint}: a generator conditioned on labels, not a classifier: 'charrnn eval "
                           f"perplexity' scores labelled examples under their labels")
    if isinstance(model, SequenceTagger):
        if text_column is not None or label_column is not None or beam or length_penalty != 1.0:
            raise CharrnnError("--text-column, --label-column, --beam and --length-penalty are not for taggers "
                               "(--tag-column picks the gold column)")
        _tag_accuracy(model, file, tag_column, json_out)
        return
    if tag_column is not None:
        raise CharrnnError("--tag-column is for taggers (--task tag)")
    if _is_seq2seq(model):
        if text_column is not None or label_column is not None:
            raise CharrnnError("--text-column and --label-column are for classifiers: an encoder-decoder reads "
                               "source<TAB>target lines")
        _seq2seq_accuracy(model, file, beam, length_penalty, json_out)
        return
    if beam or length_penalty != 1.0:
        raise CharrnnError("--beam and --length-penalty are for encoder-decoders (seq2seq)")
    if not isinstance(model, Classifier):
        raise CharrnnError(f"{checkpoint}: a language model, not a classifier: 'charrnn eval perplexity' measures it")
    examples = read_labelled(file, text_column, label_column)
    t = time.perf_counter()
    try:
        rep = model.evaluate([ex.text for ex in examples], [ex.label for ex in examples])
    except CharrnnError as e:
        raise CharrnnError(f"{file}: {e}") from None
    secs = time.perf_counter() - t
    if json_out:
        print_json({**rep.as_dict(), "seconds": secs})
        return
    console = Console(soft_wrap=True)
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("accuracy", f"{rep.accuracy:.4f}")
    summary.add_row("macro-F1", f"{rep.macro_f1:.4f}")
    summary.add_row("examples", f"{rep.total:,}")
    console.print(summary)
    per = Table(title="per label", title_justify="left")
    for name in ("label", "precision", "recall", "F1", "support"):
        per.add_column(name, justify="left" if name == "label" else "right")
    for row in rep.per_label():
        per.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                    f"{row['support']:,}")
    console.print(per)
    conf = Table(title="confusion (rows: gold, columns: predicted)", title_justify="left")
    conf.add_column("")
    for label in rep.labels:
        conf.add_column(label, justify="right")
    for label, row in zip(rep.labels, rep.confusion):
        conf.add_row(label, *(f"{n:,}" for n in row))
    console.print(conf)


def _is_seq2seq(model) -> bool:
    from ..api import Seq2SeqModel

    return isinstance(model, Seq2SeqModel)


def _seq2seq_accuracy(model, file: str, beam: int, length_penalty: float, json_out: bool) -> None:
    from ..text.pairs import group_references, read_pairs

    sources, references = group_references(read_pairs(file))
    unknown = model.count_unknown(sources)
    if unknown:
        warn(f"{unknown:,} source token(s) never seen in training were read as unknown")
    t = time.perf_counter()
    rep = model.evaluate(sources, references, beam=beam, length_penalty=length_penalty)
    secs = time.perf_counter() - t
    if rep.note:
        warn(rep.note)
    if json_out:
        print_json({**rep.as_dict(), "beam": beam, "unknown": unknown, "seconds": secs})
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("sequence accuracy", f"{rep.accuracy:.4f}")
    table.add_row("WER (%)", f"{rep.wer:.2f}")
    table.add_row(f"token error rate (%, {model.target.kind} tokens)", f"{rep.ter:.2f}")
    table.add_row("BLEU", "-" if rep.bleu is None else f"{rep.bleu:.2f}")
    table.add_row("chrF", "-" if rep.chrf is None else f"{rep.chrf:.2f}")
    table.add_row("sources", f"{rep.sequences:,}")
    table.add_row("decoding", f"beam {beam}" if beam else "greedy")
    table.add_row("sources/s", f"{rep.sequences / secs:,.0f}" if secs > 0 else "-")
    Console(soft_wrap=True).print(table)


def _conditional_perplexity(model, file: str, json_out: bool) -> None:
    """Labelled examples (the training layouts) scored under their labels."""
    from ..text.labelled import read_labelled

    examples = read_labelled(file)
    try:
        result = model.perplexity([ex.text for ex in examples], [ex.label for ex in examples])
    except CharrnnError as e:
        raise CharrnnError(f"{file}: {e}") from None
    if result.unknown:
        warn(f"{result.unknown} token(s) never seen in training were read but not scored (counted as 'unknown')")
    if json_out:
        print_json({**result.as_dict(), "examples": len(examples), "tokenizer": model.tokenizer.kind})
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("perplexity (per token, EOS included)", f"{result.perplexity:.4f}")
    table.add_row("bits per character (+1 per example for its end)", f"{result.bpc:.4f}")
    table.add_row("loss (nats/token)", f"{result.loss:.4f}")
    table.add_row(f"tokens scored ({model.tokenizer.kind})", f"{result.tokens:,}")
    table.add_row("examples", f"{len(examples):,}")
    table.add_row("unknown (not scored)", f"{result.unknown:,}")
    Console(soft_wrap=True).print(table)


def _seq2seq_perplexity(model, file: str, json_out: bool) -> None:
    import math

    from ..text.pairs import read_pairs

    pairs = read_pairs(file)
    loss, tokens = model.perplexity([p.source for p in pairs], [p.target for p in pairs])
    result = {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "pairs": len(pairs)}
    if json_out:
        print_json(result)
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("perplexity (per target token, EOS included)", f"{result['perplexity']:.4f}")
    table.add_row("loss (nats/token)", f"{loss:.4f}")
    table.add_row("target tokens scored", f"{tokens:,}")
    table.add_row("pairs", f"{len(pairs):,}")
    Console(soft_wrap=True).print(table)


def _tag_accuracy(model, file: str, tag_column: str | None, json_out: bool) -> None:
    from ..text.tagged import read_tagged

    column = tag_column or (model.checkpoint.task_state or {}).get("tag_column")
    sentences = read_tagged(file, column)
    t = time.perf_counter()
    rep = model.evaluate([s.tokens for s in sentences], [s.tags for s in sentences])
    secs = time.perf_counter() - t
    unknown = sorted({t for s in sentences for t in s.tags} - set(model.tags))
    if unknown:
        warn(f"tag(s) the model was not trained on, always counted wrong: {', '.join(unknown)}")
    if json_out:
        print_json({**rep.as_dict(), "seconds": secs})
        return
    console = Console(soft_wrap=True)
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("token accuracy", f"{rep.accuracy:.4f}")
    summary.add_row("unseen-token accuracy", "-" if rep.unseen_accuracy is None else f"{rep.unseen_accuracy:.4f}")
    summary.add_row("sentence accuracy", f"{rep.sentence_accuracy:.4f}")
    summary.add_row("macro-F1 (tags)", f"{rep.macro_f1:.4f}")
    if rep.spans is not None:
        summary.add_row("span precision", f"{rep.spans.precision:.4f}")
        summary.add_row("span recall", f"{rep.spans.recall:.4f}")
        summary.add_row("span F1", f"{rep.spans.f1:.4f}")
    summary.add_row("tokens (unseen)", f"{rep.tokens:,} ({rep.unseen_tokens:,})")
    summary.add_row("sentences", f"{rep.sentences:,}")
    summary.add_row("tokens/s", f"{rep.tokens / secs:,.0f}" if secs > 0 else "-")
    console.print(summary)
    per = Table(title="per tag", title_justify="left")
    for name in ("tag", "precision", "recall", "F1", "support"):
        per.add_column(name, justify="left" if name == "tag" else "right")
    for row in rep.per_tag:
        per.add_row(row["tag"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                    f"{row['support']:,}")
    console.print(per)
    if rep.spans is not None:
        spans = Table(title="spans per type (CoNLL convention)", title_justify="left")
        for name in ("type", "precision", "recall", "F1", "support"):
            spans.add_column(name, justify="left" if name == "type" else "right")
        for row in rep.spans.per_type:
            spans.add_row(row["type"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                          f"{row['support']:,}")
        console.print(spans)
