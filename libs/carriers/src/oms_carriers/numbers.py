"""Tracking numbers of the built-in carrier: `<prefix><9-digit serial><mod-11 check digit><country>`."""

SERIAL_DIGITS = 9
_WEIGHTS = tuple(range(SERIAL_DIGITS + 1, 1, -1))  # 10, 9, ..., 2 from the left


def check_digit(serial: str) -> int | None:
    """Mod-11 check digit over the 9 serial digits (weights 10..2): the digit that makes the weighted
    sum plus the check a multiple of 11. None when that would be 10: such serials are skipped, so
    every check is one digit and every single-digit error and adjacent swap is caught."""
    if len(serial) != SERIAL_DIGITS or not serial.isdigit():
        raise ValueError(f"a serial is {SERIAL_DIGITS} digits")
    check = -sum(w * int(d) for w, d in zip(_WEIGHTS, serial, strict=True)) % 11
    return None if check == 10 else check


def tracking_number(prefix: str, serial: int, country: str) -> str | None:
    """E.g. "OMS" + 000000042 + check + "PT"; None when the serial has no one-digit check."""
    digits = f"{serial:0{SERIAL_DIGITS}d}"
    if len(digits) != SERIAL_DIGITS:
        raise ValueError(f"serial {serial} does not fit in {SERIAL_DIGITS} digits")
    check = check_digit(digits)
    return None if check is None else f"{prefix}{digits}{check}{country}"


def is_valid_tracking_number(value: str, prefix: str, country: str) -> bool:
    if not (value.startswith(prefix) and value.endswith(country)):
        return False
    body = value[len(prefix):len(value) - len(country)]
    if len(body) != SERIAL_DIGITS + 1 or not body.isdigit():
        return False
    return check_digit(body[:-1]) == int(body[-1])
