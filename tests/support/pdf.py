"""Reads what a PDF page really draws, without a PDF library: the page content streams (inflated),
the text strings shown, and Code128 barcodes decoded back from the filled bars.

The decoder is independent of the code that drew the barcode: it measures the bars and gaps, maps
each 11-module group to a symbol with the standard Code128 width table (ISO/IEC 15417), checks the
mod-103 checksum and the stop pattern, and decodes code sets A, B and C."""

import base64
import re
import zlib
from collections import defaultdict

_STREAM = re.compile(rb"^(.*?)\bstream\r?\n(.*?)\r?\n?endstream", re.S)
_TEXT = re.compile(r"\(((?:\\.|[^\\)])*)\)\s*Tj")
_RECT_FILL = re.compile(r"(-?[\d.]+) (-?[\d.]+) (-?[\d.]+) (-?[\d.]+) re f\*?")

# Bar/space widths in modules of symbol values 0..106 (106 is the stop pattern, 13 modules).
WIDTHS = """
212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 112232 122132
122231 113222 123122 123221 223211 221132 221231 213212 223112 312131 311222 321122 321221 312212
322112 322211 212123 212321 232121 111323 131123 131321 112313 132113 132311 211313 231113 231311
112133 112331 132131 113123 113321 133121 313121 211331 231131 213113 213311 213131 311123 311321
331121 312113 312311 332111 314111 221411 431111 111224 111422 121124 121421 141122 141221 112214
112412 122114 122411 142112 142211 241211 221114 413111 241112 134111 111242 121142 121241 114212
124112 124211 411212 421112 421211 212141 214121 412121 111143 111341 131141 114113 114311 411113
411311 113141 114131 311141 411131 211412 211214 211232 2331112""".split()
_SYMBOL = {w: i for i, w in enumerate(WIDTHS)}
START_A, START_B, START_C, STOP = 103, 104, 105, 106


def content_streams(pdf: bytes) -> list[str]:
    """Every stream of the file, decoded (ASCII85 and/or Flate as its dictionary says)."""
    out = []
    for obj in pdf.split(b"endobj"):
        found = _STREAM.search(obj)
        if found is None:
            continue
        head, body = found.groups()
        if b"ASCII85Decode" in head:
            body = base64.a85decode(body.strip(), adobe=True)
        if b"FlateDecode" in head:
            try:
                body = zlib.decompress(body)
            except zlib.error:
                continue  # not a stream we can read (e.g. an image): not page content
        out.append(body.decode("latin-1"))
    return out


def shown_text(pdf: bytes) -> list[str]:
    """The strings the pages show with Tj (escapes undone)."""
    texts = []
    for stream in content_streams(pdf):
        for raw in _TEXT.findall(stream):
            texts.append(re.sub(r"\\(.)", r"\1", raw))
    return texts


def code128_values(pdf: bytes) -> list[str]:
    """Decodes every row of equally tall filled bars (a barcode) in the pages."""
    values = []
    for stream in content_streams(pdf):
        rows: dict[tuple[float, float], list[tuple[float, float]]] = defaultdict(list)
        for x, y, w, h in _RECT_FILL.findall(stream):
            rows[(float(y), float(h))].append((float(x), float(w)))
        for bars in rows.values():
            if len(bars) >= 10:
                values.append(decode_bars(sorted(bars)))
    return values


def decode_bars(bars: list[tuple[float, float]]) -> str:
    """Bars as (x, width), left to right -> the encoded text. Raises ValueError on a bad symbol."""
    module = min(w for _, w in bars)  # every start pattern has a one-module bar
    elements: list[int] = []
    for i, (x, w) in enumerate(bars):
        if i:
            prev_x, prev_w = bars[i - 1]
            elements.append(round((x - prev_x - prev_w) / module))
        elements.append(round(w / module))
    symbols = []
    while len(elements) > 7:
        group = "".join(map(str, elements[:6]))
        if group not in _SYMBOL:
            raise ValueError(f"not a Code128 symbol: {group}")
        symbols.append(_SYMBOL[group])
        elements = elements[6:]
    if "".join(map(str, elements)) != WIDTHS[STOP]:
        raise ValueError("no stop pattern")
    start, *data, check = symbols
    if start not in (START_A, START_B, START_C):
        raise ValueError(f"no start symbol: {start}")
    if (start + sum(i * v for i, v in enumerate(data, 1))) % 103 != check:
        raise ValueError("checksum mismatch")
    return _decode(start, data)


def _decode(start: int, data: list[int]) -> str:
    code = {START_A: "A", START_B: "B", START_C: "C"}[start]
    out = []
    for v in data:
        if v == 99 and code != "C":
            code = "C"
        elif v == 100 and code != "B":
            code = "B"
        elif v == 101 and code != "A":
            code = "A"
        elif code == "C":
            out.append(f"{v:02d}")
        elif code == "B":
            out.append(chr(v + 32))
        else:
            out.append(chr(v + 32) if v < 64 else chr(v - 64))
    return "".join(out)
