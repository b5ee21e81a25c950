"""Small SQL helpers shared by the services' repositories."""

from typing import Any


class Where:
    """A parameterised WHERE clause built from optional filters, for list endpoints:

        w = Where()
        w.add("status = {}", status)            # skipped when status is None
        w.add("(created_at, id) < ({}, {})", at, id)
        rows = await conn.fetch(f"SELECT ... FROM t{w} ORDER BY ... LIMIT {w.param(limit)}", *w.args)
    """

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, *values: Any) -> None:
        """Adds the condition unless one of its values is None; `{}` marks each value's place."""
        if any(v is None for v in values):
            return
        self.clauses.append(template.format(*(self.param(v) for v in values)))

    def add_sql(self, condition: str) -> None:
        """A condition without parameters."""
        self.clauses.append(condition)

    def __str__(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""
