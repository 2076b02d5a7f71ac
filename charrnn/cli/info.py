"""``charrnn info``: what a checkpoint holds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

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
    table.add_row("model", f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, dropout {m.dropout}"
                  + (", tied weights" if m.tie_weights else ""))
    table.add_row("parameters", f"{params:,}")
    table.add_row("tokenizer", f"{ck.tokenizer.kind}, {ck.tokenizer.vocab_size} tokens")
    table.add_row("step", f"{ck.step:,}" + (f" (epoch {mt['epoch']:.2f})" if "epoch" in mt else ""))
    if "time" in mt:
        table.add_row("training time", f"{mt['time']:.0f} s")
    if "val_bpc" in mt:
        table.add_row("val bpc", f"{mt['val_bpc']:.4f} (loss {mt['val_loss']:.4f} nats)")
    if "best_val_bpc" in mt:
        table.add_row("best val bpc", f"{mt['best_val_bpc']:.4f} at step {mt.get('best_step', '?')}")
    tc = ck.train_config
    table.add_row("training", f"batch {tc.batch_size}, bptt {tc.bptt}, lr {tc.lr:g}, warmup {tc.warmup_steps}, "
                  f"grad clip {tc.grad_clip:g}, weight decay {tc.weight_decay:g}, seed {tc.seed}")
    if ck.sizing and ck.sizing.get("auto"):
        table.add_row("size", ck.sizing["reason"])
    console.print(table)
