"""The channel-key cache of order capture: a revoke is effective at once in the revoking process,
even against a lookup that was in flight, and unknown tokens cannot push live keys out."""

from order_capture.handlers import KeyCache


def test_a_fill_that_began_before_a_revoke_is_not_stored() -> None:
    cache = KeyCache(5.0)
    began = cache.revocations  # a lookup starts and reads the key as live...
    cache.revoke(b"k")  # ...the key is revoked meanwhile...
    cache.put(b"k", "web", 0.0, began)  # ...and its (stale) answer arrives
    assert cache.get(b"k", 0.1) == (False, None)  # not cached: the next call asks the database


def test_a_revoke_forgets_the_key_at_once() -> None:
    cache = KeyCache(5.0)
    cache.put(b"k", "web", 0.0, cache.revocations)
    assert cache.get(b"k", 1.0) == (True, "web")
    cache.revoke(b"k")
    assert cache.get(b"k", 1.0) == (False, None)


def test_a_flood_of_unknown_tokens_keeps_the_live_keys() -> None:
    cache = KeyCache(5.0, size=10, unknown_size=5)
    for i in range(10):
        cache.put(f"live{i}".encode(), "web", 0.0, cache.revocations)
    for i in range(10_000):
        cache.put(f"random{i}".encode(), None, 0.0, cache.revocations)
    assert all(cache.get(f"live{i}".encode(), 1.0) == (True, "web") for i in range(10))
    assert cache.get(b"random9999", 1.0) == (True, None)  # the latest unknowns are remembered
    assert cache.get(b"random0", 1.0) == (False, None)  # older ones evicted, not the live keys


def test_entries_expire_after_the_ttl_and_the_live_table_is_bounded() -> None:
    cache = KeyCache(5.0, size=2)
    for name in (b"a", b"b", b"c"):
        cache.put(name, "web", 0.0, cache.revocations)
    assert cache.get(b"a", 1.0) == (False, None)  # least recently used, evicted
    assert cache.get(b"c", 4.9) == (True, "web")
    assert cache.get(b"c", 5.1) == (False, None)
