"""Answering machine, IVR and carrier-announcement detection from the callee's first utterance.

A person who picks up says something short (喂? 你好,哪位?) and stops. Machines announce:

* carrier announcements (您拨打的电话已关机 / 暂时无法接通 / 是空号, "the number you dialed");
* voicemail and call-screening assistants (请在提示音后留言, 我是机主的智能助理);
* company IVRs (欢迎致电……, 业务咨询请按1);
* or simply talk on: a first utterance longer than :data:`MONOLOGUE_SECONDS` with no pause.

:func:`classify_greeting` looks at the text (by writing and by sound, since ASR garbles recorded
announcements too) and the duration. Pure function; any thread.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from dialog.phonetic import STRICT, PhoneticIndex
from dialog.text import normalize

# Measured on the personas' greetings and typical pickups: people answer in under 2 s; recorded
# greetings run 4-10 s. 5 s of continuous speech without a question is a machine.
MONOLOGUE_SECONDS = 5.0


class Verdict(str, enum.Enum):
    HUMAN = "human"
    VOICEMAIL = "voicemail"
    IVR = "ivr"
    CARRIER = "carrier"  # network announcement: switched off, unreachable, no such number

    @property
    def is_machine(self) -> bool:
        return self is not Verdict.HUMAN


@dataclass(frozen=True, slots=True)
class AmdResult:
    verdict: Verdict
    confidence: float
    reason: str


_PATTERNS: tuple[tuple[Verdict, re.Pattern], ...] = (
    (Verdict.CARRIER, re.compile(
        r"(您|你)?(所)?拨打的(电话|用户|号码)|暂时无法接通|已关机|已停机|是空号|不在服务区|稍后再拨|无法接听"
        r"|正在通话中|呼叫转移|来电提醒|无人接听|number you (have )?dial|not available|powered off|try again later")),
    (Verdict.VOICEMAIL, re.compile(
        r"留言|语音信箱|提示音|嘀声|哔声|滴声|请在.{0,6}后.{0,4}(说|留)|智能助理|ai助理|语音助手|机主|秘书"
        r"|我现在不方便接(听|电话).{0,12}(留|稍后|回电)|有事请|leave (a|your) message|voicemail|after the (tone|beep)")),
    (Verdict.IVR, re.compile(
        r"欢迎致电|欢迎来电|欢迎拨打|请按[0-9一二三四五六七八九零井星#*]|按[0-9一二三四五六七八九零](号)?键"
        r"|转人工(服务)?请按|请拨分机|请直拨分机|输入.{0,4}(分机|号码)|本次通话.{0,4}录音|请稍候.{0,6}正在为您转接"
        r"|press [0-9]|for .{1,20} press")),
)
# Carrier and voicemail phrases also by sound (a recorded announcement over a phone line is where
# ASR errs most): 您拨打的电话 -> 您拨大的电话 still matches.
_SOUND = PhoneticIndex([("拨打的电话", "carrier"), ("暂时无法接通", "carrier"), ("已关机", "carrier"),
                        ("不在服务区", "carrier"), ("提示音后", "voicemail"), ("语音信箱", "voicemail"),
                        ("请留言", "voicemail"), ("欢迎致电", "ivr")], STRICT)
_HUMAN = re.compile(r"^(喂|哎|诶|嗯|你好|您好|哪位|谁|什么事|说|是我|在|hello|hi)+[?？,.!。\s]*"
                    r"(哪位|谁啊|你是|什么事|说吧|请讲|你好)?[?？,.!。\s]*$")


def classify_greeting(text: str, duration: float = 0.0) -> AmdResult:
    """Who answered, from the first thing heard.

    Args:
        text: the first final transcript (may be empty if only noise was heard).
        duration: seconds of speech in it (``end - start`` of the transcript event).
    """
    norm = normalize(text)
    for verdict, pattern in _PATTERNS:
        if pattern.search(norm):
            return AmdResult(verdict, 0.95, f"phrase: {pattern.search(norm).group(0)}")
    for m in _SOUND.find(norm):
        return AmdResult(Verdict(m.label), 0.8, f"sounds like: {m.phrase}")
    if _HUMAN.match(norm):
        return AmdResult(Verdict.HUMAN, 0.95, "short pickup greeting")
    if duration >= MONOLOGUE_SECONDS and len(norm) >= 15:
        return AmdResult(Verdict.VOICEMAIL, 0.6, f"{duration:.1f} s monologue on pickup")
    return AmdResult(Verdict.HUMAN, 0.7, "no machine cue")
