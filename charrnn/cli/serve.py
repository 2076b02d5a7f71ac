"""``charrnn serve``: trained models over HTTP, with an OpenAI-compatible completions
API, predictions and a web page (``charrnn.serve``; FastAPI and uvicorn, the ``serve``
extra)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import CharrnnError, ConfigError
from .app import app, err
from .common import Device, DeviceOpt, LatestOpt, ThreadsOpt, set_threads

_PANEL_LIMITS = "Limits"


def _limits_defaults():
    from ..serve.limits import Limits

    return Limits()


_L = _limits_defaults()


def _need_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharrnnError("charrnn serve needs FastAPI and uvicorn: pip install 'charrnn[serve]'") from None


def _name_and_path(arg: str) -> tuple[str, Path]:
    """RUN or NAME=RUN; a run is named after its directory (a checkpoint file: its
    directory's name when it is best/latest.safetensors, else its own)."""
    path = Path(arg)
    if "=" in arg and not path.exists():
        name, _, rest = arg.partition("=")
        if not name:
            raise ConfigError(f"{arg}: the model name before '=' is empty")
        return name, Path(rest)
    full = path.resolve()
    if full.is_file():
        return (full.parent.name if full.stem in ("best", "latest") else full.stem), path
    return full.name, path


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise CharrnnError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


@app.command(no_args_is_help=True)
def serve(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Run directories or checkpoint files to serve, each named after its directory, or NAME=RUN.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one; the start line says which).")] = 8000,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per choice a request may ask for.", rich_help_panel=_PANEL_LIMITS)] = _L.max_tokens,
    max_prompt_chars: Annotated[int, typer.Option(min=1, help="Most characters in one prompt or predict input.", rich_help_panel=_PANEL_LIMITS)] = _L.max_prompt_chars,
    max_request_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.", rich_help_panel=_PANEL_LIMITS)] = _L.max_request_bytes,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds of generation per request: it then ends with the text so far (finish reason 'time').", rich_help_panel=_PANEL_LIMITS)] = _L.timeout,
    max_rows: Annotated[int, typer.Option(min=1, help="Most samples one model generates at once; a request beyond that gets a 429.", rich_help_panel=_PANEL_LIMITS)] = _L.max_rows,
    batch: Annotated[bool, typer.Option("--batch/--no-batch", help="Step concurrent sampling requests to a model together, as one batch (--no-batch: each on its own, taking turns).")] = True,
    threads: ThreadsOpt = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request on stderr.")] = False,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
) -> None:
    """Serve trained models over HTTP: an OpenAI-compatible completions API
    (/v1/completions, /v1/models), predictions (/v1/predict) and a web page (/)."""
    _need_extra()
    named = [_name_and_path(r) for r in runs]
    names = [n for n, _ in named]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two runs are named {dup[0]!r}: give them names with NAME=RUN")
    import uvicorn

    from ..api import load
    from ..serve.app import create_app
    from ..serve.limits import Limits

    set_threads(threads)
    models = {name: load(path, device=device.value, latest=latest) for name, path in named}
    limits = Limits(max_tokens=max_tokens, max_prompt_chars=max_prompt_chars, max_request_bytes=max_request_bytes,
                    timeout=timeout, max_rows=max_rows)
    web = create_app(models, limits, batching=batch)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    logging.basicConfig(format="charrnn serve: %(levelname)s: %(message)s", level=logging.WARNING)
    shown = f"[{host}]" if ":" in host else host
    kinds = ", ".join(f"{name} ({web.state.served[name].kind_name})" for name in models)
    err.print(f"charrnn: serving {kinds} at http://{shown}:{bound}/ (the web page; the API under /v1); Ctrl-C stops",
              markup=False, highlight=False)
    config = uvicorn.Config(web, log_level="info" if access_log else "warning", access_log=access_log,
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
