"""What every loaded model offers, whatever its task (scikit-learn's estimator surface,
fastText's module): ``predict`` on a list of inputs, ``evaluate`` returning a report with
``as_dict()``, ``info()``, and ``count_unknown``; the tasks that generate add ``generate``
and ``sample``.

The command line (``predict``, ``eval accuracy``) and the server (``/v1/predict``) render
any model through the same three methods, so a task of another package works with them
once its API class says how one prediction reads:

    prediction_record(result)   the JSON fields of one prediction ({"label": ..., ...})
    prediction_text(result)     its line of text output
    evaluate_file(path)         the report of a labelled file (``as_dict()``, ``rows()``)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..checkpoint import Checkpoint
from ..errors import ConfigError
from ..runtime import resolve_device
from ..tasks.registry import TaskSpec, get_task


class Model:
    """A trained model of any task, loaded from its checkpoint (``charrnn.load``)."""

    generates = False  # a generator (sample/generate) rather than a predictor
    conditioned = False  # its generation takes a label (a label-conditioned generator)
    stepped = False  # the server steps its sampling itself (continuous batching of a language model)
    takes_tokens = False  # each input is a list of tokens (a string input is split at whitespace)

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.tokenizer = checkpoint.tokenizer
        self.spec: TaskSpec = get_task(checkpoint.task)

    @property
    def task(self) -> str:
        """The task that trained it ("lm", "classify", ..., or a plugin's)."""
        return self.checkpoint.task

    def info(self) -> dict[str, Any]:
        """Configs, parameter count, step and training metrics of the checkpoint."""
        return self.checkpoint.summary()

    # ----------------------------------------------------------- predicting

    def predict(self, inputs: list, **options: Any) -> list:
        """One prediction per input, in order (options include ``batch_size``, inputs per
        forward pass, and those the task declares in ``TaskSpec.predict_options``)."""
        raise ConfigError(f"a {self.spec.title} generates: use sample() or generate(), not predict()")

    def prediction_record(self, result: Any) -> dict[str, Any]:
        """The JSON fields of one prediction (without its input)."""
        return {"output": result}

    def prediction_text(self, result: Any) -> str:
        """One prediction as a line of text (no newline)."""
        return str(result)

    def read_inputs(self, path: str):
        """The inputs in file ``path`` when the task reads its own layout (an iterator), or
        None: ``charrnn predict`` then reads one input per line (a TSV/CSV file or a folder:
        the text of each example)."""
        return None

    def evaluate_file(self, path: str, **options: Any):
        """The report (``as_dict()``, ``rows()``) of the labelled examples in ``path``."""
        raise ConfigError(f"a {self.spec.title} is not measured on a labelled file")

    # ----------------------------------------------------------- tokens

    def unknown_in(self, text: str) -> int:
        """Tokens of ``text`` the model reads as unknown (0 where nothing can be unknown)."""
        unk = getattr(self.tokenizer, "unk_id", None)
        return 0 if unk is None or not text else int((self.tokenizer.encode(text) == unk).sum())

    def token_count(self, text: str) -> int:
        """The tokens a prompt or input becomes."""
        return int(self.tokenizer.encode(text).numel())

    def count_unknown(self, texts: str | Iterable[str]) -> int:
        """Tokens read as unknown in a text or in each of several texts, together."""
        return self.unknown_in(texts) if isinstance(texts, str) else sum(self.unknown_in(t) for t in texts)
