"""``SipConfig``: everything one phone (one worker process) needs to know about trunk and media.

Built from :class:`~callcenter.config.Settings` by the composition root (``callcenter.cli``) and by the
worker supervisor, which derives each worker's ports with :meth:`SipConfig.for_worker`. Plain data,
standard library only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from callcenter.config import ConfigError, Settings

# pjsua2-python is compiled with PJSUA_MAX_CALLS=4 (TOOLCHAIN.md); a self-built pjproject can hold
# more (docs/telephony.md, "64+ calls per process"). The phone checks the build's real limit.
WHEEL_MAX_CALLS = 4
MAX_CALLS_LIMIT = 512
# RTP/RTCP ports reserved per worker: two per call, and pjsua skips ports it cannot bind.
RTP_PORTS_PER_WORKER = 200


@dataclass(frozen=True)
class SipConfig:
    """Trunk, identity and media settings of one phone."""

    trunk: str | None = None  # host[:port] of the carrier gateway / PBX; numbers go to sip:<n>@trunk
    transport: str = "udp"  # udp | tcp
    username: str | None = None  # digest user (registration and INVITE challenges)
    password: str | None = None
    registrar: str | None = None  # host[:port]; register when set
    proxy: str | None = None  # host[:port]; outbound proxy, every request is routed through it
    caller_id: str | None = None  # user part of From (the number the customer sees)
    display_name: str | None = None
    codecs: tuple[str, ...] = ("PCMA", "PCMU", "G722")  # preference order; others are disabled
    bind_address: str = "0.0.0.0"
    sip_port: int = 5060  # 0: any free port
    rtp_port: int = 20000  # first RTP port
    rtp_port_range: int = RTP_PORTS_PER_WORKER
    dial_prefix: str = ""
    ring_timeout: float = 40.0
    max_call_seconds: float = 600.0
    audio_rate: int = 16000
    max_calls: int = WHEEL_MAX_CALLS
    recordings_dir: Path = Path("var/recordings")
    register_timeout: float = 10.0
    log_level: str = "INFO"
    # Receive calls through Phone.incoming() (the simulated customers); otherwise every INVITE is
    # declined with 603: workers only place calls, the PBX routes inbound calls to agents.
    inbound: bool = False
    inbound_ring_timeout: float = 120.0  # an incoming call left ringing this long gets 480

    def __post_init__(self) -> None:
        if self.transport not in ("udp", "tcp"):
            raise ConfigError(f"SIP transport must be udp or tcp, not {self.transport!r}")
        if self.password and not self.username:
            raise ConfigError("CALLCENTER_SIP_PASSWORD is set but CALLCENTER_SIP_USERNAME is not")
        if self.registrar and not (self.username and self.password):
            raise ConfigError("registration (CALLCENTER_SIP_REGISTRAR) needs CALLCENTER_SIP_USERNAME and _PASSWORD")
        if self.audio_rate not in (8000, 16000):
            raise ConfigError(f"audio rate must be 8000 or 16000, not {self.audio_rate}")
        if not 1 <= self.max_calls <= MAX_CALLS_LIMIT:
            raise ConfigError(f"max_calls={self.max_calls}: must be between 1 and {MAX_CALLS_LIMIT}")
        if self.rtp_port_range < 2 * self.max_calls:
            raise ConfigError(f"rtp_port_range={self.rtp_port_range} is too small for {self.max_calls} calls "
                              "(two ports per call)")
        if not self.codecs:
            raise ConfigError("at least one codec is needed")
        if not self.inbound_ring_timeout > 0:
            raise ConfigError("inbound_ring_timeout must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> SipConfig:
        return cls(
            trunk=settings.sip_trunk,
            transport=settings.sip_transport,
            username=settings.sip_username,
            password=settings.sip_password,
            registrar=settings.sip_registrar,
            proxy=settings.sip_proxy,
            caller_id=settings.sip_caller_id,
            display_name=settings.sip_display_name,
            codecs=tuple(settings.sip_codecs),
            bind_address=settings.sip_bind,
            sip_port=settings.sip_port,
            rtp_port=settings.rtp_port,
            dial_prefix=settings.sip_dial_prefix,
            ring_timeout=settings.sip_ring_timeout,
            max_call_seconds=settings.max_call_seconds,
            audio_rate=settings.audio_rate,
            max_calls=settings.sip_max_calls,
            rtp_port_range=max(RTP_PORTS_PER_WORKER, 4 * settings.sip_max_calls),
            recordings_dir=settings.recordings_dir or settings.data_dir / "recordings",
            log_level=settings.log_level,
        )

    def for_worker(self, index: int) -> SipConfig:
        """Worker ``index``'s ports: SIP ``sip_port + index``, RTP from ``rtp_port + range * index``."""
        if index < 0:
            raise ValueError("worker index must be >= 0")
        return dataclasses.replace(
            self,
            sip_port=self.sip_port + index if self.sip_port else 0,
            rtp_port=self.rtp_port + self.rtp_port_range * index,
        )

    def replace(self, **changes) -> SipConfig:
        return dataclasses.replace(self, **changes)

    @property
    def identity_host(self) -> str:
        """Host part of our From URI: the registrar's domain, else the trunk's, else our address."""
        host = self.registrar or self.trunk
        if host:
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return "127.0.0.1" if self.bind_address == "0.0.0.0" else self.bind_address

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        fields = ", ".join(
            f"{f.name}={'***' if f.name == 'password' and self.password else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"SipConfig({fields})"
