"""The simulated customers as one service: the SIP front plus a supervised bank of phone processes.

``callcenter simulate`` builds a :class:`Simulator` and calls :meth:`Simulator.run` on its main
thread: the front's thread routes SIP (:mod:`campaigns.simulator.front`), the telephony
supervisor starts ``processes`` phone processes (:mod:`campaigns.simulator.bank`), restarts any
that die, and stops them on SIGTERM / Ctrl-C. Ports: the front listens on ``host:port``; phone *i*
on SIP port ``port + 1 + i`` and RTP ports from ``rtp_port + 200 i`` (so several simulators, or a
simulator beside the robot's workers, need separate ranges).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callcenter.config import Settings
from callcenter.telephony.config import RTP_PORTS_PER_WORKER, SipConfig
from campaigns.personas import DEFAULT_FILE, PersonaBook, PersonaError, load_personas

logger = logging.getLogger(__name__)

JOB = "campaigns.simulator.bank:simulator_job"
CALLS_PER_PHONE = 4  # the pjsua2 wheel's PJSUA_MAX_CALLS
READY_TIMEOUT = 120.0  # seconds for every phone to report in (spawn + pjsua2 + fingerprints on busy cores)


class SimulatorError(RuntimeError):
    """The simulator cannot start (bad personas, ports taken, phones that never come up)."""


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 5070
    personas: Path = DEFAULT_FILE
    processes: int = 5
    rtp_port: int = 30000
    log_dir: Path | None = None
    default: str | None = None  # persona or mix for numbers not listed (default: the file's)
    scripts: tuple[Path, ...] = ()  # script folders besides dialog/scripts (a deployment's own)
    fallback_script: str = "post_service"
    ring_limit: float = 300.0  # an unanswered ("no_answer") call rings at most this long, then 480
    max_call_seconds: float = 900.0

    @property
    def capacity(self) -> int:
        return self.processes * CALLS_PER_PHONE


def check_ports(host: str, ports: list[int]) -> None:
    """Raises SimulatorError naming the first port another process holds (UDP or TCP)."""
    for port in ports:
        for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise SimulatorError(f"{host}:{port}/{name} is in use ({exc.strerror}): the simulator's phones "
                                     f"need SIP ports {ports[0]}-{ports[-1]}; choose another --listen port") from None
            finally:
                s.close()


class Simulator:
    """Front + phone bank; see the module docstring."""

    def __init__(self, settings: Settings, config: SimulatorConfig) -> None:
        if not 1 <= config.processes <= 64:
            raise SimulatorError("processes must be between 1 and 64")
        if not 1024 <= config.port <= 65535 - config.processes - 1:
            raise SimulatorError(f"port {config.port}: choose 1024-{65535 - config.processes - 1}")
        self.settings = settings
        self.config = config
        self.book = self._check_personas()
        self.front = None
        self.supervisor = None

    def _check_personas(self) -> PersonaBook:
        cfg = self.config
        try:
            book = load_personas(cfg.personas, require_audio=True)
            if cfg.default:
                book = book.with_default(cfg.default)
        except PersonaError as exc:
            raise SimulatorError(str(exc)) from None
        return book

    def sip_config(self) -> SipConfig:
        cfg = self.config
        return SipConfig(
            bind_address=cfg.host, sip_port=cfg.port + 1, rtp_port=cfg.rtp_port,
            rtp_port_range=RTP_PORTS_PER_WORKER, audio_rate=8000, codecs=("PCMA", "PCMU", "G722"),
            max_calls=CALLS_PER_PHONE, inbound=True, inbound_ring_timeout=cfg.ring_limit,
            max_call_seconds=cfg.max_call_seconds, recordings_dir=(cfg.log_dir or Path("var")) / "recordings",
            log_level=self.settings.log_level,
        )

    def numbers(self) -> dict[str, list[str]]:
        """persona -> the numbers listed for it (what the robot should dial to meet it)."""
        out: dict[str, list[str]] = {}
        for number, pid in self.book.numbers.items():
            out.setdefault(pid, []).append(number)
        return out

    def start(self) -> None:
        from callcenter.telephony.supervisor import Supervisor
        from campaigns.simulator.front import SipFront

        cfg = self.config
        check_ports(cfg.host, [cfg.port + 1 + i for i in range(cfg.processes)])
        try:
            self.front = SipFront(cfg.host, cfg.port).start()
        except OSError as exc:
            raise SimulatorError(str(exc)) from None
        host, port = self.front.report_address
        job_args = {"personas": str(Path(cfg.personas).resolve()), "front": f"{host}:{port}",
                    "token": self.front.token, "fallback_script": cfg.fallback_script,
                    "scripts": os.pathsep.join(str(Path(p).resolve()) for p in cfg.scripts)}
        if cfg.log_dir is not None:
            job_args["log_dir"] = str(Path(cfg.log_dir).resolve())
        if cfg.default:
            job_args["default"] = cfg.default
        self.supervisor = Supervisor(self.settings, self.sip_config(), processes=cfg.processes, job=JOB,
                                     job_args=job_args)
        self.supervisor.start()
        logger.info("simulator: front on %s, %d phone processes starting", self.front.address, cfg.processes)

    def wait_ready(self, stop: threading.Event, timeout: float = READY_TIMEOUT) -> bool:
        """Supervise until every phone has reported to the front; False if ``stop`` was set first.

        Raises:
            SimulatorError: the phones did not all come up within ``timeout`` (the message says
                which exit codes the supervisor saw).
        """
        deadline = time.monotonic() + timeout
        while not stop.wait(0.2):
            self.supervisor.poll()
            if self.front.ready_phones() >= self.config.processes:
                return True
            if time.monotonic() > deadline:
                status = ", ".join(f"worker-{s['worker']}: {s['state']} (restarts {s['restarts']}, "
                                   f"last exit {s['last_exit']})" for s in self.supervisor.status())
                raise SimulatorError(f"only {self.front.ready_phones()} of {self.config.processes} phones came up "
                                     f"within {timeout:g} s: {status}")
        return False

    def run(self, stop: threading.Event, on_ready: Callable[[dict], None] | None = None) -> None:
        """Start, report readiness, supervise until ``stop`` is set, then shut everything down."""
        self.start()
        try:
            if self.wait_ready(stop) and on_ready is not None:
                on_ready(self.summary())
            while not stop.wait(0.2):
                self.supervisor.poll()
        finally:
            self.close()

    def summary(self) -> dict:
        cfg = self.config
        return {
            "trunk": self.front.address if self.front else f"{cfg.host}:{cfg.port}",
            "processes": cfg.processes,
            "capacity": cfg.capacity,
            "personas": str(cfg.personas),
            "default": self.book.default,
            "numbers": self.numbers(),
            "log_dir": str(cfg.log_dir) if cfg.log_dir else None,
            "sip_ports": [cfg.port + 1, cfg.port + cfg.processes],
            "rtp_ports": [cfg.rtp_port, cfg.rtp_port + RTP_PORTS_PER_WORKER * cfg.processes - 1],
        }

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.shutdown()
            self.supervisor = None
        if self.front is not None:
            stats = self.front.stats()
            logger.info("simulator: stopped; %d calls routed, %d refused (all phones busy)", stats["routed"],
                        stats["full"])
            self.front.stop()
            self.front = None


def with_defaults(config: SimulatorConfig, settings: Settings) -> SimulatorConfig:
    """Fill the log folder (``<data_dir>/simulator/calls``) and the deployment's script folder."""
    changes = {}
    if config.log_dir is None:
        changes["log_dir"] = Path(settings.data_dir) / "simulator" / "calls"
    deployment = Path(settings.data_dir) / "scripts"
    if deployment.is_dir() and deployment not in config.scripts:
        changes["scripts"] = (*config.scripts, deployment)
    return dataclasses.replace(config, **changes)
