"""Domain errors: what a use case refuses, said without HTTP. Handlers raise these; the one mapping to
the contract's error body (status, `{"error": {"code", "message", "fields"}}`) is
oms_platform.http.install_error_handlers, so a handler reads the same whether HTTP, a CLI or a test
calls it.

    raise NotFound(f"shipment {shipment_id} not found")
    raise InvalidTransition(f"shipment {sid} is packed", [Violation("status", "must_be_picked", "...")])
    raise Conflict("order 42 is already cancelled", code="not_cancellable")
    raise RuleBroken("invalid request: ...", [Violation("payment.amount", "equals_total", "...")])

`code` is the contract's machine-readable error code: each class has a default, a use case may name a
more precise one (clients match on it, so keep codes stable once published)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Violation:
    """One field and the rule it breaks (an entry of the error body's `fields`)."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class DomainError(Exception):
    """A refusal of a use case. Subclasses say which kind (the HTTP edge maps kinds to statuses)."""

    default_code: ClassVar[str] = "refused"

    def __init__(self, message: str, fields: Sequence[Violation] = (), *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = tuple(fields)
        self.code = code or self.default_code


class NotFound(DomainError):
    """The thing asked for does not exist (or is not the caller's to see)."""

    default_code = "not_found"


class Conflict(DomainError):
    """The request is valid but clashes with the current state (a duplicate, a reused key, a limit)."""

    default_code = "conflict"


class InvalidTransition(Conflict):
    """A guarded status change asked from a status that does not allow it."""

    default_code = "invalid_transition"


class RuleBroken(DomainError):
    """The request breaks a rule of its own content (fields that disagree, a cursor not ours)."""

    default_code = "validation_failed"

    @classmethod
    def of(cls, violations: Sequence[Violation]) -> "RuleBroken":
        """One error for several violations, its message summing up the first few."""
        summary = "; ".join(f"{v.field}: {v.message}" for v in violations[:5])
        return cls(f"invalid request: {summary}", violations)


class RuleError(ValueError):
    """A ValueError that names its rule, for pydantic validators (the 422 body shows `rule`)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
