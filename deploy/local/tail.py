"""`make tail TOPIC=...`: follows one or more topics (comma-separated) and prints each message as it
arrives: topic, partition, offset, timestamp, key, headers, and the value (the JSON envelope) indented.

    python deploy/local/tail.py TOPIC[,TOPIC...] [--from-beginning] [--max-messages N] [--bootstrap HOST:PORT]

No consumer group is used (partitions are assigned directly), so it commits nothing and disturbs no
service. Kafka: --bootstrap, else $KAFKA_BOOTSTRAP, else 127.0.0.1:9092 (`make up`'s).
"""

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


def render(record: ConsumerRecord) -> str:
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
    lines = [f"--- {record.topic} [{record.partition}] @{record.offset}  {at}"]
    lines.append(f"key: {_text(record.key)}")
    headers = "  ".join(f"{name}={_text(value)}" for name, value in record.headers or ())
    lines.append(f"headers: {headers or '(none)'}")
    lines.append(_value(record.value))
    return "\n".join(lines)


def _text(raw: bytes | None) -> str:
    if raw is None:
        return "(null)"
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return repr(raw)


def _value(raw: bytes | None) -> str:
    if raw is None:
        return "(null: a tombstone)"
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:  # not JSON (or not UTF-8): shown as it is
        return _text(raw)


async def partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    waited = False
    while True:
        metadata = await consumer._client.fetch_all_metadata()
        found = {t: metadata.partitions_for_topic(t) for t in topics}
        if all(found.values()):
            return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]
        if not waited:
            missing = ", ".join(t for t, parts in found.items() if not parts)
            print(f"waiting for topic(s) {missing} to exist...", file=sys.stderr, flush=True)
            waited = True
        await asyncio.sleep(1)


async def tail(bootstrap: str, topics: list[str], *, from_beginning: bool, max_messages: int | None) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = await partitions(consumer, topics)
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
            for tp in tps:  # fix the end now: a message sent after this line is printed
                await consumer.position(tp)
        where = "from the beginning" if from_beginning else "from now on"
        print(f"following {', '.join(topics)} on {bootstrap} {where} (Ctrl-C stops)", file=sys.stderr, flush=True)
        seen = 0
        async for record in consumer:
            print(render(record), flush=True)
            seen += 1
            if max_messages is not None and seen >= max_messages:
                return
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topics", help="a topic, or several separated by commas")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max-messages", type=int, help="stop after this many")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP") or "127.0.0.1:9092")
    args = parser.parse_args()
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    try:
        asyncio.run(tail(args.bootstrap, topics, from_beginning=args.from_beginning, max_messages=args.max_messages))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
