"""DMS import: formats, encodings, upserts, row errors, whole-file failures, on both databases."""

import datetime as dt
import json
from decimal import Decimal

import openpyxl
import pytest
import sqlalchemy as sa

from callcenter.dms.importer import ImportFailed, import_customers, import_visits
from callcenter.domain import Gender, Tier, VisitType
from callcenter.storage.models import Customer, ImportRun, ServiceVisit, Vehicle

pytestmark = pytest.mark.integration

CN_HEADER = "客户编号,姓名,手机号,性别,生日,城市,区县,职业,VIN,车牌号,品牌,车型,档次,购车日期,保修到期日,保险到期日,本店投保,门店"
ROWS = [
    "C001,张伟,138-1234-5678,男,1985/3/5,长沙市,岳麓区,教师,LVGBE40K8KG123456,湘A12345,丰田,凯美瑞,中端,2024-05-01,2027-05-01,2026-12-20,是,S1",
    "C001,张伟,13812345678,男,,长沙市,岳麓区,教师,LVGBE40K8KG123457,湘A54321,丰田,RAV4荣放,,2025-01-01,,,否,S1",
    "C002,李娜,+86 139 0000 1111,女,1990年2月3日,株洲市,,,,,,,,,,,,S1",
    "C003,王芳,0731-84567890,F,,,,,LBVPH1104MSZ12345,湘A8K888,宝马,X3,高端,2023-06-30,2026-06-30,2027-01-01,yes,宝马星沙店",
]


def write(tmp_path, name, lines, encoding="utf-8-sig"):
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def test_chinese_headers_gbk_multi_vehicle_and_prospects(stores, tmp_path, count):
    path = write(tmp_path, "customers.csv", [CN_HEADER, *ROWS], encoding="gbk")
    report = import_customers(stores, path)
    assert (report.imported, report.updated, report.rejected) == (3, 0, 0), report.errors
    assert count(Customer) == 3 and count(Vehicle) == 3
    with stores.session() as s:
        zhang = s.scalar(sa.select(Customer).where(Customer.external_id == "C001"))
        assert zhang.phone == "13812345678" and zhang.gender is Gender.MALE
        assert zhang.birthday == dt.date(1985, 3, 5)
        assert [v.model for v in zhang.vehicles] == ["凯美瑞", "RAV4荣放"]
        camry, rav4 = zhang.vehicles
        assert camry.insured_here and camry.insurance_expiry == dt.date(2026, 12, 20)
        assert rav4.tier is Tier.MID and not rav4.insured_here
        li = s.scalar(sa.select(Customer).where(Customer.external_id == "C002"))
        assert li.vehicles == [] and li.phone == "13900001111"
        wang = s.scalar(sa.select(Customer).where(Customer.external_id == "C003"))
        assert wang.phone == "0731-84567890" and wang.store.code == "S2"  # store given by name
        assert wang.vehicles[0].tier is Tier.PREMIUM
        run = s.scalars(sa.select(ImportRun)).one()
        assert (run.kind, run.imported, run.rejected) == ("customers", 3, 0)


def test_reimport_changes_nothing_and_updates_are_counted(stores, tmp_path, count):
    path = write(tmp_path, "customers.csv", [CN_HEADER, *ROWS])
    import_customers(stores, path)
    again = import_customers(stores, path)
    assert (again.imported, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 0)
    changed = [CN_HEADER, ROWS[0].replace("138-1234-5678", "13987654321").replace("教师", "工程师"), *ROWS[1:]]
    report = import_customers(stores, write(tmp_path, "changed.csv", changed))
    assert (report.imported, report.updated, report.unchanged) == (0, 1, 2)
    assert count(Customer) == 3 and count(Vehicle) == 3
    with stores.session() as s:
        zhang = s.scalar(sa.select(Customer).where(Customer.external_id == "C001"))
        assert zhang.phone == "13987654321" and zhang.occupation == "工程师"


def test_blank_cells_do_not_erase_and_a_sold_car_moves_owner(stores, tmp_path):
    import_customers(stores, write(tmp_path, "a.csv", [CN_HEADER, *ROWS]))
    sparse = [
        "客户编号,姓名,手机号,生日,VIN,车型",
        "C001,张伟,13812345678,,LVGBE40K8KG123456,",
        "C009,孙丽,13700000009,,LVGBE40K8KG123457,RAV4荣放",  # C001's second car sold to C009
    ]
    no_store = import_customers(stores, write(tmp_path, "b.csv", sparse), dry_run=True)
    assert [(e.row, e.column) for e in no_store.errors] == [(3, "store")]  # new customer, two stores
    report = import_customers(stores, write(tmp_path, "b.csv", sparse), store_code="S1")
    assert report.rejected == 0 and report.imported == 1
    with stores.session() as s:
        zhang = s.scalar(sa.select(Customer).where(Customer.external_id == "C001"))
        assert zhang.birthday == dt.date(1985, 3, 5) and zhang.city == "长沙市"
        assert zhang.store.code == "S1"
        assert [v.vin for v in zhang.vehicles] == ["LVGBE40K8KG123456"]
        assert zhang.vehicles[0].model == "凯美瑞"
        sun = s.scalar(sa.select(Customer).where(Customer.external_id == "C009"))
        assert [v.vin for v in sun.vehicles] == ["LVGBE40K8KG123457"]


def test_bad_rows_are_rejected_with_row_column_value_reason_and_the_rest_imported(stores, tmp_path, count):
    bad = [
        CN_HEADER,
        ROWS[0],
        "C010,错号,12345,男,,,,,,,,,,,,,,S1",
        "C011,坏日期,13711112222,男,1990-02-30,,,,,,,,,,,,,S1",
        "C012,坏VIN,13711113333,女,,,,,LVGBE40K8KG12345O,,,,,,,,,S1",
        "C013,缺VIN,13711114444,女,,,,,,湘A00001,丰田,卡罗拉,,,,,,S1",
        "C014,未来购车,13711115555,男,,,,,LVGBE40K8KG123499,,,,,2099-01-01,,,,S1",
        "C015,无名店,13711116666,男,,,,,,,,,,,,,,S9",
        "C001,张三,13812345678,男,,,,,,,,,,,,,,S1",
        ",无编号,13711117777,男,,,,,,,,,,,,,,S1",
        "C016,性别错,13711118888,X,,,,,,,,,,,,,,S1",
        "C017,正常,13711119999,女,,,,,,,,,,,,,,S1",
    ]
    report = import_customers(stores, write(tmp_path, "bad.csv", bad))
    errors = {(e.row, e.column): e for e in report.errors}
    assert report.imported == 2 and report.rejected == 9
    assert errors[(3, "phone")].value == "12345"
    assert errors[(4, "birthday")].reason == "impossible date 1990-02-30"
    assert "cannot contain O" in errors[(5, "vin")].reason
    assert errors[(6, "vin")].reason == "vin is empty but the row has vehicle data"
    assert "in the future" in errors[(7, "purchase_date")].reason
    assert errors[(8, "store")].value == "S9"
    assert errors[(9, "name")].reason == "customer C001 has name 张伟 on row 2"
    assert errors[(10, "customer_id")].reason == "customer_id is empty"
    assert errors[(11, "gender")].reason == "expected 男/女 or M/F"
    assert count(Customer) == 2


def test_english_headers_xlsx_with_date_cells_and_excel_serials(stores, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([])  # a blank line above the header, as hand-made sheets have
    ws.append(["Customer_ID", "Name", "Phone", "Gender", "Birthday", "VIN", "Model", "Tier", "Purchase_Date",
               "Insurance_Expiry", "Insured_Here", "Store"])
    ws.append(["E1", "Li Lei", 13800001111, "M", dt.datetime(1980, 1, 2), "LVGBE40K8KG000001", "卡罗拉", "mid",
               46086, "2027-03-05", 1, "S1"])
    ws.append(["E2", "Han Meimei", "13800002222", "F", "1988-13-01", "", "", "", "", "", "", "S1"])
    path = tmp_path / "export.xlsx"
    wb.save(path)
    report = import_customers(stores, path)
    assert report.imported == 1 and report.rejected == 1
    assert (report.errors[0].row, report.errors[0].column) == (4, "birthday")
    with stores.session() as s:
        v = s.scalar(sa.select(Vehicle).where(Vehicle.vin == "LVGBE40K8KG000001"))
        assert v.purchase_date == dt.date(2026, 3, 5) and v.insured_here
        assert v.customer.birthday == dt.date(1980, 1, 2) and v.customer.phone == "13800001111"


def test_tab_separated_utf8_without_bom(stores, tmp_path):
    lines = ["customer_id\tname\tphone", "T1\t周杰\t13600001111"]
    report = import_customers(stores, write(tmp_path, "t.txt", lines, encoding="utf-8"), store_code="S2")
    assert report.imported == 1 and report.rejected == 0


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        ("姓名,手机号\n张三,13800001111\n".encode("utf-8"), "missing required column(s): customer_id"),
        ("客户编号,姓名,姓名,手机号\n".encode("utf-8"), "the same column appears twice"),
        (b"PK\x03\x04garbage-not-a-zip", "not a readable Excel workbook"),
    ],
)
def test_unreadable_files_import_nothing(stores, tmp_path, count, content, message):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFailed) as err:
        import_customers(stores, path)
    assert message in str(err.value)
    assert count(Customer) == 0


def test_a_50_mb_file_without_the_required_columns_fails_fast_and_clean(stores, tmp_path, count):
    path = tmp_path / "huge.csv"
    line = "x" * 99 + "\n"
    with path.open("w") as fh:
        fh.write("foo,bar\n")
        fh.write(line * (50 * 1024 * 1024 // len(line)))
    with pytest.raises(ImportFailed) as err:
        import_customers(stores, path)
    assert "missing required column(s): customer_id, name, phone" in str(err.value)
    assert count(Customer) == 0


def test_dry_run_validates_and_writes_nothing(stores, tmp_path, count):
    report = import_customers(stores, write(tmp_path, "c.csv", [CN_HEADER, *ROWS]), dry_run=True)
    assert report.imported == 3 and report.dry_run
    assert count(Customer) == 0 and count(ImportRun) == 0


VISIT_HEADER = "客户编号,VIN,进厂日期,类型,有偿,金额,服务顾问,门店,工单号"


def test_visits_import_upsert_and_errors(stores, tmp_path, count):
    import_customers(stores, write(tmp_path, "c.csv", [CN_HEADER, *ROWS]))
    lines = [
        VISIT_HEADER,
        "C001,LVGBE40K8KG123456,2026-03-05,保养,是,\"1,280.50\",刘洋,S1,RO1",
        "C001,LVGBE40K8KG123457,2026/4/1,维修,,900,刘洋,,",
        "C003,,2026年5月6日,索赔,否,0,郑凯,S2,RO2",  # C003 has one car: the VIN is implied
        "C001,LVGBE40K8KG123456,2026-06-01,钣喷,是,2000,,,RO1",  # RO1 reused for another visit
        "C404,,2026-03-05,保养,是,100,,,",
        "C002,LVGBE40K8KG123456,2026-03-05,保养,是,100,,,",  # not C002's car
        "C001,LVGBE40K8KG123456,2026-03-05,洗车,是,100,,,",
        "C001,LVGBE40K8KG123456,2099-03-05,保养,是,100,,,",
        "C001,LVGBE40K8KG123456,2026-07-01,保养,,,,,",
    ]
    path = write(tmp_path, "visits.csv", lines)
    report = import_visits(stores, path)
    assert report.imported == 3 and report.rejected == 6
    reasons = {(e.row, e.column): e.reason for e in report.errors}
    assert "repair order RO1 is on row 2" in reasons[(5, "visit_date")]
    assert reasons[(6, "customer_id")] == "unknown customer (import customers first)"
    assert reasons[(7, "vin")] == "VIN is not a vehicle of customer C002"
    assert reasons[(8, "type")].startswith("expected maintenance/保养")
    assert "in the future" in reasons[(9, "visit_date")]
    assert "no amount to infer" in reasons[(10, "paid")]
    with stores.session() as s:
        visits = {v.visit_date: v for v in s.scalars(sa.select(ServiceVisit))}
        assert visits[dt.date(2026, 3, 5)].amount == Decimal("1280.50")
        assert visits[dt.date(2026, 4, 1)].paid is True  # inferred from the amount
        assert visits[dt.date(2026, 4, 1)].store.code == "S1"  # the customer's store
        claim = visits[dt.date(2026, 5, 6)]
        assert claim.visit_type is VisitType.WARRANTY and not claim.paid and claim.vehicle.vin == "LBVPH1104MSZ12345"
    again = import_visits(stores, path)
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 3)
    assert count(ServiceVisit) == 3


def test_cli_json_report_and_exit_codes(stores, run_cli, tmp_path):
    good = write(tmp_path, "good.csv", [CN_HEADER, *ROWS])
    result = run_cli("import", "customers", str(good), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) | {} == json.loads(result.stdout)
    body = json.loads(result.stdout)
    assert {k: body[k] for k in ("imported", "updated", "rejected", "errors")} == \
        {"imported": 3, "updated": 0, "rejected": 0, "errors": []}
    bad = write(tmp_path, "bad.csv", [CN_HEADER, "C020,坏号,110,男,,,,,,,,,,,,,,S1"])
    result = run_cli("import", "customers", str(bad), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["errors"][0] == {
        "row": 2, "column": "phone", "value": "110",
        "reason": "not a valid mainland mobile number (11 digits starting 13-19)"}
    result = run_cli("import", "visits", str(tmp_path / "missing.csv"))
    assert result.exit_code == 1 and "no such file" in result.stderr
    assert "Traceback" not in result.output
