"""The FIS API's errors: the error shapes of botocore's `fis` model, with the model's HTTP
statuses, rendered in rest-json by `aws/errors.py` like every AWS error: `x-amzn-ErrorType:
<Code>`, body `{"message": ...}`, and `x-amzn-RequestId`."""

from __future__ import annotations

from functools import cache

from fisproxy.aws import catalog, errors
from fisproxy.aws.call import AwsCall
from fisproxy.httpdata import ApiResponse

FIS_CALL = AwsCall(service="fis", api="fis", protocol="rest-json")


@cache
def _statuses() -> dict[str, int]:
    model = catalog.service_model("fis")
    return {s.name: s.metadata["error"]["httpStatusCode"] for s in model.error_shapes}


class FisError(Exception):
    """An error shape of the fis model: `code` is its name (`ValidationException`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return _statuses().get(self.code, 403 if self.code == "AccessDeniedException" else 400)


class UnknownOperation(Exception):
    """No operation of the model has this method and path (404, like AWS's front door)."""


def invalid(message: str) -> FisError:
    return FisError("ValidationException", message)


def not_found(message: str) -> FisError:
    return FisError("ResourceNotFoundException", message)


def conflict(message: str) -> FisError:
    return FisError("ConflictException", message)


def quota(message: str) -> FisError:
    return FisError("ServiceQuotaExceededException", message)


def denied(message: str) -> FisError:
    """AWS's answer to a caller without the permission (403; not one of the fis model's shapes,
    as in every AWS API): here a role the proxy may not pass (passrole.py)."""
    return FisError("AccessDeniedException", message)


def render_error(code: str, status: int, message: str, request_id: str | None = None) -> ApiResponse:
    """A FIS API error in the model's rest-json shape, rendered like every AWS error."""
    err = errors.render_error(FIS_CALL, status, code, message, request_id=request_id)
    return ApiResponse(err.status, dict(err.headers), err.body)


def shown(value: str, limit: int = 64) -> str:
    """`value` for an error message: at most `limit` characters, undecodable bytes escaped."""
    short = value if len(value) <= limit else value[: limit - 3] + "..."
    return short.encode("utf-8", "backslashreplace").decode()
