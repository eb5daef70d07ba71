"""Every refusal the API makes has one shape, ``{"detail": ..., "error": ...}`` (models.ErrorPublic),
documented on every route: OtamlError subclasses, request validation (the first failing field, named,
with what arrived cut short), and the framework's own 404/405.

Validation errors never echo the raw input back as JSON: an input of NaN or Infinity cannot be encoded
by a strict JSON response, which used to turn a 422 into a 500.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from otaml.core.errors import FieldError, OtamlError
from otaml.core.types import shown
from otaml.models import ErrorPublic

_WHAT = {
    400: "the request cannot be read (malformed header or body)",
    401: "no or a wrong admin or device token",
    403: "the manifest's signing key is not trusted",
    404: "no such resource",
    408: "the request body arrived too slowly",
    409: "conflicts with the current state (versions, rollouts, concurrent publishes)",
    413: "the request body is larger than this route accepts",
    422: "a field does not have the shape its type requires",
}
ERROR_RESPONSES: dict[int | str, dict] = {code: {"model": ErrorPublic, "description": text} for code, text in _WHAT.items()}


def error_body(exc: OtamlError) -> dict[str, str]:
    return {"detail": str(exc), "error": type(exc).__name__}


def _where(loc: tuple) -> str:  # type: ignore[type-arg]
    # Drop pydantic's validator labels ("function-after[check(), str]", "literal['']") from union members.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or "(" in p))]
    if parts and parts[0] == "body":
        return ".".join(parts[1:]) or "body"
    if len(parts) >= 2:
        return f"{parts[0]} {'.'.join(parts[1:])}"  # "query limit", "path rollout_id", "header x-otaml-..."
    return parts[0] if parts else "request"


def validation_message(errors: list[dict]) -> str:  # type: ignore[type-arg]
    first = errors[0] if errors else {}
    msg = str(first.get("msg", "rejected")).removeprefix("Value error, ")
    if "got " not in msg and "input" in first and first.get("type") != "missing":
        msg = f"{msg}, got {shown(first['input'])}"
    return f"invalid {_where(tuple(first.get('loc', ())))}: {msg}"


def install(app: FastAPI) -> None:
    @app.exception_handler(OtamlError)
    async def _otaml_error(_request: Request, exc: OtamlError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=error_body(exc), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=FieldError.status, content=error_body(FieldError(validation_message(list(exc.errors())))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "HTTPError")
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail), "error": name},
                            headers=getattr(exc, "headers", None))
