"""Response bodies shared by several routes."""

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error answer: one human-readable sentence (or, for 422, the list of problems)."""

    detail: str = Field(examples=["The visit store is unavailable; the visit was not counted."])


STORE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "The store did not answer in time. Nothing was counted; retry later.",
    }
}

STORE_UNCONFIRMED: dict[int | str, dict[str, Any]] = {
    504: {
        "model": ErrorBody,
        "description": "The store took the write but its answer was lost: the visit may or may "
        "not have been counted.",
    }
}

RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "This client made more requests than its rate limit allows; "
        "`Retry-After` says in how many seconds it may again.",
    }
}
