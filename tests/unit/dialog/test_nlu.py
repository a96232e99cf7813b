"""NLU without a statistical model: the rules, the scores, and robustness to ASR and bad input."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dialog.nlu import Nlu, canonicalize, explicit_score, extract_nps, extract_score5

NOW = dt.datetime(2024, 6, 12, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def nlu():
    return Nlu()  # rules only


@pytest.mark.parametrize("text, score", [
    ("五分", 5), ("5分", 5), ("给五分吧", 5), ("打个4分", 4), ("非常满意", 5), ("十分满意", 5), ("满意", 4),
    ("挺满意的", 4), ("一般", 3), ("还行吧", 3), ("不满意", 2), ("不太满意", 2), ("非常不满意", 1),
    ("三到四分吧", 3), ("四五分吧", 4), ("四分半", 4), ("四颗星", 4), ("5", 5), ("嗯,三", 3),
    ("买一", 4), ("飞常满意", 5), ("不满一", 2), ("无分", 5), ("思分", 4), ("两份", 2), ("满分", 5),
    ("一分,你们服务太差了", 1), ("满意,就是洗车没洗干净", 4),
    # a bare number with the full stop a recognizer writes after it
    ("五。", 5), ("嗯,四。", 4), ("三吧。", 3), ("五!", 5),
    ("怎么说呢,也就那样吧", 3), ("还过得去", 3),
])
def test_score5_when_asked(text, score):
    assert extract_score5(canonicalize(text), asked=True) == score


def test_score5_unasked_ignores_weak_words_and_bare_numbers():
    assert extract_score5("还行", asked=False) is None
    assert extract_score5("5", asked=False) is None
    assert extract_score5("非常满意", asked=False) == 5


@pytest.mark.parametrize("text, nps", [
    ("十分", 10), ("给九分吧", 9), ("8", 8), ("七八分吧", 7), ("零分", 0), ("满分", 10), ("一百分", 10),
    ("打个九十分吧", 9), ("九分半吧", 9), ("石分", 10), ("酒分", 9), ("把分", 8), ("领分", 0),
])
def test_nps_when_asked(text, nps):
    assert extract_nps(canonicalize(text), asked=True) == nps


def test_shifen_as_an_adverb_or_minutes_is_not_a_score():
    assert extract_nps("十分满意", asked=True) is None
    assert extract_score5("十分满意", asked=True) == 5
    assert extract_score5("四十分钟就好了", asked=True) is None
    assert extract_nps("十分钟以后再打", asked=True) is None


@pytest.mark.parametrize("text, score", [
    ("十分的满意", 5), ("非常的满意", 5), ("挺满意的,给满分", 5), ("满分吧", 5), ("最低分", 1), ("打十分", 5),
    ("十分", 5), ("十分不满意", 1),
])
def test_score_phrasings_on_the_five_point_scale(text, score):
    """十分满意 is "very satisfied" (5, never 10), 满分 is the top of the 1-5 scale, a 十分 given to
    the 1-5 question is the top of the customer's own ten-point scale."""
    assert extract_score5(canonicalize(text), asked=True) == score


def test_shifen_de_manyi_is_not_an_nps_of_ten(nlu):
    assert nlu.parse("十分的满意").nps is None
    assert nlu.parse("十分的满意", "sat").score5 == 5


@pytest.mark.parametrize("text, intent", [
    ("别再给我打电话了", "opt_out"), ("把我号码删了", "opt_out"), ("再打我就投诉你们骚扰", "opt_out"),
    ("你打错了吧", "wrong_number"), ("达错了", "wrong_number"), ("我不姓王", "wrong_number"),
    ("车早就卖了", "wrong_number"), ("转人工", "ask_human"), ("专人工", "ask_human"),
    ("让你们经理给我打电话", "ask_human"), ("我在开车,晚点再打", "busy_callback"),
    ("开会呢,回头再说", "busy_callback"), ("明天上午再打给我", "busy_callback"),
    ("喂?喂?听不见", "unclear"), ("啊?", "unclear"), ("", "unclear"), ("😊😊", "unclear"),
])
def test_rules(nlu, text, intent):
    assert nlu.parse(text, "id", NOW).intent == intent


@pytest.mark.parametrize("text", [
    "我跟他们说了不要打蜡,他们也没打", "洗车挺好,我让他们别打蜡了", "也不算骚扰,你问吧", "我说了别打折扣那套,价格清楚就行",
])
def test_what_a_customer_tells_the_store_not_to_do_to_the_car_is_no_opt_out(text):
    assert Nlu().parse(text, "open", NOW).rule != "opt_out"


@pytest.mark.parametrize("text", ["以后不要打扰我了", "别打了", "你们这是骚扰", "以后别再打来了"])
def test_plain_opt_outs_stay_opt_outs(text):
    assert Nlu().parse(text, "open", NOW).rule == "opt_out"


def test_a_busy_customer_gets_a_callback_time(nlu):
    r = nlu.parse("我在开会,下午三点以后再打吧", "id", NOW)
    assert r.intent == "busy_callback"
    assert r.callback_at == dt.datetime(2024, 6, 12, 15, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_a_time_given_to_a_booking_offer_is_a_yes(nlu):
    r = nlu.parse("明天上午吧", "book", NOW)
    assert r.intent == "affirm"
    assert r.callback_at is not None and r.callback_at.day == 13


def test_a_score_makes_the_turn_an_answer(nlu):
    r = nlu.parse("四分吧", "sat", NOW)
    assert (r.intent, r.score5, r.nps) == ("affirm", 4, None)
    assert nlu.parse("一分,太坑了", "sat", NOW).intent == "complaint"


def test_output_shape(nlu):
    d = nlu.parse("九分", "nps", NOW).as_dict()
    assert set(d) == {"text", "intent", "confidence", "score5", "nps", "callback_at"}
    assert d["nps"] == 9 and d["score5"] is None and 0 <= d["confidence"] <= 1


def test_bad_input_is_handled(nlu):
    long = nlu.parse("等了很久" * 3000, "open", NOW)
    assert long.truncated and long.as_dict()["truncated"] is True
    mixed = nlu.parse("service 很好 very nice", "open", NOW)
    assert mixed.intent in ("affirm", "unclear")
    with pytest.raises(ValueError, match="unknown context"):
        nlu.parse("好", "weather", NOW)


def test_canonicalize_rewrites_only_sound_alikes_of_known_phrases():
    assert canonicalize("挺买一的") == "挺满意的"
    assert canonicalize("专人工") == "转人工"
    assert canonicalize("一点半打过来") == "一点半打过来"  # 打过 is not 打错
    assert canonicalize("太不尊重人了") == "太不尊重人了"  # 重人 is not 真人


@pytest.mark.parametrize("text,top,value", [
    ("挺满意的，给五分吧", 5, 5), ("五", 5, 5), ("嗯 4分", 5, 4), ("九分吧", 10, 9),
    ("满意", 5, None), ("非常满意", 5, None), ("十分满意", 5, None), ("等了五分钟", 5, None), ("八分", 5, None),
])
def test_a_score_said_as_a_number(text, top, value):
    assert explicit_score(text, top) == value


def test_an_unsure_opt_out_does_not_fall_back_on_an_unsure_call_me_later():
    from dialog.nlu import Nlu

    class Model:
        def probs(self, text, context):
            return {"opt_out": 0.53, "busy_callback": 0.16, "affirm": 0.12, "complaint": 0.1, "deny": 0.09}

    r = Nlu(Model()).parse("以后加项目先打电话问我", "open")
    assert r.intent == "unclear" and r.rule == "not sure"


def test_a_misheard_filler_before_an_identity_confirmation_is_still_a_yes():
    from dialog.nlu import Nlu

    class Model:  # the model already leans to yes: the phrase rule names it, so the words stand
        def probs(self, text, context):
            return {"affirm": 0.58, "deny": 0.2, "unclear": 0.12, "question": 0.1}

    for heard in ("笨是我你说吧", "本是我，你说", "粉是我你说吧"):  # 嗯，是我，你说吧
        r = Nlu(Model()).parse(heard, "id")
        assert (r.intent, r.rule) == ("affirm", "identity confirmed"), heard
    assert Nlu(Model()).parse("不是我", "id").rule != "identity confirmed"


@pytest.mark.parametrize("text, intent", [
    ("没有晚,准时的", "affirm"), ("不晚", "affirm"), ("一点都没耽误", "affirm"), ("不脏,挺干净", "affirm"),
    ("没有,晚了两个小时", "deny"), ("没晚多少", "deny"), ("不,晚了", "deny"),
])
def test_a_yes_no_answered_by_denying_the_fault(text, intent):
    """"车辆是在约定的时间交给您的吗?" - "没有晚": the bad thing did not happen, which is a yes."""
    assert Nlu().parse(text, "yn", NOW).intent == intent


def test_a_later_call_told_of_inside_a_story_is_no_request_to_call_later(nlu):
    # "这次说缺这个下次说缺那个": what the store said, not "let's talk next time"
    r = nlu.parse("材料这次说缺这个下次说缺那个,我前前后后跑了三趟", "open", NOW)
    assert r.intent != "busy_callback"
    for text in ("下次说吧", "回头再说", "晚点打给我", "改天再聊,在开会", "回头打电话给我"):
        assert nlu.parse(text, "sat", NOW).intent == "busy_callback", text


def test_a_busy_customer_who_asks_for_the_questions_now_is_a_yes(nlu):
    for text in ("是我,我在开车呢,你快点问。", "在开会,你说吧", "在开车呢,长话短说"):
        r = nlu.parse(text, "id", NOW)
        assert (r.intent, r.rule) == ("affirm", "goes ahead"), text
    for text in ("我在开车,晚点说吧", "我在开车,不方便", "我在开车,不用了"):
        assert nlu.parse(text, "id", NOW).intent == "busy_callback", text


def test_a_long_answer_ending_in_a_question_particle_is_no_question_about_the_scale(nlu):
    # 嘛 written as 吗 by the recognizer, and no punctuation
    r = nlu.parse("四分吧有一分让你们继续去做吗", "sat", NOW)
    assert (r.intent, r.score5) == ("affirm", 4)
    assert nlu.parse("五分是最高吗", "sat", NOW).intent == "question"


def test_a_score_with_a_question_mark_is_the_answer(nlu):
    # a rising "五分?" (or the recognizer's question mark after a question-like prompt) is a score
    for text, score in (("五分？", 5), ("三分?", 3), ("嗯,四分吧?", 4)):
        r = nlu.parse(text, "sat", NOW)
        assert (r.intent, r.score5) == ("affirm", score), text
    assert nlu.parse("五分是最高吗？", "sat", NOW).intent == "question"
