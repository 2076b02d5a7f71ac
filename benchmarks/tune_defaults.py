"""Train several configurations for the same time budget and print their validation bpc:
the measurement behind the defaults of `charrnn train`.

    python benchmarks/tune_defaults.py --budget 300 \
        '{"hidden_size": 512, "dropout": 0.1}' '{"hidden_size": 384, "dropout": 0.2, "batch_size": 16}'

Each argument is a JSON object of ModelConfig and TrainConfig fields (anything not given
keeps its default). Runs are sequential, so each has the whole machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

from charrnn.checkpoint import RunDirectory  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.text.corpora import resolve_corpus  # noqa: E402
from charrnn.text.io import read_text  # noqa: E402
from charrnn.text.streams import split_text  # noqa: E402
from charrnn.training import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="JSON objects of config fields")
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--corpus", default="tinyshakespeare")
    args = ap.parse_args()

    train_text, val_text = split_text(read_text(resolve_corpus(args.corpus)), 0.1)
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    rows = ["| config | val bpc (best) | final val bpc | steps | epochs | train tokens/s |", "|---|---|---|---|---|---|"]
    results = []
    for spec in args.configs:
        fields = json.loads(spec)
        m = {k: v for k, v in fields.items() if k in model_fields}
        t = {"time_budget": args.budget, **{k: v for k, v in fields.items() if k not in model_fields}}
        with tempfile.TemporaryDirectory() as tmp:
            s = train(train_text, val_text, ModelConfig(**m), TrainConfig(**t), RunDirectory(tmp)).summary
        results.append({"config": fields, **{k: s[k] for k in ("val_bpc", "final_val_bpc", "steps", "epochs", "train_tokens_per_sec")}})
        rows.append(f"| `{spec}` | {s['val_bpc']:.4f} | {s['final_val_bpc']:.4f} | {s['steps']:,} | {s['epochs']:.1f} | "
                    f"{s['train_tokens_per_sec']:,.0f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    cmd = "python benchmarks/tune_defaults.py --budget {} {}".format(args.budget, " ".join(f"'{c}'" for c in args.configs))
    record(f"Configurations for {args.budget:g} s on {args.corpus}", cmd, "\n".join(rows),
           {"benchmark": "tune_defaults", "budget": args.budget, "results": results})


if __name__ == "__main__":
    main()
