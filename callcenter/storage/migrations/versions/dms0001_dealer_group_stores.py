"""dms: dealer-group data (vehicles carry their store, store-scoped customer numbers, per-store touch)

Revision ID: dms0001
Revises: tickets0001
Create Date: 2026-12-06 03:00:00

One customer of the group may own cars sold or serviced by two stores (the DMS export names a
store per row, i.e. per car); the importer rejected the second store's rows, losing the car and
its visits. Now:

- ``vehicles.store_id``: the car's store (backfilled with its owner's store). Each store's staff
  see their cars, visits and calls; a car's maintenance cycle is its store's.
- ``customers.scope_store_id``: NULL for the group's customer numbers (unique in the group, as
  before), or the store whose DMS numbers customers on its own (``import --id-scope store``),
  where the same number in two stores means two people. ``customers.store_id`` stays the home
  store (the store that first imported the customer).
- ``customer_store_touch``: customer_touch per (store, customer), from that store's cars and visits
  only, kept by triggers the same way (see campaigns0002): a store's own 保有/有效/流失 classes and
  its campaigns' audiences read it; the group's read customer_touch. Any car or visit (paid or
  not) of the customer in the store gives the pair its row: the row is also what says that the
  store sees the customer (``customer_in_store``), one index range instead of probing every
  customer's cars and visits.

SQLite rebuilds ``customers`` and ``vehicles`` here (batch "move and copy"), which drops the
triggers on ``vehicles``: they are created again. ``upgrade_database`` runs SQLite migrations with
foreign keys off, as SQLite's own table-rebuild procedure requires (dropping the old table would
otherwise delete or orphan its children), and checks them afterwards.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = 'dms0001'
down_revision = 'tickets0001'
branch_labels = None
depends_on = None

_KEY = "store_id, customer_id"
_COLUMNS = "customer_id, store_id, last_paid_visit, last_purchase, cars_mid, cars_premium, latest_vehicle_id, insured_until"
_CAR_COLUMNS = "customer_id, store_id, last_purchase, cars_mid, cars_premium, latest_vehicle_id, insured_until"


def _campaigns0002():
    """campaigns0002's trigger definitions (its module is a file, not an importable package)."""
    path = Path(__file__).with_name("campaigns0002_customer_touch.py")
    spec = importlib.util.spec_from_file_location("_campaigns0002_customer_touch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sqlite_store_recompute(who: str, store: str, m) -> str:
    return (f"INSERT INTO customer_store_touch (customer_id, store_id, last_paid_visit) VALUES ({who}, {store}, "
            f"(SELECT max(visit_date) FROM service_visits WHERE customer_id = {who} AND store_id = {store} AND paid)) "
            f"ON CONFLICT ({_KEY}) DO UPDATE SET last_paid_visit = excluded.last_paid_visit;\n"
            f"INSERT INTO customer_store_touch ({_CAR_COLUMNS}) SELECT {who}, {store}, "
            f"{m._cars_of(f'customer_id = {who} AND store_id = {store}')} "
            f"ON CONFLICT ({_KEY}) DO UPDATE SET {m._CAR_SET};")


def sqlite_triggers(m) -> dict[str, str]:
    later = m._sqlite_later
    return {
        # Every visit (paid or not) gives the pair its row: the row says the store sees the customer.
        "trg_customer_store_touch_visit_insert": f"""
            CREATE TRIGGER trg_customer_store_touch_visit_insert AFTER INSERT ON service_visits BEGIN
            INSERT INTO customer_store_touch (customer_id, store_id, last_paid_visit)
            VALUES (NEW.customer_id, NEW.store_id, CASE WHEN NEW.paid THEN NEW.visit_date END)
            ON CONFLICT ({_KEY}) DO UPDATE SET {later('last_paid_visit')};
            END""",
        "trg_customer_store_touch_visit_update": f"""
            CREATE TRIGGER trg_customer_store_touch_visit_update AFTER UPDATE OF customer_id, store_id, paid, visit_date
            ON service_visits BEGIN
            {_sqlite_store_recompute('OLD.customer_id', 'OLD.store_id', m)}
            {_sqlite_store_recompute('NEW.customer_id', 'NEW.store_id', m)}
            END""",
        "trg_customer_store_touch_visit_delete": f"""
            CREATE TRIGGER trg_customer_store_touch_visit_delete AFTER DELETE ON service_visits WHEN OLD.paid BEGIN
            {_sqlite_store_recompute('OLD.customer_id', 'OLD.store_id', m)}
            END""",
        "trg_customer_store_touch_car_insert": f"""
            CREATE TRIGGER trg_customer_store_touch_car_insert AFTER INSERT ON vehicles BEGIN
            INSERT INTO customer_store_touch ({_CAR_COLUMNS})
            VALUES (NEW.customer_id, NEW.store_id, NEW.purchase_date, CASE WHEN NEW.tier = 'premium' THEN 0 ELSE 1 END,
                    CASE WHEN NEW.tier = 'premium' THEN 1 ELSE 0 END, NEW.id,
                    CASE WHEN NEW.insured_here THEN NEW.insurance_expiry END)
            ON CONFLICT ({_KEY}) DO UPDATE SET {later('last_purchase')},
                cars_mid = cars_mid + excluded.cars_mid, cars_premium = cars_premium + excluded.cars_premium,
                {later('latest_vehicle_id')}, {later('insured_until')};
            END""",
        "trg_customer_store_touch_car_update": f"""
            CREATE TRIGGER trg_customer_store_touch_car_update AFTER UPDATE OF id, customer_id, store_id, tier,
            purchase_date, insured_here, insurance_expiry ON vehicles BEGIN
            {_sqlite_store_recompute('OLD.customer_id', 'OLD.store_id', m)}
            {_sqlite_store_recompute('NEW.customer_id', 'NEW.store_id', m)}
            END""",
        "trg_customer_store_touch_car_delete": f"""
            CREATE TRIGGER trg_customer_store_touch_car_delete AFTER DELETE ON vehicles BEGIN
            {_sqlite_store_recompute('OLD.customer_id', 'OLD.store_id', m)}
            END""",
    }


def _pg_recompute(pairs: str, m) -> str:
    """Recompute the (customer, store) pairs that ``pairs`` (a query) returns."""
    return f"""
        INSERT INTO customer_store_touch AS t ({_COLUMNS})
        SELECT c.id, c.store,
               (SELECT max(visit_date) FROM service_visits v WHERE v.customer_id = c.id AND v.store_id = c.store
                AND v.paid),
               car.*
        FROM ({pairs}) AS c (id, store)
        CROSS JOIN LATERAL (SELECT {m._cars_of('customer_id = c.id AND store_id = c.store')}) AS car
        WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = c.id)
          AND EXISTS (SELECT 1 FROM stores WHERE stores.id = c.store)
        ON CONFLICT ({_KEY}) DO UPDATE SET last_paid_visit = excluded.last_paid_visit, {m._CAR_SET};"""


def pg_functions(m) -> dict[str, str]:
    return {
        "customer_store_touch_visits_inserted": f"""
            INSERT INTO customer_store_touch AS t (customer_id, store_id, last_paid_visit)
            SELECT customer_id, store_id, max(CASE WHEN paid THEN visit_date END) FROM new_rows
            GROUP BY customer_id, store_id
            ON CONFLICT ({_KEY}) DO UPDATE
            SET last_paid_visit = greatest(t.last_paid_visit, excluded.last_paid_visit);""",
        "customer_store_touch_cars_inserted": f"""
            INSERT INTO customer_store_touch AS t ({_CAR_COLUMNS})
            SELECT customer_id, store_id, {m._cars_of('true').replace('FROM vehicles', 'FROM new_rows')}
            GROUP BY customer_id, store_id
            ON CONFLICT ({_KEY}) DO UPDATE
            SET last_purchase = greatest(t.last_purchase, excluded.last_purchase),
                cars_mid = t.cars_mid + excluded.cars_mid, cars_premium = t.cars_premium + excluded.cars_premium,
                latest_vehicle_id = greatest(t.latest_vehicle_id, excluded.latest_vehicle_id),
                insured_until = greatest(t.insured_until, excluded.insured_until);""",
        "customer_store_touch_rows_updated": _pg_recompute(
            "SELECT customer_id, store_id FROM old_rows UNION SELECT customer_id, store_id FROM new_rows", m),
        "customer_store_touch_rows_deleted": _pg_recompute("SELECT DISTINCT customer_id, store_id FROM old_rows", m),
    }


PG_TRIGGERS = [  # (name, event, table, transition tables, function)
    ("trg_customer_store_touch_visit_insert", "INSERT", "service_visits", "NEW TABLE AS new_rows",
     "customer_store_touch_visits_inserted"),
    ("trg_customer_store_touch_visit_update", "UPDATE", "service_visits",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows", "customer_store_touch_rows_updated"),
    ("trg_customer_store_touch_visit_delete", "DELETE", "service_visits", "OLD TABLE AS old_rows",
     "customer_store_touch_rows_deleted"),
    ("trg_customer_store_touch_car_insert", "INSERT", "vehicles", "NEW TABLE AS new_rows",
     "customer_store_touch_cars_inserted"),
    ("trg_customer_store_touch_car_update", "UPDATE", "vehicles", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "customer_store_touch_rows_updated"),
    ("trg_customer_store_touch_car_delete", "DELETE", "vehicles", "OLD TABLE AS old_rows",
     "customer_store_touch_rows_deleted"),
]

BACKFILL = f"""
    INSERT INTO customer_store_touch ({_COLUMNS})
    SELECT k.customer_id, k.store_id, paid.last, car.last, coalesce(car.mid, 0), coalesce(car.premium, 0),
           car.latest, car.insured
    FROM (SELECT customer_id, store_id FROM service_visits
          UNION SELECT customer_id, store_id FROM vehicles) k
    LEFT JOIN (SELECT customer_id, store_id, max(visit_date) AS last FROM service_visits WHERE paid
               GROUP BY customer_id, store_id) paid ON paid.customer_id = k.customer_id AND paid.store_id = k.store_id
    LEFT JOIN (SELECT customer_id, store_id, max(purchase_date) AS last,
                      sum(CASE WHEN tier = 'premium' THEN 0 ELSE 1 END) AS mid,
                      sum(CASE WHEN tier = 'premium' THEN 1 ELSE 0 END) AS premium,
                      max(id) AS latest, max(CASE WHEN insured_here THEN insurance_expiry END) AS insured
               FROM vehicles GROUP BY customer_id, store_id) car
           ON car.customer_id = k.customer_id AND car.store_id = k.store_id
"""

def _drop_sqlite_triggers(names) -> None:
    """Before a rebuild of ``vehicles``: SQLite re-parses every trigger when the rebuilt table is
    renamed into place, and campaigns0002's triggers name ``vehicles``, which is gone by then."""
    for name in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _create_sqlite_triggers(triggers: dict[str, str]) -> None:
    for sql in triggers.values():
        op.execute(sql)


def upgrade() -> None:
    m = _campaigns0002()
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _drop_sqlite_triggers(m.SQLITE_TRIGGERS)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope_store_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_customers_scope_store_id_stores'), 'stores',
                                    ['scope_store_id'], ['id'])
        batch_op.drop_constraint('uq_customers_external_id', type_='unique')
        batch_op.create_index('uq_customers_external_id_scope', ['external_id', 'scope_store_id'], unique=True)
        batch_op.create_index('uq_customers_external_id_group', ['external_id'], unique=True,
                              sqlite_where=sa.text('scope_store_id IS NULL'),
                              postgresql_where=sa.text('scope_store_id IS NULL'))

    op.add_column('vehicles', sa.Column('store_id', sa.Integer(), nullable=True))
    op.execute("UPDATE vehicles SET store_id = (SELECT store_id FROM customers WHERE customers.id = vehicles.customer_id)")
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.alter_column('store_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_vehicles_store_id_stores'), 'stores', ['store_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_vehicles_store_id'), ['store_id'], unique=False)

    op.create_table('customer_store_touch',
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('last_paid_visit', sa.Date(), nullable=True),
    sa.Column('last_purchase', sa.Date(), nullable=True),
    sa.Column('cars_mid', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('cars_premium', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('latest_vehicle_id', sa.Integer(), nullable=True),
    sa.Column('insured_until', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                            name=op.f('fk_customer_store_touch_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_customer_store_touch_store_id_stores'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('store_id', 'customer_id', name=op.f('pk_customer_store_touch'))
    )
    op.execute(BACKFILL)
    op.create_index('ix_customer_store_touch_store_paid', 'customer_store_touch', ['store_id', 'last_paid_visit'],
                    unique=False)
    if sqlite:
        _create_sqlite_triggers(m.SQLITE_TRIGGERS)
        _create_sqlite_triggers(sqlite_triggers(m))
    else:
        for name, body in pg_functions(m).items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                       f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$")
        for name, event, table, transition, function in PG_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        op.execute("ANALYZE customer_store_touch")


def downgrade() -> None:
    m = _campaigns0002()
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _drop_sqlite_triggers([*sqlite_triggers(m), *m.SQLITE_TRIGGERS])
    else:
        for name, _event, table, _transition, _function in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in pg_functions(m):
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index('ix_customer_store_touch_store_paid', table_name='customer_store_touch')
    op.drop_table('customer_store_touch')
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vehicles_store_id'))
        batch_op.drop_constraint(batch_op.f('fk_vehicles_store_id_stores'), type_='foreignkey')
        batch_op.drop_column('store_id')
    if sqlite:
        _create_sqlite_triggers(m.SQLITE_TRIGGERS)
    # Store-scoped numbers that repeat across stores cannot go back to one group-wide number.
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('uq_customers_external_id_group')
        batch_op.drop_index('uq_customers_external_id_scope')
        batch_op.create_unique_constraint('uq_customers_external_id', ['external_id'])
        batch_op.drop_constraint(batch_op.f('fk_customers_scope_store_id_stores'), type_='foreignkey')
        batch_op.drop_column('scope_store_id')
