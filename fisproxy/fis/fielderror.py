"""Bad input as one error naming the field: `FieldError`, and `parse`, which turns pydantic's
validation errors into one.

A message reads `<field path>: <problem>`, the path in wire names (camelCase) with list indexes
as numbers: `actions.ThrottleAPI.parameters.percentage: must be an integer 1-100, got "150"`.
The FIS API answers it as a ValidationException; a templates file names its entry.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


class FieldError(ValueError):
    """Bad input, naming the field: `str()` is `<field path>: <problem>`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem

    @classmethod
    def from_pydantic(cls, error: ValidationError, prefix: str = "") -> FieldError:
        """The first problem pydantic found (and how many more), with its field path."""
        problems = error.errors()
        first = problems[0]
        field = ".".join([prefix] * bool(prefix) + [_printable(str(part)) for part in first["loc"]])
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            found = FieldError(".".join(p for p in (field, cause.field) if p), cause.problem)
        else:
            found = FieldError(field, _problem(first))
        if len(problems) > 1:
            more = len(problems) - 1
            return cls(found.field, f"{found.problem} (and {more} more problem{'s' * (more > 1)})")
        return found


def _printable(text: str) -> str:
    # Undecodable bytes (lone surrogates) shown escaped: messages must encode as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode()


def _problem(err: Any) -> str:
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    value = err.get("input")
    if isinstance(value, str):
        if len(value) > 60:
            value = value[:57] + "..."
        value = _printable(value)
    got = f', got "{value}"' if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return f"{err['msg']}{got}"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    """`model.model_validate(data)`, with errors as a FieldError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise FieldError.from_pydantic(e, prefix) from None
