"""The demo dealer group and command-line user management."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from callcenter.accounts import verify_password
from callcenter.customer_base import customer_base_stats
from callcenter.demo import DemoGenerator, load_demo
from callcenter.domain import Role
from callcenter.storage.models import Customer, ServiceVisit, User

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 11, 20)


def test_demo_is_realistic_and_loads_once(db):
    result = load_demo(db, as_of=AS_OF, n_customers=600, seed=7)
    assert result["customers"] == 600 and result["stores"] == 2
    assert set(result["users"]) == {"admin", "supervisor", "agent", "manager"}
    with db.session() as s:
        stats = customer_base_stats(s, AS_OF)
        # every class is represented, in proportions a dealer would recognise
        assert stats["base"] == 600
        assert 0.55 < stats["active"] / 600 < 0.85 and 0.08 < stats["lapsed"] / 600 < 0.35
        assert 0.2 < stats["insured"] / 600 < 0.6
        assert stats["by_tier"]["premium"]["base"] > 100 and stats["by_tier"]["mid"]["base"] > 200
        assert stats["by_tier"]["none"]["base"] > 10  # prospects
        recent = s.scalar(sa.select(sa.func.count()).select_from(ServiceVisit)
                          .where(ServiceVisit.visit_date >= AS_OF - dt.timedelta(days=3)))
        assert recent > 0  # work for a post-service revisit
        assert s.scalar(sa.select(sa.func.max(ServiceVisit.visit_date))) < AS_OF
        phones = s.scalars(sa.select(Customer.phone)).all()
        assert len(set(phones)) == len(phones)
    assert load_demo(db, as_of=AS_OF, n_customers=600, seed=7) == {"skipped": True}


def test_demo_is_deterministic(tmp_path):
    a = DemoGenerator(AS_OF, 50, seed=3).write_csv(tmp_path / "a")
    b = DemoGenerator(AS_OF, 50, seed=3).write_csv(tmp_path / "b")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()


def test_users_create_update_and_reject(run_cli, db):
    run_cli("init")
    ok = run_cli("users", "create", "wang", "--role", "agent", "--password-stdin", input="s3cret-Passw0rd\n")
    assert ok.exit_code == 0 and "created" in ok.output
    with db.session() as s:
        user = s.scalar(sa.select(User).where(User.username == "wang"))
        assert user.role is Role.AGENT and user.store_id is None
        assert user.password_hash != "s3cret-Passw0rd" and verify_password(user, "s3cret-Passw0rd")
    weak = run_cli("users", "create", "li", "--role", "admin", "--password-stdin", input="short\n")
    assert weak.exit_code == 1 and "at least 8 characters" in weak.output
    no_store = run_cli("users", "create", "li", "--role", "agent", "--store", "NOPE", "--password-stdin",
                       input="long-enough-1\n")
    assert no_store.exit_code == 1 and "unknown store 'NOPE'" in no_store.output
    listed = json.loads(run_cli("users", "list", "--json").stdout)
    assert [u["username"] for u in listed] == ["wang"]
