"""Ticket history: old English rows become structured events (migration tickets0001)."""

import importlib.util
from pathlib import Path

import pytest

MIGRATION = Path(__file__).resolve().parents[3] / "callcenter/storage/migrations/versions/tickets0001_ticket_event_data.py"


@pytest.fixture(scope="module")
def convert():
    spec = importlib.util.spec_from_file_location("tickets0001", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._convert


@pytest.mark.parametrize("action, note, user_id, expected", [
    ("created", "opened by robot call 20 for after_sales", None, ({"call_id": 20, "department": "after_sales"}, None)),
    ("created", "洗车投诉", 3, ({}, None)),  # the title, repeated
    ("status", "resolved: 已重新洗车", 3, ({"status": "resolved"}, "已重新洗车")),
    ("status", "verified", 3, ({"status": "verified"}, None)),
    ("assigned", "周坐席", 3, ({"assignee": "周坐席"}, None)),
    ("due", "2030-01-02T10:00", 3, ({"due_local": "2030-01-02T10:00"}, None)),
    ("note", "客户很着急", 3, (None, "客户很着急")),  # a person's words stay as they are
])
def test_old_rows_are_converted(convert, action, note, user_id, expected):
    assert convert(action, note, user_id) == expected
