"""Columns of the DMS export formats: their English and Chinese headers and cell parsers.

Each parser takes a non-empty cell value and returns the stored value, or raises
``ValueError`` whose message is the reason shown to the user. Blank cells never reach a
parser: blank means "no information" and never erases what the database already holds.
The format is documented for users in docs/import-format.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from callcenter.domain import Gender, Tier, VisitType
from callcenter.domain.dates import parse_date
from callcenter.domain.phone import normalize_phone
from callcenter.domain.vin import normalize_vin


@dataclass(frozen=True)
class Column:
    name: str
    aliases: tuple[str, ...]
    parse: Callable[[object], object]
    required: bool = False


def header_key(text: str) -> str:
    """Fold a header cell for matching: case, spaces, BOM, '*' and '(必填)' marks ignored."""
    key = str(text).replace("\ufeff", "").strip().lower()
    key = re.sub(r"[（(][^)）]*[)）]", "", key)
    return re.sub(r"[\s*_\-/]", "", key)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(max_len: int) -> Callable[[object], str]:
    def parse(value: object) -> str:
        s = _cell_text(value)
        if len(s) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        if _CONTROL.search(s):
            raise ValueError("contains control characters")
        return s

    return parse


def _cell_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 10086 as 10086.0
    return " ".join(str(value).split())


def parse_customer_id(value: object) -> str:
    s = _cell_text(value)
    if len(s) > 64:
        raise ValueError("longer than 64 characters")
    if _CONTROL.search(s):
        raise ValueError("contains control characters")
    return s


def parse_phone(value: object) -> str:
    return normalize_phone(value if not isinstance(value, float) else _cell_text(value))


_GENDER = {"男": Gender.MALE, "m": Gender.MALE, "male": Gender.MALE, "先生": Gender.MALE,
           "女": Gender.FEMALE, "f": Gender.FEMALE, "female": Gender.FEMALE, "女士": Gender.FEMALE}


def parse_gender(value: object) -> Gender:
    try:
        return _GENDER[_cell_text(value).lower()]
    except KeyError:
        raise ValueError("expected 男/女 or M/F") from None


_TIER = {"mid": Tier.MID, "中端": Tier.MID, "中": Tier.MID, "中档": Tier.MID,
         "premium": Tier.PREMIUM, "高端": Tier.PREMIUM, "高": Tier.PREMIUM, "高档": Tier.PREMIUM,
         "豪华": Tier.PREMIUM}


def parse_tier(value: object) -> Tier:
    try:
        return _TIER[_cell_text(value).lower()]
    except KeyError:
        raise ValueError("expected mid/premium or 中端/高端") from None


_YES = {"是", "yes", "y", "1", "true", "t", "√", "✓", "有"}
_NO = {"否", "no", "n", "0", "false", "f", "×", "✗", "无"}


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    s = _cell_text(value).lower()
    if s in _YES:
        return True
    if s in _NO:
        return False
    raise ValueError("expected 是/否, yes/no or 1/0")


def parse_vin(value: object) -> str:
    return normalize_vin(_cell_text(value))


def date_parser(*, not_after_today: bool = False, earliest: dt.date = dt.date(1900, 1, 1)):
    def parse(value: object) -> dt.date:
        day = parse_date(value)
        if day < earliest:
            raise ValueError(f"date {day.isoformat()} is before {earliest.isoformat()}")
        if not_after_today and day > dt.date.today():
            raise ValueError(f"date {day.isoformat()} is in the future")
        return day

    return parse


_VISIT_TYPE = {
    "maintenance": VisitType.MAINTENANCE, "保养": VisitType.MAINTENANCE, "首保": VisitType.MAINTENANCE,
    "定保": VisitType.MAINTENANCE, "常规保养": VisitType.MAINTENANCE,
    "repair": VisitType.REPAIR, "维修": VisitType.REPAIR, "一般维修": VisitType.REPAIR, "机修": VisitType.REPAIR,
    "bodywork": VisitType.BODYWORK, "钣喷": VisitType.BODYWORK, "钣金": VisitType.BODYWORK,
    "喷漆": VisitType.BODYWORK, "钣金喷漆": VisitType.BODYWORK,
    "warranty": VisitType.WARRANTY, "索赔": VisitType.WARRANTY, "保修": VisitType.WARRANTY,
    "claim": VisitType.CLAIM, "理赔": VisitType.CLAIM, "事故": VisitType.CLAIM, "事故车": VisitType.CLAIM,
    "inspection": VisitType.INSPECTION, "检查": VisitType.INSPECTION, "检测": VisitType.INSPECTION,
    "免费检测": VisitType.INSPECTION,
}


def parse_visit_type(value: object) -> VisitType:
    try:
        return _VISIT_TYPE[_cell_text(value).lower()]
    except KeyError:
        raise ValueError("expected maintenance/保养, repair/维修, bodywork/钣喷, warranty/索赔, "
                         "claim/理赔 or inspection/检查") from None


def parse_amount(value: object) -> Decimal:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = Decimal(str(value))
    else:
        s = _cell_text(value).replace(",", "").replace("，", "").lstrip("¥￥").removesuffix("元").strip()
        try:
            amount = Decimal(s)
        except InvalidOperation:
            raise ValueError("not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a number of at least 0")
    if amount >= Decimal("10000000000"):
        raise ValueError("too large")
    return amount.quantize(Decimal("0.01"))


CUSTOMER_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", ("customer_id", "客户编号", "客户号", "客户id", "客户代码"), parse_customer_id, True),
    Column("name", ("name", "姓名", "客户姓名", "客户名称"), text(100), True),
    Column("phone", ("phone", "手机号", "手机", "手机号码", "联系电话", "电话", "mobile"), parse_phone, True),
    Column("gender", ("gender", "性别"), parse_gender),
    Column("birthday", ("birthday", "生日", "出生日期"), date_parser(not_after_today=True)),
    Column("city", ("city", "城市"), text(50)),
    Column("district", ("district", "区县", "区/县", "区"), text(50)),
    Column("occupation", ("occupation", "职业"), text(50)),
    Column("vin", ("vin", "车架号", "底盘号", "vin码"), parse_vin),
    Column("plate", ("plate", "车牌号", "车牌", "车牌号码"), text(16)),
    Column("brand", ("brand", "品牌"), text(50)),
    Column("model", ("model", "车型"), text(50)),
    Column("tier", ("tier", "档次", "车辆档次"), parse_tier),
    Column("purchase_date", ("purchase_date", "购车日期", "开票日期"), date_parser(not_after_today=True)),
    Column("warranty_end", ("warranty_end", "保修到期日", "质保到期日"), date_parser()),
    Column("insurance_expiry", ("insurance_expiry", "保险到期日"), date_parser()),
    Column("insured_here", ("insured_here", "本店投保", "是否本店投保"), parse_bool),
    Column("store", ("store", "门店", "门店代码", "店"), text(32)),
)

CUSTOMER_FIELDS = ("name", "phone", "gender", "birthday", "city", "district", "occupation")
VEHICLE_FIELDS = ("vin", "plate", "brand", "model", "tier", "purchase_date", "warranty_end",
                  "insurance_expiry", "insured_here")

VISIT_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", ("customer_id", "客户编号", "客户号", "客户id", "客户代码"), parse_customer_id, True),
    Column("vin", ("vin", "车架号", "底盘号", "vin码"), parse_vin),
    Column("visit_date", ("visit_date", "进厂日期", "进店日期", "到店日期", "日期"),
           date_parser(not_after_today=True), True),
    Column("type", ("type", "类型", "维修类型", "业务类型"), parse_visit_type, True),
    Column("paid", ("paid", "有偿", "是否有偿"), parse_bool, True),
    Column("amount", ("amount", "金额", "结算金额"), parse_amount),
    Column("advisor", ("advisor", "服务顾问", "接待顾问"), text(50)),
    Column("store", ("store", "门店", "门店代码", "店"), text(32)),
    Column("ro_number", ("ro_number", "工单号", "工单编号", "委托书号"), text(64)),
)

# Brands sold as premium in China, for rows whose tier cell is blank.
PREMIUM_BRANDS = frozenset({
    "bmw", "宝马", "mercedes-benz", "mercedes", "benz", "奔驰", "audi", "奥迪", "lexus", "雷克萨斯",
    "porsche", "保时捷", "volvo", "沃尔沃", "cadillac", "凯迪拉克", "land rover", "路虎", "jaguar", "捷豹",
    "lincoln", "林肯", "infiniti", "英菲尼迪", "genesis", "捷尼赛思", "maserati", "玛莎拉蒂",
})


def tier_for_brand(brand: str | None) -> Tier:
    return Tier.PREMIUM if brand and brand.strip().lower() in PREMIUM_BRANDS else Tier.MID


def map_header(header: list[str], columns: tuple[Column, ...]) -> tuple[dict[str, int], list[str], list[str]]:
    """Match header cells to columns.

    Returns:
        (column name -> cell index, missing required column names, duplicate header names).
    """
    by_alias = {header_key(a): c.name for c in columns for a in c.aliases}
    index: dict[str, int] = {}
    duplicates: list[str] = []
    for i, cell in enumerate(header):
        name = by_alias.get(header_key(cell))
        if name is None:
            continue
        if name in index:
            duplicates.append(f"{cell} (column {i + 1})")
            continue
        index[name] = i
    missing = [c.name for c in columns if c.required and c.name not in index]
    return index, missing, duplicates
