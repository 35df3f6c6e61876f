"""Named counters under `/v1/counters/{namespace}/{key}`: one counter per page, site or thing."""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BaseModel, Field

from visit_tracker.api.deps import TrackerDep
from visit_tracker.api.rate_limits import HITS
from visit_tracker.api.schemas import RATE_LIMITED, STORE_UNAVAILABLE, STORE_UNCONFIRMED
from visit_tracker.stores import CounterId
from visit_tracker.stores.base import NAME_PATTERN

router = APIRouter(prefix="/v1/counters", tags=["counters"])

NAME_RULE = "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'"


def follows_name_rule(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"must be {NAME_RULE}")
    return name


def name_parameter(what: str) -> Any:  # fastapi.Path() is typed as returning Any
    return Path(
        description=f"The counter's {what}: {NAME_RULE}.",
        json_schema_extra={"pattern": f"^{NAME_PATTERN.pattern}$"},
    )


Namespace = Annotated[str, name_parameter("namespace"), AfterValidator(follows_name_rule)]
Key = Annotated[str, name_parameter("key"), AfterValidator(follows_name_rule)]


class CounterValue(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    value: int = Field(description="The counter's value, this hit included.", examples=[42])


@router.post(
    "/{namespace}/{key}/hits",
    dependencies=[HITS],
    responses={**STORE_UNAVAILABLE, **STORE_UNCONFIRMED, **RATE_LIMITED},
)
async def hit(namespace: Namespace, key: Key, tracker: TrackerDep) -> CounterValue:
    """Count one hit on a counter, creating it on its first hit; answers its new value."""
    value = await tracker.visit(CounterId(namespace, key))
    return CounterValue(namespace=namespace, key=key, value=value)
