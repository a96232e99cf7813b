"""Real SIP peers for the telephony integration tests, started by the tests on 127.0.0.1.

* SIPp (Debian ``sip-tester``) runs the UAS scenarios in ``tests/data/sip``;
* baresip (Debian ``baresip-core``) is an auto-answering phone that plays a WAV and dumps what it
  hears (``sndfile``).

Ports come from 15000-19999 (telephony's range in this project; the inbound-call tests take theirs
from 20000-24999, ``INBOUND_PORTS``). The search starts at an offset
derived from the process id and skips anything another process holds, so two engineers' test runs
do not collide. Every peer is stopped by its own pid at teardown. A missing binary fails the test
with the package to install; nothing is skipped.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from callcenter.ports import is_free
from callcenter.telephony.config import SipConfig

SIP_DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
PORT_LO, PORT_HI = 15000, 19999
INBOUND_PORTS = (20000, 24999)  # the inbound-call and simulator tests' range
RTP_PORTS = 40  # per test phone: 4 calls x RTP+RTCP, with room for ports another process holds
_rng = random.Random(os.getpid())
_handed_out: dict[int, float] = {}  # port -> when handed out; not handed out again for a minute
_kept: set[int] = set()  # ports of long-lived phones (a module's shared phone): never handed out again


def free_ports(count: int = 1, lo: int = PORT_LO, hi: int = PORT_HI, keep: bool = False) -> int:
    """The first of ``count`` consecutive ports in ``lo``-``hi`` that are free for UDP and TCP on 127.0.0.1.

    A port is not handed out again for a minute; with ``keep`` never (a phone that lives for a whole
    module binds its RTP ports only while a call is up, so between calls they look free, and a SIPp
    started a minute later must not take them)."""
    now = time.monotonic()
    for port in [p for p, t in _handed_out.items() if now - t > 60]:
        del _handed_out[port]
    for _ in range(500):
        base = _rng.randrange(lo, hi - count)
        span = range(base, base + count)
        if any(p in _handed_out or p in _kept for p in span):
            continue
        if all(is_free(p) for p in span):
            _handed_out.update(dict.fromkeys(span, now))
            if keep:
                _kept.update(span)
            return base
    raise RuntimeError(f"no {count} free consecutive ports in {lo}-{hi}")


@pytest.fixture
def ports():
    """``ports(n)``: the first of n consecutive free ports in the telephony test range."""
    return free_ports


@pytest.fixture(scope="session")
def port_finder():
    """``ports`` for module- and session-scoped fixtures."""
    return free_ports


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: install the Debian package {package} (scripts/setup does)")
    return path


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3)


def wait_bound(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    """Wait until ``proc`` holds UDP ``port`` (binding it ourselves fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return
        finally:
            s.close()
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class Sipp:
    """One SIPp UAS."""

    scenario: str
    port: int
    media_port: int
    proc: subprocess.Popen
    workdir: Path
    transport: str = "udp"

    def uri(self, user: str = "8001") -> str:
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@127.0.0.1:{self.port}{suffix}"

    @property
    def trunk(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait(self, timeout: float = 10.0) -> int:
        """SIPp's exit status: 0 when every call followed the scenario."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            raise AssertionError(f"SIPp {self.scenario} still running after {timeout} s: {self.errors()}")

    def messages(self) -> str:
        path = self.workdir / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def errors(self) -> str:
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def sipp(tmp_path):
    """``sipp("uas_answer.xml", calls=1, keys={...}, sub={...}, transport="udp")`` -> a running SIPp."""
    binary = need("sipp", "sip-tester")
    started: list[Sipp] = []

    def start(scenario: str, *, calls: int | None = 1, keys: dict | None = None, sub: dict | None = None,
              transport: str = "udp", echo: bool = True, remote: str | None = None, service: str | None = None,
              port_range: tuple[int, int] = (PORT_LO, PORT_HI), duration_ms: int | None = None) -> Sipp:
        """A UAS, or with ``remote`` (host:port) a UAC calling ``service`` (the number) there."""
        path = SIP_DATA / scenario
        if sub:
            text = path.read_text()
            for old, new in sub.items():
                text = text.replace(old, str(new))
            path = tmp_path / f"{len(started)}-{scenario}"
            path.write_text(text)
        for attempt in range(3):
            port = free_ports(1, *port_range)
            media = free_ports(4, *port_range)
            work = tmp_path / f"sipp-{len(started)}-{attempt}"
            work.mkdir()
            args = [binary, "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
                    "-mp", str(media), "-nostdin", "-t", "t1" if transport == "tcp" else "u1",
                    "-trace_err", "-error_file", str(work / "errors.log"),
                    "-trace_msg", "-message_file", str(work / "messages.log"), "-timeout", "120"]
            if echo:
                args.append("-rtp_echo")
            if calls is not None:
                args += ["-m", str(calls)]
            for key, value in (keys or {}).items():
                args += ["-key", key, str(value)]
            if duration_ms is not None:
                args += ["-d", str(duration_ms)]
            if remote is not None:
                args += ["-s", service or "8001", remote]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
            peer = Sipp(scenario, port, media, proc, work, transport)
            try:
                if remote is not None:
                    pass  # a UAC calls at once and may be done before we could look: the callee waits for it
                elif transport == "tcp":
                    _wait_tcp(port, proc)
                else:
                    wait_bound(port, proc, f"SIPp {scenario}")
            except RuntimeError:
                stop_process(proc)
                if "Address already in use" in peer.errors() and attempt < 2:
                    continue  # someone took the port between our check and SIPp's bind
                raise RuntimeError(f"SIPp {scenario} did not start: {peer.errors()}") from None
            started.append(peer)
            return peer
        raise AssertionError("unreachable")

    yield start
    for peer in started:
        stop_process(peer.proc)


def _wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SIPp exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"SIPp did not listen on TCP {port}")


@dataclass
class Baresip:
    """An auto-answering baresip phone playing ``source`` and dumping what it hears."""

    port: int
    proc: subprocess.Popen
    dump_dir: Path
    log: Path
    user: str = "bob"

    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.port}"

    def heard(self) -> Path:
        """The WAV of what baresip decoded from us (sndfile's ``*-dec.wav``)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            dumps = sorted(self.dump_dir.glob("*-dec.wav"))
            if dumps:
                return dumps[-1]
            time.sleep(0.1)
        raise AssertionError(f"baresip wrote no dump in {self.dump_dir}: {self.log.read_text()[-1500:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop baresip (SIGTERM: it exits cleanly and flushes its buffered log); its whole log."""
        stop_process(self.proc)
        return self.output()


@pytest.fixture
def baresip(tmp_path):
    """``baresip(source_wav)`` -> a running auto-answer phone (source: 8 kHz mono 16-bit WAV)."""
    binary = need("baresip", "baresip-core")
    started: list[Baresip] = []

    def start(source: Path) -> Baresip:
        home = tmp_path / f"baresip-{len(started)}"
        (home / "dump").mkdir(parents=True)
        port = free_ports(1)
        rtp = free_ports(20)
        (home / "config").write_text(
            f"poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\n"
            f"audio_source\t\taufile,{source}\naudio_player\t\taubridge,nil\naudio_alert\t\taubridge,nil\n"
            f"rtp_ports\t\t{rtp}-{rtp + 19}\nmodule_path\t\t/usr/lib/baresip/modules\n"
            "module\t\t\tg711.so\nmodule\t\t\taufile.so\nmodule\t\t\taubridge.so\nmodule\t\t\tsndfile.so\n"
            "module_app\t\taccount.so\nmodule_app\t\tmenu.so\n"
            f"snd_path\t\t{home / 'dump'}\n"
        )
        (home / "accounts").write_text(
            f"<sip:bob@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=PCMA,PCMU\n")
        log = home / "log.txt"
        with open(log, "wb") as out:
            proc = subprocess.Popen([binary, "-v", "-f", str(home)], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=home)
        peer = Baresip(port, proc, home / "dump", log)
        started.append(peer)
        wait_bound(port, proc, "baresip")
        deadline = time.monotonic() + 10
        while "baresip is ready" not in peer.output():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"baresip did not start: {peer.output()[-1500:]}")
            time.sleep(0.05)
        return peer

    yield start
    for peer in started:
        stop_process(peer.proc)


@pytest.fixture(scope="module")
def shared_phone(tmp_path_factory):
    """One pjsua2 phone for a whole test module, as a worker keeps one for call after call."""
    from callcenter.telephony import open_phone

    tmp = tmp_path_factory.mktemp("phone")
    cfg = SipConfig(bind_address="127.0.0.1", sip_port=free_ports(1, keep=True),
                    rtp_port=free_ports(RTP_PORTS, keep=True), rtp_port_range=RTP_PORTS, ring_timeout=3.0,
                    recordings_dir=tmp / "recordings")
    phone = open_phone(cfg, name="test")
    yield phone
    phone.close()


def _settle(phone, timeout: float = 40.0) -> float:
    """Wait until pjsua holds no call slot (a BYE nobody answers keeps one for Timer F, 32 s);
    the seconds waited."""
    start = time.monotonic()
    while phone.slots_in_use and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def settle():
    """``settle(phone, timeout=40)``: wait until pjsua holds none of the phone's call slots."""
    return _settle


@pytest.fixture
def sip_config(tmp_path) -> SipConfig:
    """A phone config bound to 127.0.0.1 with ports from the test range; short ring timeout."""
    return SipConfig(bind_address="127.0.0.1", sip_port=free_ports(1), rtp_port=free_ports(RTP_PORTS),
                     rtp_port_range=RTP_PORTS, ring_timeout=3.0, recordings_dir=tmp_path / "recordings")


# -- signals -------------------------------------------------------------------------------------------
@dataclass
class Signals:
    """Test audio with a known shape: tone bursts whose on/off pattern survives G.711 and echo."""

    rate: int = 16000
    pattern: list[float] = field(default_factory=lambda: [0.3, 0.2, 0.5, 0.1, 0.2, 0.4, 0.3, 0.2, 0.6, 0.3])

    def bursts(self, rate: int | None = None, freq: float = 700.0, amplitude: float = 0.4) -> np.ndarray:
        rate = rate or self.rate
        out = []
        for i, seconds in enumerate(self.pattern):
            n = int(seconds * rate)
            if i % 2 == 0:
                t = np.arange(n) / rate
                out.append(amplitude * np.sin(2 * np.pi * (freq + 150 * i) * t))
            else:
                out.append(np.zeros(n))
        return np.concatenate(out)

    @staticmethod
    def pcm16(x: np.ndarray) -> bytes:
        return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()

    @staticmethod
    def envelope(x: np.ndarray, rate: int, window: float = 0.02) -> np.ndarray:
        n = int(rate * window)
        usable = len(x) - len(x) % n
        return np.sqrt((x[:usable].astype(np.float64).reshape(-1, n) ** 2).mean(axis=1))

    def best_match(self, reference: np.ndarray, ref_rate: int, heard: np.ndarray, heard_rate: int
                   ) -> tuple[float, float]:
        """(correlation, lag in seconds) of the 20 ms energy envelopes: 1.0 means the same shape.

        Envelopes make the comparison robust to what a phone line does to a waveform (G.711,
        resampling, a few ms of delay) while still failing for anything but the same audio.
        """
        a = self.envelope(reference, ref_rate)
        b = self.envelope(heard, heard_rate)
        a = (a - a.mean()) / (a.std() or 1)
        best, lag = -1.0, 0
        for shift in range(max(1, len(b) - len(a) + 1)):
            seg = b[shift:shift + len(a)]
            if len(seg) < len(a):
                break
            s = (seg - seg.mean()) / (seg.std() or 1)
            c = float(np.dot(a, s) / len(a))
            if c > best:
                best, lag = c, shift
        return best, lag * 0.02


@pytest.fixture
def signals() -> Signals:
    return Signals()


def read_wav_channels(path: Path) -> tuple[int, np.ndarray]:
    import wave

    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), data.reshape(-1, w.getnchannels()).astype(np.float64) / 32768.0


@pytest.fixture
def wav_channels():
    return read_wav_channels


def baresip_saw_dtmf(output: str, digit: str) -> bool:
    return re.search(rf"received event: '{re.escape(digit)}'", output) is not None


@pytest.fixture
def dtmf_seen():
    return baresip_saw_dtmf
