"""Two stages in one run (``--pretrain SECONDS`` or ``--pretrain-steps N``): a language model
trained on the task's own training text, labels ignored, then the task started from it
(``--init``): ULMFiT's recipe (Howard and Ruder 2018) as one command.

    charrnn train --task classify train.tsv --val-file dev.tsv --pretrain 300 --time-budget 900

The language model is an ordinary run in RUN/pretrain (its text in RUN/pretrain/text.txt,
written once; its tokenizer the one the task would have trained, so token ids agree; its
shape the task's: cell, layers, hidden size, embedding size). When it ends,
RUN/pretrain/done.json says so, and the task's run starts in RUN with ``--init
RUN/pretrain``. ``--time-budget`` covers both stages: the task gets what the pretraining
budget leaves. ``--resume`` continues whichever stage was running when the run stopped:
each stage resumes exactly, so a run stopped anywhere and resumed ends with the weights of
one that was never stopped (with step limits; a time budget is wall time).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import atomic_write
from .events import Event, TrainResult

STAGE_DIR = "pretrain"
DONE = "done.json"
# The options of the task's run that the language model takes too.
_SHARED = ("cell", "layers", "hidden_size", "embedding_dim", "seed", "device", "precision", "threads", "log_interval",
           "rollback_after", "max_rollbacks", "rollback_lr_factor")


def stage_task(out: Path) -> str | None:
    """The task of the two-stage run in ``out`` (None if there is none)."""
    return (_read_json(out / STAGE_DIR / "task.json") or {}).get("task")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pretrain_budget(given: dict[str, Any]) -> tuple[float | None, int | None]:
    """(seconds, steps) of the pretraining stage; refuses what does not fit together."""
    seconds, steps = given.get("pretrain"), given.get("pretrain_steps")
    if seconds is not None and steps is not None:
        raise ConfigError("--pretrain (seconds) and --pretrain-steps both limit the pretraining stage: give one")
    if "init" in given:
        raise ConfigError("--pretrain trains the language model that --init would give: drop one of them")
    if seconds is not None and not seconds > 0:
        raise ConfigError(f"--pretrain must be a positive number of seconds, not {seconds}")
    if steps is not None and not steps >= 1:
        raise ConfigError(f"--pretrain-steps must be >= 1, not {steps}")
    budget = given.get("time_budget")
    if seconds is not None and budget is not None and budget <= seconds:
        raise ConfigError(f"--time-budget {budget:g} covers both stages: it must be more than --pretrain {seconds:g}")
    return seconds, steps


def run_with_pretraining(spec, corpus: list[str], given: dict[str, Any], out: Path, resume: bool, overwrite: bool,
                         on_event: Callable[[Event], None], on_note: Callable[[str], None], on_prepare,
                         start_time: float, dist, run_task) -> tuple[TrainResult, Path]:
    """Both stages of ``given``'s run of ``spec``, in ``out`` (``run_task``: training/run.py's)."""
    from ..tasks.registry import all_tasks
    from .run import RunSetup, _train_config, check_options, check_out_free

    if spec.pretrain_text is None or spec.init_names is None:
        takes = ", ".join(t.name for t in all_tasks() if t.pretrain_text is not None and t.init_names is not None)
        raise ConfigError(f"--pretrain trains a language model for a task to start from: --task {takes} "
                          f"(not {spec.name})")
    if dist is not None:
        raise ConfigError("--pretrain runs in one process: train the language model with --nproc, then --init it")
    stage_dir = out / STAGE_DIR
    if resume:  # the options the run started with, and any limits given now
        saved = _read_json(stage_dir / "task.json") or {}
        given = {**saved.get("given", {}), **given}
    seconds, steps = pretrain_budget(given)
    given = {k: v for k, v in given.items() if k not in ("pretrain", "pretrain_steps")}
    check_options(spec, given)
    done_file = stage_dir / DONE
    task_started = (out / "latest.safetensors").exists()
    if not resume:
        check_out_free(None, out, False, overwrite)
        if stage_dir.exists() and overwrite:
            shutil.rmtree(stage_dir)
        elif stage_dir.exists() and any(stage_dir.iterdir()):
            raise ConfigError(f"{stage_dir} holds an earlier pretraining stage: pass --resume to continue the run, "
                              f"--overwrite to replace it, or --out DIR")
    elif not stage_dir.exists() and not task_started:
        raise ConfigError(f"{out} holds no run to resume")

    def staged(stage: int, what: str) -> Callable[[Event], None]:
        def forward(event: Event) -> None:
            event.data.setdefault("stage", stage)
            on_event(event)
        on_event(Event("stage", 0, 0.0, {"stage": stage, "stages": 2, "what": what}))
        return forward

    if not done_file.exists():
        lm_given = {k: given[k] for k in _SHARED if k in given}
        lm_resume = (stage_dir / "latest.safetensors").exists()
        if not lm_resume:
            train_cfg = _train_config(spec, None, out, given)
            setup = RunSetup(spec, list(corpus), given, train_cfg, None, None, on_note, on_prepare)
            lines, tokenizer = spec.load("pretrain_text")(setup)
            _write_stage_inputs(stage_dir, lines, tokenizer)
            _write_json(stage_dir / "task.json", {"task": spec.name, "given": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in {**given, "pretrain": seconds,
                                                                         "pretrain_steps": steps}.items()}})
            shape = setup.model_config()
            for name in ("cell", "layers", "hidden_size", "embedding_dim"):
                lm_given.setdefault(name, getattr(shape, name))
            lm_given["tokenizer_file"] = stage_dir / "tokenizer.safetensors"
            lm_given.update(_fit_windows(sum(len(ids) for ids in tokenizer.encode_lines(lines))))
            lm_given.update({"time_budget": seconds} if seconds is not None else {"max_steps": steps})
        what = f"a language model on the task's training text ({f'{seconds:g} s' if seconds else f'{steps:,} steps'})"
        result, _ = run_task("lm", [str(stage_dir / "text.txt")], lm_given, out=stage_dir, resume=lm_resume,
                             on_event=staged(1, what), on_note=on_note, start_time=start_time if not resume else None)
        summary = {k: result.summary.get(k) for k in ("steps", "best_step", "val_bpc", "val_loss", "elapsed",
                                                       "checkpoint")}
        _write_json(done_file, {**summary, "seconds": seconds, "steps_limit": steps})
    pre = json.loads(done_file.read_text(encoding="utf-8"))
    # The tokenizer options made the language model's tokenizer, which the task takes from it.
    task_given = {k: v for k, v in given.items() if k not in ("tokenizer", "vocab_size", "tokenizer_file")}
    if not task_started:
        task_given["init"] = stage_dir
    else:
        task_given.pop("init", None)
    if seconds is not None and "time_budget" in task_given:
        task_given["time_budget"] = task_given["time_budget"] - seconds
    result, out = run_task(spec.name, corpus, task_given, out=out, resume=task_started, overwrite=False,
                           on_event=staged(2, f"--task {spec.name} from it (--init {stage_dir})"), on_note=on_note,
                           on_prepare=on_prepare, start_time=None)
    result.summary["pretrain"] = {**pre, "run_dir": str(stage_dir)}
    return result, out


def _fit_windows(tokens: int) -> dict[str, int]:
    """The language model's batch size and window when its defaults (32 x 128) would not
    give 16 steps an epoch of the 90% of the text it trains on: a small labelled set."""
    from ..config import TrainConfig

    batch, bptt = TrainConfig.batch_size, TrainConfig.bptt
    train = int(tokens * 0.9)
    if train >= batch * bptt * 16:
        return {}
    bptt = max(8, min(bptt, train // (batch * 16)))
    batch = max(1, min(batch, train // (bptt * 16)))
    return {"batch_size": batch, "bptt": bptt}


def _write_stage_inputs(stage_dir: Path, lines: list[str], tokenizer) -> None:
    from ..text.tokenizers import save_tokenizer

    stage_dir.mkdir(parents=True, exist_ok=True)
    # One example a line; a tokenizer without a newline (a char tokenizer of texts that
    # never span lines) reads them separated by spaces.
    sep = "\n" if tokenizer.unk_id not in tokenizer.encode("\n").tolist() else " "
    text = sep.join(lines) + "\n" * (sep == "\n")
    atomic_write(stage_dir / "text.txt", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    save_tokenizer(stage_dir / "tokenizer.safetensors", tokenizer)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
