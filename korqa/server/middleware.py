"""What stands between a request and the routes: the Host allow list, the API key, the body
limits, and errors as one JSON sentence (`{"error": …}`) with the right status."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from korqa.errors import IndexFault
from korqa.server.schemas import UPLOAD_PATH

log = logging.getLogger("korqa.server")

MAX_BODY = 2 * 1024 * 1024  # bytes; room for a few dozen pages of added documents
BODY_TIMEOUT = 30.0  # seconds a request body may take to arrive


class ApiError(Exception):
    """A client-facing error: the status and one readable sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": sentence}`: ours (ApiError), an index that cannot be written
    or read (korqa.errors: 507, 503), invalid bodies (400 for bad JSON, 415 for another
    content type, 422 naming the fields), Starlette's, and 500 for a crash, which is logged
    and never shown."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        path = getattr(request.scope.get("route"), "path", "")
        wanted, what = (("multipart/form-data", "the files as") if path == UPLOAD_PATH
                        else ("application/json", "the body as JSON with"))
        if request.method == "POST" and media_type != wanted:
            return error_response(415, f"send {what} 'Content-Type: {wanted}' (got "
                                       f"{media_type or 'no Content-Type'!r})")
        return _validation_response(error)

    @app.exception_handler(IndexFault)
    async def _fault(_: Request, error: IndexFault) -> JSONResponse:
        # A full disk (507), a read-only or damaged index (503): said in words, not a 500.
        return error_response(error.status, str(error))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail),
                              getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return error_response(500, "internal server error")


def _validation_response(error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error", "invalid JSON")
            return error_response(400, f"malformed JSON body: {reason}")
    fields = []
    for problem in problems:
        # loc starts with "body"; the rest names the field ("documents", 0, "title").
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "body"
        message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
        fields.append({"field": where, "message": message})  # never the input: it may be huge
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return error_response(422, f"invalid request: {summary}", fields=fields)


class HostAllowList:
    """Answer only requests whose Host header names this server: a page on another site that
    rebinds its DNS name to 127.0.0.1 still sends its own name, and is refused."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.hosts:
                response = error_response(421, "this server does not answer for that host "
                                               "name; `korqa serve --allowed-hosts` lists the "
                                               "names it does")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """The name of a Host header without its port: `[::1]:8000` → `::1`, `a:80` → `a`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_api_key(expected: str | None, authorization: str | None) -> None:
    """Writes need `Authorization: Bearer KEY` when the server has a key."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             expected.encode()):
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <api key>' "
                            "(the key korqa serve was started with)",
                       {"WWW-Authenticate": "Bearer"})


class BodyLimit:
    """Refuse request bodies over `max_bytes` (or, for a path in `paths`, its own limit) with
    413, whether or not they declare a length, and bodies still arriving `max_seconds` after
    they began with 408."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_seconds: float = BODY_TIMEOUT,
                 paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        max_bytes = self.paths.get(path.removeprefix(root) if root else path, self.max_bytes)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            response = error_response(413, f"request body over {_size(max_bytes)}")
            await response(scope, receive, send)
            return
        seen = 0
        give_up = asyncio.get_running_loop().time() + self.max_seconds

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                # FastAPI re-raises HTTPExceptions from reading the body; our handler turns
                # them into the JSON error.
                if seen > max_bytes:
                    raise HTTPException(413, f"request body over {_size(max_bytes)}")
                if message.get("more_body") and asyncio.get_running_loop().time() > give_up:
                    raise HTTPException(408, f"request body still arriving after "
                                             f"{self.max_seconds:g} s")
            return message

        await self.app(scope, limited, send)


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MB ({limit} bytes)" if limit >= 2**20 else f"{limit} bytes"
