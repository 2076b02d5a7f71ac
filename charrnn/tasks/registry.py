"""The task registry: every kind of sequence problem charrnn trains is declared once, as a
``TaskSpec``, and everything outside the task (the ``train`` command and ``charrnn.train``,
run files, ``info``, the progress lines, ``load``, ``serve``, ``export``) looks it up here
instead of comparing task names.

    spec = get_task("classify")        # by the name given to --task (or stored in a checkpoint)
    spec.accepts("pool")               # does --pool apply to it?
    spec.load("api")                   # the class charrnn.load returns for its checkpoints

The five built-in tasks are declared in ``charrnn/tasks/specs/``. A task of another package
registers the same way, with no edit of charrnn: call ``register_task(SPEC)``, or name the
spec in the package's entry points, which charrnn reads on first use::

    [project.entry-points."charrnn.tasks"]
    regress = "mypackage.regress:SPEC"

This module is light (standard library only): the command line reads it to build its
options before torch is imported. What a task does (its data, model, loss, API class,
export) is named by "module:attribute" strings and imported only when used, as Hugging
Face's Auto classes map a stored kind to the class that loads it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import kinds
from ..kinds import register_model_kind
from ..errors import ConfigError

ENTRY_POINT_GROUP = "charrnn.tasks"


@dataclass(frozen=True)
class Option:
    """A task's own option, declared without the command line's library: ``name`` is the
    keyword of ``charrnn.train`` and the run-file key (with dashes); the command line makes
    it ``--name`` (``flag`` overrides: "--crf" for an on-switch, "--a/--no-a" for a pair)."""

    name: str
    type: type  # bool, int, float, str or Path
    default: Any
    help: str
    panel: str | None = None  # the help panel (and run-file section) it is listed under
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    show_default: bool = True

    def check(self, value: Any) -> Any:
        """``value`` as this option takes it (a ConfigError naming the option if it cannot)."""
        where = "--" + self.name.replace("_", "-")
        if value is None:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, not {value!r}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.type is int and not isinstance(value, int)):
                raise ConfigError(f"{where}: expected {'a whole number' if self.type is int else 'a number'}, not {value!r}")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise ConfigError(f"{where}: {value} is out of range [{self.min}, {self.max}]")
            return self.type(value)
        if self.type is Path:
            return Path(value)
        value = getattr(value, "value", value)  # an Enum member
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(self.choices)}, not {value!r}")
        return value


@dataclass(frozen=True)
class TaskSpec:
    """One task, declared once.

    Names of options: every task takes the common training options (``TrainConfig``'s
    fields, the tokenizer, input and output options) except those in ``refuses``, its
    architecture options ``model_fields`` (fields of ``config`` set by options of the same
    name), and its own ``options`` (declared here) and ``shared`` ones (declared by another
    task, e.g. ``bidirectional``). The command line refuses any other option for it, in one
    line naming the tasks it is for.
    """

    name: str  # --task NAME; stored in every checkpoint it writes
    title: str  # "classifier": how info, serve and messages name a model of this task
    description: str  # one line for --task's help
    model_kind: str  # the model kind stored in its checkpoints (models.MODEL_KINDS)
    config: type  # the model's config dataclass
    setup: Callable[[Any], Any] | str  # setup(training.run.RunSetup) -> the Task to train (tasks/base.py)
    api: str  # "module:Class": the loaded model (api/base.py's Model), what charrnn.load returns
    info_title: str = ""  # how `charrnn info` names it, if not by its title
    model: str | None = None  # "module:Class" of the nn.Module, for a model kind charrnn does not have
    model_fields: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    shared: tuple[str, ...] = ()
    refuses: tuple[str, ...] = ()
    train_defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields that differ for it
    default_epochs: float | None = None  # with no limit given (None: TrainConfig's own rule)
    # --patience when neither --max-steps nor --epochs is given (None: no early stopping)
    default_patience: int | None = None
    fixed_on_resume: tuple[str, ...] = ()  # its options a resumed run keeps from the run (refused if given)
    reads: str = "one file"  # what CORPUS is, for the message when it gets something else
    one_file: bool = True  # CORPUS is one file (not '-', not several)
    sizes_model: bool = False  # the run chooses the model size from measured speed (the language model)
    serves: str = "predict"  # which endpoint answers for it: "completions" or "predict"
    predict_options: tuple[str, ...] = ()  # the /v1/predict request fields it takes (top_k, beam, ...)
    # What a person reads about it: rows of `charrnn info`, the start and end lines of training.
    info_rows: Callable[[Any], list[tuple[str, str]]] | None = None
    start_line: Callable[[dict[str, Any]], tuple[str, str]] | None = None
    done_line: Callable[[dict[str, Any]], tuple[str, str]] | None = None
    export: Callable[..., Any] | str | None = None  # (model, checkpoint, SideFiles) -> (graphs, JSON part), or None
    # ``--init RUN`` (training/transfer.py): the name(s) of the model's tensor(s) that a
    # language model's tensor becomes (None: not copied); a task without it does not take
    # --init. A task object with its own ``init_names`` (one that depends on its data) wins.
    init_names: Callable[[str], str | tuple[str, ...] | None] | None = None
    # Whether --init gives the task the language model's tokenizer (False: the task keeps
    # its own vocabulary and matches the model's embedding rows by text, ``Task.init_rows``).
    init_takes_tokenizer: bool = True
    # ``--pretrain`` (training/pretrain.py): setup(training.run.RunSetup) -> (the task's
    # training text as lines, labels dropped; the tokenizer the task would train on it).
    pretrain_text: Callable[[Any], tuple[list[str], Any]] | str | None = None

    @property
    def option_names(self) -> set[str]:
        return {o.name for o in self.options} | set(self.shared) | set(self.model_fields)

    def accepts(self, name: str) -> bool:
        """Whether option ``name`` applies to this task."""
        if name in self.option_names:
            return True
        if name == "init":
            return self.init_names is not None
        if name in self.refuses:
            return False
        return name in COMMON or not any(name in t.option_names for t in all_tasks())

    def model_config(self, given: dict[str, Any]):
        """The model config of a new run: the config's defaults with the options given."""
        mine = {k: v for k, v in given.items() if k in self.model_fields}
        return self.config(**{**dataclasses.asdict(self.config()), **mine})

    def load(self, what: str) -> Any:
        """One of the spec's fields that may name an object as "module:attribute" (``setup``,
        ``api``, ``export``), as the object."""
        value = getattr(self, what)
        return resolve(value) if isinstance(value, str) else value


# Options every task takes unless it refuses them: the TrainConfig fields and these.
COMMON = frozenset({
    "cell", "layers", "hidden_size", "embedding_dim", "dropout", "tokenizer", "vocab_size", "tokenizer_file",
    "val_file", "replace_invalid", "batch_size", "bptt", "lr", "warmup_steps", "min_lr_ratio", "weight_decay",
    "grad_clip", "seed", "rollback_after", "max_rollbacks", "rollback_lr_factor", "max_steps", "epochs",
    "time_budget", "patience", "average_last", "schedule", "layer_lr_decay", "unfreeze", "val_fraction", "val_max_chars", "device", "precision", "threads", "eval_interval",
    "log_interval",
})

_TASKS: dict[str, TaskSpec] = {}
_BUILTIN = ("lm", "classify", "seq2seq", "tag", "conditional")  # charrnn/tasks/specs/<name>.py, in --help order
_loaded = False


def resolve(path: str) -> Any:
    """The object named "package.module:attribute"."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task (or replace one of the same name); returns ``spec``, so a module may write
    ``SPEC = register_task(TaskSpec(...))``."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register_task takes a TaskSpec, not {type(spec).__name__}")
    if spec.model is not None:
        register_model_kind(spec.model_kind, spec.config, spec.model)
    _TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a registered task, and the model kind it added (tests)."""
    spec = _TASKS.pop(name, None)
    if spec is not None and spec.model is not None:
        kinds.EXTRA_MODEL_KINDS.pop(spec.model_kind, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _BUILTIN:
        register_task(importlib.import_module(f"{__package__}.specs.{name}").SPEC)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
        except Exception as e:  # a broken plugin must not take the built-in tasks down with it
            import warnings

            warnings.warn(f"charrnn: the task plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)
            continue
        if not isinstance(spec, TaskSpec):
            spec = getattr(spec, "SPEC", spec)
        if isinstance(spec, TaskSpec):
            register_task(spec)


kinds.discover = _load


def all_tasks() -> list[TaskSpec]:
    """Every registered task: the built-in ones first, then the plugins'."""
    _load()
    return list(_TASKS.values())


def get_task(name: str) -> TaskSpec:
    """The task named ``name``; a ConfigError naming the known ones if there is none."""
    _load()
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r} (tasks: {', '.join(_TASKS)}; a task of another package registers "
                          f"through the '{ENTRY_POINT_GROUP}' entry points)")
    return _TASKS[name]


def task_options() -> list[Option]:
    """The tasks' own options, each once, in the order of the tasks that declare them."""
    seen: dict[str, Option] = {}
    for spec in all_tasks():
        for opt in spec.options:
            seen.setdefault(opt.name, opt)
    return list(seen.values())


def tasks_taking(name: str) -> list[str]:
    """The names of the tasks option ``name`` applies to."""
    return [t.name for t in all_tasks() if t.accepts(name)]
