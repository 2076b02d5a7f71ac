"""``charrnn predict``: for each input line, a classifier's label or an encoder-decoder's
output, streamed in input order."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import CharrnnError, ConfigError
from .app import app
from .common import (CheckpointArg, Device, DeviceOpt, EnsembleOpt, LatestOpt, ReplaceOpt, RescoreCandidates,
                     RescoreCandidatesOpt, RescoreOpt, RescoreWeightOpt, ThreadsOpt, load_model, print_json,
                     quiet_stdout, rescoring, set_threads)

BATCH = 256  # lines per forward pass when the input is not a terminal


def _lines(file: str, replace_invalid: bool, text_column: str | None) -> Iterator[str]:
    """The texts to classify: one per line of a plain file or stdin, read as they come;
    a TSV/CSV file or a folder in the training layout gives its examples' texts."""
    from ..text.io import decode_utf8, open_binary, plain_name
    from ..text.labelled import read_labelled, strip_label

    path = Path(file)
    if file != "-" and (path.is_dir() or plain_name(path).suffix.lower() in (".tsv", ".csv")):
        for ex in read_labelled(path, text_column):
            yield ex.text
        return
    if text_column is not None:
        raise ConfigError("--text-column applies to a TSV/CSV file")
    if file == "-":
        if sys.stdin is None:
            raise CharrnnError("standard input is closed: nothing to read from '-'")
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        stream, name = open_binary(file), file
    offset = 0
    with stream if file != "-" else contextlib.nullcontext():
        for raw in stream:
            text = decode_utf8(raw, name, replace_invalid, offset)
            offset += len(raw)
            yield strip_label(text.rstrip("\r\n"))


def _chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@app.command(no_args_is_help=True)
def predict(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Texts, one per line ('-' for stdin, the default); fastText '__label__x' prefixes are ignored; a TSV/CSV file or a folder in the training layout gives its examples' texts.")] = "-",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Print the K most likely labels, each followed by its probability, tab-separated.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines per forward pass (a terminal is answered line by line).")] = BATCH,
    text_column: Annotated[Optional[str], typer.Option(help="Column with the text in a TSV/CSV input [default: found from common names].", show_default=False)] = None,
    tag_column: Annotated[Optional[str], typer.Option(help="A tagger's CoNLL input: the column to fill in [default: the one it was trained on].", show_default=False, rich_help_panel="Tagging")] = None,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    replace_invalid: ReplaceOpt = False,
    beam: Annotated[int, typer.Option(min=0, help="Beam width for an encoder-decoder (0: greedy, or sampling with --sample).", rich_help_panel="Sequence to sequence")] = 0,
    ensemble: EnsembleOpt = None,
    rescore: RescoreOpt = None,
    rescore_weight: RescoreWeightOpt = 0.5,
    rescore_candidates: RescoreCandidatesOpt = RescoreCandidates.both,
    n_best: Annotated[int, typer.Option(min=1, help="Print the N best outputs of each source (beam search) or N samples, each followed by its score, tab-separated.", rich_help_panel="Sequence to sequence")] = 1,
    length_penalty: Annotated[float, typer.Option(min=0.0, help="Beam scores are divided by length ** this.", rich_help_panel="Sequence to sequence")] = 1.0,
    sample: Annotated[bool, typer.Option("--sample", help="Draw each output from the model's distribution instead of the most likely one.", rich_help_panel="Sequence to sequence")] = False,
    temperature: Annotated[float, typer.Option(min=0.0, help="With --sample: sharpen (<1) or flatten (>1) the distribution.", rich_help_panel="Sequence to sequence")] = 1.0,
    top_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="With --sample: nucleus sampling.", rich_help_panel="Sequence to sequence")] = None,
    min_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="With --sample: drop tokens below this times the top probability.", rich_help_panel="Sequence to sequence")] = None,
    seed: Annotated[Optional[int], typer.Option(help="With --sample: seed for reproducible draws.", rich_help_panel="Sequence to sequence")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per input line: the text, the label and its probability, and the top-k (an encoder-decoder: the source and its outputs with scores).", rich_help_panel="Output")] = False,
) -> None:
    """Predict the label of each input line with a classifier, or its output with an
    encoder-decoder: one output line per input line (N lines with --n-best N); with a tagger,
    the tags of each sentence (one per line, tokens separated by spaces), or a CoNLL file
    given back with its tag column filled in."""
    set_threads(threads)
    from ..api import Classifier, Seq2SeqModel, SequenceTagger

    model = load_model(checkpoint, ensemble, device.value, latest)
    if model.conditioned:
        raise CharrnnError(f"{checkpoint}: a label-conditioned generator: 'charrnn sample {checkpoint} --label LABEL' "
                           f"generates sequences of a label with it")
    if rescore and not isinstance(model, Seq2SeqModel):
        raise ConfigError("--rescore is for encoder-decoders (seq2seq)")
    if isinstance(model, SequenceTagger):
        if text_column is not None or top_k != 1:
            raise ConfigError("--text-column and --top-k are for classifiers; a tagger reads one sentence per line "
                              "(or CoNLL) and gives each token its tag")
        _predict_tags(model, file, replace_invalid, batch_size, json_out, tag_column)
        return
    if tag_column is not None:
        raise ConfigError("--tag-column is for taggers (--task tag)")
    if isinstance(model, Seq2SeqModel):
        if text_column is not None or top_k != 1:
            raise ConfigError("--text-column and --top-k are for classifiers; an encoder-decoder reads one source per "
                              "line (--n-best gives several outputs)")
        options = {"temperature": temperature, "top_p": top_p, "min_p": min_p, "seed": seed} if sample else {}
        if not sample and (temperature != 1.0 or top_p is not None or min_p is not None or seed is not None):
            raise ConfigError("--temperature, --top-p, --min-p and --seed apply with --sample")
        if sample and beam:
            raise ConfigError("--sample and --beam are two ways to decode: give one")
        if n_best > 1 and not beam and not sample:
            raise ConfigError(f"--n-best {n_best} needs a beam search (--beam {n_best} or wider) or --sample")
        if beam and n_best > beam:
            raise ConfigError(f"--n-best ({n_best}) cannot exceed --beam ({beam})")
        more = rescoring(rescore, rescore_weight, rescore_candidates, beam, device.value, latest)
        if sample and more:
            raise ConfigError("--rescore re-ranks a beam search, not samples")
        _predict_seq2seq(model, file, replace_invalid, batch_size, json_out,
                         dict(beam=beam, n_best=n_best, length_penalty=length_penalty, **options, **more))
        return
    if model.generates:
        raise CharrnnError(f"{checkpoint}: a language model, not a classifier: 'charrnn sample' generates text "
                           f"from it")
    options = {"top_k": top_k} if isinstance(model, Classifier) else {}  # another package's task: its defaults
    size = 1 if file == "-" and sys.stdin is not None and sys.stdin.isatty() else batch_size
    out = sys.stdout
    own = model.read_inputs(file) if file != "-" else None  # a task that reads its own file layout
    try:
        for chunk in _chunks(own if own is not None else _lines(file, replace_invalid, text_column), size):
            for text, best in zip(chunk, model.predict(chunk, batch_size=size, **options)):
                if json_out:
                    print_json({"text": text, **model.prediction_record(best)})
                    continue
                out.write(model.prediction_text(best) + "\n")
            out.flush()
    except BrokenPipeError:
        quiet_stdout()


def _predict_seq2seq(model, file: str, replace_invalid: bool, batch_size: int, json_out: bool, options: dict) -> None:
    from ..text.pairs import read_sources

    size = 1 if file == "-" and sys.stdin is not None and sys.stdin.isatty() else batch_size
    if file == "-" and sys.stdin is None:
        raise CharrnnError("standard input is closed: nothing to read from '-'")
    out = sys.stdout
    unknown = 0
    n_best = options["n_best"]
    try:
        for chunk in _chunks(read_sources(file, replace_invalid), size):
            unknown += model.count_unknown(chunk)
            for source, best in zip(chunk, model.predict(chunk, batch_size=size, **options)):
                if json_out:
                    print_json({"source": source, "output": best[0][0], "score": best[0][1],
                                "n_best": [{"output": o, "score": sc} for o, sc in best]})
                elif n_best == 1:
                    out.write(best[0][0] + "\n")
                else:
                    out.write("".join(f"{o}\t{sc:.4f}\n" for o, sc in best))
            out.flush()
    except BrokenPipeError:
        quiet_stdout()
        return
    if unknown:
        from .common import warn

        warn(f"{unknown:,} source token(s) never seen in training were read as unknown")


def _predict_tags(model, file: str, replace_invalid: bool, batch_size: int, json_out: bool, tag_column) -> None:
    from ..text.io import open_binary
    from ..text.tagged import is_conll, read_blocks

    if file == "-":
        if sys.stdin is None:
            raise CharrnnError("standard input is closed: nothing to read from '-'")
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        stream, name = open_binary(file), file
    interactive = file == "-" and sys.stdin.isatty()
    size = 1 if interactive else batch_size
    column = tag_column or model.tag_column
    lines = iter(stream)
    first = next(lines, b"")
    lines = itertools.chain([first], lines) if first else iter(())
    out = sys.stdout
    try:
        with stream if file != "-" else contextlib.nullcontext():
            if first and is_conll(first.decode("utf-8", "replace"), name):
                for chunk in _chunks(read_blocks(lines, name, column, replace_invalid), size):
                    tagged = model.predict([b.tokens for b in chunk], size)
                    for block, tags in zip(chunk, tagged):
                        if json_out:
                            _tag_json(block.tokens, tags)
                        else:
                            out.write(block.write([t for t, _ in tags]))
                    out.flush()
                return
            for chunk in _chunks(_plain_sentences(lines, name, replace_invalid), size):
                for tokens, tags in zip(chunk, model.predict(chunk, size)):
                    if json_out:
                        _tag_json(tokens, tags)
                    else:
                        out.write(" ".join(t for t, _ in tags) + "\n")
                out.flush()
    except BrokenPipeError:
        quiet_stdout()


def _tag_json(tokens: list[str], tags: list[tuple[str, float]]) -> None:
    print_json({"tokens": tokens, "tags": [t for t, _ in tags], "probabilities": [p for _, p in tags]})


def _plain_sentences(lines: Iterator[bytes], name: str, replace_invalid: bool) -> Iterator[list[str]]:
    """One sentence per line, tokens separated by whitespace (an empty line: no tokens)."""
    from ..text.io import decode_utf8

    offset = 0
    for raw in lines:
        text = decode_utf8(raw, name, replace_invalid, offset)
        offset += len(raw)
        yield text.split()

