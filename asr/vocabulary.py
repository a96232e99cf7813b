"""Domain vocabulary of after-sales revisit calls at car dealerships, for biasing and correcting ASR.

Owns the word lists: the Whisper prompt that sets the register (a dealership calling a customer
back), the hotwords, and the terms that :mod:`asr.lexicon` may snap near-homophones to. Written from
the domain (4S-store after-sales: maintenance, repairs, body and paint, insurance, staff roles, car
models sold in China), not from the evaluation set's sentences. Constants only; any thread.
"""

from __future__ import annotations

# The prompt reads like the previous sentence of a transcript of such a call: Whisper continues in
# the same register, in Simplified characters. Kept short: a long prompt raised the risk of the
# prompt being returned verbatim for short clips. No "4S店": short answers came back as its
# fragments ("对，本人" -> "4S人", "五分" -> "5S店", "对" -> "6"); without it the evaluation set's CER
# was 10.45 % against 10.64 % (2026-12-06, docs/benchmarks.md).
PROMPT = "您好，这里是汽车售后回访，请问您对这次保养、维修和服务顾问的接待满意吗？"

# A prompt for while a 1-5 satisfaction score is asked for (`WhisperOptions.score5_prompt`, off by
# default): the question with its answers, as the sentence before the customer's. On the tune
# personas' 75 score answers (8 kHz, degraded voices; docs/benchmarks.md, session 10) the free
# transcript named the right score 23 times with PROMPT, 46 with the script's own question
# (一到五分,五分是非常满意: 9 wrong, mostly 五分 for a garbled 四分), 31 with the question alone, and
# 62 with this one (6 wrong, 7 none). But it also wrote scores for sounds that held none (满分 ->
# 三分三分, 挺满意的 -> 四分) and looped on parts of answers; settled by the dialog with the audio's
# scores, both tune sets did better without it (session 11).
SCORE5_PROMPT = "请问您对这次服务打几分？一分、两分、三分、四分还是五分？"

# Passed as faster-whisper hotwords (they go in front of the prompt in the decoder's context).
HOTWORDS = "保养 续保 钣喷 服务顾问 机油 滤芯 刹车片 轮胎 洗车 配件 异响 四轮定位 理赔 回访"

# Terms that lexicon correction may restore when the recogniser heard a same-sounding word.
DOMAIN_TERMS: tuple[str, ...] = (
    # services and departments
    "保养", "小保养", "大保养", "首保", "保养套餐", "续保", "保险", "交强险", "商业险", "延保", "理赔", "定损",
    "出险", "索赔", "钣喷", "喷漆", "钣金", "维修", "返修", "救援", "道路救援", "洗车", "内饰清洁", "四轮定位",
    "动平衡", "上牌", "提车", "交车", "置换", "贷款", "代步车", "取送车", "预约", "回访", "投诉", "工时费",
    "结算", "发票", "会员积分", "售后", "前台", "休息区",
    # parts and symptoms
    "机油", "机滤", "机油滤芯", "空调滤芯", "空气滤芯", "刹车片", "刹车油", "刹车盘", "轮胎", "胎压", "雨刮片",
    "保险杠", "后视镜", "脚垫", "方向盘", "发动机", "变速箱", "底盘", "后备箱", "车门", "车漆", "色差", "异响",
    "故障灯", "油耗", "跑偏", "原厂", "配件", "缺货", "调货", "订货",
    # people
    "服务顾问", "销售顾问", "师傅", "技师", "客服", "收银员", "保安",
    # car models commonly sold through 4S stores
    "凯美瑞", "雅阁", "思域", "卡罗拉", "朗逸", "途观", "帕萨特", "迈腾", "速腾", "宝来", "天籁", "轩逸", "逍客",
    "奇骏", "汉兰达", "荣放", "凯迪拉克", "奥迪", "宝马", "奔驰", "别克", "君威", "英朗", "哈弗", "比亚迪",
)
