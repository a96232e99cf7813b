"""CSV and XLSX downloads: Excel-friendly encoding, formula injection neutralised."""

import io

from openpyxl import load_workbook

from web.export import Table, to_csv, to_xlsx

TABLE = Table("反馈率", [("store", "门店"), ("rate", "反馈率"), ("note", "备注")],
              [{"store": "锦华丰田岳麓店", "rate": 0.0512345, "note": "=HYPERLINK(\"http://x\")"},
               {"store": "二店", "rate": None, "note": "@SUM(A1)"}])


def test_csv_starts_with_a_bom_and_keeps_chinese_and_neutralises_formulas():
    response = to_csv([TABLE], "反馈率-all")
    body = response.get_data().decode("utf-8")
    assert body.startswith("\ufeff门店,反馈率,备注")
    assert "锦华丰田岳麓店,0.0512," in body
    assert "'=HYPERLINK" in body and "'@SUM" in body
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]


def test_xlsx_has_a_sheet_per_table_with_its_header():
    response = to_xlsx([TABLE, Table("第二张", [("a", "A")], [{"a": 1}])], "report")
    wb = load_workbook(io.BytesIO(response.get_data()))
    assert wb.sheetnames == ["反馈率", "第二张"]
    rows = list(wb["反馈率"].values)
    assert rows[0] == ("门店", "反馈率", "备注")
    assert rows[1][0] == "锦华丰田岳麓店" and rows[1][2].startswith("'=")
    assert response.mimetype.endswith("spreadsheetml.sheet")
