"""Chinese phone numbers: normalisation of what DMS exports contain, and masking for logs."""

from __future__ import annotations

import re

_MOBILE = re.compile(r"1[3-9]\d{9}")
# Area codes: 010 and 02X are 3 digits with 8-digit local numbers; others are 4 digits
# (0311, 0731 ...) with 7- or 8-digit local numbers.
_LANDLINE_3 = re.compile(r"(0(?:10|2\d))([2-9]\d{7})")
_LANDLINE_4 = re.compile(r"(0[3-9]\d{2})([2-9]\d{6,7})")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212()（）.]")


class PhoneError(ValueError):
    """A value that is not a dialable mainland mobile or landline number; ``kind`` names the rule
    it breaks (``empty``, ``country``, ``characters``, ``mobile``, ``landline``, ``no_area_code``)
    so that a user interface can say it in its own language."""

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


def normalize_phone(raw: str | int) -> str:
    """Return ``13812345678`` for mobiles and ``0731-84567890`` for landlines.

    Accepts ``+86``/``0086``/``86`` prefixes, spaces, dashes, dots and brackets, and
    full-width digits as Chinese spreadsheets sometimes hold.

    Raises:
        PhoneError: naming why the value is not a valid number.
    """
    text = str(raw).strip()
    if not text:
        raise PhoneError("empty phone number", "empty")
    text = text.translate(_FULLWIDTH)
    if text.endswith(".0") and text[:-2].isdigit():  # a number cell read as float
        text = text[:-2]
    digits = _SEPARATORS.sub("", text)
    international = digits.startswith(("+", "0086"))
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("86"):
            raise PhoneError("not a mainland China number (country code must be +86)", "country")
        digits = digits[2:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13 and _MOBILE.fullmatch(digits[2:]):
        digits = digits[2:]
    if not digits.isdigit():
        raise PhoneError("contains characters other than digits", "characters")
    if _MOBILE.fullmatch(digits):
        return digits
    if international and not digits.startswith("0"):
        digits = "0" + digits  # +86 10 ...: the area code loses its trunk prefix after +86
    for pattern in (_LANDLINE_3, _LANDLINE_4):
        m = pattern.fullmatch(digits)
        if m:
            return f"{m.group(1)}-{m.group(2)}"
    if digits.startswith("1"):
        raise PhoneError("not a valid mainland mobile number (11 digits starting 13-19)", "mobile")
    if digits.startswith("0"):
        raise PhoneError("not a valid landline (area code + 7 or 8 digit number)", "landline")
    raise PhoneError("not a mobile number and has no area code", "no_area_code")


def dial_digits(phone: str) -> str:
    """Digits to send to the trunk: ``0731-84567890`` -> ``073184567890``."""
    return phone.replace("-", "")


def mask_phone(phone: str | None) -> str:
    """``13812345678`` -> ``138****5678``; landlines keep area code and last 4 digits."""
    if not phone:
        return ""
    digits = phone.replace("-", "")
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


_FULLWIDTH = str.maketrans("０１２３４５６７８９＋－　", "0123456789+- ")

# A mobile as people write it: 13812345678, 138-1234-5678, 138 1234 5678, +86 138..., 86-138...,
# 0086138...; and a landline with its area code: 0731-84567890, (0731) 8456 7890, 010 8888 6666.
_SEP = r"[\s\-.]?"
_COUNTRY = r"(?:(?:\+|00)?86" + _SEP + ")?"
_MOBILE_IN_TEXT = re.compile(rf"(?<![\d+])(?<!\d[\-.]){_COUNTRY}(1[3-9]\d){_SEP}\d{{4}}{_SEP}(\d{{4}})(?!\d)")
_LANDLINE_IN_TEXT = re.compile(
    rf"(?<![\d+])(?<!\d[\-.]){_COUNTRY}[(（]?(0(?:10|2\d|[3-9]\d{{2}}))[)）]?{_SEP}[2-9]\d{{2,3}}{_SEP}(\d{{4}})(?!\d)")


def mask_phones_in_text(text: str) -> str:
    """Mask every phone number that appears inside free text (log lines, URIs), in any of the
    formats above: ``138****5678`` and ``0731-****7890``."""
    text = _MOBILE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)
    return _LANDLINE_IN_TEXT.sub(lambda m: f"{m.group(1)}-****{m.group(2)}", text)
