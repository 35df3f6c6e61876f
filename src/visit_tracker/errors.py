"""The exceptions visit-tracker raises on purpose.

VisitTrackerError
├── ConfigError             a setting is invalid or contradicts another; the server won't start
├── StoreError              the store failed an operation; nothing of it was applied
│   ├── StoreUnavailable    the store did not answer in time (busy, down); retry later
│   └── StoreOpenError      the store could not be opened at start (bad path, corrupt file)
├── StoreOutcomeUnknown     a write reached the store but its answer was lost: it may be applied
├── MalformedExport         a file given to `import` is not a valid export; nothing was imported
├── ShuttingDown            the server is draining and takes no new visits
├── TooManyStreams          a worker serves as many event streams as it may; retry later
├── Refused                 a request the service will not carry out, as asked
│   ├── CounterNotFound     the counter does not exist
│   ├── CounterExists       a counter to create exists already
│   ├── Unauthenticated     a change to a counter came without a credential
│   └── Forbidden           its credential is neither the counter's admin key nor the operator's
└── RateLimited             a client made more requests than its quota allows; retry later
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visit_tracker.rate_limits import Decision


class VisitTrackerError(Exception):
    """Base class of every error raised by visit-tracker."""


class ConfigError(VisitTrackerError):
    """A setting is invalid or contradicts another; the message says which and why."""


class StoreError(VisitTrackerError):
    """The store failed an operation; none of its effects were applied."""


class StoreUnavailable(StoreError):
    """The store did not answer within the configured timeout."""


class StoreOpenError(StoreError):
    """The store could not be opened; the message names it and says why."""


class StoreOutcomeUnknown(VisitTrackerError):
    """A write was sent, then the connection broke or the store fell silent before confirming.

    Not a `StoreError`: the write may have been applied, and nothing this side can tell.
    """


class ImportIncomplete(VisitTrackerError):
    """An import that writes a chunk at a time (Redis) failed after it began writing: the
    counters written stand as exported, the rest as they were. Importing the file again finishes
    it, since an import makes counters as exported rather than adding to them."""


class MalformedExport(VisitTrackerError):
    """A line of an export file is invalid; the message names the line and the problem."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line


class ShuttingDown(VisitTrackerError):
    """The server is shutting down and accepts no new visits."""


class TooManyStreams(VisitTrackerError):
    """The worker serves as many event streams as `VISIT_TRACKER_MAX_STREAMS` allows."""


class Refused(VisitTrackerError):
    """The request cannot be carried out as asked; the message says why, for the client."""


class CounterNotFound(Refused):
    """The counter does not exist."""


class CounterExists(Refused):
    """A counter to create exists already."""


class Unauthenticated(Refused):
    """A change to a counter came without a credential."""


class Forbidden(Refused):
    """The credential is neither the counter's admin key nor the operator token."""


class RateLimited(VisitTrackerError):
    """A client made more requests than its quota allows; `decision` says when it may again."""

    def __init__(self, decision: "Decision") -> None:
        super().__init__(f"rate limited for {decision.retry_after} s")
        self.decision = decision
