"""Schema snapshots of every published message: a change that would break consumers (or the messages
already on the topics) fails here. Compatible additions pass; refresh the snapshots with
UPDATE_SCHEMA_SNAPSHOTS=1 uv run pytest tests/contracts."""

import importlib
import pkgutil
import warnings
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, Field

import oms_contracts
from oms_contracts import EVENT_MODELS, Envelope
from oms_contracts.types import Money
from tests.contracts.compat import REFRESH, SnapshotError, breaking_changes, check_snapshot, updating

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _published() -> dict[str, type[BaseModel]]:
    """Every published schema by snapshot name: each event model ("OrderPlaced.v1") and the envelope."""
    for info in pkgutil.walk_packages(oms_contracts.__path__, "oms_contracts."):
        importlib.import_module(info.name)  # modules that register() their models
    models = {f"{t}.v{v}": model for (t, v), model in sorted(EVENT_MODELS.items())}
    models["Envelope.v1"] = Envelope
    return models


PUBLISHED = _published()


def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(mode="serialization")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_schema_is_compatible_with_its_snapshot(name: str) -> None:
    note = check_snapshot(name, _schema(PUBLISHED[name]), SNAPSHOTS, update=updating())
    if note:
        warnings.warn(note, stacklevel=1)


def test_every_snapshot_still_has_its_model() -> None:
    stale = sorted(p.name.removesuffix(".json") for p in SNAPSHOTS.glob("*.json") if p.stem not in PUBLISHED)
    assert not stale, (
        f"snapshots without a model: {stale}. A published event cannot be withdrawn while consumers or "
        f"topics may still hold it: restore its model (deprecated if need be). Only if it was never "
        f"released, delete its snapshot file from {SNAPSHOTS}."
    )


def test_a_model_without_a_snapshot_fails_with_a_clear_message(tmp_path: Path) -> None:
    class ParcelWeighedV1(BaseModel):
        EVENT_TYPE: ClassVar[str] = "ParcelWeighed"
        EVENT_VERSION: ClassVar[int] = 1
        order_id: UUID
        grams: int

    with pytest.raises(SnapshotError) as info:
        check_snapshot("ParcelWeighed.v1", _schema(ParcelWeighedV1), SNAPSHOTS)
    message = str(info.value)
    assert "no schema snapshot for ParcelWeighed.v1" in message and REFRESH in message

    # The refresh writes it; from then on the same schema passes.
    assert check_snapshot("ParcelWeighed.v1", _schema(ParcelWeighedV1), tmp_path, update=True)
    assert (tmp_path / "ParcelWeighed.v1.json").exists()
    assert check_snapshot("ParcelWeighed.v1", _schema(ParcelWeighedV1), tmp_path) is None


def test_an_incompatible_change_fails_and_says_to_publish_a_new_version(tmp_path: Path) -> None:
    class Before(BaseModel):
        order_id: UUID
        reason: str

    class After(BaseModel):
        order_id: UUID

    check_snapshot("OrderHeld.v1", _schema(Before), tmp_path, update=True)
    with pytest.raises(SnapshotError) as info:
        check_snapshot("OrderHeld.v1", _schema(After), tmp_path)
    message = str(info.value)
    assert "reason: property removed" in message
    assert "OrderHeld v2" in message and REFRESH in message


def test_a_compatible_change_passes_and_says_how_to_refresh(tmp_path: Path) -> None:
    class Before(BaseModel):
        order_id: UUID

    class After(BaseModel):
        order_id: UUID
        note: str | None = None

    check_snapshot("OrderNoted.v1", _schema(Before), tmp_path, update=True)
    note = check_snapshot("OrderNoted.v1", _schema(After), tmp_path)
    assert note is not None and "changed compatibly" in note and REFRESH in note


# --- the compatibility checker ----------------------------------------------------------------------


class Line(BaseModel):
    sku: str
    quantity: int


class LineWithoutQuantity(BaseModel):
    sku: str


class Base(BaseModel):
    order_id: UUID
    status: Literal["pending", "confirmed"]
    amount: Money
    lines: list[Line]
    note: str | None = None
    at: datetime


def _changes(old: type[BaseModel], new: type[BaseModel]) -> list[str]:
    return breaking_changes(_schema(old), _schema(new))


def test_the_same_schema_has_no_breaking_change() -> None:
    assert _changes(Base, Base) == []


def test_a_removed_property_is_flagged() -> None:
    class New(BaseModel):
        order_id: UUID
        status: Literal["pending", "confirmed"]
        amount: Money
        lines: list[Line]
        note: str | None = None

    assert _changes(Base, New) == ["at: property removed"]


def test_an_added_optional_property_is_not_flagged() -> None:
    class New(Base):
        channel: str | None = None
        tags: list[str] = Field(default_factory=list)

    assert _changes(Base, New) == []


def test_an_added_required_property_is_flagged() -> None:
    class New(Base):
        channel: str

    assert _changes(Base, New) == ["channel: new required property"]


def test_a_property_made_required_is_flagged() -> None:
    class New(Base):
        note: str | None

    assert _changes(Base, New) == ["note: property newly made required"]


def test_a_changed_type_is_flagged() -> None:
    class MoneyAsFloat(Base):
        amount: float  # type: ignore[assignment]

    class UuidAsText(Base):
        order_id: str  # type: ignore[assignment]

    class Nullable(Base):
        at: datetime | None  # type: ignore[assignment]

    assert _changes(Base, MoneyAsFloat) == ["amount: type changed from string to number"]
    assert _changes(Base, UuidAsText) == ["order_id: format changed from uuid to None"]
    assert _changes(Base, Nullable) == ["at: type changed from string to null | string"]


def test_enum_values_removed_are_flagged_and_added_are_not() -> None:
    class Fewer(Base):
        status: Literal["pending"]  # type: ignore[assignment]

    class More(Base):
        status: Literal["pending", "confirmed", "cancelled"]  # type: ignore[assignment]

    class AnyText(Base):
        status: str  # type: ignore[assignment]

    assert _changes(Base, Fewer) == ["status: enum values removed: 'confirmed'"]
    assert _changes(Base, More) == []
    assert _changes(Base, AnyText) == []  # widened, like added values
    assert _changes(AnyText, Base) == ["status: values newly restricted to 'confirmed', 'pending'"]


def test_changes_inside_nested_models_and_lists_are_flagged_with_their_path() -> None:
    class New(Base):
        lines: list[LineWithoutQuantity]  # type: ignore[assignment]

    class Scalars(Base):
        lines: list[str]  # type: ignore[assignment]

    assert _changes(Base, New) == ["lines[].quantity: property removed"]
    assert _changes(Base, Scalars) == ["lines[]: type changed from object to string"]


def test_tightened_constraints_are_flagged() -> None:
    class Loose(BaseModel):
        quantity: int = Field(ge=0)
        code: str

    class Tight(BaseModel):
        quantity: int = Field(ge=1)
        code: str = Field(max_length=3)

    assert _changes(Loose, Tight) == ["quantity: minimum tightened from 0 to 1",
                                      "code: maxLength tightened from None to 3"]
    assert _changes(Tight, Loose) == []


def test_every_published_event_and_the_envelope_are_checked() -> None:
    assert "Envelope.v1" in PUBLISHED
    assert {f"{t}.v{v}" for t, v in EVENT_MODELS} <= set(PUBLISHED)
