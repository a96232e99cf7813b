"""Report tables as CSV and XLSX downloads.

CSV is UTF-8 with a byte-order mark, which is what Excel on Chinese Windows needs to show
Chinese text instead of mojibake. Cells that a spreadsheet would run as formulas (starting with
``=``, ``+``, ``-``, ``@``) are prefixed with an apostrophe (CSV injection). Runs on the request's
worker thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from flask import Response

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Table:
    title: str
    columns: Sequence[tuple[str, str]]  # (key, header)
    rows: list[dict]


def _safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "ignore").decode() or "report"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def to_csv(tables: list[Table], filename: str) -> Response:
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf)
    for i, table in enumerate(tables):
        if i:
            writer.writerow([])
        if len(tables) > 1:
            writer.writerow([table.title])
        writer.writerow([header for _, header in table.columns])
        for row in table.rows:
            writer.writerow([_safe(_cell(row.get(key))) for key, _ in table.columns])
    response = Response(buf.getvalue().encode("utf-8"), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = _disposition(filename + ".csv")
    return response


def to_xlsx(tables: list[Table], filename: str) -> Response:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook(write_only=False)
    wb.remove(wb.active)
    for table in tables:
        ws = wb.create_sheet(_sheet_name(table.title, wb.sheetnames))
        ws.append([header for _, header in table.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            ws.append([_safe(_cell(row.get(key))) for key, _ in table.columns])
        for i, (_, header) in enumerate(table.columns, start=1):
            ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = max(10, min(40, len(str(header)) * 2 + 4))
        ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    response = Response(buf.getvalue(),
                        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = _disposition(filename + ".xlsx")
    return response


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else ""
    if isinstance(value, float):
        return round(value, 4)
    return value if isinstance(value, (int, str)) else str(value)


def _sheet_name(title: str, taken: list[str]) -> str:
    name = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "Sheet"
    base, n = name, 2
    while name in taken:
        name = f"{base[:28]}-{n}"
        n += 1
    return name


def respond(fmt: str, tables: list[Table], filename: str) -> Response:
    return to_xlsx(tables, filename) if fmt == "xlsx" else to_csv(tables, filename)
