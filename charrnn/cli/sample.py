"""``charrnn sample``: generate text from a trained language model."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from ..config import DEFAULT_LENGTH, SampleConfig
from ..errors import ConfigError
from .app import app
from .common import (_S, CheckpointArg, Device, DeviceOpt, Engine, EngineOpt, flag, JsonOpt, LatestOpt, print_json,
                     quiet_stdout, ReplaceOpt, require_language_model, set_threads, ThreadsOpt, warn,
                     warnings_as_lines)


def _read_prime(prime: str | None, prime_file: str | None, replace_invalid: bool) -> str:
    from ..text.io import read_text

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
    separator: Annotated[Optional[str], typer.Option(help="Printed between samples or hypotheses [default: a blank line; a line break for a label-conditioned model: one sample per line].", show_default=False, rich_help_panel="Output")] = None,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 makes tokens already in the prime or output less likely (1 is off).", rich_help_panel="Repetition")] = _S.repetition_penalty,
    no_repeat_ngram: Annotated[int, typer.Option(help="Never produce the same n-gram of this many tokens twice (0 is off).", rich_help_panel="Repetition")] = _S.no_repeat_ngram,
    beam: Annotated[Optional[int], typer.Option(help="Beam search with this many beams (1 is greedy decoding).", rich_help_panel="Beam search")] = None,
    length_penalty: Annotated[float, typer.Option(help="Beam scores are divided by length to this power (0: no normalization).", rich_help_panel="Beam search")] = _S.length_penalty,
    num_return: Annotated[int, typer.Option(help="How many of the best hypotheses to print.", rich_help_panel="Beam search")] = _S.num_return,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    engine: EngineOpt = Engine.auto,
    threads: ThreadsOpt = None,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
    label: Annotated[Optional[str], typer.Option("--label", "-l", help="Generate sequences of this label (a model trained with --task conditional; required there).", show_default=False, rich_help_panel="Conditional generation")] = None,
    unique: Annotated[bool, typer.Option("--unique", help="No two samples alike: draw more until -N different ones are found (at most 20 N draws, or 100; a warning says when fewer were found).", rich_help_panel="Conditional generation")] = False,
    novel: Annotated[bool, typer.Option("--novel", help="No sample a copy of a text the model was trained on: draw more until -N are found (at most 20 N draws, or 100; a warning says when fewer were found).", rich_help_panel="Conditional generation")] = False,
) -> None:
    """Generate text from a trained model: sampling (streamed to stdout), greedy, or beam search."""
    set_threads(threads)
    if beam is not None:
        if beam < 1:
            raise ConfigError(f"--beam must be >= 1, not {beam}")
        if num_samples != 1:
            raise ConfigError("--num-samples does not apply to --beam (use --num-return)")
    elif num_return != 1:
        raise ConfigError("--num-return applies to --beam only (use --num-samples)")
    config = SampleConfig.build(
        flag, length=length, max_chars=max_chars, temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p,
        min_p=min_p, repetition_penalty=repetition_penalty, no_repeat_ngram=no_repeat_ngram, stop=tuple(stop or ()),
        max_time=max_time, seed=seed, num_samples=num_samples, beam=beam, length_penalty=length_penalty,
        num_return=num_return, engine=engine.value,
    )
    from ..api import load
    from ..decoding.engines import EngineFallback

    lm = load(checkpoint, device=device.value, latest=latest)
    if _is_conditional(lm):
        if engine is Engine.onnx:
            warn("--engine onnx is for language models; a label-conditioned model steps through its own module")
        _sample_conditional(lm, checkpoint, label, unique, novel, _read_prime(prime, prime_file, replace_invalid),
                            echo_prime, config, "\n" if separator is None else separator, json_out)
        return
    if label is not None or unique or novel:
        raise ConfigError(f"{checkpoint}: --label, --unique and --novel are for a label-conditioned model (trained "
                          f"with --task conditional)")
    separator = "\n\n" if separator is None else separator
    require_language_model(lm, checkpoint, "'charrnn predict' labels texts with it")
    prime_text = _read_prime(prime, prime_file, replace_invalid)
    unknown = lm.count_unknown(prime_text)
    if unknown:
        warn(f"the prime has {unknown} character(s) the model never saw in training; it reads them as unknown")
    head = prime_text if echo_prime else ""
    out = sys.stdout
    t = time.perf_counter()
    try:
        with warnings_as_lines(EngineFallback):
            if json_out or config.beam or config.num_samples > 1:
                results = lm.sample(prime_text, config)
                secs = time.perf_counter() - t
                if json_out:
                    tokens = sum(len(g.tokens) for g in results)
                    print_json({"prime": prime_text, "text": results[0].text, "samples": [g.as_dict() for g in results],
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
        quiet_stdout()


def _is_conditional(model) -> bool:
    return model.conditioned


def _sample_conditional(model, checkpoint, label: str | None, unique: bool, novel: bool, prime: str, echo: bool,
                        config: SampleConfig, separator: str, json_out: bool) -> None:
    """-N sequences of ``label``, each one prime + output, printed when all are found."""
    if label is None:
        raise ConfigError(f"{checkpoint}: a model conditioned on labels: choose one with --label "
                          f"({', '.join(model.labels)})")
    prime = prime.strip("\r\n")  # one example is one line
    unknown = model.count_unknown(prime)
    if unknown:
        warn(f"the prime has {unknown} character(s) the model never saw in training; it reads them as unknown")
    t = time.perf_counter()
    result = model.draw(label, prime=prime, unique=unique, novel=novel, config=config)
    secs = time.perf_counter() - t
    wanted = config.num_return if config.beam else config.num_samples
    if not result.complete:
        what = " and ".join(w for w, on in (("unique", unique), ("novel", novel)) if on)
        warn(f"found {len(result.generations)} {what} sample(s) of the {wanted} asked for in {result.draws} draws")
    gens = result.generations
    if json_out:
        tokens = sum(len(g.tokens) for g in gens)
        print_json({"label": label, "prime": prime, "text": gens[0].text if gens else "",
                    "samples": [g.as_dict() for g in gens], "draws": result.draws, "tokens": tokens, "seconds": secs,
                    "tokens_per_sec": tokens / secs if secs > 0 else None})
        return
    if gens:
        head = prime if echo else ""
        try:
            sys.stdout.write(separator.join(head + g.text for g in gens) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            quiet_stdout()
