"""Settings: the only reader of ``os.environ`` (``CALLCENTER_*`` variables).

``Settings.from_env()`` is called once by the CLI (the composition root) and the
result is passed down. Parsers are strict: ``CALLCENTER_X=ture`` is an error, not
``False``; an unknown ``CALLCENTER_*`` variable is an error too, since a typo in a
variable name would otherwise silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PREFIX = "CALLCENTER_"
# Variables read by the test-suite and benchmarks themselves, never by the product.
_IGNORED_PREFIXES = ("CALLCENTER_TEST_", "CALLCENTER_BENCH_")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def parse_int(name: str, raw: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def parse_float(name: str, raw: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


def parse_timezone(name: str, raw: str) -> str:
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={raw!r}: not a known time zone (e.g. Asia/Shanghai)") from None
    return raw.strip()


_DB_SCHEMES = ("sqlite", "postgresql")


def parse_database_url(name: str, raw: str) -> str:
    url = raw.strip()
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in _DB_SCHEMES:
        raise ConfigError(f"{name}: expected sqlite:///path or postgresql://user@host/db, got {url[:40]!r}")
    if scheme == "postgresql" and "+" not in url.split("://", 1)[0]:
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def parse_redis_url(name: str, raw: str) -> str:
    url = raw.strip()
    if not re.match(r"^(redis|rediss|unix)://", url):
        raise ConfigError(f"{name}: expected redis://host:port/db, got {url[:40]!r}")
    return url


def parse_hostport(name: str, raw: str) -> str:
    """``host[:port]``; SIP trunks and peers."""
    value = raw.strip()
    m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?", value)
    if not m or (m.group(2) and not 0 < int(m.group(2)) < 65536):
        raise ConfigError(f"{name}={raw!r}: expected host or host:port")
    return value


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Build with :meth:`from_env`; tests build them directly."""

    data_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    models_dir: Path | None = None
    env: str = "production"
    secret_key: str | None = None
    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    # Maintenance cycle in months by tier, for stores that do not set their own.
    cycle_months_mid: int = 3
    cycle_months_premium: int = 6
    # Console (web/): gunicorn worker processes and threads per process; SSE streams hold a
    # thread each, so threads bound concurrent live views. Cookie "Secure" flag: None follows
    # the environment (on in production); set false only for a plain-HTTP intranet.
    web_workers: int = 2
    web_threads: int = 16
    cookie_secure: bool | None = None
    # Reverse proxies in front of the console whose X-Forwarded-For/-Proto are trusted (0: none),
    # and the addresses they connect from: X-Forwarded-* from any other peer is ignored, so a
    # client that reaches the console directly cannot choose its own address (login limits, audit).
    trusted_proxies: int = 0
    trusted_proxy_addresses: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    # Telephony (callcenter.telephony; docs/telephony.md). Trunk and registrar are host[:port]; with
    # a registrar the workers register using username/password (digest). Worker i of N listens on
    # sip_port + i (0: any free port) and takes RTP ports rtp_port + 200*i onwards.
    sip_trunk: str | None = None
    sip_transport: str = "udp"
    sip_username: str | None = None
    sip_password: str | None = field(default=None, repr=False)
    sip_registrar: str | None = None
    sip_proxy: str | None = None
    sip_caller_id: str | None = None
    sip_display_name: str | None = None
    sip_codecs: tuple[str, ...] = ("PCMA", "PCMU", "G722")
    sip_bind: str = "0.0.0.0"
    sip_port: int = 5060
    rtp_port: int = 20000
    sip_dial_prefix: str = ""
    sip_ring_timeout: float = 40.0
    max_call_seconds: float = 600.0
    audio_rate: int = 16000  # customer frames and recordings: 8000 or 16000 Hz
    sip_max_calls: int = 4  # per worker process; above 4 needs a self-built pjproject (docs/telephony.md)
    recordings_dir: Path | None = None  # default: <data_dir>/recordings
    # Where the robot hands a call to a human (an extension or sip: URI of the agents' queue on the
    # PBX). None: a script's "transfer" ends with an agent callback instead (docs/operations.md).
    transfer_target: str | None = None
    # Dialer (campaigns/; docs/campaigns.md). Calling windows are the store's local time; campaigns
    # may override each of these in their params. Retry delays by the last attempt's disposition.
    dialer_windows: str = "09:00-12:00,14:00-20:00"
    dialer_holidays: bool = True  # no calls on China's public holidays
    dialer_frequency_cap_days: int = 7  # one answered robot call per customer per N days (0: off)
    dialer_max_attempts: int = 3
    dialer_retry_busy_minutes: int = 30
    dialer_retry_no_answer_minutes: int = 120
    dialer_retry_unavailable_minutes: int = 60
    # A delivered task nobody acknowledged for this long is re-delivered (XAUTOCLAIM); a worker
    # whose liveness key is older than the worker timeout is dead and its calls are written off.
    dialer_claim_timeout: int = 60
    dialer_worker_timeout: int = 15
    # Speech recognition (asr/, docs/asr.md).
    asr_engine: str = "whisper"  # "whisper": Mandarin, model from PyPI; "vosk": a model installed by path
    vosk_model: str | None = None  # name under <models_dir>/vosk, or a path; None: the only one installed
    asr_threads: int = 2  # CPU threads of Whisper's decoder, per worker process
    whisper_beam_size: int | None = None  # None: the engine's tuned default
    asr_end_silence_ms: int = 800  # trailing silence that ends a customer's utterance (Whisper's VAD)
    # Dialog (dialog/; docs/scripts.md): the feedback classifier model directory (None: the default
    # that `callcenter classifier build-default` chose under <models_dir>/dialog) and torch's threads
    # for the NLP models per process. One: on 2 shared cores two intra-op threads stall each other
    # (measured: 0.14 s vs 2.0 s per training step, 922 vs 183 texts/s; docs/benchmarks.md).
    classifier_model: Path | None = None
    nlp_threads: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.database_url:
            db = (self.data_dir / "callcenter.db").resolve()
            object.__setattr__(self, "database_url", f"sqlite:///{db}")
        if self.models_dir is None:
            object.__setattr__(self, "models_dir", self.data_dir / "models")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read ``CALLCENTER_*`` variables.

        Raises:
            ConfigError: a variable is malformed or unknown.
        """
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for key, (attr, parser) in _VARIABLES.items():
            if key in env and env[key] != "":
                values[attr] = parser(key, env[key])
                seen.add(key)
        unknown = sorted(
            k for k in env
            if k.startswith(PREFIX) and k not in _VARIABLES and not k.startswith(_IGNORED_PREFIXES)
        )
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]} (known: {', '.join(sorted(_VARIABLES))})")
        return cls(**values)


def _path(name: str, raw: str) -> Path:
    if "\x00" in raw:
        raise ConfigError(f"{name}: contains a NUL byte")
    return Path(raw.strip()).expanduser()


def _secret(name: str, raw: str) -> str:
    if len(raw) < 16:
        raise ConfigError(f"{name}: must be at least 16 characters")
    return raw


def _sip_user(name: str, raw: str) -> str:
    """A SIP user part (account name, caller id): what can go into a URI without escaping."""
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.\-_+]{1,64}", value):
        raise ConfigError(f"{name}={raw!r}: expected 1-64 letters, digits or . - _ +")
    return value


def _sip_password(name: str, raw: str) -> str:
    if not 1 <= len(raw) <= 128 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ConfigError(f"{name}: must be 1-128 printable characters")  # never echo a secret
    return raw


def _sip_display_name(name: str, raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 64 or any(ord(c) < 32 or c in '"\\<>' for c in value):
        raise ConfigError(f"{name}={raw!r}: 1-64 characters, no quotes, backslashes or angle brackets")
    return value


_SIP_CODECS = ("PCMA", "PCMU", "G722")


def _transfer_target(name: str, raw: str) -> str:
    value = raw.strip()
    if value.startswith("sip:") and len(value) > 4 and " " not in value:
        return value
    if value.replace("+", "", 1).isdigit() and len(value) <= 32:
        return value
    raise ConfigError(f"{name}: expected an extension (digits) or a sip: URI, got {raw!r}")


def _sip_codecs(name: str, raw: str) -> tuple[str, ...]:
    codecs = tuple(c.strip().upper() for c in raw.split(","))
    bad = [c for c in codecs if c not in _SIP_CODECS]
    if bad or not codecs or len(set(codecs)) != len(codecs):
        raise ConfigError(f"{name}={raw!r}: expected a comma-separated preference of {', '.join(_SIP_CODECS)}")
    return codecs


def _ip_address(name: str, raw: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an IP address such as 0.0.0.0 or 192.168.1.10") from None


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (``10.0.0.5, 10.1.0.0/16``), each checked."""
    import ipaddress

    items = [part.strip() for part in raw.split(",")]
    try:
        networks = tuple(str(ipaddress.ip_network(item, strict=True)) for item in items)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected comma-separated IP addresses or networks "
                          "such as 127.0.0.1, 10.0.0.0/24 (a network without host bits)") from None
    return networks


def _dial_prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[0-9*#]{0,8}", value):
        raise ConfigError(f"{name}={raw!r}: expected up to 8 of 0-9 * #")
    return value


def _dialer_windows(name: str, raw: str) -> str:
    """``HH:MM-HH:MM[,HH:MM-HH:MM...]``; campaigns.rules checks order and overlaps."""
    value = raw.strip()
    if not re.fullmatch(r"(?:[0-2]?\d:[0-5]\d-[0-2]?\d:[0-5]\d)(?:,[0-2]?\d:[0-5]\d-[0-2]?\d:[0-5]\d)*",
                        value.replace(" ", "")):
        raise ConfigError(f"{name}={raw!r}: expected windows like 09:00-12:00,14:00-20:00")
    return value.replace(" ", "")


_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "CALLCENTER_DATA_DIR": ("data_dir", _path),
    "CALLCENTER_DATABASE_URL": ("database_url", parse_database_url),
    "CALLCENTER_REDIS_URL": ("redis_url", parse_redis_url),
    "CALLCENTER_MODELS_DIR": ("models_dir", _path),
    "CALLCENTER_ENV": ("env", lambda n, r: parse_choice(n, r, ("production", "development", "testing"))),
    "CALLCENTER_SECRET_KEY": ("secret_key", _secret),
    "CALLCENTER_TIMEZONE": ("timezone", parse_timezone),
    "CALLCENTER_LOG_LEVEL": ("log_level", lambda n, r: parse_choice(n, r, ("debug", "info", "warning", "error")).upper()),
    "CALLCENTER_CYCLE_MONTHS_MID": ("cycle_months_mid", lambda n, r: parse_int(n, r, 1, 24)),
    "CALLCENTER_CYCLE_MONTHS_PREMIUM": ("cycle_months_premium", lambda n, r: parse_int(n, r, 1, 24)),
    "CALLCENTER_WEB_WORKERS": ("web_workers", lambda n, r: parse_int(n, r, 1, 32)),
    "CALLCENTER_WEB_THREADS": ("web_threads", lambda n, r: parse_int(n, r, 1, 256)),
    "CALLCENTER_COOKIE_SECURE": ("cookie_secure", parse_bool),
    "CALLCENTER_TRUSTED_PROXIES": ("trusted_proxies", lambda n, r: parse_int(n, r, 0, 5)),
    "CALLCENTER_TRUSTED_PROXY_ADDRESSES": ("trusted_proxy_addresses", _networks),
    "CALLCENTER_SIP_TRUNK": ("sip_trunk", parse_hostport),
    "CALLCENTER_SIP_TRANSPORT": ("sip_transport", lambda n, r: parse_choice(n, r, ("udp", "tcp"))),
    "CALLCENTER_SIP_USERNAME": ("sip_username", _sip_user),
    "CALLCENTER_SIP_PASSWORD": ("sip_password", _sip_password),
    "CALLCENTER_SIP_REGISTRAR": ("sip_registrar", parse_hostport),
    "CALLCENTER_SIP_PROXY": ("sip_proxy", parse_hostport),
    "CALLCENTER_SIP_CALLER_ID": ("sip_caller_id", _sip_user),
    "CALLCENTER_SIP_DISPLAY_NAME": ("sip_display_name", _sip_display_name),
    "CALLCENTER_SIP_CODECS": ("sip_codecs", _sip_codecs),
    "CALLCENTER_SIP_BIND": ("sip_bind", _ip_address),
    "CALLCENTER_SIP_PORT": ("sip_port", lambda n, r: parse_int(n, r, 0, 65535)),
    "CALLCENTER_RTP_PORT": ("rtp_port", lambda n, r: parse_int(n, r, 1024, 64000)),
    "CALLCENTER_SIP_DIAL_PREFIX": ("sip_dial_prefix", _dial_prefix),
    "CALLCENTER_SIP_RING_TIMEOUT": ("sip_ring_timeout", lambda n, r: parse_float(n, r, 1, 300)),
    "CALLCENTER_MAX_CALL_SECONDS": ("max_call_seconds", lambda n, r: parse_float(n, r, 1, 14400)),
    "CALLCENTER_AUDIO_RATE": ("audio_rate", lambda n, r: int(parse_choice(n, r, ("8000", "16000")))),
    "CALLCENTER_SIP_MAX_CALLS": ("sip_max_calls", lambda n, r: parse_int(n, r, 1, 512)),
    "CALLCENTER_RECORDINGS_DIR": ("recordings_dir", _path),
    "CALLCENTER_TRANSFER_TARGET": ("transfer_target", lambda n, r: _transfer_target(n, r)),
    "CALLCENTER_DIALER_WINDOWS": ("dialer_windows", _dialer_windows),
    "CALLCENTER_DIALER_HOLIDAYS": ("dialer_holidays", parse_bool),
    "CALLCENTER_DIALER_FREQUENCY_CAP_DAYS": ("dialer_frequency_cap_days", lambda n, r: parse_int(n, r, 0, 365)),
    "CALLCENTER_DIALER_MAX_ATTEMPTS": ("dialer_max_attempts", lambda n, r: parse_int(n, r, 1, 10)),
    "CALLCENTER_DIALER_RETRY_BUSY_MINUTES": ("dialer_retry_busy_minutes", lambda n, r: parse_int(n, r, 1, 10080)),
    "CALLCENTER_DIALER_RETRY_NO_ANSWER_MINUTES": (
        "dialer_retry_no_answer_minutes", lambda n, r: parse_int(n, r, 1, 10080)),
    "CALLCENTER_DIALER_RETRY_UNAVAILABLE_MINUTES": (
        "dialer_retry_unavailable_minutes", lambda n, r: parse_int(n, r, 1, 10080)),
    "CALLCENTER_DIALER_CLAIM_TIMEOUT": ("dialer_claim_timeout", lambda n, r: parse_int(n, r, 1, 3600)),
    "CALLCENTER_DIALER_WORKER_TIMEOUT": ("dialer_worker_timeout", lambda n, r: parse_int(n, r, 2, 600)),
    "CALLCENTER_ASR_ENGINE": ("asr_engine", lambda n, r: parse_choice(n, r, ("whisper", "vosk"))),
    "CALLCENTER_VOSK_MODEL": ("vosk_model", lambda n, r: str(_path(n, r))),
    "CALLCENTER_ASR_THREADS": ("asr_threads", lambda n, r: parse_int(n, r, 1, 64)),
    "CALLCENTER_WHISPER_BEAM_SIZE": ("whisper_beam_size", lambda n, r: parse_int(n, r, 1, 10)),
    "CALLCENTER_ASR_END_SILENCE_MS": ("asr_end_silence_ms", lambda n, r: parse_int(n, r, 200, 3000)),
    "CALLCENTER_CLASSIFIER_MODEL": ("classifier_model", _path),
    "CALLCENTER_NLP_THREADS": ("nlp_threads", lambda n, r: parse_int(n, r, 1, 64)),
}
