"""Shipping labels: a real one-page PDF with the addresses, ids, carrier and service, and the tracking
number as a Code128 barcode.

How the barcode is checked: tests/support/pdf.py reads the page content stream back out of the PDF
bytes (inflating it as its /Filter says), collects the filled bars, measures bar and gap widths in
modules, and decodes them with the standard Code128 table, checking start, stop and the mod-103
checksum. So the test proves the drawn bars scan as the tracking number, not only that a barcode
object was created."""

import re
from datetime import UTC, datetime

import pytest

from oms_carriers.labels import LabelData, render_label
from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address
from oms_platform.ids import uuid7
from tests.support.pdf import code128_values, content_streams, decode_bars, shown_text


def _label(**changes) -> LabelData:
    base = dict(
        shipment_id=uuid7(), order_id=uuid7(), location_id="LIS-DC", sender_name="OMS Fulfilment",
        recipient=Address(name="Ana Lima", line1="Rua Augusta 1", line2="3 Esq (back door)", city="Lisboa",
                          postal_code="1100-048", country="PT"),
        carrier="oms-post", service="standard", tracking_number="OMS0000000426PT",
        lines=(StockLine(sku="TSHIRT-RED-M", quantity=2),), created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    return LabelData(**{**base, **changes})


@pytest.mark.parametrize("compress", [True, False])
def test_label_is_a_pdf_whose_barcode_scans_as_the_tracking_number(compress: bool) -> None:
    data = _label()
    pdf = render_label(data, compress=compress)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b(?!s)", pdf)) == 1  # one page
    assert code128_values(pdf) == ["OMS0000000426PT"]
    text = shown_text(pdf)
    for expected in ("OMS0000000426PT", "OMS-POST", "STANDARD", "OMS Fulfilment", "Location LIS-DC", "Ana Lima",
                     "Rua Augusta 1", "3 Esq (back door)", "1100-048 Lisboa", "PT", f"Order {data.order_id}",
                     f"Shipment {data.shipment_id}", "2 x TSHIRT-RED-M"):
        assert expected in text, expected


def test_barcodes_of_other_carriers_numbers_scan_too() -> None:
    for number in ("1Z999AA10123456784", "JJD000390007722", "a-b_c 9"):
        assert code128_values(render_label(_label(tracking_number=number))) == [number]


def test_long_text_is_cut_to_fit_and_many_lines_are_summarised() -> None:
    lines = tuple(StockLine(sku=f"SKU-{i}", quantity=1) for i in range(10))
    pdf = render_label(_label(recipient=Address(name="N" * 200, line1="L", city="C", postal_code="P", country="PT"),
                              lines=lines))
    text = shown_text(pdf)
    assert any(t.startswith("NNNN") and t.endswith("...") and len(t) < 100 for t in text)
    assert "... and 4 more lines" in text


def test_the_reader_rejects_bars_that_do_not_scan() -> None:
    # The reader is the check here, so it must fail on a damaged barcode: widen one bar.
    stream = content_streams(render_label(_label(), compress=False))[-1]
    bars = [(float(p[1]), float(p[3])) for p in (ln.split() for ln in stream.splitlines()) if p[-2:] == ["re", "f*"]]
    assert decode_bars(bars) == "OMS0000000426PT"
    x, w = bars[5]
    with pytest.raises(ValueError):
        decode_bars(bars[:5] + [(x, w + 1.1)] + bars[6:])
