"""``charrnn export``: a run's model as ONNX graphs with a JSON file beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err
from .common import CheckpointArg, JsonOpt, LatestOpt, print_json

HELP = (
    "Write the model as ONNX graphs, checked against PyTorch by onnxruntime, for use without charrnn.\n\n"
    "-o model.onnx writes model.onnx (the step of a language model or conditioned generator, a classifier's "
    "forward, a tagger's emissions, an encoder-decoder's encoder), model.start.onnx (a conditioned generator's "
    "initial state) or model.decoder.onnx (an encoder-decoder's decoder step), and model.json: the tokenizer, "
    "labels or tags (with a CRF's scores), special ids, and every graph's input and output names and shapes. "
    "A bpe, unigram or word tokenizer also writes its SentencePiece model (model.spm.model; "
    "model.source.spm.model and model.target.spm.model for an encoder-decoder).\n\n"
    "Needs pip install 'charrnn\\[onnx]'."
)


@app.command(no_args_is_help=True, help=HELP)
def export(
    checkpoint: CheckpointArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The main graph's file, ending in .onnx; the other files go beside it \\[default: model.onnx in the run directory].", show_default=False)] = None,
    latest: LatestOpt = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check every graph against PyTorch with onnxruntime (to 1e-4) before writing.")] = True,
    json_out: JsonOpt = False,
) -> None:
    from ..export import export_checkpoint, require_onnx
    from ..tasks.registry import get_task

    require_onnx()  # before loading anything: the one line that says what to install
    if output is None:
        output = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "model.onnx"
    result = export_checkpoint(checkpoint, output, latest=latest, verify=verify)
    if json_out:
        print_json({"files": [str(p) for p in result.files], "task": result.task, "model_kind": result.kind,
                    "graphs": {role: str(p) for role, p in result.graphs.items()}, "max_abs_diff": result.max_diff})
        return
    checked = ("checked by onnxruntime: largest difference from PyTorch "
               f"{result.max_diff:.1e}" if result.max_diff is not None else "not checked")
    err.print(f"charrnn: exported the {get_task(result.task).title} as {len(result.graphs)} graph"
              f"{'s' if len(result.graphs) > 1 else ''} ({checked})", markup=False, highlight=False)
    for path in result.files:
        typer.echo(str(path))
