"""Dead letters: how a consumer group writes one (`dead_letter`); for an operator, list a topic's dead
letters, show one, and re-drive them to their source topic, where the consumer group that failed them
applies them once (`make dlq ARGS="..."`).

    python -m oms_platform.dlq [--bootstrap HOST:PORT] [--prefix P] list TOPIC [--consumer GROUP]
    python -m oms_platform.dlq ... show TOPIC ID
    python -m oms_platform.dlq ... replay TOPIC (ID ... | --all) [--consumer GROUP]

TOPIC is the source topic (`oms.payments.commands`) or its dead-letter topic (`....dlq`); ID is a dead
letter's `partition:offset` in the dead-letter topic (shown by `list`). A replay is the original message
(key, value, headers) without the `dlq.*` headers of its failure, plus `dlq.replay_for` = the consumer
group that failed it (`dlq.consumer`) and `dlq.replayed_from`: the BatchProcessor of that group applies
it once (its inbox marked the event dead-lettered), every other group of the topic skips it, and a
second replay of the same dead letter is a duplicate. No consumer group is used to read (partitions are
assigned directly): nothing is committed, no service is disturbed. Kafka: --bootstrap, else
$KAFKA_BOOTSTRAP, else 127.0.0.1:9092 (`make up`'s).
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from oms_contracts.topics import dlq as dlq_topic
from oms_platform.inbox import REPLAY_HEADER
from oms_platform.outbox import OutgoingMessage

log = logging.getLogger(__name__)


def dead_letter(rec: ConsumerRecord, error: str, *, consumer: str, topic_prefix: str = "") -> OutgoingMessage:
    """The dead letter of a record the consumer group failed: the original key, value and headers, and
    `dlq.*` headers saying why, where from and who failed it, for `<topic>.dlq` (with the prefix)."""
    log.warning("dead-lettering %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, error)
    headers = [(k, v.decode("utf-8", "replace")) for k, v in (rec.headers or []) if v is not None]
    headers += [
        ("dlq.error", error[:2000]),
        ("dlq.original_topic", rec.topic),
        ("dlq.original_partition", str(rec.partition)),
        ("dlq.original_offset", str(rec.offset)),
        ("dlq.consumer", consumer),
        ("dlq.failed_at", datetime.now(UTC).isoformat()),
    ]
    key = rec.key.decode("utf-8", "replace") if rec.key else ""
    value = rec.value if isinstance(rec.value, bytes) else bytes(rec.value or b"")
    return OutgoingMessage(dlq_topic(rec.topic.removeprefix(topic_prefix)), key, value, headers)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # the dead-letter topic it is on
    record: ConsumerRecord

    @property
    def id(self) -> str:
        return f"{self.record.partition}:{self.record.offset}"

    @property
    def headers(self) -> dict[str, str]:
        return {k: (v or b"").decode("utf-8", "replace") for k, v in self.record.headers or ()}

    @property
    def envelope(self) -> dict | None:
        try:
            body = json.loads(self.record.value or b"")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def summary(self) -> dict[str, str | None]:
        h, env = self.headers, self.envelope or {}
        return {
            "id": self.id, "failed_at": h.get("dlq.failed_at"), "consumer": h.get("dlq.consumer"),
            "event_type": h.get("event_type") or env.get("event_type"), "order_id": env.get("order_id"),
            "event_id": env.get("event_id"),
            "original": f"{h.get('dlq.original_topic')}[{h.get('dlq.original_partition')}]"
                        f"@{h.get('dlq.original_offset')}",
            "error": h.get("dlq.error"),
        }

    def replay_message(self) -> tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """(topic, key, value, headers) of its replay: for the group that failed it only."""
        h = self.headers
        if not h.get("dlq.original_topic") or not h.get("dlq.consumer"):
            raise ValueError(f"dead letter {self.id} has no dlq.original_topic or dlq.consumer header")
        headers = [(k, v) for k, v in self.record.headers or () if not k.startswith("dlq.") and v is not None]
        headers += [(REPLAY_HEADER, h["dlq.consumer"].encode()),
                    ("dlq.replayed_from", f"{self.topic}:{self.id}".encode())]
        return h["dlq.original_topic"], self.record.key, self.record.value, headers


def dead_letter_topic(topic: str, prefix: str = "") -> str:
    topic = topic.removeprefix(prefix)
    return prefix + (topic if topic.endswith(".dlq") else dlq_topic(topic))


async def read(bootstrap: str, topic: str) -> list[DeadLetter]:
    """Every dead letter on the dead-letter topic now (read from the beginning to its current end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        # The cluster's metadata (the consumer's own only knows topics it is subscribed to).
        found = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
        if not found:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                records += [r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]]
        return [DeadLetter(topic, r) for r in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))]
    finally:
        await consumer.stop()


async def replay(bootstrap: str, letters: list[DeadLetter]) -> None:
    """Re-drives the dead letters to their source topics (acknowledged by every in-sync replica)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            topic, key, value, headers = letter.replay_message()
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def select(letters: list[DeadLetter], ids: list[str], consumer: str | None) -> list[DeadLetter]:
    chosen = [d for d in letters
              if (not ids or d.id in ids) and (consumer is None or d.headers.get("dlq.consumer") == consumer)]
    missing = set(ids) - {d.id for d in chosen}
    if missing:
        raise LookupError(f"no dead letter {', '.join(sorted(missing))}" + (f" of {consumer}" if consumer else ""))
    return chosen


async def run(args: argparse.Namespace) -> int:
    topic = dead_letter_topic(args.topic, args.prefix)
    letters = await read(args.bootstrap, topic)
    if args.command == "list":
        shown = select(letters, [], args.consumer)
        for d in shown:
            s = d.summary()
            print(f"{s['id']}\t{s['failed_at']}\t{s['consumer']}\t{s['event_type']}\torder {s['order_id']}\t"
                  f"{s['original']}\t{s['error']}")
        print(f"{len(shown)} dead letter(s) on {topic}", file=sys.stderr)
        return 0
    if args.command == "show":
        [d] = select(letters, [args.id], None)
        value = d.envelope or (d.record.value or b"").decode("utf-8", "replace")
        key = (d.record.key or b"").decode("utf-8", "replace")
        print(json.dumps({**d.summary(), "key": key, "headers": d.headers, "value": value}, indent=2, default=str))
        return 0
    if not args.all and not args.ids:
        print("replay: give dead letter ids, or --all", file=sys.stderr)
        return 2
    chosen = select(letters, [] if args.all else args.ids, args.consumer)
    await replay(args.bootstrap, chosen)
    for d in chosen:
        s = d.summary()
        print(f"replayed {s['id']} ({s['event_type']} {s['event_id']}) to {s['original']} for {s['consumer']}")
    print(f"{len(chosen)} dead letter(s) replayed from {topic}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m oms_platform.dlq", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--prefix", default=os.environ.get("KAFKA_TOPIC_PREFIX", ""),
                   help="KAFKA_TOPIC_PREFIX of the services")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="one line per dead letter: id, when, consumer, event type, order, origin, error")
    ls.add_argument("topic")
    ls.add_argument("--consumer", help="only this consumer group's")
    show = sub.add_parser("show", help="one dead letter with its headers and envelope")
    show.add_argument("topic")
    show.add_argument("id", help="partition:offset, as listed")
    rp = sub.add_parser("replay", help="re-drive dead letters to their source topic, for the group that failed them")
    rp.add_argument("topic")
    rp.add_argument("ids", nargs="*", help="partition:offset, as listed")
    rp.add_argument("--all", action="store_true", help="every dead letter of the topic (of --consumer if given)")
    rp.add_argument("--consumer", help="only this consumer group's")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

