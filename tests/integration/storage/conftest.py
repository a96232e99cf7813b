import pytest
import sqlalchemy as sa

from callcenter.storage.models import Store


@pytest.fixture
def stores(db):
    """Two stores: S1 (Changsha, default cycles) and S2 (premium store with its own cycles)."""
    with db.session() as s:
        s.add_all([
            Store(code="S1", name="丰田岳麓店", city="长沙市"),
            Store(code="S2", name="宝马星沙店", city="长沙市", cycle_months_mid=4, cycle_months_premium=8),
        ])
    return db


@pytest.fixture
def count(db):
    """count(Model) -> rows in its table."""

    def rows(model) -> int:
        with db.session() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(model))

    return rows
