"""The schema comes only from migrations, and the models agree with them."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from callcenter.storage import Database, upgrade_database
from callcenter.storage.db import alembic_config, current_revision, head_revision, include_object
from callcenter.storage.models import Base

pytestmark = pytest.mark.integration


def test_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"several migration heads: {script.get_heads()}"


def test_models_match_migrations(db: Database):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models differ from the migrations (write a migration): {diff[:5]}"


def test_upgrade_is_idempotent(db: Database):
    assert current_revision(db) == head_revision()
    before, after = upgrade_database(db)
    assert before == after == head_revision()
    inspector = sa.inspect(db.engine)
    assert {"stores", "customers", "vehicles", "service_visits", "users", "calls"} <= set(inspector.get_table_names())


def test_init_on_an_empty_database_then_again(run_cli):
    first = run_cli("init", "--json")
    assert first.exit_code == 0, first.output
    second = run_cli("init")
    assert second.exit_code == 0 and "database ready" in second.output
