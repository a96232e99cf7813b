"""Logging set-up: one format for every process, phone numbers masked in every line."""

from __future__ import annotations

import logging

from callcenter.domain.phone import mask_phones_in_text


class PhoneMaskingFilter(logging.Filter):
    """Masks mobile numbers in the rendered message (``138****5678``), whatever logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phones_in_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(PhoneMaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; our own line says what changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)
