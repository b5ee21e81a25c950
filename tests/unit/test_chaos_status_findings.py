"""The chaos run's status check: a resent event (same event id) is no regression; a distinct one is."""

from tools.chaos.checks import status_findings


def test_a_resent_event_is_counted_not_a_regression() -> None:
    seq = [("e1", "confirmed"), ("e2", "return_requested"), ("e3", "returned"), ("e2", "return_requested"),
           ("e3", "returned")]
    assert status_findings({"o": seq}, {"o": "returned"}) == ([], [], 2)


def test_a_distinct_event_going_backwards_is_a_regression() -> None:
    seq = [("e1", "confirmed"), ("e2", "returned"), ("e4", "return_requested")]
    regressions, twice, resent = status_findings({"o": seq}, {})
    assert regressions == ["o: confirmed -> returned -> return_requested"] and resent == 0


def test_a_status_announced_by_two_events_and_a_last_event_capture_disagrees_with() -> None:
    seq = [("e1", "confirmed"), ("e2", "confirmed")]
    assert status_findings({"o": seq}, {"o": "cancelled"}) == (
        ["o: order-capture says cancelled, last event confirmed"], ["o: confirmed"], 0)
