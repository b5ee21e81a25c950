"""Exchanges: the returns service asks (ReplacementOrderRequested on oms.returns.events) for a
replacement order in the original order's channel. It is placed through the normal placement (the
same validation, the same single statement storing the order, its idempotency record and its
OrderPlaced), with the id returns chose, so a redelivered request places it once.

The replacement copies the original order's customer, address and shipping method; its lines are
the exchanged SKUs and quantities at unit price 0.00, and its payment (method `exchange`, status
`authorized`, amount 0.00, reference = the return id) needs no capture: the customer paid with the
original order. External id `RMA-<return id>`."""

from decimal import Decimal

from pydantic import ValidationError

from oms_contracts.returns import ReplacementOrderRequestedV1
from oms_contracts.topics import events
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_platform.outbox import Outbox
from order_capture import repository as repo
from order_capture.domain import OrderIn, business_rule_errors
from order_capture.handlers import placement

EXCHANGE_PAYMENT = "exchange"


class InvalidReplacement(ValueError):
    """The replacement would not pass the rules of a placed order (it goes to the dead-letter topic)."""


async def on_replacement_requested(msg: Message, uow: UnitOfWork[None]) -> None:
    req = msg.payload
    assert isinstance(req, ReplacementOrderRequestedV1)
    original = await repo.get_order(uow.conn, req.order_id)
    if original is None:
        raise LookupError(f"replacement for unknown order {req.order_id}")  # retried, then dead-lettered
    try:
        order = OrderIn.model_validate({
            "channel": original["channel"], "external_id": f"RMA-{req.return_id}", "currency": original["currency"],
            "customer": original["customer"], "shipping_address": original["shipping_address"],
            "shipping_method": original["shipping_method"],
            "lines": [{"sku": li.sku, "quantity": li.quantity, "unit_price": "0.00"} for li in req.lines],
            "payment": {"method": EXCHANGE_PAYMENT, "status": "authorized", "reference": str(req.return_id),
                        "amount": "0.00"},
        })
    except ValidationError as exc:
        raise InvalidReplacement(str(exc)) from exc
    errors = business_rule_errors(order)
    if errors or order.payment.amount != Decimal("0.00"):
        raise InvalidReplacement(f"replacement order refused: {errors}")
    p = placement(order, req.replacement_order_id, uow.producer)
    # Idempotent by the replacement's id: a second request finds its key taken and places nothing. The
    # OrderPlaced is written by the placement's own statement (only if the order is new), so the relay
    # hears of it through pg_notify at the batch's commit (an Outbox without this process's relay).
    await repo.place_order(uow.conn, p.row, f"replacement:{req.replacement_order_id}", p.digest,
                           Outbox(uow.producer), [p.message])


REPLACEMENTS = ConsumerSpec(name="replacements", topics=[events("returns")],
                            handlers={"ReplacementOrderRequested": on_replacement_requested})
