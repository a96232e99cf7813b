"""Import of DMS exports (customers with vehicles, service visits) into the database.

Rules, as users rely on them (docs/import-format.md):
- Every valid row is imported; a row with errors is rejected with its row number, column,
  value and reason; a file that cannot be read as a whole imports nothing.
- Re-importing the same file changes nothing: customers are upserted by customer_id, vehicles
  by VIN, visits by repair-order number or by customer|VIN|date|type.
- Blank cells never erase stored values.
- The whole import is one transaction: an interruption leaves the database as it was.

Dealer groups: a customer belongs to the group (``id_scope="group"``: one customer number, one
person in every store) and each row's store is its car's store, so one customer may own cars of
several stores; the customer's home store is the first that imported them. Stores whose DMS
numbers customers on its own import with ``id_scope="store"``: the number is then the store's
(the same number in two stores is two people). An import on behalf of one store
(``acting_store``: a store's administrator or API token) never changes another store's
customers, cars or visits: every upsert checks the store of the record it would change.

Bulk work goes through SQLAlchemy Core with executemany (multi-row VALUES on PostgreSQL) so that
100,000 rows take seconds, not minutes. Runs on the calling thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from callcenter.dms.fields import (
    CUSTOMER_COLUMNS,
    CUSTOMER_FIELDS,
    VEHICLE_FIELDS,
    VISIT_COLUMNS,
    Column,
    map_header,
    tier_for_brand,
)
from callcenter.dms.readers import UnreadableFile, open_table
from callcenter.storage import Database
from callcenter.storage.models import Customer, ImportRun, ServiceVisit, Store, Vehicle, utcnow

logger = logging.getLogger(__name__)

MAX_STORED_ERRORS = 200
MAX_WARNINGS = 50  # rows named one by one in the report's warnings; the rest are counted
# The longest cell a known column reads. The longest valid value is 100 characters (a name); a
# 200,000-character cell is rejected with its row before any parser sees it.
MAX_CELL_CHARS = 1000
ID_SCOPES = ("group", "store")
ROW = "(row)"  # the error's "column" when the row as a whole is wrong
_CHUNK = 500  # IN-list size: well under SQLite's bound-parameter limit

Progress = Callable[[int], None]


@dataclass
class RowError:
    row: int
    column: str
    value: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "value": self.value, "reason": self.reason}


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    _warned: dict[str, int] = field(default_factory=dict, repr=False)
    # Rows with non-blank cells beyond the header: row -> (cells, header columns, the extra cells)
    _shifted: dict[int, tuple[int, int, list]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {
            "imported": self.imported, "updated": self.updated, "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "unchanged": self.unchanged, "rows": self.rows, "dry_run": self.dry_run,
            "warnings": self.warnings,
        }

    @property
    def exit_code(self) -> int:
        return 2 if self.rejected else 0

    def warn(self, kind: str, message: str) -> None:
        """Add a warning; past MAX_WARNINGS of one kind they are counted (see :meth:`close_warnings`)."""
        n = self._warned[kind] = self._warned.get(kind, 0) + 1
        if n <= MAX_WARNINGS:
            self.warnings.append(message)

    def reject(self, errors: list[RowError]) -> None:
        """Reject a row. A row with cells beyond the header gets that as its reason: an unquoted
        comma in a CSV value (an amount written 1,280, an address) splits it in two and shifts
        every cell after it, and the shifted cells then fail checks that point at the wrong cell."""
        self.rejected += 1
        shifted = self._shifted.pop(errors[0].row, None) if errors else None
        if shifted is not None:
            n_cells, width, extra = shifted
            reasons = "; ".join(f"{e.column} = {e.value!r}: {e.reason}" for e in errors[:3])
            errors = [RowError(errors[0].row, ROW, _show(extra[0]),
                               f"the row has {n_cells} cells but the header has {width} columns: likely an unquoted "
                               f"comma in a value, which shifts the cells after it (quote that value or remove the "
                               f"comma); the shifted cells read as: {reasons}")]
        self.errors.extend(errors)

    def close_warnings(self) -> None:
        for number, (n_cells, width, extra) in sorted(self._shifted.items()):
            self.warn("cells beyond the header ignored",
                      f"row {number}: {n_cells} cells but the header has {width} columns; the extra cells "
                      f"({_show(', '.join(map(str, extra)))}) were ignored (an unquoted comma in a value shifts "
                      f"the cells after it: check the row)")
        self._shifted = {}
        for kind, n in self._warned.items():
            if n > MAX_WARNINGS:
                self.warnings.append(f"... and {n - MAX_WARNINGS} more rows: {kind}")
        self._warned = {}


class ImportFailed(Exception):
    """The file as a whole cannot be imported (unreadable, missing columns, no store, no data rows)."""


def _show(value: object) -> str:
    s = "" if value is None else str(value)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Rows:
    """Parses rows of a table against column specs, collecting per-cell errors."""

    def __init__(self, columns: tuple[Column, ...], index: dict[str, int], width: int, report: ImportReport,
                 progress: Progress | None) -> None:
        self.specs = [(c.name, c.parse, index[c.name]) for c in columns if c.name in index]
        self.width = width
        self.report = report
        self.progress = progress

    def parse(self, rows: Iterable[tuple[int, list[object]]]) -> Iterator[tuple[int, dict, list[RowError]]]:
        done = 0
        for number, cells in rows:
            done += 1
            if self.progress and done % 1000 == 0:
                self.progress(1000)
            if all(_is_blank(c) for c in cells):
                continue  # spreadsheets end with blank rows; they are not data
            self.report.rows += 1
            values: dict[str, object] = {}
            errors: list[RowError] = []
            for name, parse, i in self.specs:
                raw = cells[i] if i < len(cells) else None
                if _is_blank(raw):
                    values[name] = None
                    continue
                if isinstance(raw, str) and len(raw) > MAX_CELL_CHARS:
                    errors.append(RowError(number, name, _show(raw), f"{len(raw):,} characters: longer than any "
                                                                     f"{name} (at most {MAX_CELL_CHARS} read)"))
                    continue
                try:
                    values[name] = parse(raw.strip() if isinstance(raw, str) else raw)
                except ValueError as exc:
                    errors.append(RowError(number, name, _show(raw), str(exc)))
            extra = [c for c in cells[self.width:] if not _is_blank(c)]
            if extra:  # a warning if the row is imported, the reason if it is rejected
                self.report._shifted[number] = (len(cells), self.width, extra)
            yield number, values, errors
        if self.progress:
            self.progress(done % 1000)


def _reject(report: ImportReport, errors: list[RowError]) -> None:
    report.reject(errors)


def _open(path: Path, columns: tuple[Column, ...]):
    try:
        table = open_table(path)
    except UnreadableFile as exc:
        raise ImportFailed(str(exc)) from None
    index, missing, duplicates = map_header(table.header, columns)
    if missing:
        hint = ""
        if table.encoding == "gb18030" and not index:
            hint = " (no header was recognised: is the file in another encoding?)"
        raise ImportFailed(f"{path.name}: missing required column(s): {', '.join(missing)}{hint}; "
                           f"found: {', '.join(h for h in table.header if h.strip()) or 'nothing'}")
    if duplicates:
        raise ImportFailed(f"{path.name}: the same column appears twice: {', '.join(duplicates)}")
    return table, index


def _no_data_rows(path: Path, report: ImportReport) -> None:
    if report.rows == 0:
        raise ImportFailed(f"{path.name}: no data rows (the file has only a header): nothing to import")


@dataclass(frozen=True)
class _Scope:
    """Where the rows of one import go, resolved once per import."""

    stores: dict[str, int]  # store code and name -> id
    codes: dict[int, str]  # id -> code
    default: int | None  # the store of rows that name none (--store, the acting store, the only store)
    acting: int | None  # the store on whose behalf the import runs: nothing of another store changes
    by_store: bool  # id_scope == "store": customer numbers are the store's

    def row_store(self, number: int, name: object, errors: list[RowError]) -> int | None:
        """The row's store: its store cell, else the default; errors for unknown or foreign stores."""
        if name is None:
            return self.default
        store_id = self.stores.get(name)
        if store_id is None:
            errors.append(RowError(number, "store", _show(name), "unknown store (add it with `callcenter stores add`)"))
        elif self.acting is not None and store_id != self.acting:
            errors.append(RowError(number, "store", _show(name), f"another store's row: this import is for store "
                                                                  f"{self.codes[self.acting]} only"))
            return None
        return store_id

    def foreign(self, store_id: int | None) -> bool:
        """Whether a stored record of ``store_id`` is out of this import's reach."""
        return self.acting is not None and store_id != self.acting


def _resolve_scope(session, store_code: str | None, acting_store: str | None, id_scope: str) -> _Scope:
    if id_scope not in ID_SCOPES:
        raise ImportFailed(f"unknown id scope {id_scope!r} (expected {' or '.join(ID_SCOPES)})")
    stores: dict[str, int] = {}
    codes: dict[int, str] = {}
    for sid, code, name in session.execute(sa.select(Store.id, Store.code, Store.name)):
        stores[code] = sid
        stores.setdefault(name, sid)
        codes[sid] = code
    if not codes:
        raise ImportFailed("no store defined yet: add one with `callcenter stores add CODE NAME`")

    def known(code: str) -> int:
        if code not in codes.values():
            raise ImportFailed(f"unknown store {code!r} (add it with `callcenter stores add`)")
        return stores[code]

    acting = known(acting_store) if acting_store else None
    default = known(store_code) if store_code else None
    if acting is not None and default not in (None, acting):
        raise ImportFailed(f"this import is for store {acting_store} only: --store {store_code} is another store")
    if default is None:
        default = acting if acting is not None else (next(iter(codes)) if len(codes) == 1 else None)
    return _Scope(stores, codes, default, acting, id_scope == "store")


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_run(session, kind: str, path: Path, started: dt.datetime, report: ImportReport) -> None:
    session.add(ImportRun(
        kind=kind, filename=path.name[:255], sha256=_sha256(path), started_at=started, finished_at=utcnow(),
        rows=report.rows, imported=report.imported, updated=report.updated, rejected=report.rejected,
        errors=[e.as_dict() for e in report.errors[:MAX_STORED_ERRORS]],
    ))


def _refresh_statistics(session, report: ImportReport, tables: tuple[str, ...]) -> None:
    """Refresh planner statistics after a bulk change.

    Without it PostgreSQL kept planning the IN-list lookups of the next import as sequential
    scans over the fresh 100,000 rows: a re-import took 400 s instead of 23 s (measured).
    """
    if report.imported + report.updated < 1000:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.execute(sa.text(f"ANALYZE {table}"))
    elif conn.dialect.name == "sqlite":
        conn.execute(sa.text("PRAGMA optimize"))


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


CustomerKey = tuple[int | None, str]  # (the store that scopes the number or None for the group's, number)


def _find_customers(conn, keys: Iterable[CustomerKey], columns: list, by_store: bool,
                    report: ImportReport | None = None) -> dict[CustomerKey, dict]:
    """Stored customers by key; warns in ``report`` when the file's numbers exist in the other id scope."""
    c = Customer.__table__
    wanted = set(keys)
    found: dict[CustomerKey, dict] = {}
    other_scope: set[str] = set()
    for chunk in _chunks(sorted({ext for _, ext in wanted})):
        for row in conn.execute(sa.select(*columns, c.c.scope_store_id).where(c.c.external_id.in_(chunk))):
            key = (row.scope_store_id, row.external_id)
            if key in wanted:
                found[key] = dict(row._mapping)
            elif (row.scope_store_id is None) == by_store:
                other_scope.add(row.external_id)
    if other_scope and report is not None:
        where = "as the group's numbers" if by_store else "as store-scoped numbers (--id-scope store)"
        sample = ", ".join(sorted(other_scope)[:5])
        report.warnings.append(f"{len(other_scope)} customer number(s) of this file also exist {where} "
                               f"({sample}): this import treats them as other customers; if the store's DMS "
                               f"numbers customers {'group-wide' if by_store else 'on its own'}, import "
                               f"{'without' if by_store else 'with'} --id-scope store")
    return found


# --------------------------------------------------------------------------- customers


def import_customers(db: Database, path: Path, *, dry_run: bool = False, store_code: str | None = None,
                     id_scope: str = "group", acting_store: str | None = None,
                     progress: Progress | None = None, on_total: Callable[[int | None], None] | None = None
                     ) -> ImportReport:
    """Import a customers export (one row per vehicle; vehicle columns empty for prospects).

    Args:
        store_code: the store of rows whose store cell is blank (and of new customers).
        id_scope: ``group`` (customer numbers are the group's) or ``store`` (each store's own).
        acting_store: the code of the store on whose behalf the import runs (a store's
            administrator or API token): rows of other stores are rejected, and customers, cars
            and visits of other stores are never changed. None: a group-wide operator.

    Raises:
        ImportFailed: the file cannot be read, lacks required columns, has no data rows, or
            names no usable store.
    """
    table, index = _open(path, CUSTOMER_COLUMNS)
    if on_total:
        on_total(table.total)
    report = ImportReport("customers", dry_run=dry_run)
    started = utcnow()
    try:
        with db.session() as session:
            scope = _resolve_scope(session, store_code, acting_store, id_scope)
            customers, vehicles = _collect_customers(table, index, scope, report, progress)
            _no_data_rows(path, report)
            _upsert_customers(session, customers, vehicles, scope, report)
            report.close_warnings()
            _refresh_statistics(session, report, ("customers", "vehicles"))
            if dry_run:
                raise _DryRun
            _record_run(session, "customers", path, started, report)
    except _DryRun:
        pass
    return report


@dataclass
class _CustomerRows:
    first: int  # the first row of this customer
    fields: dict
    rows: list[int]
    store_id: int | None  # the first row's store: the home store of a new customer


@dataclass
class _VehicleRow:
    row: int
    key: CustomerKey
    fields: dict
    store_id: int | None


def _collect_customers(table, index, scope: _Scope, report: ImportReport, progress):
    """Validate rows.

    Returns:
        customer key -> its rows, and VIN -> its row.
    """
    customers: dict[CustomerKey, _CustomerRows] = {}
    vehicles: dict[str, _VehicleRow] = {}
    has_vehicle_columns = any(f in index for f in VEHICLE_FIELDS)
    for number, values, errors in _Rows(CUSTOMER_COLUMNS, index, table.width, report, progress).parse(table.rows):
        for required in ("customer_id", "name"):
            if values.get(required) is None and not any(e.column in (required, ROW) for e in errors):
                errors.append(RowError(number, required, "", f"{required} is empty"))
        store_id = scope.row_store(number, values.pop("store", None), errors)
        if scope.by_store and store_id is None and not any(e.column in ("store", ROW) for e in errors):
            errors.append(RowError(number, "store", "", "store is empty: with --id-scope store every row needs "
                                                        "its store (the store column or --store)"))
        vehicle = {f: values.get(f) for f in VEHICLE_FIELDS}
        is_prospect = all(v is None for v in vehicle.values())
        if has_vehicle_columns and not is_prospect and vehicle["vin"] is None \
                and not any(e.column in ("vin", ROW) for e in errors):
            errors.append(RowError(number, "vin", "", "vin is empty but the row has vehicle data"))
        if errors:
            _reject(report, errors)
            continue
        cid = values["customer_id"]
        key = (store_id if scope.by_store else None, cid)
        fields = {f: values.get(f) for f in CUSTOMER_FIELDS}
        seen = customers.get(key)
        if seen is not None:
            conflict = _conflict(seen.fields, fields)
            if conflict:
                column, mine, theirs = conflict
                _reject(report, [RowError(number, column, _show(mine),
                                          f"customer {cid} has {column} {_show(theirs)!s} on row {seen.first}")])
                continue
            for f, v in fields.items():  # the first row may have left a cell blank
                if seen.fields.get(f) is None and v is not None:
                    seen.fields[f] = v
            seen.rows.append(number)
            if seen.store_id is None:
                seen.store_id = store_id
        else:
            customers[key] = _CustomerRows(number, fields, [number], store_id)
        if not is_prospect:
            vin = vehicle["vin"]
            if vehicle["tier"] is None:
                vehicle["tier"] = tier_for_brand(vehicle["brand"])
            other = vehicles.get(vin)
            if other is not None and (other.key != key or _conflict(other.fields, vehicle)
                                      or None not in (other.store_id, store_id) and other.store_id != store_id):
                _reject(report, [RowError(number, "vin", vin, f"VIN already on row {other.row} "
                                                              f"(customer {other.key[1]}) with other data")])
                continue
            vehicles[vin] = _VehicleRow(number, key, vehicle, store_id)
    return customers, vehicles


def _conflict(first: dict, second: dict) -> tuple[str, object, object] | None:
    for key, value in second.items():
        other = first.get(key)
        if value is not None and other is not None and value != other:
            return key, value, other
    return None


def _changes(stored: dict, incoming: dict) -> dict:
    """The incoming non-blank values that differ from what is stored."""
    return {k: v for k, v in incoming.items() if v is not None and stored.get(k) != v}


def _upsert_customers(session, customers: dict[CustomerKey, _CustomerRows], vehicles: dict[str, _VehicleRow],
                      scope: _Scope, report: ImportReport) -> None:
    conn = session.connection()
    now = utcnow()
    c = Customer.__table__
    v = Vehicle.__table__
    cols = [c.c.id, c.c.external_id, c.c.store_id, *(c.c[f] for f in CUSTOMER_FIELDS)]
    existing = _find_customers(conn, customers, cols, scope.by_store, report)

    def drop(key: CustomerKey) -> None:
        del customers[key]
        for vin in [vin for vin, row in vehicles.items() if row.key == key]:
            del vehicles[vin]

    new_rows, updates = [], []
    touched: set[CustomerKey] = set()
    for key, rows in list(customers.items()):
        stored = existing.get(key)
        if stored is None:
            home = rows.store_id if rows.store_id is not None else scope.default
            if home is None:  # only a new customer needs a store; a known one keeps its own
                for n in rows.rows:
                    _reject(report, [RowError(n, "store", "", "store is empty and the group has several stores "
                                                              "(fill the column or pass --store)")])
                drop(key)
                continue
            new_rows.append({"external_id": key[1], "scope_store_id": key[0], "store_id": home, **rows.fields,
                             "created_at": now, "updated_at": now})
            touched.add(key)
            continue
        changed = _changes(stored, rows.fields)
        if changed and scope.foreign(stored["store_id"]):
            # The customer is the group's, their details are their home store's to change: this
            # store's cars of theirs are still imported below.
            report.warn("another store's customer details not changed",
                        f"row {rows.first}: customer {key[1]} is store {scope.codes[stored['store_id']]}'s: this "
                        f"import for store {scope.codes[scope.acting]} did not change their "
                        f"{', '.join(sorted(changed))}")
        elif changed:
            updates.append({"_id": stored["id"], **changed})
            touched.add(key)
    if new_rows:
        conn.execute(c.insert(), new_rows)
    _bulk_update(conn, c, updates, now)
    ids = {key: row["id"] for key, row in existing.items()}
    homes = {key: row["store_id"] for key, row in existing.items()}
    for row in new_rows:
        homes[(row["scope_store_id"], row["external_id"])] = row["store_id"]
    if new_rows:
        ids.update((k, row["id"]) for k, row in _find_customers(
            conn, [(r["scope_store_id"], r["external_id"]) for r in new_rows], [c.c.id, c.c.external_id],
            scope.by_store).items())

    vcols = [v.c.id, v.c.customer_id, v.c.store_id, *(v.c[f] for f in VEHICLE_FIELDS)]
    stored_vehicles: dict[str, dict] = {}
    for chunk in _chunks(list(vehicles)):
        for row in conn.execute(sa.select(*vcols).where(v.c.vin.in_(chunk))):
            stored_vehicles[row.vin] = dict(row._mapping)
    new_vehicles, vehicle_updates = [], []
    for vin, car in vehicles.items():
        customer_id = ids[car.key]
        stored = stored_vehicles.get(vin)
        if stored is None:
            store_id = car.store_id if car.store_id is not None else homes[car.key]
            row = {**car.fields, "customer_id": customer_id, "store_id": store_id, "created_at": now,
                   "updated_at": now}
            row["insured_here"] = bool(row["insured_here"])
            new_vehicles.append(row)
            touched.add(car.key)
            continue
        changed = _changes(stored, {**car.fields, "customer_id": customer_id, "store_id": car.store_id})
        if changed and scope.foreign(stored["store_id"]):
            _reject(report, [RowError(car.row, "vin", vin, f"another store's vehicle (store "
                                                           f"{scope.codes[stored['store_id']]}): this import for "
                                                           f"store {scope.codes[scope.acting]} cannot change it")])
            continue
        if changed:
            vehicle_updates.append({"_id": stored["id"], **changed})
            touched.add(car.key)
    if new_vehicles:
        conn.execute(v.insert(), new_vehicles)
    _bulk_update(conn, v, vehicle_updates, now)

    new_keys = {(r["scope_store_id"], r["external_id"]) for r in new_rows}
    report.imported = len(new_keys)
    report.updated = len(touched - new_keys)
    report.unchanged = len(customers) - len(touched)


def _bulk_update(conn, table: sa.Table, updates: list[dict], now: dt.datetime) -> None:
    """executemany UPDATE grouped by the set of changed columns."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for u in updates:
        keys = tuple(sorted(k for k in u if k != "_id"))
        groups.setdefault(keys, []).append(u)
    for keys, rows in groups.items():
        values = {k: sa.bindparam(k) for k in keys}
        if "updated_at" in table.c:
            values["updated_at"] = sa.bindparam("_now")
            for r in rows:
                r["_now"] = now
        stmt = table.update().where(table.c.id == sa.bindparam("_id")).values(**values)
        conn.execute(stmt, rows)


# --------------------------------------------------------------------------- visits


def import_visits(db: Database, path: Path, *, dry_run: bool = False, store_code: str | None = None,
                  id_scope: str = "group", acting_store: str | None = None,
                  progress: Progress | None = None, on_total: Callable[[int | None], None] | None = None
                  ) -> ImportReport:
    """Import a service-visits export. Customers (and their VINs) must be imported first.

    Arguments as for :func:`import_customers`; a visit whose row names no store is the store's
    given by ``store_code`` (or ``acting_store``), else its car's, else its customer's home store.

    Raises:
        ImportFailed: the file cannot be read, lacks required columns, has no data rows, or
            names no usable store.
    """
    table, index = _open(path, VISIT_COLUMNS)
    if on_total:
        on_total(table.total)
    report = ImportReport("visits", dry_run=dry_run)
    started = utcnow()
    try:
        with db.session() as session:
            scope = _resolve_scope(session, store_code, acting_store, id_scope)
            parsed = list(_Rows(VISIT_COLUMNS, index, table.width, report, progress).parse(table.rows))
            _no_data_rows(path, report)
            _upsert_visits(session, parsed, scope, report)
            report.close_warnings()
            _refresh_statistics(session, report, ("service_visits",))
            if dry_run:
                raise _DryRun
            _record_run(session, "visits", path, started, report)
    except _DryRun:
        pass
    return report


def _upsert_visits(session, parsed, scope: _Scope, report: ImportReport) -> None:
    conn = session.connection()
    c, v, sv = Customer.__table__, Vehicle.__table__, ServiceVisit.__table__
    # Each row's store first: with store-scoped numbers it says whose customer the number is.
    explicit: dict[int, int | None] = {}
    for number, values, errors in parsed:
        explicit[number] = scope.row_store(number, values.get("store"), errors)
        if scope.by_store and explicit[number] is None and not any(e.column in ("store", ROW) for e in errors):
            errors.append(RowError(number, "store", "", "store is empty: with --id-scope store every row needs "
                                                        "its store (the store column or --store)"))

    def key_of(number: int, values: dict) -> CustomerKey | None:
        ext = values.get("customer_id")
        if ext is None or scope.by_store and explicit[number] is None:
            return None
        return (explicit[number], ext) if scope.by_store else (None, ext)

    keys = {k for number, values, _ in parsed if (k := key_of(number, values)) is not None}
    customers = _find_customers(conn, keys, [c.c.id, c.c.external_id, c.c.store_id], scope.by_store, report)
    vehicles_of: dict[int, list[tuple[int, str, int]]] = {}
    ids = [row["id"] for row in customers.values()]
    for chunk in _chunks(ids):
        for vid, cid, vin, vstore in conn.execute(
                sa.select(v.c.id, v.c.customer_id, v.c.vin, v.c.store_id).where(v.c.customer_id.in_(chunk))):
            vehicles_of.setdefault(cid, []).append((vid, vin, vstore))

    rows: dict[str, tuple[int, dict, dict]] = {}
    for number, values, errors in parsed:
        for required in ("customer_id", "visit_date", "type"):
            if values.get(required) is None and not any(e.column in (required, ROW) for e in errors):
                errors.append(RowError(number, required, "", f"{required} is empty"))
        ext = values.get("customer_id")
        key = key_of(number, values)
        customer = customers.get(key) if key is not None else None
        if key is not None and customer is None:
            errors.append(RowError(number, "customer_id", _show(ext), "unknown customer (import customers first)"))
        vehicle_id = vehicle_store = None
        if customer is not None:
            owned = vehicles_of.get(customer["id"], [])
            vin = values.get("vin")
            if vin is not None:
                match = [(vid, vstore) for vid, vv, vstore in owned if vv == vin]
                if not match:
                    errors.append(RowError(number, "vin", vin, f"VIN is not a vehicle of customer {ext}"))
                else:
                    vehicle_id, vehicle_store = match[0]
            elif len(owned) == 1:
                vehicle_id, values["vin"], vehicle_store = owned[0]
        store_id = explicit[number]
        if store_id is None and values.get("store") is None:
            store_id = vehicle_store if vehicle_store is not None else (customer["store_id"] if customer else None)
        paid = values.get("paid")
        if paid is None and "paid" not in {e.column for e in errors}:
            if values.get("amount") is None:
                errors.append(RowError(number, "paid", "", "paid is empty and there is no amount to infer it from"))
            else:
                paid = values["amount"] > 0
        if errors:
            _reject(report, errors)
            continue
        if values.get("ro_number"):
            dedup = f"ro|{store_id}|{values['ro_number']}"
        else:
            # Store-scoped numbers repeat across stores: their key carries the store (and a prefix
            # no group key has).
            who = f"s|{key[0]}|{ext}" if scope.by_store else f"v|{ext}"
            dedup = f"{who}|{values.get('vin') or '-'}|{values['visit_date'].isoformat()}|{values['type'].value}"
        row = {
            "dedup_key": dedup, "customer_id": customer["id"], "vehicle_id": vehicle_id, "store_id": store_id,
            "visit_date": values["visit_date"], "visit_type": values["type"], "paid": paid,
            "amount": values.get("amount"), "advisor": values.get("advisor"), "ro_number": values.get("ro_number"),
        }
        seen = rows.get(dedup)
        if seen is not None:
            conflict = _conflict(seen[2], values)
            if conflict:
                column, mine, theirs = conflict
                what = f"repair order {values['ro_number']}" if values.get("ro_number") else "the same visit"
                _reject(report, [RowError(number, column, _show(mine),
                                          f"{what} is on row {seen[0]} with {column} {_show(theirs)}")])
                continue
        rows[dedup] = (number, row, values)

    stored: dict[str, dict] = {}
    cols = [sv.c.id, sv.c.dedup_key, sv.c.customer_id, sv.c.vehicle_id, sv.c.store_id, sv.c.visit_date,
            sv.c.visit_type, sv.c.paid, sv.c.amount, sv.c.advisor, sv.c.ro_number]
    for chunk in _chunks(list(rows)):
        for r in conn.execute(sa.select(*cols).where(sv.c.dedup_key.in_(chunk))):
            stored[r.dedup_key] = dict(r._mapping)
    now = utcnow()
    inserts, updates = [], []
    refused = 0
    for dedup, (number, row, _values) in rows.items():
        old = stored.get(dedup)
        if old is None:
            inserts.append({**row, "created_at": now})
            continue
        changed = _changes(old, row)
        if changed and scope.foreign(old["store_id"]):
            refused += 1
            _reject(report, [RowError(number, ROW, _show(row["ro_number"] or row["visit_date"]),
                                      f"another store's visit (store {scope.codes[old['store_id']]}): this import "
                                      f"for store {scope.codes[scope.acting]} cannot change it")])
            continue
        if changed:
            updates.append({"_id": old["id"], **changed})
    if inserts:
        conn.execute(sv.insert(), inserts)
    _bulk_update(conn, sv, updates, now)
    report.imported = len(inserts)
    report.updated = len(updates)
    report.unchanged = len(rows) - len(inserts) - len(updates) - refused
