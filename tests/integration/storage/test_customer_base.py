"""The seeds' customer classes, exactly, at their boundaries, on both databases."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from callcenter.customer_base import (
    classes_query,
    classify_customers,
    customer_base_series,
    customer_base_stats,
)
from callcenter.domain import Gender, Tier, VisitType
from callcenter.storage.models import Customer, ServiceVisit, Store, Vehicle

pytestmark = pytest.mark.integration

D = dt.date(2026, 8, 31)  # month-end: two mid cycles back is 2026-02-28 (clamped)


class Builder:
    def __init__(self, session):
        self.s = session
        self.n = 0
        self.stores = {st.code: st for st in session.query(Store)}

    def customer(self, *, store="S1", vehicles=(), visits=(), city="长沙市", gender=Gender.MALE, birthday=None):
        self.n += 1
        c = Customer(external_id=f"K{self.n}", name=f"客户{self.n}", phone=f"1380000{self.n:04d}",
                     store=self.stores[store], city=city, gender=gender, birthday=birthday)
        self.s.add(c)
        for i, (tier, purchase, insured, expiry, model) in enumerate(vehicles):
            c.vehicles.append(Vehicle(vin=f"LVGBE40K8KG{self.n:04d}{i:02d}", tier=tier, purchase_date=purchase,
                                      insured_here=insured, insurance_expiry=expiry, model=model))
        for j, (day, paid) in enumerate(visits):
            self.s.add(ServiceVisit(customer=c, store=self.stores[store], visit_date=day, paid=paid,
                                    visit_type=VisitType.MAINTENANCE if paid else VisitType.WARRANTY,
                                    dedup_key=f"K{self.n}-{j}"))
        self.s.flush()
        return c.id


def mid(purchase=None, insured=False, expiry=None, model="卡罗拉"):
    return (Tier.MID, purchase, insured, expiry, model)


def premium(purchase=None, insured=False, expiry=None, model="X3"):
    return (Tier.PREMIUM, purchase, insured, expiry, model)


@pytest.fixture
def people(stores):
    with stores.session() as s:
        b = Builder(s)
        ids = {
            "mid_boundary": b.customer(vehicles=[mid(dt.date(2020, 1, 1))], visits=[(dt.date(2026, 2, 28), True)]),
            "mid_day_before": b.customer(vehicles=[mid(dt.date(2020, 1, 1))], visits=[(dt.date(2026, 2, 27), True)]),
            "premium_boundary": b.customer(vehicles=[premium(dt.date(2020, 1, 1))],
                                           visits=[(dt.date(2025, 8, 31), True)]),
            "premium_day_before": b.customer(vehicles=[premium(dt.date(2020, 1, 1))],
                                             visits=[(dt.date(2025, 8, 30), True)]),
            # both tiers: the shorter (mid) cycle applies, so a visit 10 months ago is lapsed
            "both_tiers": b.customer(vehicles=[mid(dt.date(2019, 1, 1)), premium(dt.date(2019, 5, 5))],
                                     visits=[(dt.date(2025, 10, 31), True)]),
            "unpaid_only": b.customer(vehicles=[mid(dt.date(2020, 1, 1))], visits=[(dt.date(2026, 8, 1), False)]),
            "recent_purchase": b.customer(vehicles=[mid(dt.date(2026, 7, 1))]),
            "visit_after_d": b.customer(vehicles=[mid(dt.date(2020, 1, 1))], visits=[(dt.date(2026, 9, 1), True)]),
            "purchase_after_d": b.customer(vehicles=[mid(dt.date(2026, 9, 5))]),
            "prospect": b.customer(city=None, gender=None),
            "insured_today": b.customer(vehicles=[mid(dt.date(2026, 6, 1), True, D)]),
            "insured_expired": b.customer(vehicles=[mid(dt.date(2026, 6, 1), True, D - dt.timedelta(days=1))]),
            "insured_elsewhere": b.customer(vehicles=[mid(dt.date(2026, 6, 1), False, dt.date(2027, 1, 1))]),
            # S2 sets mid 4 / premium 8 months: 7 months ago is active there, lapsed at S1
            "s2_custom_cycle": b.customer(store="S2", vehicles=[mid(dt.date(2019, 1, 1))],
                                          visits=[(dt.date(2026, 1, 31), True)], birthday=dt.date(1990, 9, 1)),
            "visit_no_vehicle": b.customer(visits=[(dt.date(2026, 3, 1), True)]),
        }
    return stores, ids


EXPECTED = {  # name: (active, lapsed, insured)
    "mid_boundary": (True, False, False),
    "mid_day_before": (False, True, False),
    "premium_boundary": (True, False, False),
    "premium_day_before": (False, True, False),
    "both_tiers": (False, True, False),
    "unpaid_only": (False, True, False),  # last touch is the 2020 purchase
    "recent_purchase": (True, False, False),
    "visit_after_d": (False, True, False),
    "purchase_after_d": (False, False, False),
    "prospect": (False, False, False),
    "insured_today": (True, False, True),
    "insured_expired": (True, False, False),
    "insured_elsewhere": (True, False, False),
    "s2_custom_cycle": (True, False, False),
    "visit_no_vehicle": (True, False, False),  # mid cycle assumed: 2026-03-01 >= 2026-02-28
}


def test_each_definition_at_its_boundary(people):
    db, ids = people
    with db.session() as s:
        statuses = classify_customers(s, D)
    got = {name: (statuses[i].active, statuses[i].lapsed, statuses[i].insured) for name, i in ids.items()}
    assert got == EXPECTED
    assert statuses[ids["both_tiers"]].cycle_months == 3
    assert statuses[ids["s2_custom_cycle"]].cycle_months == 4
    assert statuses[ids["unpaid_only"]].last_touch == dt.date(2020, 1, 1)


def _sql_classes(s, day, **kwargs) -> dict[int, tuple]:
    q = classes_query(s, day, **kwargs)
    rows = s.execute(sa.select(q.c.customer_id, q.c.last_touch, q.c.active, q.c.lapsed, q.c.insured,
                               q.c.latest_vehicle_id)).all()
    return {r[0]: (r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5]) for r in rows}


def test_the_sql_twin_classifies_exactly_as_python(people):
    """classes_query (what win-back and custom campaigns select with) equals classify_customers at
    every boundary above, at dates either side of them, per store and with other default cycles."""
    db, ids = people
    days = [dt.date(2025, 8, 30), dt.date(2025, 8, 31), dt.date(2026, 2, 27), dt.date(2026, 2, 28), D,
            dt.date(2026, 9, 2), dt.date(2027, 3, 1)]
    with db.session() as s:
        latest = dict(s.execute(sa.select(Vehicle.customer_id, sa.func.max(Vehicle.id))
                                .group_by(Vehicle.customer_id)).all())
        for day in days:
            for kwargs in ({}, {"default_cycle_mid": 6}, {"default_cycle_premium": 2}):
                python = {cid: (st.last_touch, st.active, st.lapsed, st.insured, latest.get(cid))
                          for cid, st in classify_customers(s, day, **kwargs).items()}
                sql = _sql_classes(s, day, **kwargs)
                assert sql == {cid: v for cid, v in python.items() if cid in sql}, (day, kwargs)
                # Only prospects (no car, no paid visit: in no class) have no row.
                assert set(python) - set(sql) == {ids["prospect"]}
        got = _sql_classes(s, D)
        assert {name: got[i][1:4] for name, i in ids.items() if i in got} == {
            name: v for name, v in EXPECTED.items() if name != "prospect"}
        s2 = s.scalar(sa.select(Store).where(Store.code == "S2"))
        assert set(_sql_classes(s, D, store_id=s2.id)) == {ids["s2_custom_cycle"]}
        # Every store on the same cycles: the query needs no store condition (nor customers).
        s2.cycle_months_mid = s2.cycle_months_premium = None
        s.flush()
        for day in days:
            python = {cid: (st.last_touch, st.active, st.lapsed, st.insured, latest.get(cid))
                      for cid, st in classify_customers(s, day).items()}
            sql = _sql_classes(s, day)
            assert sql == {cid: v for cid, v in python.items() if cid in sql}, day
            assert set(python) - set(sql) == {ids["prospect"]}
        assert _sql_classes(s, D)[ids["s2_custom_cycle"]][2]  # lapsed now: 7 months > two 3-month cycles


def test_totals_and_breakdowns(people):
    db, ids = people
    with db.session() as s:
        stats = customer_base_stats(s, D)
    active = sum(v[0] for v in EXPECTED.values())
    lapsed = sum(v[1] for v in EXPECTED.values())
    assert (stats["base"], stats["active"], stats["lapsed"], stats["insured"]) == (len(EXPECTED), active, lapsed, 1)
    assert stats["by_city"]["unknown"] == {"base": 1, "active": 0, "lapsed": 0, "insured": 0}
    assert stats["by_tier"]["premium"]["base"] == 3 and stats["by_tier"]["none"]["base"] == 2
    assert stats["by_model"]["X3"] == {"base": 3, "active": 1, "lapsed": 2, "insured": 0}
    assert stats["by_gender"]["M"]["base"] == len(EXPECTED) - 1
    assert stats["by_age_band"]["35-44"] == {"base": 1, "active": 1, "lapsed": 0, "insured": 0}
    for key in ("by_city", "by_gender", "by_age_band"):
        assert sum(v["base"] for v in stats[key].values()) == stats["base"]


def test_store_scope_and_settings_defaults(people):
    db, ids = people
    with db.session() as s:
        only_s2 = customer_base_stats(s, D, store_code="S2")
        assert (only_s2["base"], only_s2["active"]) == (1, 1)
        longer = classify_customers(s, D, default_cycle_mid=6)
        assert longer[ids["both_tiers"]].active  # 10 months < 2 x 6
        with pytest.raises(LookupError):
            customer_base_stats(s, D, store_code="NOPE")


def test_cli_json_shape(people, run_cli):
    result = run_cli("customers", "stats", "--as-of", "2026-08-31", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert list(body)[:5] == ["as_of", "base", "active", "lapsed", "insured"]
    assert body["as_of"] == "2026-08-31" and body["base"] == len(EXPECTED)
    assert set(body) >= {"by_city", "by_model", "by_tier", "by_gender", "by_age_band"}
    result = run_cli("customers", "stats", "--as-of", "2026-02-30")
    assert result.exit_code == 2 and "2026-02-30" in result.output
    result = run_cli("customers", "stats", "--store", "NOPE")
    assert result.exit_code == 1 and "unknown store 'NOPE'" in result.output


def test_series_agrees_with_stats_at_every_date(people):
    db, _ids = people
    days = [dt.date(2025, 8, 31), dt.date(2026, 2, 27), dt.date(2026, 2, 28), D, dt.date(2026, 9, 2)]
    with db.session() as s:
        series = customer_base_series(s, reversed(days))
        assert [p["as_of"] for p in series] == [d.isoformat() for d in days]
        for point, day in zip(series, days):
            stats = customer_base_stats(s, day)
            assert point == {k: stats[k] for k in ("as_of", "base", "active", "lapsed", "insured")}
        only_s2 = customer_base_series(s, [D], store_code="S2")
        assert only_s2[0]["base"] == 1
