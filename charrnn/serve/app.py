"""The FastAPI application: ``create_app(models, limits)``.

    GET  /                    the web page (static/index.html)
    GET  /v1/models           the served models, OpenAI's list shape (plus task, labels, tags)
    GET  /v1/models/{id}      one of them
    POST /v1/completions      text completion, OpenAI's API (stream: server-sent events)
    POST /v1/predict          classifiers, taggers, encoder-decoders

Every error is JSON in OpenAI's shape (``errors``). Generation runs off the event loop
(``worker``), so requests never wait on each other's whole run.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import errors
from .completions import Completion
from .errors import APIError
from .limits import Limits
from .models import ServedModel
from .predict import check, run
from .schemas import CompletionRequest, PredictRequest

STATIC = Path(__file__).resolve().parent / "static"


def create_app(models: dict[str, Any], limits: Limits | None = None, batching: bool = True) -> FastAPI:
    """An ASGI app serving ``models`` (name -> what ``charrnn.load`` returned).

    ``batching``: sampling requests to one language model step together as the rows of
    one batch (``batching.Batch``); False runs each on its own, taking turns."""
    limits = limits or Limits()
    limiter = anyio.CapacityLimiter(limits.threads)
    served = {name: ServedModel(name, m, limits, limiter, batching) for name, m in models.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for s in served.values():
            s.close()

    app = FastAPI(title="charrnn", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.served, app.state.limits = served, limits
    errors.install(app)
    app.add_middleware(errors.BodyLimit, limit=limits.max_request_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def model(name: str) -> ServedModel:
        if name not in served:
            raise APIError(404, f"the model {name!r} does not exist; this server has: {', '.join(served)}",
                           param="model", code="model_not_found")
        return served[name]

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [s.card() for s in served.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        return model(name).card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await Completion(request, body, model(body.model), limits).respond()

    @app.post("/v1/predict")
    async def predict(body: PredictRequest):
        m = model(body.model)
        inputs = check(body, m, limits)
        data = await m.run_blocking(lambda: run(body, m, inputs))
        return JSONResponse({"object": "list", "model": m.name, "task": m.task, "data": data})

    return app
