"""Reading DMS export files: CSV in any encoding Chinese Excel produces, XLSX and XLS.

A reader turns a file into a header row plus data rows numbered as the user sees them in
a spreadsheet (the header is row 1, the first data row is row 2). Anything that makes the
file as a whole unreadable raises :class:`UnreadableFile` before a single row is used.

Hostile or broken files are bounded before they cost memory: a workbook's first sheet is
scanned for its real extent (a single cell at XFD1048576 made the Excel reader allocate
512 GiB for the whole dimension and abort the process), and text in an encoding that only
*looks* decodable (Big5 and Shift-JIS bytes are valid GB18030) is refused by name.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

# Chinese Excel saves "CSV" as GBK; GB18030 is its superset and decodes every GBK file.
_TEXT_ENCODINGS = ("utf-8", "gb18030")
_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Bounds on a workbook's first sheet. A DMS export has 10-40 columns and at most a few hundred
# thousand rows; the Excel reader holds the sheet as a dense rows x columns grid of 32-byte cells,
# so 10 million cells is about 320 MB at most.
MAX_COLUMNS = 256
MAX_CELLS = 10_000_000
MAX_SHEET_XML = 1 << 30  # uncompressed sheet XML read by the extent scan (a 100,000-row export: 72 MB)

# Text that decodes as GB18030 but is really another East Asian encoding reads as rare
# characters and kana: real GBK exports have >= 90 % of their non-ASCII characters among
# GB2312's punctuation and hanzi (measured on names, cities and headers), Big5 read as GBK
# about 20 %, Shift-JIS about 0 %. The sample is the first non-ASCII characters of the file.
_SAMPLE_CHARS = 20_000
_MIN_SAMPLE = 4  # fewer non-ASCII characters than this: too few to judge, keep GB18030
_GB_PLAUSIBLE = 0.6
_OTHER_PLAUSIBLE = 0.8
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class UnreadableFile(Exception):
    """The file cannot be read as a table; nothing from it may be imported."""


@dataclass
class Table:
    header: list[str]
    rows: Iterator[tuple[int, list[object]]]  # (spreadsheet row number, cells)
    total: int | None  # number of data rows when known up front (for progress bars)
    encoding: str | None = None

    @property
    def width(self) -> int:
        """The header's columns, up to its last non-blank cell: cells beyond are extra."""
        named = [i for i, h in enumerate(self.header) if str(h).strip()]
        return named[-1] + 1 if named else 0


def open_table(path: Path) -> Table:
    """Open a CSV/TSV, XLSX or XLS file by content, whatever its name says."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{path}: is a directory") from None
    except OSError as exc:
        raise UnreadableFile(f"{path}: {exc.strerror or exc}") from None
    if size == 0:
        raise UnreadableFile(f"{path.name}: the file is empty")
    if head.startswith(_XLSX_MAGIC):
        _check_xlsx_extent(path)
        return _open_workbook(path)
    if head.startswith(_XLS_MAGIC):
        _check_xls_extent(path)
        return _open_workbook(path)
    return _open_text(path)


def check_readable(data: bytes, name: str) -> None:
    """Refuse what :func:`open_table` would refuse about a file as a whole, cheaply: the text's
    encoding, a workbook's archive or compound-file structure and its sheet list, without reading
    rows or building the workbook. For an upload form, before the file is queued for import (the
    import still checks everything).

    Raises:
        UnreadableFile: empty, binary but no workbook, a broken workbook, an unknown encoding.
    """
    if not data:
        raise UnreadableFile(f"{name}: the file is empty")
    if data.startswith(_XLSX_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                _first_sheet_part(zf)
        except UnreadableFile as exc:
            raise UnreadableFile(f"{name}: {exc}") from None
        except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError, ValueError, EOFError) as exc:
            raise UnreadableFile(f"{name}: not a readable Excel workbook ({exc})") from None
    elif data.startswith(_XLS_MAGIC):
        try:
            _cfb_stream(data, ("Workbook", "Book"))
        except (ValueError, IndexError) as exc:
            raise UnreadableFile(f"{name}: not a readable Excel workbook ({exc})") from None
    else:
        _decode(data, name)


# --------------------------------------------------------------------------- text


def _share(chars: list[str], encoding: str, leads: tuple[tuple[int, int], ...]) -> float:
    """The share of ``chars`` that ``encoding`` writes as two bytes with a lead byte in ``leads``:
    its common characters (GB2312 punctuation and hanzi, Big5 level 1, Shift-JIS kana and JIS level 1)."""
    common = 0
    for ch in chars:
        try:
            b = ch.encode(encoding)
        except UnicodeEncodeError:
            continue
        if len(b) == 2 and any(lo <= b[0] <= hi for lo, hi in leads):
            common += 1
    return common / len(chars)


_GB_COMMON = ((0xA1, 0xA3), (0xB0, 0xF7))
# (codec, name shown to the user, lead bytes of its common characters)
_OTHER_ENCODINGS = (
    ("big5", "Big5 (traditional Chinese, as Excel in Taiwan and Hong Kong saves CSV)", ((0xA1, 0xA3), (0xA4, 0xC6))),
    ("shift_jis", "Shift-JIS (Japanese)", ((0x81, 0x83), (0x88, 0x9F))),
)


def _check_gb18030(data: bytes, text: str, name: str) -> None:
    """Refuse GB18030-decodable text that is really Big5, Shift-JIS or something else."""
    sample = [m.group() for _, m in zip(range(_SAMPLE_CHARS), _NON_ASCII.finditer(text))]
    if len(sample) < _MIN_SAMPLE:
        return
    gb = _share(sample, "gb2312", _GB_COMMON)
    if gb >= _GB_PLAUSIBLE:
        return
    best: tuple[float, str] | None = None
    for codec, label, leads in _OTHER_ENCODINGS:
        try:
            other = data.decode(codec)
        except UnicodeDecodeError:
            continue
        chars = [m.group() for _, m in zip(range(_SAMPLE_CHARS), _NON_ASCII.finditer(other))]
        share = _share(chars, codec, leads) if chars else 0.0
        if share >= _OTHER_PLAUSIBLE and (best is None or share > best[0]):
            best = (share, label)
    advice = "save it as UTF-8 (Excel: \"CSV UTF-8\") or GBK and import again; nothing was imported"
    if best is not None:
        raise UnreadableFile(f"{name}: the text looks like {best[1]}, not UTF-8 or GBK: read as GBK its names "
                             f"would be garbled; {advice}")
    raise UnreadableFile(f"{name}: unknown text encoding: the bytes decode as GBK, but "
                         f"{100 - round(100 * gb)} % of its characters would be rare ones (garbled text); {advice}")


def _decode(data: bytes, name: str) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"{name}: UTF-8 byte-order mark but invalid UTF-8 at byte {exc.start + 3}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise UnreadableFile(f"{name}: UTF-16 byte-order mark but invalid UTF-16") from None
    if b"\x00" in data[:65536]:
        raise UnreadableFile(f"{name}: not a text file (binary content); expected CSV, XLSX or XLS")
    for encoding in _TEXT_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "gb18030":
            _check_gb18030(data, text, name)
        return text, encoding
    for codec, label, _leads in _OTHER_ENCODINGS:
        try:
            data.decode(codec)
        except UnicodeDecodeError:
            continue
        raise UnreadableFile(f"{name}: the text looks like {label}, not UTF-8 or GBK; save it as UTF-8 "
                             f"(Excel: \"CSV UTF-8\") and import again")
    raise UnreadableFile(f"{name}: unknown text encoding (expected UTF-8, GBK or GB18030)")


def _open_text(path: Path) -> Table:
    data = path.read_bytes()
    text, encoding = _decode(data, path.name)
    del data
    # No field may be longer than the file itself: the csv module's default limit (131,072
    # characters) made one long cell fail the whole file. Over-long cells are the rows' problem
    # (the importer rejects that row and keeps the others).
    if csv.field_size_limit() < len(text) + 1:
        csv.field_size_limit(len(text) + 1)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise UnreadableFile(f"{path.name}: the file is empty") from None
    except csv.Error as exc:
        raise UnreadableFile(f"{path.name}: not a CSV file ({exc})") from None
    total = text.count("\n")  # an upper bound: quoted cells may hold newlines

    def rows() -> Iterator[tuple[int, list[object]]]:
        number = 1
        try:
            for cells in reader:
                number = reader.line_num
                yield number, cells
        except csv.Error as exc:
            raise UnreadableFile(f"{path.name}: broken CSV after row {number}: {exc}") from None

    return Table(header=[str(h) for h in header], rows=rows(), total=total, encoding=encoding)


# --------------------------------------------------------------------------- workbooks

_NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
# Row and cell start tags of a worksheet, with or without a namespace prefix.
_SHEET_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(row|c)(?=[\s/>])([^>]*)>")
_REF = re.compile(rb"""\br\s*=\s*["']([A-Za-z]*)([0-9]*)["']""")


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def _column_letters(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def _first_sheet_part(zf: zipfile.ZipFile) -> str:
    """The archive path of the workbook's first sheet (the one that is imported)."""

    def read_xml(part: str) -> ElementTree.Element:
        info = zf.getinfo(part)
        if info.file_size > 16 << 20:
            raise UnreadableFile(f"{part} is {info.file_size:,} bytes: not a DMS export")
        return ElementTree.fromstring(zf.read(info))

    def target(base: str, rel_target: str) -> str:
        if rel_target.startswith("/"):
            return rel_target.lstrip("/")
        return posixpath.normpath(posixpath.join(posixpath.dirname(base), rel_target))

    workbook = "xl/workbook.xml"
    names = set(zf.namelist())
    if "_rels/.rels" in names:
        for rel in read_xml("_rels/.rels").iter(_NS_PKG_REL):
            if rel.get("Type", "").endswith("/officeDocument"):
                workbook = target("", rel.get("Target", workbook))
    rels_part = posixpath.join(posixpath.dirname(workbook), "_rels", posixpath.basename(workbook) + ".rels")
    sheet = next((el for el in read_xml(workbook).iter() if el.tag.endswith("}sheet")), None)
    if sheet is None:
        raise UnreadableFile("the workbook has no sheets")
    rid = sheet.get(f"{{{_NS_REL}}}id")
    for rel in read_xml(rels_part).iter(_NS_PKG_REL):
        if rel.get("Id") == rid:
            return target(workbook, rel.get("Target", ""))
    raise UnreadableFile("the workbook's first sheet is missing")


def _sheet_extent(stream: io.BufferedIOBase) -> tuple[int, int, int, int]:
    """Scan a worksheet's XML for the cells that hold something, without building it.

    Returns:
        (last row, last column, row and column of the cell that sets the last column), 1-based.
        Cells given without a reference take the next position, as Excel does.
    """
    row = col = 0
    last_row = last_col = far_row = far_col = 0
    read = 0
    tail = b""
    while True:
        chunk = stream.read(1 << 20)
        read += len(chunk)
        if read > MAX_SHEET_XML:
            raise UnreadableFile(f"the first sheet is more than {MAX_SHEET_XML >> 20} MB of XML: not a DMS export")
        data = tail + chunk
        cut = data.rfind(b"<") if chunk else len(data)
        if cut < 0:
            cut = len(data)
        for m in _SHEET_TAG.finditer(data, 0, cut):
            attrs = m.group(2)
            ref = _REF.search(attrs)
            if m.group(1) == b"row":
                row = int(ref.group(2)) if ref and ref.group(2) else row + 1
                col = 0
                continue
            if ref and ref.group(1):
                col = _column_number(ref.group(1))
                if ref.group(2):
                    row = int(ref.group(2))
            else:
                col += 1
            if attrs.rstrip().endswith(b"/"):
                continue  # <c .../>: a styled cell without a value
            last_row = max(last_row, row)
            if col > last_col:
                last_col, far_row, far_col = col, row, col
        tail = data[cut:]
        if not chunk:
            return last_row, last_col, far_row, far_col


def _check_xlsx_extent(path: Path) -> None:
    """Refuse an XLSX whose first sheet would not fit the bounds, before the Excel reader sees it.

    The reader allocates the whole rectangle from A1 to the farthest cell; the sheet's declared
    ``<dimension>`` is ignored (it may lie either way), the cells themselves are counted.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            part = _first_sheet_part(zf)
            with zf.open(part) as stream:
                rows, cols, far_row, far_col = _sheet_extent(stream)
    except UnreadableFile as exc:
        raise UnreadableFile(f"{path.name}: {exc}") from None
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError, ValueError, EOFError) as exc:
        raise UnreadableFile(f"{path.name}: not a readable Excel workbook ({exc})") from None
    _refuse_extent(path.name, rows, cols, far_row, far_col)


def _refuse_extent(name: str, rows: int, cols: int, far_row: int, far_col: int) -> None:
    if cols > MAX_COLUMNS or rows * cols > MAX_CELLS:
        far = f"{_column_letters(far_col)}{far_row}" if cols > MAX_COLUMNS else f"row {rows:,}"
        raise UnreadableFile(
            f"{name}: the first sheet reaches {far}: {rows:,} rows x {cols:,} columns, more than is read "
            f"(at most {MAX_COLUMNS} columns and {MAX_CELLS:,} cells); is there a stray cell far outside the "
            f"table? Delete it, or copy the table into a new workbook")


# ----------------------------------------------------------------------------- XLS
# An XLS file is a compound file (OLE2: sectors chained by a FAT) holding the BIFF "Workbook"
# stream: records of (type, length, data). Its first sheet's cell records give the real extent,
# as the sheet XML does for XLSX; reading them costs a pass over the stream, nothing more.

_CFB_END = 0xFFFFFFFE
_CFB_SPECIAL = 0xFFFFFFFA  # sector numbers from here up are markers, not sectors
# BIFF cell records that hold a value: FORMULA, RSTRING, LABELSST, NUMBER, LABEL, BOOLERR, RK (one
# cell at row, column) and MULRK (a run of cells ending at the column in its last two bytes).
_BIFF_CELLS = frozenset({0x0006, 0x00D6, 0x00FD, 0x0203, 0x0204, 0x0205, 0x027E})
_BIFF_MULRK = 0x00BD
_BIFF_BOUNDSHEET, _BIFF_EOF, _BIFF_FILEPASS = 0x0085, 0x000A, 0x002F


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 4], "little")


def _cfb_stream(data: bytes, names: tuple[str, ...]) -> bytes:
    """The first of ``names`` found in a compound file, by its sector chain (loops and
    out-of-range sectors are errors, not hangs)."""
    size = 1 << _u16(data, 0x1E)
    mini_size = 1 << _u16(data, 0x20)
    if size not in (512, 4096) or mini_size != 64:
        raise ValueError("bad compound-file header")
    n_sectors = (len(data) - size) // size

    def sector(n: int) -> bytes:
        if n >= n_sectors:
            raise ValueError(f"sector {n} is outside the file")
        return data[(n + 1) * size:(n + 2) * size]

    fat_sectors = [_u32(data, 0x4C + 4 * i) for i in range(109)]
    difat, seen = _u32(data, 0x44), 0
    while difat < _CFB_SPECIAL and seen <= n_sectors:
        block = sector(difat)
        fat_sectors += [_u32(block, 4 * i) for i in range(size // 4 - 1)]
        difat, seen = _u32(block, size - 4), seen + 1
    fat = b"".join(sector(n) for n in fat_sectors[:_u32(data, 0x2C)] if n < _CFB_SPECIAL)

    def chain(first: int, table: bytes, read, limit: int) -> bytes:
        out, n, steps = [], first, 0
        while n < _CFB_SPECIAL:
            steps += 1
            if steps > limit or 4 * n + 4 > len(table):
                raise ValueError("broken sector chain")
            out.append(read(n))
            n = _u32(table, 4 * n)
        return b"".join(out)

    directory = chain(_u32(data, 0x30), fat, sector, n_sectors)
    entries = [directory[i:i + 128] for i in range(0, len(directory) - 127, 128)]
    if not entries:
        raise ValueError("no directory")
    by_name = {}
    for e in entries:
        name = e[:max(_u16(e, 64) - 2, 0)].decode("utf-16-le", "replace")
        if e[66] == 2:  # a stream
            by_name.setdefault(name, e)
    entry = next((by_name[n] for n in names if n in by_name), None)
    if entry is None:
        raise ValueError("no workbook stream")
    start, length = _u32(entry, 116), _u32(entry, 120)
    if length < _u32(data, 0x38):  # small streams live in the mini stream
        root = entries[0]
        mini_stream = chain(_u32(root, 116), fat, sector, n_sectors)
        mini_fat = chain(_u32(data, 0x3C), fat, sector, n_sectors)
        stream = chain(start, mini_fat, lambda n: mini_stream[n * mini_size:(n + 1) * mini_size],
                       len(mini_stream) // mini_size + 1)
    else:
        stream = chain(start, fat, sector, n_sectors)
    return stream[:length]


def _xls_extent(stream: bytes) -> tuple[int, int, int, int]:
    """(last row, last column, row and column of the cell that sets it) of the first sheet, 1-based."""
    at, first_sheet = 0, None
    while at + 4 <= len(stream):  # the workbook globals, up to their EOF
        kind, length = _u16(stream, at), _u16(stream, at + 2)
        if kind == _BIFF_FILEPASS:
            return 0, 0, 0, 0  # encrypted: the Excel reader says so
        if kind == _BIFF_BOUNDSHEET and first_sheet is None:
            first_sheet = _u32(stream, at + 4)
        at += 4 + length
        if kind == _BIFF_EOF:
            break
    if first_sheet is None:
        raise ValueError("the workbook has no sheets")
    at, last_row, last_col, far_row, far_col = first_sheet, 0, 0, 0, 0
    while at + 4 <= len(stream):
        kind, length = _u16(stream, at), _u16(stream, at + 2)
        body = stream[at + 4:at + 4 + length]
        at += 4 + length
        if kind == _BIFF_EOF:
            break
        if kind in _BIFF_CELLS and length >= 4:
            row, col = _u16(body, 0) + 1, _u16(body, 2) + 1
        elif kind == _BIFF_MULRK and length >= 6:
            row, col = _u16(body, 0) + 1, _u16(body, length - 2) + 1
        else:
            continue
        last_row = max(last_row, row)
        if col > last_col:
            last_col, far_row, far_col = col, row, col
    return last_row, last_col, far_row, far_col


def _check_xls_extent(path: Path) -> None:
    """Refuse an XLS whose first sheet would not fit the bounds, before the Excel reader builds it."""
    try:
        stream = _cfb_stream(path.read_bytes(), ("Workbook", "Book"))
        extent = _xls_extent(stream)
    except (ValueError, IndexError, OSError) as exc:
        raise UnreadableFile(f"{path.name}: not a readable Excel workbook ({exc})") from None
    _refuse_extent(path.name, *extent)


def _open_workbook(path: Path) -> Table:
    try:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(str(path))
        if not workbook.sheet_names:
            raise UnreadableFile(f"{path.name}: the workbook has no sheets")
        sheet = workbook.get_sheet_by_index(0)
    except UnreadableFile:
        raise
    except Exception as exc:  # calamine raises its own types for corrupt archives
        raise UnreadableFile(f"{path.name}: not a readable Excel workbook ({exc})") from None
    # Both formats were scanned above; this is the reader's own word for the same bounds.
    if sheet.width > MAX_COLUMNS or sheet.height * sheet.width > MAX_CELLS:
        raise UnreadableFile(
            f"{path.name}: the first sheet spans {sheet.total_height:,} rows x {sheet.total_width:,} columns, more "
            f"than is read (at most {MAX_COLUMNS} columns and {MAX_CELLS:,} cells); is there a stray cell far "
            f"outside the table? Delete it, or copy the table into a new workbook")
    rows_iter = enumerate(sheet.iter_rows(), start=1)  # iter_rows starts at row 1, columns at the first used one
    header: list[str] | None = None
    for number, cells in rows_iter:
        # Leading blank rows are common above the header in hand-made sheets.
        if not all(c in ("", None) for c in cells):
            header = [("" if c is None else str(c)) for c in cells]
            header_row = number
            break
    if header is None:
        raise UnreadableFile(f"{path.name}: the first sheet is empty")
    last_row = sheet.end[0] + 1 if sheet.end else header_row
    return Table(header=header, rows=rows_iter, total=max(last_row - header_row, 0))
