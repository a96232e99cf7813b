"""Dial targets: a phone number or a ``sip:`` URI in, a SIP request URI out; masking for logs.

Pure functions, called on the caller's thread before anything reaches the SIP stack, so that a bad
target is an :class:`InvalidTarget` naming what is wrong and never a half-made call. URIs are checked
against a strict grammar: no whitespace, angle brackets, quotes or line breaks can reach a SIP header.
"""

from __future__ import annotations

import re

from callcenter.domain.phone import mask_phone
from callcenter.telephony.api import InvalidTarget

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212()（）.]")
_FULLWIDTH = str.maketrans("０１２３４５６７８９＋－＊＃　", "0123456789+-*# ")
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
# RFC 3261 user part (unreserved / escaped / user-unreserved), host as name, IPv4 or [IPv6].
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+"
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?"
_PARAM = r";[A-Za-z0-9\-_.!~*'()%]+(?:=[A-Za-z0-9\-_.!~*'()%\[\]:]+)?"
_SIP_URI = re.compile(rf"sip:(?:(?P<user>{_USER})@)?(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?(?P<params>(?:{_PARAM})*)")
_USER_IN_URI = re.compile(r"^(sips?:)([^@;]+)@")


def normalize_number(raw: str) -> str:
    """``138-1234 5678`` -> ``13812345678``; keeps ``+``, ``*`` and ``#``.

    Raises:
        InvalidTarget: empty, too long, or characters a phone cannot dial.
    """
    text = raw.strip().translate(_FULLWIDTH)
    digits = _SEPARATORS.sub("", text)
    if not digits:
        raise InvalidTarget("empty number")
    if not _NUMBER.fullmatch(digits):
        bad = sorted({c for c in digits if not (c.isdigit() or c in "*#+")})
        if bad:
            raise InvalidTarget(f"number contains characters a phone cannot dial: {''.join(bad)!r}")
        if len(digits.lstrip("+")) > 32:
            raise InvalidTarget("number is longer than 32 digits")
        raise InvalidTarget("'+' may only start a number")
    return digits


def check_sip_uri(uri: str) -> str:
    """Validate a ``sip:`` URI and return it unchanged.

    Raises:
        InvalidTarget: naming the problem (TLS scheme, bad host, bad port, stray characters).
    """
    if uri[:5].lower() == "sips:":
        raise InvalidTarget("sips: (SIP over TLS) is not supported by this SIP stack; use sip:")
    if uri[:4].lower() != "sip:":
        raise InvalidTarget(f"not a SIP URI: {mask_target(uri)!r}")
    uri = "sip:" + uri[4:]
    m = _SIP_URI.fullmatch(uri)
    if not m:
        raise InvalidTarget(f"malformed SIP URI: {mask_target(uri)!r}")
    if m.group("port") and not 0 < int(m.group("port")) < 65536:
        raise InvalidTarget(f"port out of range in SIP URI: {mask_target(uri)!r}")
    return uri


def request_uri(target: str, trunk: str | None, *, transport: str = "udp", dial_prefix: str = "") -> str:
    """The request URI for ``target``: a number goes to ``sip:<prefix><number>@<trunk>``.

    Args:
        target: a phone number / extension, or a complete ``sip:`` URI (used as given).
        trunk: ``host[:port]`` of the trunk or PBX; needed for numbers only.
        transport: ``udp`` or ``tcp``; ``tcp`` adds ``;transport=tcp`` to trunk URIs.
        dial_prefix: digits a PBX wants before external numbers (``9``, ``0``).

    Raises:
        InvalidTarget: the target is not dialable, or a number was given without a trunk.
    """
    if not isinstance(target, str):
        raise InvalidTarget(f"target must be a string, got {type(target).__name__}")
    text = target.strip()
    if text[:4].lower() in ("sip:", "sips") or "@" in text:
        if "@" in text and text[:4].lower() != "sip:" and text[:5].lower() != "sips:":
            text = "sip:" + text
        return check_sip_uri(text)
    number = normalize_number(text)
    if not trunk:
        raise InvalidTarget("no trunk configured (CALLCENTER_SIP_TRUNK) to dial a number; give a sip: URI")
    user = (dial_prefix + number).replace("#", "%23")
    uri = f"sip:{user}@{trunk}"
    if transport == "tcp":
        uri += ";transport=tcp"
    return check_sip_uri(uri)


def uri_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr, unescaped: the number a request is for, or from.

    ``"王" <sip:13900000001@gw;user=phone>;tag=1`` -> ``13900000001``; ``sip:%2312@pbx`` -> ``#12``;
    ``tel:+8613900000001`` -> ``+8613900000001``; ``""`` when there is none (``sip:gw``).
    """
    from urllib.parse import unquote

    text = uri.strip()
    m = re.search(r"<([^>]*)>", text)
    if m:
        text = m.group(1)
    low = text.lower()
    if low.startswith("tel:"):
        return unquote(text[4:].split(";", 1)[0])
    for scheme in ("sips:", "sip:"):
        if low.startswith(scheme):
            text = text[len(scheme):]
            break
    else:
        return ""
    if "@" not in text:
        return ""
    user = text.split("@", 1)[0].split(";", 1)[0].split(":", 1)[0]  # drop user params and a password
    return unquote(user)


def mask_target(uri: str) -> str:
    """Mask the number in a target for logs: ``sip:13812345678@gw`` -> ``sip:138****5678@gw``.

    Short user parts (extensions such as ``8001``) are not personal data and stay readable.
    """
    m = _USER_IN_URI.match(uri)
    if m:
        user = m.group(2)
        return f"{m.group(1)}{_mask_user(user)}@{uri[m.end():]}"
    if "@" not in uri and not uri.lower().startswith("sip"):
        return _mask_user(uri)
    return uri


def _mask_user(user: str) -> str:
    digits = re.sub(r"[^0-9]", "", user)
    if len(digits) >= 7:
        return mask_phone(digits)
    return user
