"""customer_touch, kept by triggers: after every kind of write it equals a recomputation from the
visits and cars themselves, on both databases; the migration backfills it from existing rows."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.domain import Tier, VisitType
from callcenter.storage import upgrade_database
from callcenter.storage.db import downgrade_database, head_revision
from callcenter.storage.models import Customer, CustomerTouch, ServiceVisit, Store, Vehicle

pytestmark = pytest.mark.integration

D = dt.date


def recomputed(s) -> dict[int, tuple]:
    """What customer_touch should hold, from the rows, in Python."""
    out: dict[int, list] = {}
    for cid in s.scalars(sa.select(Customer.id)):
        out[cid] = [None, None, 0, 0, None, None]
    for cid, day in s.execute(sa.select(ServiceVisit.customer_id, ServiceVisit.visit_date)
                              .where(ServiceVisit.paid.is_(True))):
        row = out[cid]
        row[0] = max(row[0], day) if row[0] else day
    for car in s.scalars(sa.select(Vehicle)):
        row = out[car.customer_id]
        if car.purchase_date is not None:
            row[1] = max(row[1], car.purchase_date) if row[1] else car.purchase_date
        row[3 if car.tier == Tier.PREMIUM else 2] += 1
        row[4] = max(row[4], car.id) if row[4] else car.id
        if car.insured_here and car.insurance_expiry is not None:
            row[5] = max(row[5], car.insurance_expiry) if row[5] else car.insurance_expiry
    return {cid: tuple(v) for cid, v in out.items() if v != [None, None, 0, 0, None, None]}


def stored(s) -> dict[int, tuple]:
    t = CustomerTouch
    rows = s.execute(sa.select(t.customer_id, t.last_paid_visit, t.last_purchase, t.cars_mid, t.cars_premium,
                               t.latest_vehicle_id, t.insured_until)).all()
    # A row whose cars and paid visits are all gone is the same as no row.
    return {r[0]: tuple(r[1:]) for r in rows if tuple(r[1:]) != (None, None, 0, 0, None, None)}


def check(db) -> None:
    with db.session() as s:
        assert stored(s) == recomputed(s)


@pytest.fixture
def people(stores):
    db = stores
    with db.session() as s:
        store = s.scalar(sa.select(Store).where(Store.code == "S1"))
        a, b, c = (Customer(external_id=f"T{i}", name=f"客户{i}", store=store) for i in range(3))
        s.add_all([a, b, c])
        s.flush()
        ids = (a.id, b.id, c.id, store.id)
    return db, ids


def visit(cid, store, day, paid=True, key=None):
    return {"customer_id": cid, "store_id": store, "visit_date": day, "paid": paid,
            "visit_type": VisitType.MAINTENANCE if paid else VisitType.WARRANTY,
            "dedup_key": key or f"{cid}-{day}-{paid}", "created_at": dt.datetime(2026, 11, 1)}


def test_every_write_keeps_it_equal_to_the_rows(people):
    db, (a, b, c, store) = people
    check(db)  # customers only: no rows
    with db.session() as s:  # ORM inserts, one statement per row
        s.add_all([Vehicle(customer_id=a, vin="VA1", tier=Tier.MID, purchase_date=D(2021, 3, 1)),
                   Vehicle(customer_id=a, vin="VA2", tier=Tier.PREMIUM, purchase_date=D(2024, 5, 1),
                           insured_here=True, insurance_expiry=D(2027, 5, 1)),
                   Vehicle(customer_id=b, vin="VB1", tier=Tier.PREMIUM, purchase_date=None)])
    check(db)
    with db.session() as s:  # one multi-row statement, several rows per customer (PostgreSQL: one trigger call)
        s.execute(sa.insert(ServiceVisit), [visit(a, store, D(2026, 1, 5)), visit(a, store, D(2026, 6, 5)),
                                            visit(a, store, D(2026, 9, 1), paid=False),
                                            visit(b, store, D(2025, 2, 2)), visit(c, store, D(2026, 3, 3), paid=False)])
    check(db)
    with db.session() as s:
        assert stored(s)[a][0] == D(2026, 6, 5) and c not in stored(s)  # unpaid visits do not count
        latest = s.scalar(sa.select(ServiceVisit).where(ServiceVisit.customer_id == a,
                                                         ServiceVisit.visit_date == D(2026, 6, 5)))
        latest.visit_date = D(2025, 12, 1)  # moved earlier: the latest is now the January visit
    check(db)
    with db.session() as s:
        s.execute(sa.update(ServiceVisit).where(ServiceVisit.customer_id == a, ServiceVisit.paid.is_(False))
                  .values(paid=True))
        s.execute(sa.update(ServiceVisit).where(ServiceVisit.customer_id == b).values(customer_id=c))
    check(db)
    with db.session() as s:
        assert stored(s)[a][0] == D(2026, 9, 1) and stored(s)[c][0] == D(2025, 2, 2)
        s.execute(sa.update(Vehicle).where(Vehicle.vin == "VA2").values(tier=Tier.MID, insured_here=False))
        s.execute(sa.update(Vehicle).where(Vehicle.vin == "VB1").values(customer_id=c, purchase_date=D(2020, 1, 1)))
    check(db)
    with db.session() as s:
        s.execute(sa.delete(ServiceVisit).where(ServiceVisit.customer_id == a))
        s.delete(s.scalar(sa.select(Vehicle).where(Vehicle.vin == "VA1")))
    check(db)
    with db.session() as s:
        s.execute(sa.delete(ServiceVisit))
        s.execute(sa.delete(Vehicle))
    check(db)
    with db.session() as s:
        assert stored(s) == {}
        s.delete(s.get(Customer, a))  # its (empty) summary row goes with it
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CustomerTouch)
                        .where(CustomerTouch.customer_id == a)) == 0


def test_the_migration_backfills_existing_rows(people):
    db, (a, b, c, store) = people
    with db.session() as s:
        s.add_all([Vehicle(customer_id=a, vin="VA1", tier=Tier.PREMIUM, purchase_date=D(2022, 3, 1),
                           insured_here=True, insurance_expiry=D(2027, 1, 1)),
                   Vehicle(customer_id=b, vin="VB1", tier=Tier.MID, purchase_date=D(2023, 3, 1))])
        s.execute(sa.insert(ServiceVisit), [visit(a, store, D(2026, 1, 5)), visit(c, store, D(2026, 2, 2))])
    downgrade_database(db, "campaigns0001")
    assert "customer_touch" not in sa.inspect(db.engine).get_table_names()
    with db.engine.begin() as conn:  # written while there is no summary (and no trigger)
        conn.execute(sa.insert(ServiceVisit), [visit(b, store, D(2026, 4, 4))])
    before, after = upgrade_database(db)
    assert (before, after) == ("campaigns0001", head_revision())
    check(db)
    with db.session() as s:
        assert set(stored(s)) == {a, b, c}


def test_the_importer_keeps_it(stores, tmp_path):
    """The real writer: a DMS import (new cars, a sold car moving owner, visits)."""
    from callcenter.dms.importer import import_customers, import_visits

    def write(name, lines):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    header = "客户编号,姓名,手机号,VIN,档次,购车日期,保险到期日,本店投保,门店"
    import_customers(stores, write("a.csv", [header, "C1,张伟,13812345678,LVGBE40K8KG123456,中端,2024-05-01,2027-01-01,是,S1",
                                             "C1,张伟,13812345678,LVGBE40K8KG123457,高端,2025-01-01,,否,S1",
                                             "C2,李娜,13900001111,,,,,,S1"]))
    check(stores)
    import_customers(stores, write("b.csv", [header, "C2,李娜,13900001111,LVGBE40K8KG123457,高端,2025-01-01,,否,S1"]))
    check(stores)  # the second car moved from C1 to C2
    with stores.session() as s:
        visits = [f"{cid},{vin},2026-0{m}-10,保养,{paid},S1"
                  for cid, vin in (("C1", "LVGBE40K8KG123456"), ("C2", "LVGBE40K8KG123457"))
                  for m, paid in ((3, "是"), (8, "否"))]
        assert s.scalar(sa.select(sa.func.count()).select_from(CustomerTouch)) == 2
    import_visits(stores, write("v.csv", ["客户编号,VIN,进厂日期,类型,是否有偿,门店", *visits]))
    check(stores)
    with stores.session() as s:
        assert sorted(row[0] for row in stored(s).values()) == [D(2026, 3, 10)] * 2  # the paid ones



def test_the_demo_group_keeps_it(db):
    from callcenter.demo import load_demo

    load_demo(db, as_of=D(2026, 11, 20), n_customers=300, seed=5)
    check(db)
    with db.session() as s:
        assert len(stored(s)) > 250
