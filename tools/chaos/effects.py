"""The checks on what reached the parties outside the OMS (tools/chaos/parties.py): every email and
webhook the orders call for arrived, none twice as a new message, and every return refunded once for
the right amount. Each returns (figure, details) as checks.py does."""

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from tools.chaos.checks import fetch
from tools.chaos.load import Load
from tools.chaos.parties import Billing, MailLog, Webhooks
from tools.chaos.stack import Stack

# The email each final status calls for (notification's templates).
STATUS_EMAIL = {"confirmed": "order_confirmed", "cancelled": "order_cancelled", "rejected": "order_rejected",
                "returned": "refund_issued"}
JOURNEY_EMAILS = ("order_confirmed", "shipment_dispatched", "order_delivered", "return_approved", "refund_issued")
JOURNEY_WEBHOOKS = ("ShipmentDispatched", "ReturnApproved", "RefundCompleted")


def _key(event_type: str, payload: dict[str, Any]) -> str:
    """What one effect is: a status change per status, a dispatch per shipment, a return or refund per return."""
    if event_type == "OrderStatusChanged":
        return str(payload.get("new_status"))
    return str(payload.get("shipment_id") or payload.get("return_id"))


async def check_effects(stack: Stack, load: Load, statuses: dict[str, str], billing: Billing | None,
                        webhooks: Webhooks | None, mail: MailLog | None,
                        ) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    """(duplicated effects, other checks)."""
    out: dict[str, tuple[int, list[str]]] = {}
    dups: list[str] = []
    lost: list[str] = []
    journeys = [j for j in (load.journeys.done if load.journeys else [])]
    returned = {j.order_id for j in journeys if j.return_id}
    ids = list(statuses)

    if mail is not None and stack.of("notification"):
        rows = await fetch(stack, "notification", "SELECT notification_id::text, order_id::text, template, dedupe_key, "
                           "status FROM notifications WHERE channel = 'email' AND order_id = ANY($1::uuid[])", ids)
        by_id = {r["notification_id"]: r for r in rows}
        got = Counter(m.message_id.strip("<>").split("@")[0] for m in mail.read())
        effects: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for nid in got:
            if (row := by_id.get(nid)) is not None:
                effects[(row["order_id"], row["template"], row["dedupe_key"])].add(nid)
        dups += [f"order {o}: {len(n)} {t} emails" for (o, t, _), n in effects.items() if len(n) > 1]
        lost += [f"email {r['template']} of {r['order_id']} marked sent, never received" for r in rows
                 if r["status"] == "sent" and r["notification_id"] not in got]
        received = {(o, t) for (o, t, _) in effects}
        for order_id, status in statuses.items():
            wanted = JOURNEY_EMAILS if order_id in returned else (STATUS_EMAIL.get(status),)
            lost += [f"email {t} of {order_id} ({status}) never received" for t in wanted
                     if t and (order_id, t) not in received]
        again = sum(n - 1 for n in got.values())
        out["emails received / sent again with the same Message-ID"] = (sum(got.values()),
                                                                         [f"{again} resent"] * (again > 0))

    if webhooks is not None and webhooks.subscribed:
        ours = [d for d in webhooks.received if d.order_id in statuses]
        seen = Counter(d.event_id for d in ours)
        kinds: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for d in ours:
            kinds[(d.order_id, d.event_type, _key(d.event_type, d.payload))].add(d.event_id)
        dups += [f"order {o}: {len(e)} {t} webhooks ({k})" for (o, t, k), e in kinds.items()
                 if len(e) > 1 and t != "OrderStatusChanged"]  # a status told twice: "status announced twice"
        for order_id, status in statuses.items():
            if (order_id, "OrderStatusChanged", status) not in kinds:
                lost.append(f"webhook OrderStatusChanged {status} of {order_id} never received")
            if order_id in returned:
                lost += [f"webhook {t} of {order_id} never received" for t in JOURNEY_WEBHOOKS
                         if not any(o == order_id and kind == t for (o, kind, _) in kinds)]
        again = sum(n - 1 for n in seen.values())
        out["webhooks received / delivered again (same event id)"] = (len(ours),
                                                                       [f"{again} redelivered"] * (again > 0))
        if webhooks.bad_signatures:
            lost.append(f"{webhooks.bad_signatures} webhooks with a bad signature")
    out["effects lost"] = (len(lost), lost[:10])

    wrong: list[str] = []
    if journeys:
        rets = await fetch(stack, "returns", "SELECT return_id::text, order_id::text, status, outcome, refund_amount "
                           "FROM returns WHERE order_id = ANY($1::uuid[])", [j.order_id for j in journeys])
        per_order = Counter(r["order_id"] for r in rets if r["status"] != "cancelled")
        dups += [f"order {o}: {n} returns" for o, n in per_order.items() if n > 1]
        row = {r["return_id"]: r for r in rets}
        for j in journeys:
            if not j.return_id:
                continue
            r = row.get(j.return_id)
            if r is None or (r["status"], r["outcome"]) != ("closed", "refunded"):
                wrong.append(f"return {j.return_id}: {(r['status'], r['outcome']) if r else 'unknown'}, not refunded")
            elif Decimal(r["refund_amount"]) != j.refund:
                wrong.append(f"return {j.return_id}: refund {r['refund_amount']}, should be {j.refund}")
            asked = set(billing.asked.get(j.return_id, [])) if billing else set()
            if len(asked) > 1:
                dups.append(f"return {j.return_id}: refunds asked of {sorted(map(str, asked))}")
            if billing and asked and asked != {j.refund}:
                wrong.append(f"return {j.return_id}: billing asked {sorted(map(str, asked))}, should be {j.refund}")
        if load.journeys and load.journeys.mismatched_retries:
            dups.append(f"return Idempotency-Key retried: {load.journeys.mismatched_retries} answered with "
                        "another return")
    out["wrong refunds"] = (len(wrong), wrong[:10])
    failed = [f"{j.order_id}: {j.failed}" for j in journeys if j.failed]
    out["journeys not completed"] = (len(failed), failed[:10])
    out["journeys (shipped, delivered, returned, refunded)"] = (sum(1 for j in journeys if j.return_id), [])
    return dups, out
