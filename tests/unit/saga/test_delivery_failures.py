"""What the order saga does when a carrier cannot deliver (docs/tracking.md): a failed attempt is
recorded and the saga keeps waiting for delivery; a parcel returned to sender flags the saga for an
operator; a delivery after a failed attempt still completes the order."""

from uuid import UUID

from oms_contracts.tracking import ShipmentDeliveryFailedV1
from oms_saga.testing import SagaTest
from tests.unit.saga.factory import NOW, delivered, dispatched, saga_test, shipment_ids, to_dispatch


def failed(t: SagaTest, shipment_id: UUID, status: str = "delivery_failed",
           reason: str | None = "nobody home") -> ShipmentDeliveryFailedV1:
    return ShipmentDeliveryFailedV1(order_id=t.order_id, shipment_id=shipment_id, tracking_number="TN",
                                    status=status, reason=reason, occurred_at=NOW)


def shipped(t: SagaTest) -> SagaTest:
    to_dispatch(t)
    for sid in shipment_ids(t):
        t.receive(dispatched(t, sid))
    return t.expect_state("running", step="await_delivery")


def test_a_failed_attempt_is_recorded_and_the_saga_keeps_waiting():
    t = shipped(saga_test())
    first, second = shipment_ids(t)
    t.receive(failed(t, first)).expect_nothing_sent().expect_status(None)
    t.expect_state("running", step="await_delivery", stuck=False)
    # The carrier tries again and succeeds: the order completes as usual.
    t.receive(delivered(t, first)).receive(delivered(t, second)).expect_status("delivered")
    t.expect_state("completed", step=None)


def test_returned_to_sender_flags_the_saga_for_an_operator():
    t = shipped(saga_test())
    first, _ = shipment_ids(t)
    t.receive(failed(t, first, "returned_to_sender", "address unknown")).expect_nothing_sent().expect_status(None)
    t.expect_state("running", step="await_delivery", stuck=True)


def test_a_failure_of_a_delivered_or_unknown_shipment_changes_nothing():
    t = shipped(saga_test())
    first, _ = shipment_ids(t)
    t.receive(delivered(t, first))
    t.receive(failed(t, first, "returned_to_sender")).expect_nothing_sent()
    t.expect_state("running", step="await_delivery", stuck=False)
    t.receive(failed(t, UUID(int=7), "returned_to_sender")).expect_state("running", stuck=False)
