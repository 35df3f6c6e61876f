"""Response bodies and documented failure answers shared by several routes."""

from typing import Any

from pydantic import BaseModel, Field

Responses = dict[int | str, dict[str, Any]]
"""Extra answers of a route, as FastAPI's `responses=` documents them in OpenAPI."""


class ErrorBody(BaseModel):
    """Every error answer but 422: one human-readable sentence."""

    detail: str = Field(examples=["The visit store is unavailable; the visit was not counted."])


STORE_UNAVAILABLE: Responses = {
    503: {
        "model": ErrorBody,
        "description": "The store did not answer in time, or the server is shutting down. "
        "Nothing was done; retry after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    }
}

STORE_UNCONFIRMED: Responses = {
    504: {
        "model": ErrorBody,
        "description": "The store took the write but its answer was lost: the visit may or may "
        "not have been counted.",
    }
}

NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "No such counter."}}

NEEDS_ADMIN: Responses = {
    401: {
        "model": ErrorBody,
        "description": "No credential: send `Authorization: Bearer` with the counter's admin key "
        "or the operator token.",
    },
    403: {
        "model": ErrorBody,
        "description": "The credential is neither the counter's admin key nor the operator token.",
    },
}

BODY_TOO_LARGE: Responses = {
    413: {
        "model": ErrorBody,
        "description": "The request body is larger than the server's limit "
        "(`VISIT_TRACKER_MAX_BODY_SIZE`); it was refused unread.",
    }
}
"""Every route the framework serves may answer this (see `body_limit`): not the direct routes
in front of it, which read no body."""

UNREADABLE_BODY: Responses = {
    400: {"model": ErrorBody, "description": "The body could not be read as JSON text."}
}
"""Routes that read a JSON body may answer this, before any field is checked."""

RATE_LIMITED: Responses = {
    429: {
        "model": ErrorBody,
        "description": "This client made more requests than its rate limit allows; "
        "`Retry-After` says in how many seconds it may again.",
    }
}
