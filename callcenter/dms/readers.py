"""Reading DMS export files: CSV in any encoding Chinese Excel produces, XLSX and XLS.

A reader turns a file into a header row plus data rows numbered as the user sees them in
a spreadsheet (the header is row 1, the first data row is row 2). Anything that makes the
file as a whole unreadable raises :class:`UnreadableFile` before a single row is used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Chinese Excel saves "CSV" as GBK; GB18030 is its superset and decodes every GBK file.
_TEXT_ENCODINGS = ("utf-8", "gb18030")
_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class UnreadableFile(Exception):
    """The file cannot be read as a table; nothing from it may be imported."""


@dataclass
class Table:
    header: list[str]
    rows: Iterator[tuple[int, list[object]]]  # (spreadsheet row number, cells)
    total: int | None  # number of data rows when known up front (for progress bars)
    encoding: str | None = None


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
    if head.startswith(_XLSX_MAGIC) or head.startswith(_XLS_MAGIC):
        return _open_workbook(path)
    return _open_text(path)


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
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise UnreadableFile(f"{name}: unknown text encoding (expected UTF-8, GBK or GB18030)")


def _open_text(path: Path) -> Table:
    data = path.read_bytes()
    text, encoding = _decode(data, path.name)
    del data
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


def _open_workbook(path: Path) -> Table:
    try:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(str(path))
        if not workbook.sheet_names:
            raise UnreadableFile(f"{path.name}: the workbook has no sheets")
        sheet = workbook.get_sheet_by_index(0)
        data = sheet.to_python(skip_empty_area=False)
    except UnreadableFile:
        raise
    except Exception as exc:  # calamine raises its own types for corrupt archives
        raise UnreadableFile(f"{path.name}: not a readable Excel workbook ({exc})") from None
    # Leading blank rows are common above the header in hand-made sheets.
    start = 0
    while start < len(data) and all(c in ("", None) for c in data[start]):
        start += 1
    if start >= len(data):
        raise UnreadableFile(f"{path.name}: the first sheet is empty")
    header = [("" if c is None else str(c)) for c in data[start]]

    def rows() -> Iterator[tuple[int, list[object]]]:
        for index in range(start + 1, len(data)):
            yield index + 1, data[index]

    return Table(header=header, rows=rows(), total=len(data) - start - 1)
