"""The simulator's front door: one SIP address for a bank of phones, as a stateless proxy.

The robot dials one trunk (``CALLCENTER_SIP_TRUNK``), but a pjsua2 process holds only 4 calls, so
the simulator runs several phone processes behind one address. Options weighed:

* **302 redirect** to a free phone: pjsua2's ``Call.onCallRedirected`` returns
  ``PJSIP_REDIRECT_STOP`` unless the caller overrides it, so the robot would see a failed call;
  real trunks do not redirect either.
* **SO_REUSEPORT**: the kernel spreads datagrams by a hash of the 4-tuple, so every call from one
  robot worker (one source port) lands in the same phone process, and the 5th is refused.
* **Kamailio's dispatcher**: a system service, its config and a package the machine does not have,
  for what is ~300 lines here; load-aware dispatch needs its dialog module too.
* **a stateless proxy** (this module, RFC 3261 section 16.11): transparent to any caller (the
  robot, SIPp, a real PBX), one UDP socket, no dialog state.

How it works: a new INVITE goes to the phone with the most free slots, as the phones report them;
every later request of that Call-ID (CANCEL, the ACK of a failure, retransmissions) follows it.
The request gets our ``Via`` on top (its branch derived from the caller's, so a CANCEL matches its
INVITE) and its Request-URI's host:port changed to the phone's (the number stays); responses lose
our ``Via`` and go to the next one (``received``/``rport`` honoured). No ``Record-Route``: once a
call is set up, ACK and BYE go straight between the robot and the phone. When every phone is full
the INVITE gets ``503 Service Unavailable`` with ``Retry-After``, as a congested trunk would say;
``OPTIONS`` to the front gets ``200 OK`` (trunk keep-alives, health checks).

Load reports: each phone process sends a small JSON datagram to the front's report socket every
50 ms and after every call it takes (pid, SIP port, calls in use, INVITEs taken so far, capacity,
a per-run token so nothing else on the host can steer calls). The front counts the INVITEs it sent
each phone; sent minus taken is in flight, and in use plus in flight must stay below capacity,
because a full pjsua answers ``486 Busy Here`` itself, which the robot would take for a busy
customer. A phone that has not reported for 1.5 s is down (restarting) and gets no calls.

Thread: one ``sim-front`` thread owns both sockets and all state; :meth:`SipFront.stats` is read
from other threads (a dict copied under a lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
REPORT_STALE = 1.5  # seconds without a load report before a phone counts as down
IN_FLIGHT_TIMEOUT = 10.0  # an INVITE the phone never took (lost datagram) stops counting after this
ROUTE_IDLE = 900.0  # a call's route is forgotten after this long without a message (calls last < 600 s)
ROUTE_AFTER_FAILURE = 32.0  # ... or this long after a final failure response (Timer B/H: ACK, retransmissions)
RETRY_AFTER = 5  # seconds, in the 503 when every phone is full
BRANCH_PREFIX = "z9hG4bK-ccsim-"
_COMPACT = {"v": "via", "i": "call-id", "f": "from", "t": "to", "m": "contact", "l": "content-length",
            "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}
_URI = re.compile(r"^(?P<scheme>sips?:)(?:(?P<user>[^@]*)@)?(?P<hostport>[^;?>]*)(?P<rest>.*)$", re.IGNORECASE)
_TAG = re.compile(r";\s*tag=", re.IGNORECASE)


class SipParseError(ValueError):
    """A datagram that is not a SIP message we can route."""


@dataclass
class SipMessage:
    start: str  # request line or status line
    headers: list[list[str]]  # [name as received, value]
    body: bytes

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0].upper() if self.is_request else ""

    @property
    def status(self) -> int:
        if self.is_request:
            return 0
        try:
            return int(self.start.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise SipParseError(f"bad status line {self.start[:40]!r}") from None

    def get(self, name: str) -> str | None:
        name = name.lower()
        for h in self.headers:
            if _canonical(h[0]) == name:
                return h[1]
        return None

    def index(self, name: str) -> int:
        name = name.lower()
        for i, h in enumerate(self.headers):
            if _canonical(h[0]) == name:
                return i
        return -1

    def to_bytes(self) -> bytes:
        head = self.start + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in self.headers) + "\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return _COMPACT.get(low, low)


def parse(data: bytes) -> SipMessage:
    """Split a datagram into start line, headers (continuations folded) and body.

    Raises:
        SipParseError: no header/body separator, no start line, or a header without a colon.
    """
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        sep2 = data.find(b"\n\n")
        if sep2 < 0:
            raise SipParseError("no end of headers")
        head, body = data[:sep2], data[sep2 + 2:]
    else:
        head, body = data[:sep], data[sep + 4:]
    lines = head.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)  # keep-alive CRLFs before a message
    if not lines:
        raise SipParseError("empty message")
    start, headers = lines[0].strip(), []
    if not (start.startswith("SIP/2.0 ") or start.endswith(" SIP/2.0")):
        raise SipParseError(f"not a SIP start line: {start[:40]!r}")
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"malformed header line {line[:40]!r}")
        headers.append([name.strip(), value.strip()])
    return SipMessage(start, headers, body)


def split_first(value: str) -> tuple[str, str]:
    """``"a;x=1, b"`` -> ``("a;x=1", "b")``: the first of comma-separated header values."""
    quoted = False
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            return value[:i].strip(), value[i + 1:].strip()
    return value.strip(), ""


def via_params(via: str) -> tuple[str, str, int | None, dict[str, str | None]]:
    """``SIP/2.0/UDP h:p;branch=x;rport`` -> (transport, host, port, params)."""
    proto, _, rest = via.strip().partition(" ")
    parts = rest.strip().split(";")
    sent_by = parts[0].strip()
    params: dict[str, str | None] = {}
    for p in parts[1:]:
        k, eq, v = p.strip().partition("=")
        if k:
            params[k.lower()] = v.strip() if eq else None
    host, port = sent_by, None
    if sent_by.startswith("["):
        end = sent_by.find("]")
        host, tail = sent_by[1:end], sent_by[end + 1:]
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
    elif sent_by.count(":") == 1:
        host, p = sent_by.split(":")
        port = int(p) if p.isdigit() else None
    return proto.upper(), host, port, params


@dataclass
class Backend:
    index: int
    port: int = 0
    pid: int = 0
    capacity: int = 4
    active: int = 0  # calls in use, as the phone reported
    taken: int = 0  # INVITEs the phone has taken since it started
    sent: int = 0  # INVITEs we sent it (since its pid last changed)
    last_sent: float = 0.0
    seen: float = -1e9  # monotonic time of the last report

    def in_flight(self) -> int:
        return max(0, self.sent - self.taken)

    def free(self, now: float) -> int:
        if self.in_flight() and now - self.last_sent > IN_FLIGHT_TIMEOUT:
            self.sent = self.taken  # an INVITE it never got: stop counting it
        if now - self.seen > REPORT_STALE:
            return 0
        return self.capacity - self.active - self.in_flight()


@dataclass
class _Route:
    backend: int
    host: str
    port: int
    last: float
    failed_at: float | None = None


@dataclass
class FrontStats:
    routed: int = 0  # new calls sent to a phone
    full: int = 0  # new calls refused with 503: every phone full
    dropped: int = 0  # datagrams we could not parse or route
    per_backend: dict[int, int] = field(default_factory=dict)


class SipFront:
    """The proxy; see the module docstring.

    Args:
        host, port: the address the robot dials (``CALLCENTER_SIP_TRUNK``).
        token: shared secret of the load reports (one per run).
    """

    def __init__(self, host: str, port: int, *, token: str | None = None) -> None:
        self.host = host
        self.token = token or secrets.token_hex(8)
        self._sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._report = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sip.bind((host, port))
            self._report.bind((host, 0))
        except OSError as exc:
            self._sip.close()
            self._report.close()
            raise OSError(f"cannot listen on {host}:{port} (UDP): {exc.strerror}") from None
        self.port = self._sip.getsockname()[1]
        self.report_address = self._report.getsockname()
        self.backends: dict[int, Backend] = {}
        self._routes: dict[str, _Route] = {}
        self._stats = FrontStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-front", daemon=True)
        self._last_full_warning = 0.0
        self._next_sweep = 0.0

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> SipFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sip.close()
        self._report.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stats(self) -> dict:
        with self._lock:
            now = time.monotonic()
            return {
                "routed": self._stats.routed, "full": self._stats.full, "dropped": self._stats.dropped,
                "per_backend": dict(self._stats.per_backend),
                "phones": {i: {"port": b.port, "pid": b.pid, "active": b.active, "in_flight": b.in_flight(),
                               "up": now - b.seen <= REPORT_STALE} for i, b in sorted(self.backends.items())},
            }

    def ready_phones(self) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for b in self.backends.values() if now - b.seen <= REPORT_STALE)

    # -- the loop -------------------------------------------------------------------------------------
    def _run(self) -> None:
        socks = [self._sip, self._report]
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select(socks, [], [], 0.25)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                raise
            for sock in readable:
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except OSError:
                    continue
                try:
                    if sock is self._report:
                        self._on_report(data)
                    else:
                        self._on_sip(data, addr)
                except SipParseError as exc:
                    self._stats.dropped += 1
                    logger.warning("front: dropped a datagram from %s:%s: %s", addr[0], addr[1], exc)
                except Exception:
                    self._stats.dropped += 1
                    logger.exception("front: routing a datagram from %s:%s failed", addr[0], addr[1])
            now = time.monotonic()
            if now >= self._next_sweep:
                self._next_sweep = now + 5.0
                self._sweep(now)

    def _on_report(self, data: bytes) -> None:
        try:
            r = json.loads(data)
            if r.get("token") != self.token:
                return  # not one of our phones
            index, pid = int(r["index"]), int(r["pid"])
            port, active, taken, capacity = int(r["port"]), int(r["active"]), int(r["taken"]), int(r["capacity"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            b = self.backends.get(index)
            if b is None:
                b = self.backends[index] = Backend(index)
            if b.pid != pid:
                if b.pid:
                    logger.warning("front: phone %d restarted (pid %d -> %d)", index, b.pid, pid)
                b.pid, b.sent = pid, taken
            b.port, b.active, b.taken, b.capacity = port, active, taken, capacity
            b.seen = time.monotonic()

    def _pick(self, now: float) -> Backend | None:
        with self._lock:
            best, best_free = None, 0
            for b in self.backends.values():
                free = b.free(now)
                if free > best_free or (free == best_free and best is not None and free > 0 and b.sent < best.sent):
                    best, best_free = b, free
            if best is not None:
                best.sent += 1
                best.last_sent = now
            return best

    def _on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # CRLF keep-alive
        msg = parse(data)
        if msg.is_request:
            self._request(msg, addr)
        else:
            self._response(msg)

    # -- requests -------------------------------------------------------------------------------------
    def _request(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        method = msg.method
        call_id = msg.get("call-id")
        vi = msg.index("via")
        if call_id is None or vi < 0 or msg.get("cseq") is None:
            if method != "ACK":
                raise SipParseError(f"{method} without Call-ID, Via or CSeq")
            return
        mf = msg.get("max-forwards")
        hops = int(mf) if mf is not None and mf.strip().isdigit() else 70
        if hops <= 0:
            self._reply(msg, addr, 483, "Too Many Hops")
            return
        now = time.monotonic()
        route = self._routes.get(call_id)
        if route is None:
            to = msg.get("to") or ""
            if method == "INVITE" and not _TAG.search(to):
                backend = self._pick(now)
                if backend is None:
                    self._stats.full += 1
                    if now - self._last_full_warning > 1.0:
                        self._last_full_warning = now
                        logger.warning("front: every phone is busy: 503 to a new call (%d refused so far)",
                                       self._stats.full)
                    self._reply(msg, addr, 503, "Service Unavailable", {"Retry-After": str(RETRY_AFTER)})
                    return
                route = self._routes[call_id] = _Route(backend.index, self.host, backend.port, now)
                with self._lock:
                    self._stats.routed += 1
                    self._stats.per_backend[backend.index] = self._stats.per_backend.get(backend.index, 0) + 1
            elif method == "OPTIONS":
                self._reply(msg, addr, 200, "OK", {"Allow": "INVITE, ACK, CANCEL, BYE, OPTIONS"})
                return
            elif method == "ACK":
                return
            else:
                self._reply(msg, addr, 481, "Call/Transaction Does Not Exist")
                return
        route.last = now
        # Our Via on top; the caller's top Via gets received/rport so responses find their way back.
        top, rest = split_first(msg.headers[vi][1])
        _proto, host, _port, params = via_params(top)
        if "rport" in params and params["rport"] is None:
            top = re.sub(r";\s*rport(?=;|$)", f";rport={addr[1]}", top, count=1, flags=re.IGNORECASE)
        if host != addr[0] and "received" not in params:
            top += f";received={addr[0]}"
        msg.headers[vi][1] = top + (", " + rest if rest else "")
        branch = BRANCH_PREFIX + hashlib.sha1(f"{params.get('branch')}|{host}|{call_id}".encode()).hexdigest()[:16]
        msg.headers.insert(vi, ["Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch}"])
        mfi = msg.index("max-forwards")
        if mfi >= 0:
            msg.headers[mfi][1] = str(hops - 1)
        else:
            msg.headers.insert(vi + 2, ["Max-Forwards", str(hops - 1)])
        method_, uri, version = msg.start.split(" ", 2)
        m = _URI.match(uri)
        if m:
            user = f"{m.group('user')}@" if m.group("user") is not None else ""
            uri = f"{m.group('scheme')}{user}{route.host}:{route.port}{m.group('rest')}"
        msg.start = f"{method_} {uri} {version}"
        self._sip.sendto(msg.to_bytes(), (route.host, route.port))

    def _reply(self, msg: SipMessage, addr: tuple[str, int], code: int, phrase: str,
               extra: dict[str, str] | None = None) -> None:
        """A stateless response from the front itself (503, 483, 481, OPTIONS)."""
        headers = []
        for name, value in msg.headers:
            canon = _canonical(name)
            if canon == "via" and not any(_canonical(h[0]) == "via" for h in headers):
                top, rest = split_first(value)
                _proto, host, _port, params = via_params(top)
                if "rport" in params and params["rport"] is None:
                    top = re.sub(r";\s*rport(?=;|$)", f";rport={addr[1]}", top, count=1, flags=re.IGNORECASE)
                if host != addr[0] and "received" not in params:
                    top += f";received={addr[0]}"
                headers.append(["Via", top + (", " + rest if rest else "")])
            elif canon == "via":
                headers.append(["Via", value])
            elif canon in ("from", "call-id", "cseq"):
                headers.append([name, value])
            elif canon == "to":
                tag = "" if _TAG.search(value) or code == 100 else f";tag={secrets.token_hex(4)}"
                headers.append([name, value + tag])
        for name, value in (extra or {}).items():
            headers.append([name, value])
        headers.append(["Server", "callcenter simulator"])
        headers.append(["Content-Length", "0"])
        reply = SipMessage(f"SIP/2.0 {code} {phrase}", headers, b"")
        _proto, _host, _port, params = via_params(split_first(msg.get("via") or "")[0])
        dest_host = params.get("received") or addr[0]
        dest_port = int(params["rport"]) if params.get("rport") else addr[1]
        self._sip.sendto(reply.to_bytes(), (dest_host, dest_port))

    # -- responses ------------------------------------------------------------------------------------
    def _response(self, msg: SipMessage) -> None:
        vi = msg.index("via")
        if vi < 0:
            raise SipParseError("response without Via")
        top, rest = split_first(msg.headers[vi][1])
        _proto, host, port, params = via_params(top)
        if not (params.get("branch") or "").startswith(BRANCH_PREFIX) or port != self.port:
            raise SipParseError("response not for us (top Via is not ours)")
        if rest:
            msg.headers[vi][1] = rest
        else:
            del msg.headers[vi]
        vi = msg.index("via")
        if vi < 0:
            raise SipParseError("response with only our Via")
        nxt = split_first(msg.headers[vi][1])[0]
        _proto, host, port, params = via_params(nxt)
        dest_host = params.get("received") or host
        dest_port = int(params["rport"]) if params.get("rport") else (port or 5060)
        code = msg.status
        cseq = (msg.get("cseq") or "").split()
        call_id = msg.get("call-id") or ""
        route = self._routes.get(call_id)
        if route is not None and len(cseq) == 2 and cseq[1].upper() == "INVITE" and code >= 300:
            route.failed_at = time.monotonic()
        self._sip.sendto(msg.to_bytes(), (dest_host, dest_port))

    def _sweep(self, now: float) -> None:
        stale = [cid for cid, r in self._routes.items()
                 if now - r.last > ROUTE_IDLE or (r.failed_at is not None and now - r.failed_at > ROUTE_AFTER_FAILURE)]
        for cid in stale:
            del self._routes[cid]


def report(sock: socket.socket, address: tuple[str, int], *, token: str, index: int, port: int, active: int,
           taken: int, capacity: int) -> None:
    """Send one load report to the front (phone processes call this)."""
    data = json.dumps({"token": token, "index": index, "pid": os.getpid(), "port": port, "active": active,
                       "taken": taken, "capacity": capacity}).encode()
    try:
        sock.sendto(data, address)
    except OSError:
        pass  # the front is gone (shutting down): nothing to tell
