"""Who picked up: a person, voicemail, an IVR or the network."""

from __future__ import annotations

import pytest

from dialog.amd import Verdict, classify_greeting


@pytest.mark.parametrize("text, duration, verdict", [
    ("喂?", 0.6, Verdict.HUMAN),
    ("你好,哪位?", 1.0, Verdict.HUMAN),
    ("喂,是我,什么事", 1.2, Verdict.HUMAN),
    ("您拨打的电话已关机,请稍后再拨", 4.0, Verdict.CARRIER),
    ("您拨打的用户暂时无法接通", 3.0, Verdict.CARRIER),
    ("您拨大的电话暂时无法接通", 3.0, Verdict.CARRIER),  # ASR garbled: found by sound
    ("The number you dialed is powered off", 3.0, Verdict.CARRIER),
    ("您好,我现在不方便接听,请在提示音后留言", 5.0, Verdict.VOICEMAIL),
    ("您好,我是机主的智能助理,请问您找他有什么事", 4.0, Verdict.VOICEMAIL),
    ("欢迎致电阳光物流,业务咨询请按1,人工服务请按0", 6.0, Verdict.IVR),
    ("这里是张伟的电话现在没有办法接听有什么事情晚一点再联系吧谢谢", 6.5, Verdict.VOICEMAIL),
])
def test_greetings(text, duration, verdict):
    assert classify_greeting(text, duration).verdict is verdict


def test_a_long_person_is_not_a_machine_when_short():
    result = classify_greeting("喂,你好,我在开车,有什么事快说", 2.0)
    assert result.verdict is Verdict.HUMAN
