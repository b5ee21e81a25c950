"""Tracking numbers of the built-in carrier: OMS + 9-digit serial + mod-11 check digit + country."""

import asyncio
import re

import pytest

from oms_carriers.carriers import BookingRequest, BuiltinCarrier, SerialBlocks
from oms_carriers.numbers import check_digit, is_valid_tracking_number, tracking_number
from oms_contracts.orders import Address
from oms_platform.ids import uuid7

FORMAT = re.compile(r"^OMS\d{10}PT$")


def test_known_values() -> None:
    # 0*10 + 0*9 + ... + 4*3 + 2*2 = 16; 16 + 6 = 22, a multiple of 11.
    assert check_digit("000000042") == 6
    assert tracking_number("OMS", 42, "PT") == "OMS0000000426PT"
    # 1*10 = 10: the check would have to be 1 -> 10 + 1 = 11.
    assert check_digit("100000000") == 1


def test_a_serial_whose_check_would_be_ten_is_skipped() -> None:
    # 6*2 = 12: only a check of 10 would make 22, and a check is one digit.
    assert check_digit("000000006") is None
    assert tracking_number("OMS", 6, "PT") is None


def test_every_issued_number_validates_and_every_single_digit_error_is_caught() -> None:
    issued = [n for n in (tracking_number("OMS", s, "PT") for s in range(0, 5000, 7)) if n]
    assert issued and all(FORMAT.match(n) and is_valid_tracking_number(n, "OMS", "PT") for n in issued)
    for number in issued[:50]:
        for pos in range(3, 13):
            for digit in "0123456789":
                if digit != number[pos]:
                    typo = number[:pos] + digit + number[pos + 1:]
                    assert not is_valid_tracking_number(typo, "OMS", "PT"), typo


def test_adjacent_swaps_are_caught() -> None:
    number = tracking_number("OMS", 123456789, "PT") or tracking_number("OMS", 123456788, "PT")
    assert number
    for pos in range(3, 12):
        swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2:]
        if swapped != number:
            assert not is_valid_tracking_number(swapped, "OMS", "PT")


@pytest.mark.parametrize("bad", ["", "OMS0000000426", "XYZ0000000426PT", "OMS000000042PT", "OMS00000004a6PT",
                                 "OMS0000000426PTX"])
def test_malformed_numbers_are_invalid(bad: str) -> None:
    assert not is_valid_tracking_number(bad, "OMS", "PT")


def test_about_one_serial_in_eleven_is_skipped() -> None:
    skipped = sum(tracking_number("OMS", s, "PT") is None for s in range(11_000))
    assert 900 <= skipped <= 1100


def test_a_serial_over_nine_digits_is_refused() -> None:
    with pytest.raises(ValueError):
        tracking_number("OMS", 10**9, "PT")


async def test_builtin_carrier_issues_unique_valid_numbers_skipping_ten_checks() -> None:
    serials = iter(range(1, 200))

    async def next_serial() -> int:
        return next(serials)

    carrier = BuiltinCarrier("oms-post", next_serial, prefix="OMS", country="PT")
    address = Address(name="Ana", line1="Rua 1", city="Lisboa", postal_code="1100-048", country="PT")
    request = BookingRequest(reference="o/l", shipment_id=uuid7(), order_id=uuid7(), service="standard",
                             origin_location_id="LIS", destination=address, lines=())
    numbers = [(await carrier.create_shipment(request)).tracking_number for _ in range(100)]
    assert len(set(numbers)) == 100
    assert all(is_valid_tracking_number(n, "OMS", "PT") for n in numbers)
    # Serials without a one-digit check were passed over, not issued with a wrong check.
    used = {int(n[3:12]) for n in numbers}
    assert all(check_digit(f"{s:09d}") is None for s in range(1, max(used)) if s not in used)


async def test_serial_blocks_draw_one_block_at_a_time_even_under_concurrent_requests() -> None:
    draws: list[int] = []
    counter = iter(range(1, 10_000))

    async def draw(n: int) -> list[int]:
        draws.append(n)
        await asyncio.sleep(0.01)  # concurrent callers wait for this draw instead of drawing again
        return [next(counter) for _ in range(n)]

    serials = SerialBlocks(draw, size=10)
    got = await asyncio.gather(*(serials() for _ in range(25)))
    assert sorted(got) == list(range(1, 26))  # each serial once, none skipped while the process runs
    assert draws == [10, 10, 10]
