"""The order's status after delivery follows its returns: ReturnApproved, ReturnReceived and
ReturnClosed (oms.returns.events) carry the order's status because of its returns, and the
orchestrator, which owns oms.orders.status, announces it as OrderStatusChanged. The order saga ended
at delivered; its row keeps the order's last announced status, so a change is applied only when the
status rules allow it from there (never backwards, and nothing before the order was delivered)."""

from typing import Any

from oms_contracts.orders import OrderStatusChangedV1
from oms_contracts.returns import ReturnApprovedV1, ReturnClosedV1, ReturnReceivedV1
from oms_contracts.topics import ORDERS_STATUS, events
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_saga import store
from orchestrator import repository as repo
from orchestrator.domain import ALLOWED_STATUS_CHANGES, SAGA_TYPE


def announced_at(event: Any) -> Any:
    for name in ("approved_at", "received_at", "closed_at"):
        if hasattr(event, name):
            return getattr(event, name)
    raise TypeError(type(event).__name__)


async def on_return_event(msg: Message, uow: UnitOfWork[None]) -> None:
    event = msg.payload
    assert isinstance(event, ReturnApprovedV1 | ReturnReceivedV1 | ReturnClosedV1)
    new = event.order_status
    saga = await store.load(uow.conn, SAGA_TYPE, event.order_id)
    if new is None or saga is None or new not in ALLOWED_STATUS_CHANGES.get(saga.status or "", ()):
        return
    at = announced_at(event)
    sequence = saga.control.status_seq + 1  # numbered after the saga's own (its row is locked)
    await repo.set_status(uow.conn, saga.saga_id, new, sequence)
    uow.emit(ORDERS_STATUS, OrderStatusChangedV1(order_id=event.order_id, old_status=saga.status,
                                                 new_status=new, reason=None, changed_at=at, sequence=sequence))


RETURNS = ConsumerSpec(
    name="returns", topics=[events("returns")],
    handlers={t: on_return_event for t in ("ReturnApproved", "ReturnReceived", "ReturnClosed")},
)
