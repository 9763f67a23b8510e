"""What only the JSON API says: its error bodies and who a token belongs to.

Everything else the API takes and returns is the services' (`duly.services.schemas`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FieldProblem(BaseModel):
    """One thing wrong with a request's shape, and where (pydantic's error, located)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(
        description="where: `body`, `query`, `path` or `header`, then the field's path",
        examples=[["body", "outcome"]],
    )
    msg: str = Field(description="what was wrong", examples=["Field required"])
    type: str = Field(description="pydantic's error type", examples=["missing"])
    input: Any = Field(default=None, description="the value found there (absent: none)")
    ctx: dict[str, Any] | None = Field(default=None, description="the rule's parameters")


class Problem(BaseModel):
    """Every 4xx/5xx answer: what was wrong, and what to do, in `detail`.

    A 422 for a request of the wrong shape (a missing field, a query parameter out of range)
    also lists each problem in `errors`; a 422 the service itself refuses (an unknown outcome,
    a key missing from the data) has `detail` only.
    """

    detail: str = Field(examples=["body.outcome: Field required"])
    errors: list[FieldProblem] | None = Field(
        default=None, description="for 422s on the request's shape: each problem, located"
    )


class Me(BaseModel):
    """The user a token belongs to, and what their role lets them see."""

    id: str
    name: str
    role: str
    member_of: list[str]
    manages: list[str]
