"""Logging set-up: one format for every process; in every line phone numbers are masked and
control characters escaped.

A request path such as ``/x%0a2026-12-06 INFO web: user admin logged in`` arrives decoded, with
a real line feed: written as it is, it would forge a second log line. The filter writes every
character below U+0020 (and DEL, U+0085, U+2028, U+2029) as ``\\xNN``/``\\uNNNN``, so one record is
always one line; tracebacks, which the formatter appends after the filter ran, keep their lines.
"""

from __future__ import annotations

import logging
import re
from typing import TextIO

from callcenter.domain.phone import mask_phones_in_text

_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def escape_control(text: str) -> str:
    """``"a\\nb"`` -> ``"a\\\\x0ab"``: control characters as visible escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


class PhoneMaskingFilter(logging.Filter):
    """Masks phone numbers in the rendered message (``138****5678``, whatever their format) and
    escapes control characters in it, whatever logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = escape_control(mask_phones_in_text(message))
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(PhoneMaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; our own line says what changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)
