"""Languages: Chinese (zh_CN) by default, English selectable; times in the group's time zone.

Message ids in the code and templates are English; ``web/translations/zh`` holds the
Chinese catalog (compiled ``.mo`` committed beside the ``.po``; ``scripts/setup`` recompiles
it when the ``.po`` is newer). The user's choice is kept in the session. Runs on the request's
worker thread.
"""

from __future__ import annotations

import flask_babel
from flask import Flask, g, session
from flask_babel import Babel

DEFAULT_LOCALE = "zh_CN"
LANGUAGES = {"zh_CN": "中文", "en": "English"}


def select_locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else DEFAULT_LOCALE


def N_(message: str) -> str:  # noqa: N802 - the conventional marker name
    """Marks a message for extraction; it is translated where it is shown (:func:`gettext`)."""
    return message


def translations():
    """The request's catalog, looked up once per request: Flask-Babel looks it up on every call
    (about 0.1 ms each, some fifty times per page)."""
    found = g.get("_cc_translations")
    if found is None:
        found = g._cc_translations = flask_babel.get_translations()
    return found


def gettext(message: str, **variables) -> str:
    text = translations().gettext(message)
    return text % variables if variables else text


def init_app(app: Flask) -> None:
    from web.services import settings

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    Babel(app, locale_selector=select_locale, timezone_selector=lambda: settings().timezone)
    app.jinja_env.install_gettext_callables(
        lambda message: translations().gettext(message),
        lambda singular, plural, n: translations().ngettext(singular, plural, n),
        newstyle=True,
    )
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, current_locale=select_locale)
