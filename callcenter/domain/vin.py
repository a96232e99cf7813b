"""Vehicle identification numbers (ISO 3779 / GB 16735)."""

from __future__ import annotations

import re

_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_TRANSLIT = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9))),
    **dict(zip("JKLMN", range(1, 6))),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10))),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


class VinError(ValueError):
    pass


def normalize_vin(raw: str) -> str:
    """Upper-case and validate a VIN: 17 characters, letters I, O and Q never appear."""
    vin = str(raw).strip().upper().replace(" ", "")
    if len(vin) != 17:
        raise VinError(f"VIN must have 17 characters, not {len(vin)}")
    bad = sorted(set(ch for ch in vin if ch in "IOQ"))
    if bad:
        raise VinError(f"VIN cannot contain {', '.join(bad)}")
    if not _VIN.fullmatch(vin):
        raise VinError("VIN may hold only digits and the letters A-Z except I, O, Q")
    return vin


def check_digit(vin: str) -> str:
    """The ninth-position check character a VIN of these 17 characters should carry."""
    total = sum(_TRANSLIT[ch] * w for ch, w in zip(vin, _WEIGHTS))
    rest = total % 11
    return "X" if rest == 10 else str(rest)
