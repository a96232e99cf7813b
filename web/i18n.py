"""Languages: Chinese (zh_CN) by default, English selectable; times in the group's time zone.

Message ids in the code and templates are English; ``web/translations/zh`` holds the
Chinese catalog (compiled ``.mo`` committed beside the ``.po``; ``scripts/setup`` recompiles
it when the ``.po`` is newer). The user's choice is kept in the session. Runs on the request's
worker thread.
"""

from __future__ import annotations

from flask import Flask, session
from flask_babel import Babel

DEFAULT_LOCALE = "zh_CN"
LANGUAGES = {"zh_CN": "中文", "en": "English"}


def select_locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else DEFAULT_LOCALE


def init_app(app: Flask) -> None:
    from web.services import settings

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    Babel(app, locale_selector=select_locale, timezone_selector=lambda: settings().timezone)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, current_locale=select_locale)
