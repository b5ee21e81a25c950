"""UUIDv7 ids: version 7 with the RFC 9562 variant, and ordered by the time they were made."""

import time
import uuid
from types import SimpleNamespace

import pytest

from oms_platform import ids
from oms_platform.ids import uuid7


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    for _ in range(1000):
        u = uuid7()
        assert u.version == 7
        assert u.variant == uuid.RFC_4122


def test_uuid7_is_unique() -> None:
    assert len({uuid7() for _ in range(10_000)}) == 10_000


def test_uuid7_carries_the_current_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= u.int >> 80 <= after


def test_uuid7_made_in_later_milliseconds_sort_later(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that advances 1 ms per id: whatever the random bits, each id sorts after the previous
    # one, as an integer, as bytes and as its text (what PostgreSQL and a b-tree compare).
    now = [1_700_000_000_000 * 1_000_000]

    def clock() -> int:
        now[0] += 1_000_000
        return now[0]

    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=clock))
    made = [uuid7() for _ in range(2000)]
    assert made == sorted(made)
    assert [u.bytes for u in made] == sorted(u.bytes for u in made)
    assert [str(u) for u in made] == sorted(str(u) for u in made)


def test_uuid7_from_the_real_clock_are_time_ordered() -> None:
    made = []
    for _ in range(20):
        made.append(uuid7())
        time.sleep(0.002)  # a new millisecond for each id
    assert made == sorted(made)
