"""Model kinds added from outside charrnn (a task plugin's own model), kept without torch.

``models.MODEL_KINDS`` holds charrnn's own kinds; a task registered with a model of its own
(``TaskSpec.model``) adds its kind here, as the config class and the "module:Class" of the
nn.Module, imported when a checkpoint of that kind is first built.
"""

from __future__ import annotations

EXTRA_MODEL_KINDS: dict[str, tuple[type, str]] = {}


def register_model_kind(kind: str, config: type, model: str) -> None:
    """Add (or replace) the model kind ``kind``: its config class and its module's path."""
    EXTRA_MODEL_KINDS[kind] = (config, model)


# Set by the task registry (tasks/registry.py): finds the task plugins, which register
# their model kinds, when a checkpoint names a kind not known yet.
discover = None


def find_extra(kind: str) -> tuple[type, str] | None:
    """The config class and module path of an added kind, looking for plugins once if needed."""
    if kind not in EXTRA_MODEL_KINDS and discover is not None:
        discover()
    return EXTRA_MODEL_KINDS.get(kind)
