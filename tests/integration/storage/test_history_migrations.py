"""Data migrations of issue 12 on rows written by the earlier code: ticket history (tickets0001)
and failed hand-overs recorded as transferred (tickets0002)."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.storage import Database, upgrade_database

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 20, 2, 0)


def _insert(conn, table: str, **values) -> int:
    columns = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    return conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id"), values).scalar()


def test_old_history_and_failed_transfers_are_rewritten(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_database(db, "console0001")
    with db.engine.begin() as conn:
        store = _insert(conn, "stores", code="S1", name="一店", city="长沙市", timezone="Asia/Shanghai", created_at=NOW)
        customer = _insert(conn, "customers", external_id="C1", store_id=store, name="王先生", phone="13900000001",
                           created_at=NOW, updated_at=NOW)
        call = _insert(conn, "calls", customer_id=customer, store_id=store, robot=True, phone="13900000001",
                       started_at=NOW, ended_at=NOW, attempt=1, outcome="transferred", created_at=NOW)
        reason = "transfer failed: no agent extension configured (CALLCENTER_TRANSFER_TARGET)"
        callback = _insert(conn, "callbacks", customer_id=customer, store_id=store, call_id=call, due_at=NOW,
                           reason=reason, robot=False, status="pending", created_at=NOW)
        ticket = _insert(conn, "tickets", call_id=call, customer_id=customer, store_id=store, department="after_sales",
                         kind="complaint", title="洗车投诉", status="resolved", priority="normal", created_at=NOW,
                         updated_at=NOW)
        created = _insert(conn, "ticket_events", ticket_id=ticket, at=NOW, action="created",
                          note=f"opened by robot call {call} for after_sales")
        resolved = _insert(conn, "ticket_events", ticket_id=ticket, at=NOW, action="status",
                           note="resolved: 已重新洗车")
    upgrade_database(db)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT outcome, error FROM calls WHERE id = :i"), {"i": call}).one() == \
            ("transfer_failed", reason)
        assert conn.execute(sa.text("SELECT reason FROM callbacks WHERE id = :i"), {"i": callback}).scalar() == \
            "客户要求转人工,转接失败,请尽快回电"
        rows = dict(conn.execute(sa.text("SELECT id, note FROM ticket_events")).all())
        assert rows == {created: None, resolved: "已重新洗车"}
        data = dict(conn.execute(sa.text("SELECT id, data FROM ticket_events")).all())
        assert '"call_id": ' in data[created] and '"status": "resolved"' in data[resolved]
    db.dispose()
