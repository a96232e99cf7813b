"""The OpenAPI 3.1 description of ``/api/v1`` (served as JSON and rendered at ``/api/v1/docs``).

Written by hand next to :mod:`web.api` and checked against the registered routes by the tests,
so that a route cannot exist undescribed.
"""

from __future__ import annotations

from callcenter.domain import CallDisposition, Department, FeedbackCategory, Sentiment, Tier, VisitType
from callcenter.storage.models import CallOutcome, CampaignType

_ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "Malformed request", 401: "Missing, invalid or expired token", 403: "Role or write permission missing",
            404: "Not found (or outside the token's store)", 413: "Batch too large"}
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def _page(item: str) -> dict:
    return {"type": "object", "required": ["items", "next_after_id"], "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "next_after_id": {"type": ["integer", "null"], "description": "pass as after_id for the next page"}}}


_PAGING = [
    {"name": "after_id", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "Keyset paging: items with a larger id."},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
]


def _str(description: str = "", **extra) -> dict:
    return {"type": ["string", "null"], "description": description, **extra}


def spec() -> dict:
    vehicle = {"type": "object", "required": ["vin"], "properties": {
        "vin": _str("17 characters, no I/O/Q"), "plate": _str(), "brand": _str(), "model": _str(),
        "tier": _str("mid/premium or 中端/高端; from the brand when empty", examples=[t.value for t in Tier]),
        "purchase_date": _str("date", format="date"), "warranty_end": _str("date", format="date"),
        "insurance_expiry": _str("date", format="date"),
        "insured_here": {"type": ["boolean", "string", "null"], "description": "是/否, yes/no, 1/0"}}}
    customer = {"type": "object", "required": ["customer_id", "name", "phone"], "properties": {
        "customer_id": {"type": "string", "description": "The DMS customer number (客户编号)"},
        "name": {"type": "string"}, "phone": {"type": "string", "description": "Mainland mobile or landline; masked "
                                                                       "(138****5678) for agents' tokens"},
        "gender": _str("男/女 or M/F"), "birthday": _str("date", format="date"), "city": _str(), "district": _str(),
        "occupation": _str(), "store": _str("Store code (or name); a store-scoped token may omit it"),
        "vehicles": {"type": "array", "items": vehicle}}}
    customer_out = {**customer, "properties": {**customer["properties"], "updated_at": _str(format="date-time")}}
    visit = {"type": "object", "required": ["customer_id", "visit_date", "type", "paid"], "properties": {
        "id": {"type": "integer", "readOnly": True}, "customer_id": {"type": "string"}, "vin": _str(),
        "visit_date": {"type": "string", "format": "date"},
        "type": {"type": "string", "description": "maintenance/保养, repair/维修, bodywork/钣喷, warranty/索赔, "
                                                 "claim/理赔, inspection/检查", "examples": [v.value for v in VisitType]},
        "paid": {"type": ["boolean", "string"]}, "amount": {"type": ["number", "string", "null"]},
        "advisor": _str(), "store": _str(), "ro_number": _str("Repair-order number: the upsert key when present")}}
    result = {"type": "object", "properties": {
        "imported": {"type": "integer"}, "updated": {"type": "integer"}, "unchanged": {"type": "integer"},
        "rejected": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": ["integer", "null"], "description": "position in the request's list"},
            "field": _str(), "value": _str(), "reason": {"type": "string"},
            "status": {"type": "integer", "description": "403 when the record belongs to another store than "
                                                         "the token's (absent for invalid values)"}}}}}}
    call = {"type": "object", "properties": {
        "id": {"type": "integer"}, "customer_id": _str(), "store": _str(),
        "campaign": {"type": ["object", "null"], "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "type": {"type": "string", "enum": [t.value for t in CampaignType]}}},
        "robot": {"type": "boolean"}, "started_at": _str(format="date-time"), "answered_at": _str(format="date-time"),
        "ended_at": _str(format="date-time"), "talk_seconds": {"type": ["number", "null"]},
        "disposition": {"type": ["string", "null"], "enum": [d.value for d in CallDisposition] + [None]},
        "sip_code": {"type": ["integer", "null"]},
        "outcome": {"type": ["string", "null"], "enum": [o.value for o in CallOutcome] + [None]},
        "score5": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
        "nps": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
        "sentiment": {"type": ["string", "null"], "enum": [s.value for s in Sentiment] + [None]},
        "tags": {"type": "array", "items": {"type": "object", "properties": {
            "category": {"type": "string", "enum": [c.value for c in FeedbackCategory]},
            "department": {"type": "string", "enum": [d.value for d in Department]},
            "confidence": {"type": ["number", "null"]}, "source": {"type": "string", "enum": ["model", "supervisor"]}}}},
        "transcript": {"type": "array", "description": "GET /calls/{id} only", "items": {"type": "object", "properties": {
            "seq": {"type": "integer"}, "speaker": {"type": "string", "enum": ["customer", "robot", "agent"]},
            "text": {"type": "string"}, "start": {"type": "number"}, "end": {"type": "number"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Callcenter API", "version": "1.0",
            "description": (
                "For DMS integration: push customers and service visits, read call outcomes. Authenticate with "
                "`Authorization: Bearer <token>` (tokens are created in Administration -> API tokens; each acts "
                "with its user's role and store scope; pushing needs a token marked for writing). Records follow "
                "the DMS import format (docs/import-format.md): same fields, same validation, upsert by "
                "customer_id, VIN and repair-order number. A batch answers 200 when every record was accepted "
                "and 207 when some were rejected (the others are stored)."),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                                                           "message": {"type": "string"}}},
                "Customer": customer_out, "CustomerIn": customer, "Vehicle": vehicle, "Visit": visit,
                "ImportResult": result, "Call": call,
                "Store": {"type": "object", "properties": {"code": {"type": "string"}, "name": {"type": "string"},
                                                           "city": _str(), "timezone": {"type": "string"}}},
                "Campaign": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"},
                    "type": {"type": "string", "enum": [t.value for t in CampaignType]}, "status": {"type": "string"},
                    "store": _str(), "script": {"type": "string"}, "created_at": _str(format="date-time"),
                    "started_at": _str(format="date-time"), "finished_at": _str(format="date-time")}},
            },
        },
        "paths": {
            "/stores": {"get": {"summary": "Stores in the token's scope", "operationId": "listStores",
                                "responses": {"200": _json({"type": "object", "properties": {
                                    "items": {"type": "array", "items": _ref("Store")}}}, "Stores"),
                                              **_errors(401)}}},
            "/customers": {
                "get": {"summary": "Customers with their vehicles", "operationId": "listCustomers",
                        "parameters": _PAGING + [
                            {"name": "store", "in": "query", "schema": {"type": "string"}},
                            {"name": "updated_since", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
                        "responses": {"200": _json(_page("Customer"), "A page of customers"), **_errors(400, 401)}},
                "post": {"summary": "Create or update customers (upsert by customer_id and VIN)",
                         "operationId": "pushCustomers",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["customers"], "properties": {
                                 "customers": {"type": "array", "maxItems": 1000, "items": _ref("CustomerIn")}}}}}},
                         "responses": {"200": _json(_ref("ImportResult"), "All accepted"),
                                       "207": _json(_ref("ImportResult"), "Some rejected, the rest stored"),
                                       **_errors(400, 401, 403, 413)}},
            },
            "/customers/{customer_id}": {"get": {
                "summary": "One customer", "operationId": "getCustomer",
                "parameters": [{"name": "customer_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Customer"), "The customer"), **_errors(401, 404)}}},
            "/visits": {
                "get": {"summary": "Service visits", "operationId": "listVisits",
                        "parameters": _PAGING + [
                            {"name": "customer_id", "in": "query", "schema": {"type": "string"}},
                            {"name": "since", "in": "query", "schema": {"type": "string", "format": "date"}}],
                        "responses": {"200": _json(_page("Visit"), "A page of visits"), **_errors(400, 401)}},
                "post": {"summary": "Create or update service visits", "operationId": "pushVisits",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["visits"], "properties": {
                                 "visits": {"type": "array", "maxItems": 1000, "items": _ref("Visit")}}}}}},
                         "responses": {"200": _json(_ref("ImportResult"), "All accepted"),
                                       "207": _json(_ref("ImportResult"), "Some rejected, the rest stored"),
                                       **_errors(400, 401, 403, 413)}},
            },
            "/calls": {"get": {
                "summary": "Finished calls with outcome, score and tags (supervisor tokens)", "operationId": "listCalls",
                "parameters": _PAGING + [
                    {"name": "ended_since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "campaign", "in": "query", "schema": {"type": "integer"}},
                    {"name": "customer_id", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json(_page("Call"), "A page of calls"), **_errors(400, 401, 403)}}},
            "/calls/{call_id}": {"get": {
                "summary": "One call with its transcript", "operationId": "getCall",
                "parameters": [{"name": "call_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json(_ref("Call"), "The call"), **_errors(401, 403, 404)}}},
            "/campaigns": {"get": {
                "summary": "Recent campaigns", "operationId": "listCampaigns", "parameters": _PAGING[1:],
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": _ref("Campaign")}}}, "Campaigns"), **_errors(401, 403)}}},
            "/openapi.json": {"get": {"summary": "This description", "operationId": "openapi", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/docs": {"get": {"summary": "This description as a page", "operationId": "docs", "security": [],
                              "responses": {"200": {"description": "HTML"}}}},
        },
    }
