"""The call runner: the one thing the dialer needs from telephony, recognition and the dialog.

The worker (``campaigns.worker``) hands each claimed attempt to a :class:`CallRunner` and
stores what it returns. The real runner (phase 2: a pjsua2 call whose customer audio streams
to the recognizer and whose transcript drives the dialog engine) and the fakes of the tests
implement the same protocol, so nothing in the dialer changes when engines are plugged in.

Threads: the worker calls :meth:`CallRunner.run` from up to ``capacity`` call threads at once
(one per concurrent call); it blocks until the call has ended. The runner reports progress
through the :class:`CallObserver` it is given, from any thread; the observer's methods are
cheap and never raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from callcenter.domain import Speaker
from callcenter.domain.calls import CallResult


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One attempt to run: whom to call, with which script and variables."""

    call_id: int  # the Call row created when the attempt was claimed
    task_id: int
    attempt: int
    campaign_id: int
    customer_id: int
    store_id: int
    phone: str  # normalised (13812345678 or 0731-84567890); dial it with domain.phone.dial_digits
    script: str  # dialog script id
    context: Mapping[str, Any] = field(default_factory=dict)  # the script's variables
    store_timezone: str = "Asia/Shanghai"  # for times the customer says ("明天上午")
    # The YAML of the script version the campaign was created with (``script_versions``), so an
    # edit in the console never changes a running campaign; None: the installed script file.
    script_text: str | None = None


@runtime_checkable
class CallObserver(Protocol):
    """Live progress of one call, for the console (published on Redis by the worker)."""

    def ringing(self) -> None: ...

    def answered(self) -> None: ...

    def transcript(self, seq: int, speaker: Speaker, text: str, *, is_final: bool, start: float,
                   end: float) -> None:
        """A partial or final transcript line; partials reuse the seq of the line they become."""

    def transferred(self, agent_id: int | None) -> None: ...


@runtime_checkable
class CallRunner(Protocol):
    """Places and conducts robot calls in this process."""

    @property
    def capacity(self) -> int:
        """How many calls :meth:`run` may conduct at once in this process (pjsua2: 4)."""

    def run(self, request: CallRequest, observer: CallObserver) -> CallResult:
        """Dial, converse, hang up; return what happened.

        A failure on our side (media, model, dialog) should come back as a result with
        ``error`` set; an exception is caught by the worker and recorded the same way.
        """

    def close(self) -> None:
        """Release every resource (SIP endpoint, models) before the process exits."""


class NullObserver:
    """An observer that ignores everything (one-off calls without a console)."""

    def ringing(self) -> None:
        pass

    def answered(self) -> None:
        pass

    def transcript(self, seq: int, speaker: Speaker, text: str, *, is_final: bool, start: float,
                   end: float) -> None:
        pass

    def transferred(self, agent_id: int | None) -> None:
        pass
