"""Hostile and mis-encoded DMS files, at the reader: bounded before they cost memory, refused by
name when their text would be garbled. Each test builds the real file (a workbook, encoded bytes)."""

import zipfile

import openpyxl
import pytest

from callcenter.dms.readers import MAX_COLUMNS, UnreadableFile, open_table

NAMES_BIG5 = ["張偉", "陳美玲", "林志明", "黃淑芬"]  # traditional Chinese, as a Taiwan/Hong Kong DMS writes
NAMES_SJIS = ["田中太郎", "佐藤花子", "鈴木一郎", "高橋みゆき"]
NAMES_GBK = ["张伟", "王淼", "李堃", "欧阳娜娜"]  # 淼 and 堃: rare but real given names


def _csv(names, cities):
    lines = ["customer_id,name,phone,city"]
    lines += [f"C{i},{n},1380000111{i},{c}" for i, (n, c) in enumerate(zip(names, cities))]
    return "\r\n".join(lines) + "\r\n"


def far_cell_xlsx(path, cell="XFD1048576"):
    """A 1-2 KB workbook: a small table plus one cell at the sheet's last row and column."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["customer_id", "name", "phone"])
    ws.append(["C1", "张三", "13800001111"])
    ws[cell] = "x"
    wb.save(path)
    return path


def test_a_far_cell_at_the_last_row_and_column_is_refused_before_the_sheet_is_built(tmp_path):
    # Before: the Excel reader allocated the whole 1,048,576 x 16,384 grid (512 GiB) and the
    # process aborted with a native backtrace (reproduced under a 2 GB address-space limit).
    path = far_cell_xlsx(tmp_path / "far.xlsx")
    assert path.stat().st_size < 6000
    with pytest.raises(UnreadableFile) as err:
        open_table(path)
    message = str(err.value)
    assert "XFD1048576" in message and f"at most {MAX_COLUMNS} columns" in message
    assert "stray cell" in message


def test_the_declared_dimension_is_ignored_either_way(tmp_path):
    """A lying <dimension> (huge, or tiny) does not decide anything: the cells do."""
    path = tmp_path / "lying.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["customer_id", "name", "phone"])
    ws.append(["C1", "张三", "13800001111"])
    wb.save(path)
    patched = tmp_path / "patched.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<dimension ref="A1:C2"', b'<dimension ref="A1:XFD1048576"')
                assert b"XFD1048576" in data
            dst.writestr(item, data)
    table = open_table(patched)
    assert table.header == ["customer_id", "name", "phone"]
    assert [cells for _, cells in table.rows] == [["C1", "张三", "13800001111"]]


def test_a_far_row_in_column_a_streams_without_building_the_gap(tmp_path):
    # One column wide: within the bounds; the blank rows in between are not data.
    path = far_cell_xlsx(tmp_path / "tall.xlsx", cell="A1048576")
    table = open_table(path)
    rows = [(n, cells) for n, cells in table.rows if any(c not in ("", None) for c in cells)]
    assert rows == [(2, ["C1", "张三", "13800001111"]), (1048576, ["x", "", ""])]


@pytest.mark.parametrize("names,cities,encoding,named", [
    (NAMES_BIG5, ["臺北市", "高雄市", "新北市", "台中市"], "big5", "Big5"),
    (NAMES_SJIS, ["東京都", "大阪府", "京都府", "横浜市"], "shift_jis", "Shift-JIS"),
])
def test_big5_and_shift_jis_are_refused_by_name_not_garbled(tmp_path, names, cities, encoding, named):
    # Before: both decoded as GB18030 without an error and imported garbled names (眎岸, 揷拞懢榊).
    path = tmp_path / "export.csv"
    path.write_bytes(_csv(names, cities).encode(encoding))
    path.read_bytes().decode("gb18030")  # the trap: the bytes are valid GB18030
    with pytest.raises(UnreadableFile) as err:
        open_table(path)
    assert f"looks like {named}" in str(err.value) and "UTF-8" in str(err.value)


@pytest.mark.parametrize("encoding,bom", [("gbk", b""), ("gb18030", b""), ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"),
                                          ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_the_encodings_chinese_excel_writes_still_read_right(tmp_path, encoding, bom):
    path = tmp_path / "export.csv"
    path.write_bytes(bom + _csv(NAMES_GBK, ["长沙市", "株洲市", "湘潭市", "岳阳市"]).encode(encoding))
    table = open_table(path)
    assert [cells[1] for _, cells in table.rows] == NAMES_GBK


def test_a_200000_character_field_does_not_break_the_file(tmp_path):
    # Before: the csv module's 131,072-character field limit failed the whole file ("broken CSV").
    path = tmp_path / "long.csv"
    path.write_text(f"customer_id,name,phone\nC1,{'长' * 200_000},13800001111\nC2,李娜,13900001111\n",
                    encoding="utf-8")
    rows = list(open_table(path).rows)
    assert [len(cells[1]) for _, cells in rows] == [200_000, 2]


def test_width_is_the_header_up_to_its_last_named_column(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("customer_id,name,phone,,\nC1,a,b\n", encoding="utf-8")
    assert open_table(path).width == 3
