"""The importer under hostile files and real dealer-group data, on both databases (issue 13).

Each test reproduces what the probe found (described in its comment) and shows what happens now.
"""

import datetime as dt
import json

import openpyxl
import pytest
import sqlalchemy as sa

from callcenter.dms.importer import ROW, ImportFailed, import_customers, import_visits
from callcenter.storage.models import Customer, CustomerStoreTouch, ServiceVisit, Vehicle

pytestmark = pytest.mark.integration
attack = pytest.mark.attack

HEADER = "客户编号,姓名,手机号,VIN,车型,购车日期,门店"
VISITS = "客户编号,VIN,进厂日期,类型,有偿,金额,门店,工单号"
VIN_A, VIN_B = "LVGBE40K8KG123456", "LVGBE40K8KG123457"


def write(tmp_path, name, lines, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def store_ids(db):
    with db.session() as s:
        return dict(s.execute(sa.text("SELECT code, id FROM stores")).all())


# --------------------------------------------------------------------------- hostile files


@attack
def test_a_far_cell_xlsx_imports_nothing_and_says_why(stores, tmp_path, count, run_cli):
    # Before: 512 GiB allocation and a native abort of the whole process.
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["customer_id", "name", "phone", "store"])
    ws.append(["C1", "张三", "13800001111", "S1"])
    ws["XFD1048576"] = "x"
    path = tmp_path / "far.xlsx"
    wb.save(path)
    result = run_cli("import", "customers", str(path))
    assert result.exit_code == 1 and "XFD1048576" in result.stderr and "Traceback" not in result.output
    assert count(Customer) == 0


@attack
@pytest.mark.parametrize("encoding,named", [("big5", "Big5"), ("shift_jis", "Shift-JIS")])
def test_big5_and_shift_jis_csv_import_nothing_instead_of_garbled_names(stores, tmp_path, count, run_cli,
                                                                         encoding, named):
    # Before: exit 0 and names such as 眎岸 (Big5 张偉 read as GBK).
    names = ["張偉", "陳美玲", "林志明"] if encoding == "big5" else ["田中太郎", "佐藤花子", "鈴木一郎"]
    lines = ["customer_id,name,phone,store", *[f"C{i},{n},1380000111{i},S1" for i, n in enumerate(names)]]
    result = run_cli("import", "customers", str(write(tmp_path, "c.csv", lines, encoding)), "--json")
    assert result.exit_code == 1
    assert f"looks like {named}" in json.loads(result.stdout)["error"]
    assert count(Customer) == 0


@attack
def test_a_200000_character_field_rejects_its_row_and_keeps_the_others(stores, tmp_path):
    # Before: "broken CSV after row 1: field larger than field limit (131072)": nothing imported.
    lines = [HEADER, f"C1,{'长' * 200_000},13800001111,,,,S1", "C2,李娜,13900001111,,,,S1",
             f"C3,王芳,13900002222,{'X' * 200_000},,,S1"]
    report = import_customers(stores, write(tmp_path, "long.csv", lines))
    assert (report.imported, report.rejected) == (1, 2)
    by_row = {e.row: e for e in report.errors}
    assert by_row[2].column == "name" and "200,000 characters" in by_row[2].reason
    assert len(by_row[2].value) <= 60  # the report shows the start of the cell, not all of it
    assert by_row[4].column == "vin" and "200,000 characters" in by_row[4].reason


def test_extra_cells_are_warned_about_with_their_row(stores, tmp_path):
    # Before: the cells beyond the header were dropped without a word.
    lines = ["客户编号,姓名,手机号,门店", "C1,张伟,13812345678,S1,VIP,备注", "C2,李娜,13900001111,S1"]
    report = import_customers(stores, write(tmp_path, "extra.csv", lines))
    assert (report.imported, report.rejected) == (2, 0)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("row 2: 6 cells but the header has 4 columns") and "VIP" in report.warnings[0]


def test_a_row_shifted_by_an_unquoted_comma_names_the_comma(stores, tmp_path):
    # Before: "repair order ... / not a number" style reasons about the shifted cell (here: the
    # amount 1,280.50 written without quotes made the advisor's column hold "280.50" and the store
    # column an advisor's name: "unknown store").
    import_customers(stores, write(tmp_path, "c.csv", [HEADER, f"C1,张伟,13812345678,{VIN_A},凯美瑞,2024-05-01,S1"]))
    lines = ["客户编号,VIN,进厂日期,类型,有偿,金额,门店", f"C1,{VIN_A},2026-03-05,保养,是,1,280.50,S1",
             f"C1,{VIN_A},2026-04-05,维修,是,300,S1"]
    report = import_visits(stores, write(tmp_path, "v.csv", lines))
    assert (report.imported, report.rejected) == (1, 1)
    (error,) = report.errors
    assert (error.row, error.column) == (2, ROW)
    assert "8 cells but the header has 7 columns" in error.reason and "unquoted comma" in error.reason


@pytest.mark.parametrize("kind", ["customers", "visits"])
def test_a_header_only_file_says_no_data_rows(stores, tmp_path, run_cli, kind):
    # Before: exit 0, "0 rows; imported 0": an empty export looked like a successful one.
    header = HEADER if kind == "customers" else VISITS
    result = run_cli("import", kind, str(write(tmp_path, "h.csv", [header, ",,,,,,", ""])))
    assert result.exit_code == 1 and "no data rows" in result.stderr


# --------------------------------------------------------------------------- store boundaries


@attack
def test_an_import_for_one_store_changes_nothing_of_another_store(stores, tmp_path, count):
    # Before: a store-B import (the API pushed through the importer with store B) renamed store A's
    # customer, moved A's car to a B customer and added visits to A's customers' repair orders.
    import_customers(stores, write(tmp_path, "a.csv", [HEADER, f"A1,张伟,13812345678,{VIN_A},凯美瑞,2024-05-01,S1"]))
    import_visits(stores, write(tmp_path, "av.csv", [VISITS, f"A1,{VIN_A},2026-03-05,保养,是,300,S1,RO1"]))
    attack_rows = [HEADER,
                   "A1,黑客,13000000000,,,,",  # rename A's customer
                   f"B1,李四,13900001111,{VIN_A},凯美瑞,2024-05-01,",  # take A's car
                   "A2,王五,13900002222,,,,S1"]  # a row of store A
    report = import_customers(stores, write(tmp_path, "b.csv", attack_rows), acting_store="S2")
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert "another store's vehicle (store S1)" in errors[(3, "vin")]
    assert "this import is for store S2 only" in errors[(4, "store")]
    assert any("customer A1 is store S1's" in w and "name" in w for w in report.warnings)
    with stores.session() as s:
        a1 = s.scalar(sa.select(Customer).where(Customer.external_id == "A1"))
        assert (a1.name, a1.phone, a1.store.code) == ("张伟", "13812345678", "S1")
        car = s.scalar(sa.select(Vehicle).where(Vehicle.vin == VIN_A))
        assert (car.customer.external_id, car.store.code) == ("A1", "S1")
        b1 = s.scalar(sa.select(Customer).where(Customer.external_id == "B1"))
        assert b1.store.code == "S2" and b1.vehicles == []  # the customer itself is store B's: kept
    visit_attack = [VISITS, f"A1,{VIN_A},2026-03-05,保养,是,999,,RO1",  # another amount for A's RO1
                    f"A1,{VIN_A},2026-03-05,保养,是,300,S1,RO1"]
    report = import_visits(stores, write(tmp_path, "bv.csv", visit_attack), acting_store="S2")
    assert report.imported == 1  # a visit of A1's car at store B is store B's own record
    assert "this import is for store S2 only" in report.errors[0].reason
    with stores.session() as s:
        visits = {(v.store.code, v.ro_number): v.amount for v in s.scalars(sa.select(ServiceVisit))}
        assert visits[("S1", "RO1")] == 300 and visits[("S2", "RO1")] == 999
    with pytest.raises(ImportFailed, match="for store S2 only"):
        import_visits(stores, write(tmp_path, "x.csv", visit_attack), acting_store="S2", store_code="S1")


# --------------------------------------------------------------------------- dealer groups


def test_one_customer_with_cars_at_two_stores_keeps_both(stores, tmp_path):
    # Before: row 3 rejected ("customer C1 has store_id 1 on row 2"): the second car and its
    # visits were lost.
    lines = [HEADER, f"C1,张伟,13812345678,{VIN_A},凯美瑞,2024-05-01,S1",
             f"C1,张伟,13812345678,{VIN_B},X3,2025-01-01,S2"]
    report = import_customers(stores, write(tmp_path, "c.csv", lines))
    assert (report.imported, report.rejected) == (1, 0), report.errors
    visits = [VISITS, f"C1,{VIN_A},2026-03-05,保养,是,300,,", f"C1,{VIN_B},2026-04-05,保养,是,900,,",
              f"C1,{VIN_A},2026-05-05,维修,是,100,S2,RO9"]
    report = import_visits(stores, write(tmp_path, "v.csv", visits))
    assert (report.imported, report.rejected) == (3, 0), report.errors
    with stores.session() as s:
        c1 = s.scalar(sa.select(Customer).where(Customer.external_id == "C1"))
        assert c1.store.code == "S1"  # the home store: the first that imported them
        assert {v.vin: v.store.code for v in c1.vehicles} == {VIN_A: "S1", VIN_B: "S2"}
        # a visit without a store is its car's store's
        assert sorted((v.visit_date.month, v.store.code) for v in c1.visits) == [(3, "S1"), (4, "S2"), (5, "S2")]
        touch = {t.store_id: (t.last_paid_visit, t.cars_mid + t.cars_premium)
                 for t in s.scalars(sa.select(CustomerStoreTouch).where(CustomerStoreTouch.customer_id == c1.id))}
    ids = store_ids(stores)
    assert touch == {ids["S1"]: (dt.date(2026, 3, 5), 1), ids["S2"]: (dt.date(2026, 5, 5), 1)}
    again = import_customers(stores, write(tmp_path, "c.csv", lines))
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 1)


def test_store_scoped_numbers_are_two_people_in_two_stores(stores, tmp_path, run_cli):
    # The other real case: two stores whose DMS number customers independently (C1 is a different
    # person in each). Without --id-scope store the second row is rejected as a conflict.
    lines = [HEADER, f"C1,张伟,13812345678,{VIN_A},凯美瑞,2024-05-01,S1",
             f"C1,刘洋,13900001111,{VIN_B},X3,2025-01-01,S2"]
    path = write(tmp_path, "c.csv", lines)
    group = import_customers(stores, path, dry_run=True)
    assert group.rejected == 1 and "customer C1 has name 张伟 on row 2" in group.errors[0].reason
    result = run_cli("import", "customers", str(path), "--id-scope", "store", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 2
    ids = store_ids(stores)
    with stores.session() as s:
        people = {(c.scope_store_id, c.external_id): (c.name, c.store_id, [v.vin for v in c.vehicles])
                  for c in s.scalars(sa.select(Customer))}
    assert people == {(ids["S1"], "C1"): ("张伟", ids["S1"], [VIN_A]), (ids["S2"], "C1"): ("刘洋", ids["S2"], [VIN_B])}
    visits = write(tmp_path, "v.csv", ["客户编号,进厂日期,类型,有偿,门店", "C1,2026-03-05,保养,是,S1",
                                       "C1,2026-03-05,保养,是,S2", "C1,2026-04-05,保养,是,"])
    result = run_cli("import", "visits", str(visits), "--id-scope", "store", "--json")
    body = json.loads(result.stdout)
    assert result.exit_code == 2 and body["imported"] == 2
    assert body["errors"][0]["row"] == 4 and "every row needs its store" in body["errors"][0]["reason"]
    with stores.session() as s:
        owners = {(v.store_id, v.customer.name) for v in s.scalars(sa.select(ServiceVisit))}
    assert owners == {(ids["S1"], "张伟"), (ids["S2"], "刘洋")}
    again = run_cli("import", "visits", str(visits), "--id-scope", "store", "--json")
    assert json.loads(again.stdout)["unchanged"] == 2
    # The group-wide import now finds that the numbers are store-scoped and says so.
    report = import_customers(stores, write(tmp_path, "g.csv", [HEADER, "C1,张伟,13812345678,,,,S1"]), dry_run=True)
    assert any("store-scoped numbers" in w and "--id-scope store" in w for w in report.warnings)
