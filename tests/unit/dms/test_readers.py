"""Hostile and mis-encoded DMS files, at the reader: bounded before they cost memory, refused by
name when their text would be garbled. Each test builds the real file (a workbook, encoded bytes)."""

import struct
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


def _record(kind, body=b""):
    return struct.pack("<HH", kind, len(body)) + body


def xls_bytes(cells):
    """A minimal BIFF8 workbook in a compound file: one sheet with ``cells`` [(row, col, value)], 0-based."""
    bof_globals = _record(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0, 0, 0, 0))
    sheet_name = "Sheet1"
    boundsheet_body = lambda off: struct.pack("<IBBBB", off, 0, 0, len(sheet_name), 0) + sheet_name.encode("latin-1")
    globals_len = len(bof_globals) + len(_record(0x0085, boundsheet_body(0))) + len(_record(0x000A))
    sheet = [_record(0x0809, struct.pack("<HHHHII", 0x0600, 0x0010, 0, 0, 0, 0))]
    for row, col, value in cells:
        if isinstance(value, str):
            text = value.encode("utf-16-le")
            sheet.append(_record(0x0204, struct.pack("<HHHHB", row, col, 0, len(value), 1) + text))
        else:
            sheet.append(_record(0x0203, struct.pack("<HHHd", row, col, 0, float(value))))
    sheet.append(_record(0x000A))
    stream = bof_globals + _record(0x0085, boundsheet_body(globals_len)) + _record(0x000A) + b"".join(sheet)
    stream += b"\x00" * max(0, 4096 - len(stream))  # >= 4096 bytes: a regular stream, no mini stream
    n = -(-len(stream) // 512)
    fat = [0xFFFFFFFD, 0xFFFFFFFE] + [3 + i for i in range(n - 1)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))
    header = bytearray(512)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 0x18, 0x003E, 0x0003, 0xFFFE, 9, 6)
    struct.pack_into("<IIIIIIII", header, 0x2C, 1, 1, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)
    struct.pack_into("<109I", header, 0x4C, 0, *([0xFFFFFFFF] * 108))

    def entry(name, kind, child, start, size):
        e = bytearray(128)
        raw = name.encode("utf-16-le") + b"\x00\x00"
        e[0:len(raw)] = raw
        struct.pack_into("<HBB", e, 64, len(raw) if name else 0, kind, 1)
        struct.pack_into("<III", e, 68, 0xFFFFFFFF, 0xFFFFFFFF, child)
        struct.pack_into("<II", e, 116, start, size)
        return bytes(e)

    directory = (entry("Root Entry", 5, 1, 0xFFFFFFFE, 0) + entry("Workbook", 2, 0xFFFFFFFF, 2, len(stream))
                 + entry("", 0, 0xFFFFFFFF, 0, 0) * 2)
    body = struct.pack("<128I", *fat) + directory + stream + b"\x00" * (n * 512 - len(stream))
    return bytes(header) + body


@pytest.mark.attack
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


@pytest.mark.attack
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


@pytest.mark.attack
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


def test_an_xls_workbook_reads_through_its_compound_file(tmp_path):
    path = tmp_path / "export.xls"
    path.write_bytes(xls_bytes([(0, 0, "customer_id"), (0, 1, "name"), (0, 2, "phone"),
                                (1, 0, "C1"), (1, 1, "张三"), (1, 2, 13800001111)]))
    table = open_table(path)
    assert table.header == ["customer_id", "name", "phone"]
    assert list(table.rows) == [(2, ["C1", "张三", 13800001111.0])]


@pytest.mark.attack
def test_a_far_cell_xls_is_refused_before_the_sheet_is_built(tmp_path):
    # Before: a 5.6 KB XLS with one cell at IV65536 made the reader build the 65,536 x 256 grid:
    # 1.06 GB of memory and 23 s on the test machine, for nothing.
    path = tmp_path / "far.xls"
    path.write_bytes(xls_bytes([(0, 0, "customer_id"), (0, 1, "name"), (1, 0, "C1"), (65535, 255, "x")]))
    with pytest.raises(UnreadableFile) as err:
        open_table(path)
    # "reaches": the scan of the cell records refused it, before the reader built anything
    assert "reaches row 65,536: 65,536 rows x 256 columns" in str(err.value) and "stray cell" in str(err.value)


def test_a_broken_xls_is_an_unreadable_file_not_a_hang(tmp_path):
    data = bytearray(xls_bytes([(0, 0, "customer_id")]))
    struct.pack_into("<I", data, 512 + 4 * 2, 2)  # the stream's first sector points at itself
    path = tmp_path / "loop.xls"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFile, match="not a readable Excel workbook"):
        open_table(path)
