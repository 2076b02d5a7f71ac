"""Every error as JSON in the OpenAI API's shape, and the request size limit.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

A client mistake is a 4xx with that body (400 a bad field, 404 an unknown model or path,
413 a request too large, 429 a busy model); a bug in the server is a 500 with the same
shape, logged, and the server carries on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import CharrnnError
from .worker import Busy

log = logging.getLogger("charrnn.serve")


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, **kw: Any) -> JSONResponse:
    return JSONResponse(error_body(message, **kw), status_code=status)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One readable sentence, and the field it is about, from pydantic's first error."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "missing" and not loc:
        return "the request needs a JSON body", None
    # Keep the field name, not the union branch pydantic tried (e.g. "prompt.str").
    loc = [p for p in loc if p not in ("str", "int", "float", "bool", "list[str]", "list[list[str]]")
           and not p.isdigit() and not p.startswith(("list[", "function-", "tagged-union"))]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    if kind == "extra_forbidden":
        return f"unknown field {param!r}", param
    if kind == "missing":
        return f"the field {param!r} is required", param
    return (f"{param}: {msg}" if param else msg), param


def install(app: FastAPI) -> None:
    """Turn every exception into the OpenAI error shape."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = f"no such path: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, code="not_found" if exc.status_code == 404 else None)

    @app.exception_handler(CharrnnError)
    async def _charrnn(request: Request, exc: CharrnnError):
        return error_response(400, str(exc))

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return error_response(429, str(exc), type="rate_limit_error", code="busy")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("error while serving %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}", type="server_error")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413 before the app
    reads it (by its Content-Length, or by counting a body sent in chunks)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        body, more, messages = 0, True, []
        while more and scope["method"] in ("POST", "PUT", "PATCH"):
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += len(message.get("body", b""))
            if body > self.limit:
                return await self._refuse(send)
            more = message.get("more_body", False)

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        body = json.dumps(error_body(f"the request body is larger than this server accepts ({self.limit:,} bytes)",
                                     code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
