"""Domain exceptions and their one HTTP error envelope.

    GuardrailError                    envelope {"error": {"type", "message", "param", "code"}}
    ├── InvalidRequest         400/413/422  bad input (type "invalid_request_error")
    │   ├── PayloadTooLarge        413      body over GUARDRAIL_MAX_BODY_BYTES
    │   └── UnknownCategory        422      a requested category id the tenant does not have
    ├── AuthenticationError    401          missing, unknown or revoked key/token
    ├── PermissionDenied       403          a valid credential of the wrong kind
    ├── NotFound               404          also for another tenant's objects (never 403)
    ├── Conflict               409          duplicate ids
    ├── LimitExceeded          422          too many categories
    ├── ModelUnavailable       503          engine down/unreachable (Retry-After)
    ├── ModelTimeout           504          engine too slow (Retry-After)
    ├── ModelOutputInvalid     502          the model answered something that is not Yes/No
    ├── PoisonEvent            400          a pushed judgement event that can never be stored
    └── LogStoreUnavailable    503          the log database is down; Pub/Sub retries the push

Routes declare these in OpenAPI through `ERROR_RESPONSES`; handlers are installed in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class GuardrailError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after


class InvalidRequest(GuardrailError):
    status, type, default_code = 422, "invalid_request_error", "invalid_value"


class PayloadTooLarge(InvalidRequest):
    status, default_code = 413, "payload_too_large"


class UnknownCategory(InvalidRequest):
    default_code = "unknown_category"


class AuthenticationError(GuardrailError):
    status, type, default_code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(GuardrailError):
    status, type, default_code = 403, "permission_error", "forbidden"


class NotFound(GuardrailError):
    status, type, default_code = 404, "not_found_error", "not_found"


class Conflict(GuardrailError):
    status, type, default_code = 409, "conflict_error", "already_exists"


class LimitExceeded(GuardrailError):
    status, type, default_code = 422, "invalid_request_error", "limit_exceeded"


class ModelUnavailable(GuardrailError):
    status, type, default_code = 503, "model_unavailable", "model_unavailable"


class ModelTimeout(GuardrailError):
    status, type, default_code = 504, "model_timeout", "model_timeout"


class ModelOutputInvalid(GuardrailError):
    status, type, default_code = 502, "model_error", "model_output_invalid"


class PoisonEvent(GuardrailError):
    status, type, default_code = 400, "invalid_request_error", "poison_message"


class LogStoreUnavailable(GuardrailError):
    status, type, default_code = 503, "unavailable", "log_store_unavailable"


class ErrorBody(BaseModel):
    type: str
    message: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorResponse} for c in codes}


ERROR_RESPONSES = _responses(400, 401, 413, 422)
JUDGE_ERROR_RESPONSES = _responses(400, 401, 413, 422, 502, 503, 504)
ADMIN_ERROR_RESPONSES = _responses(400, 401, 403, 404, 409, 413, 422)
PUSH_ERROR_RESPONSES = _responses(400, 401, 403, 413, 503)


def envelope(status: int, type_: str, message: str, param: str | None = None, code: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the one envelope; no bare 500 text ever leaves the service."""

    @app.exception_handler(GuardrailError)
    async def _domain(_: Request, exc: GuardrailError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return envelope(exc.status, exc.type, exc.message, exc.param, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        kind = str(first.get("type", ""))
        if kind == "json_invalid":
            return envelope(400, "invalid_request_error", "the request body is not valid JSON",
                            None, "invalid_json")
        param = _loc_param(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid request"))
        if kind == "missing":
            return envelope(422, "invalid_request_error", f"'{param}' is required", param, "missing_field")
        if kind == "model_attributes_type" or (param is None and kind.endswith("_type")):
            return envelope(400, "invalid_request_error", "the request body must be a JSON object",
                            None, "invalid_body")
        return envelope(422, "invalid_request_error", f"'{param}': {msg}", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "api_error")
        return envelope(exc.status_code, type_, str(exc.detail), None, f"http_{exc.status_code}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return envelope(500, "api_error", "internal error; the request id in X-Request-ID identifies it",
                        None, "internal_error")
