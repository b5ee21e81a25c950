"""Shipping labels: a 4x6 inch PDF page (the usual thermal label size) with the sender, the recipient,
carrier and service, order and shipment ids, the contents, and the tracking number as a Code128
barcode with its human-readable text underneath."""

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch, mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address

PAGE = (4 * inch, 6 * inch)
MARGIN = 5 * mm
BAR_WIDTH = 1.1  # points per module: 0.39 mm, within what label printers and scanners handle
BAR_HEIGHT = 22 * mm
MAX_CONTENT_LINES = 6


@dataclass(frozen=True)
class LabelData:
    shipment_id: UUID
    order_id: UUID
    location_id: str
    sender_name: str
    recipient: Address
    carrier: str
    service: str
    tracking_number: str
    lines: tuple[StockLine, ...]
    created_at: datetime
    # A return label names the customer as the sender (their address lines) and the return as its
    # reference; a shipping label leaves these empty (the sender is the shipping location).
    sender_lines: tuple[str, ...] = ()
    kind: str = "Shipment"


def _fit(text: str, font: str, size: float, width: float) -> str:
    """Cuts text to the width (with an ellipsis) so a long address never runs off the label."""
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "...", font, size) > width:
        text = text[:-1]
    return text + "..."


def render_label(data: LabelData, *, compress: bool = True) -> bytes:
    """The label as PDF bytes. `compress=False` leaves the page stream readable (for inspection)."""
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=PAGE, pageCompression=1 if compress else 0, invariant=1)
    c.setTitle(f"{'Return' if data.kind == 'Return' else 'Shipping'} label {data.tracking_number}")
    c.setAuthor(data.sender_name)
    width, height = PAGE
    inner = width - 2 * MARGIN
    y = height - MARGIN

    # Carrier band: what the sorting staff read first.
    c.setFont("Helvetica-Bold", 16)
    y -= 16
    c.drawString(MARGIN, y, _fit(data.carrier.upper(), "Helvetica-Bold", 16, inner * 0.6))
    c.setFont("Helvetica-Bold", 11)
    c.drawRightString(width - MARGIN, y, _fit(data.service.replace("_", " ").upper(), "Helvetica-Bold", 11,
                                              inner * 0.4))
    y -= 8
    c.line(MARGIN, y, width - MARGIN, y)

    sender = list(data.sender_lines) or [data.sender_name, f"Location {data.location_id}"]
    y = _block(c, y - 12, "FROM", sender, 8, inner)
    a = data.recipient
    city = f"{a.postal_code} {a.city}"
    to_lines = [a.name, a.line1, *([a.line2] if a.line2 else []), city, a.country.upper()]
    y = _block(c, y - 6, "TO", to_lines, 12, inner, bold_first=True)
    c.line(MARGIN, y - 4, width - MARGIN, y - 4)

    # Barcode, centred, with its quiet zones inside the margins.
    barcode = Code128(data.tracking_number, barWidth=BAR_WIDTH, barHeight=BAR_HEIGHT, humanReadable=False,
                      quiet=1, lquiet=10 * BAR_WIDTH, rquiet=10 * BAR_WIDTH)
    y -= 8 + BAR_HEIGHT
    barcode.drawOn(c, (width - barcode.width) / 2, y)
    c.setFont("Courier-Bold", 12)
    y -= 14
    c.drawCentredString(width / 2, y, data.tracking_number)
    c.line(MARGIN, y - 6, width - MARGIN, y - 6)

    c.setFont("Helvetica", 7)
    y -= 16
    for text in (f"Order {data.order_id}", f"{data.kind} {data.shipment_id}",
                 f"Created {data.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"):
        c.drawString(MARGIN, y, text)
        y -= 9
    _contents(c, y - 3, data.lines, inner)
    c.showPage()
    c.save()
    return buf.getvalue()


def _block(c: Canvas, y: float, title: str, lines: list[str], size: float, width: float, *,
           bold_first: bool = False) -> float:
    c.setFont("Helvetica-Bold", 7)
    c.drawString(MARGIN, y, title)
    y -= size + 2
    for i, text in enumerate(lines):
        font = "Helvetica-Bold" if bold_first and i == 0 else "Helvetica"
        c.setFont(font, size)
        c.drawString(MARGIN, y, _fit(text, font, size, width))
        y -= size + 2
    return y


def _contents(c: Canvas, y: float, lines: tuple[StockLine, ...], width: float) -> None:
    c.setFont("Helvetica-Bold", 7)
    c.drawString(MARGIN, y, "CONTENTS")
    c.setFont("Helvetica", 7)
    shown = lines[:MAX_CONTENT_LINES]
    for line in shown:
        y -= 9
        c.drawString(MARGIN, y, _fit(f"{line.quantity} x {line.sku}", "Helvetica", 7, width))
    if len(lines) > len(shown):
        c.drawString(MARGIN, y - 9, f"... and {len(lines) - len(shown)} more lines")
