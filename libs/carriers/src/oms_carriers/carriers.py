"""Carrier adapters: the one place that talks to a carrier (book a shipment, get its label, cancel it).
Shared by fulfilment (outbound shipments) and returns (return labels).

Adding a carrier:

1. Write a class that satisfies `CarrierAdapter`:
   - `name`: the carrier name the rules use (e.g. "acme-parcel").
   - `create_shipment(request)`: book the shipment with the carrier and return a `Booking` with its
     tracking number, and the label PDF when the carrier's API hands one back (it is stored and served
     as is). Use `request.reference` as the carrier-side idempotency key: it stays the same when a
     command is redelivered, so a retried booking does not create a second parcel.
   - `label(data)`: the label PDF for a shipment booked without one (called on every label request;
     `render_label` draws the standard one).
   - `cancel(tracking_number)`: void the booking; it is best effort (a failure is logged, and the
     shipment is cancelled here regardless, because it will never be dispatched).
2. Register an instance in the service's `bootstrap.build_carriers` under its name and add rules naming it to the
   CARRIER_RULES_FILE. The service refuses to start when a rule names a carrier with no adapter.

Adapters are called inside the transaction that stores the shipment, so keep their calls short
(a timeout well under a few seconds) and raise on failure: the command is then retried.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from oms_carriers.labels import LabelData, render_label
from oms_carriers.numbers import tracking_number
from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address


@dataclass(frozen=True)
class BookingRequest:
    reference: str  # "<order_id>/<location_id>": stable across redeliveries of the command
    shipment_id: UUID
    order_id: UUID
    service: str
    origin_location_id: str
    destination: Address
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class Booking:
    tracking_number: str
    label_pdf: bytes | None = None


class CarrierAdapter(Protocol):
    name: str

    async def create_shipment(self, request: BookingRequest) -> Booking: ...

    async def label(self, data: LabelData) -> bytes: ...

    async def cancel(self, tracking_number: str) -> None: ...


SerialSource = Callable[[], Awaitable[int]]


class SerialBlocks:
    """A SerialSource handing out serials from blocks of `size`, each drawn from the database sequence
    in one round trip (so a shipment costs no round trip of its own for its number). Like a sequence's
    CACHE: what is left of a block when the process stops is never used, so numbers stay unique and
    only skip ahead."""

    def __init__(self, draw: Callable[[int], Awaitable[list[int]]], size: int = 100):
        self.draw, self.size = draw, size
        self._left: deque[int] = deque()
        self._lock = asyncio.Lock()

    async def __call__(self) -> int:
        if not self._left:
            async with self._lock:  # one draw at a time; the others take from its block
                if not self._left:
                    self._left.extend(await self.draw(self.size))
        return self._left.popleft()


class BuiltinCarrier:
    """The carrier that ships with the OMS: tracking numbers `<prefix><9-digit serial><check><country>`
    from one database sequence (unique per installation, shared by every built-in carrier name), and
    the standard label rendered on demand from the stored shipment."""

    def __init__(self, name: str, serials: SerialSource, *, prefix: str = "OMS", country: str = "PT"):
        self.name, self.serials, self.prefix, self.country = name, serials, prefix, country

    async def create_shipment(self, request: BookingRequest) -> Booking:
        while True:
            number = tracking_number(self.prefix, await self.serials(), self.country)
            if number is not None:  # 1 serial in 11 has no one-digit check and is skipped
                return Booking(number)

    async def label(self, data: LabelData) -> bytes:
        # Rendering takes a few milliseconds of CPU: off the event loop.
        return await asyncio.to_thread(render_label, data)

    async def cancel(self, tracking_number: str) -> None:
        return None  # nothing was handed to anyone outside the OMS yet


class UnknownCarrier(LookupError):
    pass


class Carriers:
    """The adapters by carrier name."""

    def __init__(self, adapters: list[CarrierAdapter]):
        self._by_name = {a.name: a for a in adapters}

    def get(self, name: str) -> CarrierAdapter:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownCarrier(f"no adapter for carrier {name!r}") from None

    def names(self) -> set[str]:
        return set(self._by_name)
