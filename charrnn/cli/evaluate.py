"""``charrnn eval``: measure a trained model on a text or a labelled file."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CharrnnError
from . import dynamic_eval as dyn
from . import surprisal_view as sv
from .app import eval_app
from .common import (CheckpointArg, Device, DeviceOpt, EnsembleOpt, JsonOpt, LatestOpt, Precision, ReplaceOpt,
                     RescoreCandidates, RescoreCandidatesOpt, RescoreOpt, RescoreWeightOpt, ThreadsOpt, load_model,
                     print_json, require_language_model, rescoring, set_threads, warn)


@eval_app.command(no_args_is_help=True)
def perplexity(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Text to score (UTF-8), '-' for stdin, or a registered corpus name.", show_default=False)],
    streams: Annotated[Optional[int], typer.Option(min=1, help="Score as this many parallel streams, each warmed up on the 256 tokens before its part: about 3x faster than 1 stream and within 1e-6 bpc of it on tinyshakespeare; 1 is exact. Texts shorter than 512 tokens per stream use 1. [default: 16; 1 for --dynamic's score]", show_default=False)] = None,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    precision: Annotated[Precision, typer.Option(help="fp32 is exact; bf16 (or auto) is faster where the hardware has it.", rich_help_panel="Hardware")] = Precision.fp32,
    replace_invalid: ReplaceOpt = False,
    show: sv.ShowOpt = False,
    html: sv.HtmlOpt = None,
    show_chars: sv.ShowCharsOpt = 5000,
    dynamic: dyn.DynamicOpt = False,
    dynamic_lr: dyn.LrOpt = dyn.DEFAULTS["lr"],
    dynamic_decay: dyn.DecayOpt = dyn.DEFAULTS["decay"],
    dynamic_segment: dyn.SegmentOpt = dyn.DEFAULTS["segment"],
    dynamic_rule: dyn.RuleOpt = dyn.DEFAULTS["rule"],
    json_out: JsonOpt = False,
) -> None:
    """Perplexity per token and bits per character of a text under a trained model (an
    encoder-decoder: the teacher-forced perplexity of the targets of a source<TAB>target file).

    Every token after the first is scored; bits per character divide the total loss by the
    characters those tokens cover (all characters after the first token's, less unknown
    ones), so char and subword models compare on the same text."""
    set_threads(threads)
    from ..api import load
    from ..text.corpora import resolve_corpus
    from ..runtime import bf16_fallback_note
    from ..text.io import read_text

    dyn_cfg = dyn.config(dynamic_lr, dynamic_decay, dynamic_segment, dynamic_rule) if dynamic else None
    lm = load(checkpoint, device=device.value, latest=latest)
    sv.check(lm, checkpoint, show, html)
    if dynamic and not hasattr(lm, "evaluate_dynamic"):
        raise CharrnnError(f"{checkpoint}: --dynamic is for language models")
    if _is_seq2seq(lm):
        _seq2seq_perplexity(lm, file, json_out)
        return
    if lm.conditioned:
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
    result = lm.evaluate(text, streams=16 if streams is None else streams, precision=precision.value)
    secs = time.perf_counter() - t
    if result.tokens == 0 and not result.unknown:
        raise CharrnnError(f"{file}: needs at least 2 tokens to score (the first one is only context); this text is "
                           f"one {lm.tokenizer.kind} token")
    if result.unknown:
        warn(f"{result.unknown} character(s) never seen in training were read but not scored (counted as 'unknown')")
    view = sv.render(lm, text, result, show=show, page=html, limit=show_chars, json_out=json_out,
                     name=file) if show or html else {}
    extra = dyn.score(lm, text, dyn_cfg, streams or 1, result)[1] if dyn_cfg else {}
    if json_out:
        print_json({**result.as_dict(), "tokenizer": lm.tokenizer.kind, "seconds": secs, **view, **extra})
        return
    rows = [
        ("perplexity (per token)", f"{result.perplexity:.4f}"),
        ("bits per character", f"{result.bpc:.4f}"),
        ("loss (nats/token)", f"{result.loss:.4f}"),
        (f"tokens scored ({lm.tokenizer.kind})", f"{result.tokens:,}"),
        ("characters scored", f"{result.chars:,}"),
        ("unknown (not scored)", f"{result.unknown:,}"),
        ("chars/s", f"{result.chars / secs:,.0f}" if secs > 0 else "-"),
    ] + (dyn.rows(extra) if extra else [])
    Console(soft_wrap=True).print(figures(rows))


@eval_app.command(no_args_is_help=True)
def accuracy(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Labelled examples in a training layout: TSV/CSV with a header, fastText lines, or a folder with one file per label; for an encoder-decoder, source<TAB>target lines (a source on several lines has several references).", show_default=False)],
    text_column: Annotated[Optional[str], typer.Option(help="Column with the text [default: found from common names].", show_default=False)] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column with the label [default: found from common names].", show_default=False)] = None,
    tag_column: Annotated[Optional[str], typer.Option(help="A tagger's gold tag column [default: the one it was trained on].", show_default=False, rich_help_panel="Tagging")] = None,
    beam: Annotated[int, typer.Option(min=0, help="Beam width for an encoder-decoder (0: greedy).", rich_help_panel="Sequence to sequence")] = 0,
    ensemble: EnsembleOpt = None,
    rescore: RescoreOpt = None,
    rescore_weight: RescoreWeightOpt = 0.5,
    rescore_candidates: RescoreCandidatesOpt = RescoreCandidates.both,
    length_penalty: Annotated[float, typer.Option(min=0.0, help="Beam scores are divided by length ** this.", rich_help_panel="Sequence to sequence")] = 1.0,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Accuracy, macro-F1, per-label precision, recall, F1 and support, and the confusion
    matrix of a classifier on labelled examples; for an encoder-decoder on source<TAB>target
    pairs, sequence accuracy (any reference), WER, token error rate, BLEU and chrF; for a
    tagger on CoNLL data, token, unseen-token and sentence accuracy, per-tag scores and,
    for BIO/IOB tags, span precision, recall and F1."""
    set_threads(threads)
    from ..api import Classifier, LanguageModel, SequenceTagger
    from ..text.labelled import read_labelled

    model = load_model(checkpoint, ensemble, device.value, latest)
    if model.conditioned:
        raise CharrnnError(f"{checkpoint}: a generator conditioned on labels, not a classifier: 'charrnn eval "
                           f"perplexity' scores labelled examples under their labels")
    if rescore and not _is_seq2seq(model):
        raise CharrnnError("--rescore and --rescore-weight are for encoder-decoders (seq2seq)")
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
        _seq2seq_accuracy(model, file, beam, length_penalty, json_out,
                          rescoring(rescore, rescore_weight, rescore_candidates, beam, device.value, latest))
        return
    if beam or length_penalty != 1.0:
        raise CharrnnError("--beam and --length-penalty are for encoder-decoders (seq2seq)")
    if isinstance(model, LanguageModel):
        raise CharrnnError(f"{checkpoint}: a language model, not a classifier: 'charrnn eval perplexity' measures it")
    if not isinstance(model, Classifier):  # a task of another package reads its own labelled files
        _report(model.evaluate_file(file, text_column=text_column, label_column=label_column), json_out)
        return
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
    rows = [
        ("accuracy", f"{rep.accuracy:.4f}"),
        ("macro-F1", f"{rep.macro_f1:.4f}"),
        ("examples", f"{rep.total:,}"),
    ]
    console.print(figures(rows))
    console.print(scores("per label", "label", rep.per_label()))
    conf = Table(title="confusion (rows: gold, columns: predicted)", title_justify="left")
    conf.add_column("")
    for label in rep.labels:
        conf.add_column(label, justify="right")
    for label, row in zip(rep.labels, rep.confusion):
        conf.add_row(label, *(f"{n:,}" for n in row))
    console.print(conf)


def _report(rep, json_out: bool) -> None:
    """A report as every task's has it: ``as_dict()`` for --json, ``rows()`` of figures."""
    if json_out:
        print_json(rep.as_dict())
        return
    Console(soft_wrap=True).print(figures(rep.rows()))


def _is_seq2seq(model) -> bool:
    from ..api import Seq2SeqModel

    return isinstance(model, Seq2SeqModel)


def _seq2seq_accuracy(model, file: str, beam: int, length_penalty: float, json_out: bool, rescore: dict) -> None:
    """``rescore``: the --rescore options as keyword arguments of Seq2SeqModel.evaluate."""
    from ..text.pairs import group_references, read_pairs

    sources, references = group_references(read_pairs(file))
    unknown = model.count_unknown(sources)
    if unknown:
        warn(f"{unknown:,} source token(s) never seen in training were read as unknown")
    t = time.perf_counter()
    rep = model.evaluate(sources, references, beam=beam, length_penalty=length_penalty, **rescore)
    secs = time.perf_counter() - t
    if rep.note:
        warn(rep.note)
    if json_out:
        extra = {k: rescore[k] for k in ("rescore_weight", "rescore_candidates")} if rescore else {}
        print_json({**rep.as_dict(), "beam": beam, **extra, "unknown": unknown, "seconds": secs})
        return
    rows = [
        ("sequence accuracy", f"{rep.accuracy:.4f}"),
        ("WER (%)", f"{rep.wer:.2f}"),
        (f"token error rate (%, {model.target.kind} tokens)", f"{rep.ter:.2f}"),
        ("BLEU", "-" if rep.bleu is None else f"{rep.bleu:.2f}"),
        ("chrF", "-" if rep.chrf is None else f"{rep.chrf:.2f}"),
        ("sources", f"{rep.sequences:,}"),
        ("decoding", (f"beam {beam}" if beam else "greedy")
         + (f", rescored (weight {rescore['rescore_weight']:g}, "
            f"{'both beams' if rescore['rescore_candidates'] == 'both' else 'own beam'})" if rescore else "")),
        ("sources/s", f"{rep.sequences / secs:,.0f}" if secs > 0 else "-"),
    ]
    Console(soft_wrap=True).print(figures(rows))


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
    rows = [
        ("perplexity (per token, EOS included)", f"{result.perplexity:.4f}"),
        ("bits per character (+1 per example for its end)", f"{result.bpc:.4f}"),
        ("loss (nats/token)", f"{result.loss:.4f}"),
        (f"tokens scored ({model.tokenizer.kind})", f"{result.tokens:,}"),
        ("examples", f"{len(examples):,}"),
        ("unknown (not scored)", f"{result.unknown:,}"),
    ]
    Console(soft_wrap=True).print(figures(rows))


def _seq2seq_perplexity(model, file: str, json_out: bool) -> None:
    import math

    from ..text.pairs import read_pairs

    pairs = read_pairs(file)
    scored = model.perplexity([p.source for p in pairs], [p.target for p in pairs])
    loss, tokens = (scored.loss if scored.tokens else 0.0), scored.tokens
    result = {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "pairs": len(pairs)}
    if json_out:
        print_json(result)
        return
    rows = [
        ("perplexity (per target token, EOS included)", f"{result['perplexity']:.4f}"),
        ("loss (nats/token)", f"{loss:.4f}"),
        ("target tokens scored", f"{tokens:,}"),
        ("pairs", f"{len(pairs):,}"),
    ]
    Console(soft_wrap=True).print(figures(rows))


def _tag_accuracy(model, file: str, tag_column: str | None, json_out: bool) -> None:
    from ..text.tagged import read_tagged

    column = tag_column or model.tag_column
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
    sp = rep.spans
    rows = [("token accuracy", f"{rep.accuracy:.4f}"),
            ("unseen-token accuracy", "-" if rep.unseen_accuracy is None else f"{rep.unseen_accuracy:.4f}"),
            ("sentence accuracy", f"{rep.sentence_accuracy:.4f}"), ("macro-F1 (tags)", f"{rep.macro_f1:.4f}"),
            *([] if sp is None else [("span precision", f"{sp.precision:.4f}"), ("span recall", f"{sp.recall:.4f}"),
                                     ("span F1", f"{sp.f1:.4f}")]),
            ("tokens (unseen)", f"{rep.tokens:,} ({rep.unseen_tokens:,})"), ("sentences", f"{rep.sentences:,}"),
            ("tokens/s", f"{rep.tokens / secs:,.0f}" if secs > 0 else "-")]
    console = Console(soft_wrap=True)
    console.print(figures(rows))
    console.print(scores("per tag", "tag", rep.per_tag))
    if sp is not None:
        console.print(scores("spans per type (CoNLL convention)", "type", sp.per_type))


def figures(rows: list[tuple[str, str]]) -> Table:
    """Named figures as a two-column table: names in bold, values right-aligned."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def scores(title: str, key: str, rows: list[dict]) -> Table:
    """Precision, recall, F1 and support per ``row[key]`` (a label, a tag, a span type)."""
    table = Table(title=title, title_justify="left")
    for name in (key, "precision", "recall", "F1", "support"):
        table.add_column(name, justify="left" if name == key else "right")
    for row in rows:
        table.add_row(row[key], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                      f"{row['support']:,}")
    return table
