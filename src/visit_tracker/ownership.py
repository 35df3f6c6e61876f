"""Who may change a counter: its owner, holding the admin key shown once at creation, or the
operator, holding the token from the settings.

Admin keys are 256 random bits. Only their SHA-256 is stored: a key that random needs no slow
password hash, and a leaked database or export gives no key that works. Every comparison runs
in constant time, so response times tell nothing about how close a guess came.
"""

import hashlib
import hmac
import secrets

from visit_tracker.errors import Forbidden
from visit_tracker.stores import CounterRecord


def new_admin_key() -> str:
    """A fresh admin key: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def key_hash(admin_key: str) -> str:
    """What the store keeps of an admin key: its SHA-256, in lowercase hexadecimal."""
    return hashlib.sha256(admin_key.encode()).hexdigest()


def is_operator(presented: str, operator_token: str | None) -> bool:
    """Whether the presented credential is the operator token (never true without one)."""
    # Hashes of equal length are compared, so that timing tells nothing of the token's length.
    return operator_token is not None and hmac.compare_digest(
        key_hash(presented), key_hash(operator_token)
    )


def check_admin(record: CounterRecord, presented: str, *, operator_token: str | None) -> None:
    """Return if `presented` may change the counter; raise `Forbidden` when it is neither the
    counter's admin key nor the operator token."""
    owner = record.admin_key_hash
    # The hash is compared even for an unowned counter, so that timing shows nothing either.
    owns = hmac.compare_digest(key_hash(presented), owner or "0" * 64) and owner is not None
    if not (owns or is_operator(presented, operator_token)):
        raise Forbidden("the credential is neither this counter's admin key nor the operator token")
