"""The JSON API: token auth, scope, writes through the DMS importer, call outcomes."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Customer, ImportRun, ServiceVisit, Vehicle, utcnow
from callcenter.storage.web_models import AuditLog

pytestmark = pytest.mark.integration


def _get(app, url, token):
    return app.test_client().get(url, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_tokens_are_required_valid_and_alive(console, api_token):
    app, world = console
    assert _get(app, "/api/v1/customers", None).status_code == 401
    assert _get(app, "/api/v1/customers", "cc_not-a-real-token").status_code == 401
    expired = api_token("sup_s1", expires_at=utcnow() - dt.timedelta(minutes=1))
    assert _get(app, "/api/v1/customers", expired).status_code == 401
    assert _get(app, "/api/v1/customers", api_token("sup_s1")).status_code == 200


def test_roles_and_write_permission_apply_to_tokens(console, api_token):
    app, world = console
    agent = api_token("agent_s1")
    assert _get(app, "/api/v1/calls", agent).status_code == 403
    read_only = api_token("sup_s1")
    response = app.test_client().post("/api/v1/customers", json={"customers": [{"customer_id": "N1"}]},
                                      headers={"Authorization": f"Bearer {read_only}"})
    assert response.status_code == 403 and response.json["message"] == "this token is read-only"


def test_a_store_token_reads_its_store_only(console, api_token):
    app, world = console
    token = api_token("sup_s1")
    items = _get(app, "/api/v1/customers", token).json["items"]
    assert [c["customer_id"] for c in items] == ["C-S1"]
    assert items[0]["vehicles"][0]["vin"] and items[0]["store"] == "S1"
    assert _get(app, "/api/v1/customers/C-S2", token).status_code == 404
    calls = _get(app, "/api/v1/calls?ended_since=2000-01-01T00:00:00Z", token).json["items"]
    assert [c["store"] for c in calls] == ["S1"] and calls[0]["tags"][0]["category"] == "car_wash"
    assert _get(app, f"/api/v1/calls/{world.calls['S2']}", token).status_code == 404
    one = _get(app, f"/api/v1/calls/{world.calls['S1']}", token).json
    assert one["transcript"][1]["text"] == "不满意，车洗得不干净，等了很久" and one["score5"] == 2


def test_pushing_customers_goes_through_the_importer_and_rejects_row_by_row(console, api_token, db):
    app, world = console
    token = api_token("sup_s1", write=True)
    body = {"customers": [
        {"customer_id": "DMS-1", "name": "李女士", "phone": "+86 139 0000 1111", "gender": "女",
         "vehicles": [{"vin": "LVGBE40K38G000111", "model": "卡罗拉", "tier": "中端", "purchase_date": "2025-03-01",
                       "insured_here": True}]},
        {"customer_id": "DMS-2", "name": "赵先生", "phone": "12345"},
        {"customer_id": "DMS-3", "name": "钱先生", "phone": "13900002222", "store": "S2"},
        "not an object",
    ]}
    response = app.test_client().post("/api/v1/customers", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 207
    result = response.json
    assert result["imported"] == 1 and result["rejected"] == 3
    reasons = {e["index"]: e for e in result["errors"]}
    assert reasons[1]["field"] == "phone"
    assert reasons[2]["field"] == "store" and "own store" in reasons[2]["reason"]
    assert reasons[3]["reason"] == "not a JSON object"
    with db.session() as s:
        c = s.scalar(sa.select(Customer).where(Customer.external_id == "DMS-1"))
        assert c.phone == "13900001111" and c.store_id == world.stores["S1"]
        assert s.scalar(sa.select(Vehicle.insured_here).where(Vehicle.customer_id == c.id)) is True
        assert s.scalar(sa.select(ImportRun.filename).where(ImportRun.kind == "customers")).startswith("api-customers-")
        assert s.scalar(sa.select(AuditLog.details).where(AuditLog.action == "api.write"))["imported"] == 1
    # The same push again changes nothing.
    again = app.test_client().post("/api/v1/customers", json={"customers": body["customers"][:1]},
                                   headers={"Authorization": f"Bearer {token}"}).json
    assert again["imported"] == 0 and again["updated"] == 0 and again["rejected"] == 0


def test_pushing_visits_and_reading_them_back(console, api_token, db):
    app, world = console
    token = api_token("admin", write=True)
    body = {"visits": [
        {"customer_id": "C-S1", "vin": "LVGBE40K18G000001", "visit_date": "2026-01-05", "type": "保养", "paid": "是",
         "amount": "680.00", "store": "S1", "ro_number": "RO-1"},
        {"customer_id": "nobody", "visit_date": "2026-01-05", "type": "保养", "paid": True, "store": "S1"},
    ]}
    result = app.test_client().post("/api/v1/visits", json=body, headers={"Authorization": f"Bearer {token}"}).json
    assert result["imported"] == 1 and result["errors"][0]["index"] == 1
    items = _get(app, "/api/v1/visits?customer_id=C-S1&since=2026-01-01", token).json["items"]
    assert ("RO-1", "maintenance", "680.00", "S1") in [(v["ro_number"], v["type"], v["amount"], v["store"]) for v in items]
    assert all(v["customer_id"] == "C-S1" for v in items)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ServiceVisit)) == 3


@pytest.mark.parametrize("body", [None, {"customers": "x"}, {"customers": []}, {"customers": [{}] * 1001}])
def test_malformed_batches_are_refused_with_a_reason(console, api_token, body):
    app, world = console
    token = api_token("admin", write=True)
    response = app.test_client().post("/api/v1/customers", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (400, 413) and response.json["message"]


def test_keyset_paging(console, api_token, db):
    app, world = console
    with db.session() as s:
        for i in range(5):
            s.add(Customer(external_id=f"P{i}", store_id=world.stores["S1"], name=f"客户{i}"))
    token = api_token("admin")
    first = _get(app, "/api/v1/customers?limit=4", token).json
    second = _get(app, f"/api/v1/customers?limit=4&after_id={first['next_after_id']}", token).json
    assert len(first["items"]) == 4 and len(second["items"]) == 3 and second["next_after_id"] is None


def test_the_description_is_public(console):
    app, world = console
    assert app.test_client().get("/api/v1/openapi.json").json["info"]["title"] == "Callcenter API"
    assert "/customers" in app.test_client().get("/api/v1/docs").get_data(as_text=True)
