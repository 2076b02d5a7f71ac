"""The command-line reference of the documentation (docs/reference/cli.md), generated from
the Typer app itself, so it lists every command and option as they are: their flags, what
they take, their defaults and their help. The site's build hook (docs/hooks/reference.py)
puts it into the page; tests/test_docs_reference.py checks it against the app."""

from __future__ import annotations

from typing import Any


def _commands(command, path: list[str]):
    """(path, click command) for every command under ``command``, in the help's order."""
    subs = getattr(command, "commands", None)
    if subs is None:
        yield path, command
        return
    for name in command.list_commands(None):
        yield from _commands(subs[name], [*path, name])


def _annotation(param) -> Any:
    """The value type of a parameter: typer's own descriptor (typer >= 0.22), else click's."""
    import enum
    import typing

    hint = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if hint is None:
        kind = getattr(param, "type", None)
        choices = getattr(kind, "choices", None)
        return tuple(choices) if choices else getattr(kind, "name", "text")
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) in (list, tuple):
        hint = typing.get_args(hint)[0]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return tuple(m.value for m in hint)
    return hint


def _kind(param) -> str:
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return "flag"
    hint = _annotation(param)
    if isinstance(hint, tuple):
        return " | ".join(str(c) for c in hint)
    name = {int: "int", float: "float", str: "text", bool: "flag"}.get(hint, getattr(hint, "__name__", str(hint)))
    name = "path" if name in ("Path", "PosixPath") else name
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is None and high is None:
        return name
    return f"{name} ({'' if low is None else low}..{'' if high is None else high})"


def _default(param) -> str:
    if getattr(param, "show_default", True) is False or param.required:
        return ""
    value = param.default
    if callable(value) or value is None or value == () or value == []:
        return ""
    value = getattr(value, "value", value)
    if isinstance(value, bool):
        if getattr(param, "secondary_opts", None):
            return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
        return "" if value is False else "on"
    return f"`{value}`"


def _cell(text: str) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|").replace("[", "\\[")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def option_names(param) -> list[str]:
    """Every flag of an option (``--tie-weights``, ``--no-tie-weights``), or an argument's name."""
    if getattr(param, "param_type_name", "") == "argument":
        return [param.name.upper()]
    return [*param.opts, *getattr(param, "secondary_opts", [])]


def markdown(app: Any = None) -> str:
    """The reference of every command of ``app`` (charrnn's by default) as Markdown."""
    import typer

    if app is None:
        from .. import cli  # noqa: F401  (importing the package registers every command on the app)
        from .app import app
    root = typer.main.get_command(app)
    out = ["# Command-line reference", "",
           "Generated from the command line itself (`charrnn COMMAND --help` says the same). Options of "
           "`charrnn train` that belong to one task say so in their help; the task refuses the others "
           "in one line.", ""]
    for path, command in _commands(root, ["charrnn"]):
        if command.hidden:
            continue
        name = " ".join(path)
        args = "".join(f" {a.name.upper()}" for a in command.params
                       if getattr(a, "param_type_name", "") == "argument")
        paragraphs = [" ".join(par.split()) for par in (command.help or "").strip().split("\n\n") if par.strip()]
        out += [f"## {name}", "", *[x for par in paragraphs for x in (par, "")],
                f"```text\n{name} [OPTIONS]{args}\n```", ""]
        rows = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
        if rows:
            out += ["| option | takes | default | what it does |", "|---|---|---|---|"]
            for p in rows:
                flags = ", ".join(f"`{o}`" for o in option_names(p))
                panel = getattr(p, "rich_help_panel", None)
                help_text = _cell(getattr(p, "help", "") or "") + (f" *({panel})*" if panel else "")
                out.append(f"| {flags} | {_cell(_kind(p))} | {_default(p)} | {help_text} |")
            out.append("")
    return "\n".join(out) + "\n"
