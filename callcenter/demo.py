"""The demo dealer group: two stores and a few thousand customers with realistic histories.

The generator writes DMS-format exports (the same CSV columns a dealer's DMS produces, see
docs/import-format.md) and loads them through the real importer, so the demo exercises the
import path every dealer uses. It is deterministic for a given seed and as-of date.

Customer behaviour follows the seeds: mid-tier owners come back every 3-5 months, premium
owners every 6-8; some stop coming (流失), some are insured with the store (再保), a few are
prospects; a handful of visits fall in the last days so a post-service revisit has work.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from callcenter.domain.vin import check_digit

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳晨东亮峰建国志文博"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英红梅琳雪慧颖倩婷洁晶燕妍茜欣怡蕾薇琪璐菲丹萍"
OCCUPATIONS = ("教师", "医生", "公务员", "工程师", "个体经营", "企业管理", "销售", "会计", "律师", "IT", "自由职业",
               "退休", "司机", "设计师", "护士", "金融", "建筑")
CITIES = (
    ("长沙市", ("岳麓区", "芙蓉区", "天心区", "开福区", "雨花区", "望城区", "长沙县", "浏阳市", "宁乡市"), 80),
    ("株洲市", ("天元区", "芦淞区", "荷塘区"), 8),
    ("湘潭市", ("岳塘区", "雨湖区"), 7),
    ("岳阳市", ("岳阳楼区",), 3),
    ("常德市", ("武陵区",), 2),
)


@dataclass(frozen=True)
class DemoStore:
    code: str
    name: str
    brand: str
    tier: str
    wmi: str
    models: tuple[tuple[str, int], ...]
    advisors: tuple[str, ...]
    share: float
    cycle: tuple[int, int]  # months between maintenance visits, min..max


STORES = (
    DemoStore("JH01", "锦华丰田岳麓店", "丰田", "mid", "LVG",
              (("卡罗拉", 30), ("凯美瑞", 25), ("RAV4荣放", 20), ("汉兰达", 10), ("雷凌", 8), ("亚洲龙", 7)),
              ("刘洋", "陈静", "周杰", "黄磊", "吴婷", "孙浩"), 0.6, (3, 5)),
    DemoStore("JH02", "锦华宝马星沙店", "宝马", "premium", "LBV",
              (("3系", 35), ("5系", 25), ("X1", 15), ("X3", 15), ("X5", 7), ("iX3", 3)),
              ("郑凯", "王丽", "马超", "林琳", "何鹏"), 0.4, (6, 8)),
)

CUSTOMER_HEADER = ["客户编号", "姓名", "手机号", "性别", "生日", "城市", "区县", "职业", "VIN", "车牌号", "品牌", "车型",
                   "档次", "购车日期", "保修到期日", "保险到期日", "本店投保", "门店"]
VISIT_HEADER = ["客户编号", "VIN", "进厂日期", "类型", "有偿", "金额", "服务顾问", "门店", "工单号"]

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _vin(rng: random.Random, wmi: str, year: int) -> str:
    body = wmi + "".join(rng.choice(_VIN_CHARS) for _ in range(5))
    year_code = "ABCDEFGHJKLMNPRSTVWXY123456789"[(year - 2010) % 30]
    tail = year_code + rng.choice("ABCDEFGH") + "".join(rng.choice("0123456789") for _ in range(6))
    draft = body + "0" + tail
    return body + check_digit(draft) + tail


class DemoGenerator:
    """Deterministic rows in the DMS export format."""

    def __init__(self, as_of: dt.date, n_customers: int, seed: int = 2026) -> None:
        self.as_of = as_of
        self.n = n_customers
        self.rng = random.Random(seed)
        self._phones: set[str] = set()
        self._vins: set[str] = set()
        self._ro_seq: dict[tuple[str, dt.date], int] = {}

    def _phone(self) -> str:
        while True:
            number = self.rng.choice(("13", "15", "18", "17", "19")) + str(self.rng.randint(0, 9)) + \
                f"{self.rng.randint(0, 99_999_999):08d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def _plate_tail(self) -> str:
        """Five characters, digits with at most two letters, as ordinary blue plates are."""
        chars = [self.rng.choice("0123456789") for _ in range(5)]
        for i in self.rng.sample(range(5), self.rng.choice((0, 1, 1, 2))):
            chars[i] = self.rng.choice(_PLATE_LETTERS)
        return "".join(chars)

    def _name(self, male: bool) -> str:
        pool = GIVEN_MALE if male else GIVEN_FEMALE
        given = self.rng.choice(pool) + (self.rng.choice(pool) if self.rng.random() < 0.6 else "")
        return self.rng.choice(SURNAMES) + given

    def _city(self) -> tuple[str, str]:
        city, districts, _ = self.rng.choices(CITIES, weights=[c[2] for c in CITIES])[0]
        return city, self.rng.choice(districts)

    def rows(self) -> Iterator[tuple[list, list[list]]]:
        """Yield (customer rows, visit rows) per customer."""
        rng, as_of = self.rng, self.as_of
        for i in range(self.n):
            store = STORES[0] if rng.random() < STORES[0].share else STORES[1]
            male = rng.random() < 0.62
            city, district = self._city()
            birthday = as_of - dt.timedelta(days=rng.randint(22 * 365, 68 * 365))
            person = [f"{store.code}-{i + 1:06d}", self._name(male), self._phone(), "男" if male else "女",
                      birthday.isoformat() if rng.random() < 0.85 else "", city, district,
                      rng.choice(OCCUPATIONS) if rng.random() < 0.7 else ""]
            if rng.random() < 0.08:  # prospect: known by name and phone only
                yield [person + [""] * 9 + [store.code]], []
                continue
            customer_rows, visit_rows = [], []
            # Loyalty: most come back regularly, a quarter stop at some point, a few are erratic.
            behaviour = rng.choices(("loyal", "lapsing", "erratic"), weights=(62, 26, 12))[0]
            for _ in range(2 if rng.random() < 0.1 else 1):
                vehicle, visits = self._vehicle(store, person[0], behaviour)
                customer_rows.append(person + vehicle + [store.code])
                visit_rows.extend(visits)
            yield customer_rows, visit_rows

    def _vehicle(self, store: DemoStore, customer_id: str, behaviour: str) -> tuple[list, list[list]]:
        rng, as_of = self.rng, self.as_of
        # Purchase dates: up to six years back, a few in the last three months (new-car touch plan).
        if rng.random() < 0.04:
            purchase = as_of - dt.timedelta(days=rng.randint(2, 90))
        else:
            purchase = as_of - dt.timedelta(days=rng.randint(91, 6 * 365))
        while True:
            vin = _vin(rng, store.wmi, purchase.year)
            if vin not in self._vins:
                self._vins.add(vin)
                break
        model = rng.choices([m for m, _ in store.models], weights=[w for _, w in store.models])[0]
        plate = "湘" + rng.choice("AAAAABCDEFGHJKLMNU") + self._plate_tail()
        warranty_end = purchase.replace(year=purchase.year + 3) if not (purchase.month == 2 and purchase.day == 29) \
            else dt.date(purchase.year + 3, 2, 28)
        insured_here = rng.random() < (0.55 if store.tier == "premium" else 0.42)
        # Policies renew on the purchase anniversary; insured-here customers who stopped coming
        # often let the store's policy lapse.
        expiry = dt.date(as_of.year, purchase.month, min(purchase.day, 28))
        if expiry < as_of:
            expiry = expiry.replace(year=as_of.year + 1)
        if behaviour == "lapsing" and rng.random() < 0.6:
            expiry = expiry.replace(year=expiry.year - 1)
        vehicle = [vin, plate, store.brand, model, "高端" if store.tier == "premium" else "中端", purchase.isoformat(),
                   warranty_end.isoformat(), expiry.isoformat(), "是" if insured_here else "否"]
        return vehicle, self._visits(store, customer_id, vin, purchase, behaviour)

    def _visits(self, store: DemoStore, customer_id: str, vin: str, purchase: dt.date,
                behaviour: str) -> list[list]:
        rng, as_of = self.rng, self.as_of
        visits = []
        day = purchase + dt.timedelta(days=rng.randint(25, 40) * store.cycle[0])
        stop_after = rng.randint(0, 6) if behaviour == "lapsing" else 10**6
        seq = 0
        while day < as_of and seq <= stop_after:
            kind = rng.choices(("保养", "维修", "钣喷", "索赔", "理赔", "检查"), weights=(70, 10, 6, 5, 4, 5))[0]
            paid = kind in ("保养", "维修", "钣喷")
            base = {"保养": 480 if store.tier == "mid" else 1600, "维修": 900, "钣喷": 2200,
                    "索赔": 0, "理赔": 0, "检查": 0}[kind]
            amount = round(base * rng.uniform(0.7, 1.6), 2) if paid else 0
            seq += 1
            self._ro_seq[(store.code, day)] = ro_seq = self._ro_seq.get((store.code, day), 0) + 1
            ro = f"{store.code}{day:%y%m%d}{ro_seq:04d}"
            visits.append([customer_id, vin, day.isoformat(), kind, "是" if paid else "否", f"{amount:.2f}",
                           rng.choice(store.advisors), store.code, ro])
            months = rng.uniform(*store.cycle) * (rng.uniform(1.0, 2.2) if behaviour == "erratic" else 1.0)
            day += dt.timedelta(days=int(months * 30.4))
        return visits

    def write_csv(self, directory: Path) -> tuple[Path, Path, dict]:
        """Write customers.csv and visits.csv (UTF-8 with BOM, as Excel saves it)."""
        directory.mkdir(parents=True, exist_ok=True)
        cpath, vpath = directory / "customers.csv", directory / "visits.csv"
        counts = {"customers": 0, "vehicles": 0, "visits": 0}
        with cpath.open("w", newline="", encoding="utf-8-sig") as cf, \
                vpath.open("w", newline="", encoding="utf-8-sig") as vf:
            cw, vw = csv.writer(cf), csv.writer(vf)
            cw.writerow(CUSTOMER_HEADER)
            vw.writerow(VISIT_HEADER)
            for customer_rows, visit_rows in self.rows():
                cw.writerows(customer_rows)
                vw.writerows(visit_rows)
                counts["customers"] += 1
                counts["vehicles"] += sum(1 for r in customer_rows if r[8])
                counts["visits"] += len(visit_rows)
        return cpath, vpath, counts


def load_demo(db, *, as_of: dt.date, n_customers: int = 5000, seed: int = 2026,
              settings=None) -> dict:
    """Create the demo stores and users and import the generated exports (once)."""
    from callcenter.accounts import upsert_user
    from callcenter.dms.importer import import_customers, import_visits
    from callcenter.domain import Role
    from callcenter.storage.models import Customer, Store

    if as_of > dt.date.today():
        raise ValueError("the demo cannot end in the future (visits would be dated after today)")
    with db.session() as s:
        if s.scalar(sa.select(sa.func.count()).select_from(Customer)):
            return {"skipped": True}
        for st in STORES:
            if s.scalar(sa.select(Store.id).where(Store.code == st.code)) is None:
                s.add(Store(code=st.code, name=st.name, city="长沙市", timezone="Asia/Shanghai"))
    gen = DemoGenerator(as_of, n_customers, seed)
    with tempfile.TemporaryDirectory(prefix="callcenter-demo-") as tmp:
        cpath, vpath, counts = gen.write_csv(Path(tmp))
        report_c = import_customers(db, cpath)
        report_v = import_visits(db, vpath)
    if report_c.rejected or report_v.rejected:
        raise RuntimeError(f"demo data rejected by the importer: {report_c.errors[:3]} {report_v.errors[:3]}")
    credentials = {}
    with db.session() as s:
        # The group's manager reads every store's reports; the supervisor and agent work at JH01.
        for username, role, store in (("admin", Role.ADMIN, None), ("supervisor", Role.SUPERVISOR, "JH01"),
                                      ("agent", Role.AGENT, "JH01"), ("manager", Role.MANAGER, None)):
            password = secrets.token_urlsafe(9)
            upsert_user(s, username, password, role, store_code=store,
                        display_name={"admin": "系统管理员", "supervisor": "客服主管", "agent": "回访专员",
                                      "manager": "集团售后经理"}[username])
            credentials[username] = password
    if settings is not None:
        path = Path(settings.data_dir) / "demo-credentials.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{u} {p}\n" for u, p in credentials.items()), encoding="utf-8")
        path.chmod(0o600)
    return {"stores": len(STORES), **counts, "users": credentials}
