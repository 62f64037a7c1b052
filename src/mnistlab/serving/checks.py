"""HTTP-level checks of ``POST /predict``, done before LitServe queues a request.

LitServe decodes requests in batches inside its inference worker, where one bad request would fail the
whole batch, and it answers a body it cannot parse with HTTP 500. So everything that can be judged from
the HTTP request alone (content type, size, empty or unparsable body) is judged here, in the API server
process, and answered with a 4xx and a one-line JSON error before it reaches the queue.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from mnistlab.evaluation.images import FORMATS

MAX_BYTES = 5 * 1024 * 1024  # the largest request body accepted (an image, or its base64 in JSON)
DRAIN_BYTES = 64 * 1024 * 1024  # a refused body up to this size is read to its end before the answer
CONTENT_TYPES = ("multipart/form-data", "application/json")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_response(status: int, message: str) -> JSONResponse:
    """The one shape of every error this server sends: ``{"error": "<one line>"}``."""
    return JSONResponse({"error": message}, status_code=status)


class RequestChecks:
    """ASGI middleware that refuses bad ``POST`` requests to one path and passes the rest on unchanged.

    Args:
        app: The wrapped ASGI app (LitServe's FastAPI app).
        path: The checked route.
        max_bytes: Largest accepted body; larger ones get 413.
    """

    def __init__(self, app: Callable, path: str = "/predict", max_bytes: int = MAX_BYTES) -> None:
        self.app, self.path, self.max_bytes = app, path, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body, more = b"", True
        try:
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in CONTENT_TYPES:
                raise BadRequest(
                    415,
                    f"content type {content_type or '(none)'}: send multipart/form-data "
                    '(a file) or application/json ({"image": base64})',
                )
            if not headers.get("content-length", "0").isdigit():
                raise BadRequest(400, "bad Content-Length header")
            if int(headers.get("content-length", "0")) > self.max_bytes:
                raise BadRequest(413, f"request body over the {self.max_bytes // 2**20} MB limit")
            while more:  # read the body (at most max_bytes + one ASGI message) to judge it, then replay it below
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    raise BadRequest(413, f"request body over the {self.max_bytes // 2**20} MB limit")
            if not body:
                raise BadRequest(400, "empty request body: send an image")
            await check_body(scope, body, content_type)
        except BadRequest as e:
            if more:  # a client still sending would see its connection reset instead of this answer
                await drain(receive, DRAIN_BYTES)
            await error_response(e.status, str(e))(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def drain(receive: Receive, limit: int) -> None:
    """Reads and drops the rest of a refused request body, up to ``limit`` bytes."""
    dropped = 0
    while dropped <= limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


FORM_BOOLEANS = ("true", "false", "1", "0")  # what a form's return_input may say, in any case


class BadRequest(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def check_body(scope: Scope, body: bytes, content_type: str) -> None:
    """Raises BadRequest unless the body parses as a JSON object or as a form with a file in it."""
    if content_type == "application/json":
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "the body is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise BadRequest(400, f'expected a JSON object {{"image": "<base64 image: {FORMATS}>"}}')
        if not isinstance(payload.get("return_input", False), bool):  # "false", a string, was taken as true
            raise BadRequest(400, "return_input must be true or false (a JSON boolean)")
        return

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, receive).form()
    except Exception as e:  # Starlette's parse errors (no boundary, truncated parts) carry no common type
        raise BadRequest(400, f"unreadable multipart form ({getattr(e, 'detail', e)})") from None
    files = sum(hasattr(value, "read") for _, value in form.multi_items())
    flag = form.get("return_input", "false")
    await form.close()
    if not isinstance(flag, str) or flag.lower() not in FORM_BOOLEANS:  # "foo" or "" was taken as false
        raise BadRequest(400, "return_input must be true or false (a form field: true, false, 1 or 0)")
    if not files:
        raise BadRequest(400, "the form holds no file: upload the image as a file field (curl -F file=@digit.png)")
    if files > 1:  # one answer per request: which file it was for would be a guess
        raise BadRequest(400, f"the form holds {files} files: send one image per request")
