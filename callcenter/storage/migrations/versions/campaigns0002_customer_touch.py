"""campaigns: customer_touch, the per-customer summary the customer-base classes are computed from

Revision ID: campaigns0002
Revises: campaigns0001
Create Date: 2026-11-22 20:20:00

Win-back selects lapsed customers: the latest paid visit and car purchase of every customer,
against a threshold that depends on their cars' tiers. Aggregating 3 million visits and a million
cars for it took 3-4 s on either database before anything else was done (PostgreSQL even
aggregated everything once per parallel worker). This table holds those facts per customer,
kept by triggers so that every writer (importer, demo, ORM, bulk COPY) maintains it:

- inserts move the latest dates forward and add to the car counts (on PostgreSQL once per
  statement, from its transition table, so a COPY of 3 million visits costs one upsert per
  customer rather than per row);
- updates and deletes recompute the affected customers from their rows.

The upgrade backfills it from the existing visits and cars (``callcenter init`` migrates).

Also: service_visits (vehicle_id, visit_date) replaces the vehicle_id index, so that maintenance
due's "no later visit of this car" is answered from the index alone.

A later migration that rebuilds vehicles or service_visits on SQLite (batch mode "move and copy")
drops their triggers with the old table: it must create them again (``SQLITE_TRIGGERS`` here).
"""

import sqlalchemy as sa
from alembic import op

revision = 'campaigns0002'
down_revision = 'campaigns0001'
branch_labels = None
depends_on = None

_CAR_COLUMNS = "customer_id, last_purchase, cars_mid, cars_premium, latest_vehicle_id, insured_until"
_COLUMNS = "customer_id, last_paid_visit, last_purchase, cars_mid, cars_premium, latest_vehicle_id, insured_until"


def _cars_of(where: str) -> str:
    """The car columns of customer_touch computed from ``vehicles`` rows matching ``where``."""
    return ("max(purchase_date), "
            "coalesce(sum(CASE WHEN tier = 'premium' THEN 0 ELSE 1 END), 0), "
            "coalesce(sum(CASE WHEN tier = 'premium' THEN 1 ELSE 0 END), 0), "
            "max(id), "
            f"max(CASE WHEN insured_here THEN insurance_expiry END) FROM vehicles WHERE {where}")


_CAR_SET = ("last_purchase = excluded.last_purchase, cars_mid = excluded.cars_mid, "
            "cars_premium = excluded.cars_premium, latest_vehicle_id = excluded.latest_vehicle_id, "
            "insured_until = excluded.insured_until")


def _sqlite_later(column: str) -> str:
    # SQLite's two-argument max() is NULL when either is NULL.
    return (f"{column} = CASE WHEN excluded.{column} IS NULL THEN {column} "
            f"WHEN {column} IS NULL OR excluded.{column} > {column} THEN excluded.{column} ELSE {column} END")


def _sqlite_recompute(who: str) -> str:
    return (f"INSERT INTO customer_touch (customer_id, last_paid_visit) VALUES ({who}, "
            f"(SELECT max(visit_date) FROM service_visits WHERE customer_id = {who} AND paid)) "
            f"ON CONFLICT (customer_id) DO UPDATE SET last_paid_visit = excluded.last_paid_visit;\n"
            f"INSERT INTO customer_touch ({_CAR_COLUMNS}) SELECT {who}, {_cars_of(f'customer_id = {who}')} "
            f"ON CONFLICT (customer_id) DO UPDATE SET {_CAR_SET};")


SQLITE_TRIGGERS = {
    "trg_customer_touch_visit_insert": f"""
        CREATE TRIGGER trg_customer_touch_visit_insert AFTER INSERT ON service_visits WHEN NEW.paid BEGIN
        INSERT INTO customer_touch (customer_id, last_paid_visit) VALUES (NEW.customer_id, NEW.visit_date)
        ON CONFLICT (customer_id) DO UPDATE SET {_sqlite_later('last_paid_visit')};
        END""",
    "trg_customer_touch_visit_update": f"""
        CREATE TRIGGER trg_customer_touch_visit_update AFTER UPDATE OF customer_id, paid, visit_date
        ON service_visits BEGIN
        {_sqlite_recompute('OLD.customer_id')}
        {_sqlite_recompute('NEW.customer_id')}
        END""",
    "trg_customer_touch_visit_delete": f"""
        CREATE TRIGGER trg_customer_touch_visit_delete AFTER DELETE ON service_visits WHEN OLD.paid BEGIN
        {_sqlite_recompute('OLD.customer_id')}
        END""",
    "trg_customer_touch_car_insert": f"""
        CREATE TRIGGER trg_customer_touch_car_insert AFTER INSERT ON vehicles BEGIN
        INSERT INTO customer_touch (customer_id, last_purchase, cars_mid, cars_premium, latest_vehicle_id,
                                    insured_until)
        VALUES (NEW.customer_id, NEW.purchase_date, CASE WHEN NEW.tier = 'premium' THEN 0 ELSE 1 END,
                CASE WHEN NEW.tier = 'premium' THEN 1 ELSE 0 END, NEW.id,
                CASE WHEN NEW.insured_here THEN NEW.insurance_expiry END)
        ON CONFLICT (customer_id) DO UPDATE SET {_sqlite_later('last_purchase')},
            cars_mid = cars_mid + excluded.cars_mid, cars_premium = cars_premium + excluded.cars_premium,
            {_sqlite_later('latest_vehicle_id')}, {_sqlite_later('insured_until')};
        END""",
    "trg_customer_touch_car_update": f"""
        CREATE TRIGGER trg_customer_touch_car_update AFTER UPDATE OF id, customer_id, tier, purchase_date,
        insured_here, insurance_expiry ON vehicles BEGIN
        {_sqlite_recompute('OLD.customer_id')}
        {_sqlite_recompute('NEW.customer_id')}
        END""",
    "trg_customer_touch_car_delete": f"""
        CREATE TRIGGER trg_customer_touch_car_delete AFTER DELETE ON vehicles BEGIN
        {_sqlite_recompute('OLD.customer_id')}
        END""",
}


def _pg_recompute(customers: str) -> str:
    """Recompute the customers whose ids ``customers`` (a query) returns."""
    return f"""
        INSERT INTO customer_touch AS t ({_COLUMNS})
        SELECT c.id,
               (SELECT max(visit_date) FROM service_visits v WHERE v.customer_id = c.id AND v.paid),
               car.*
        FROM ({customers}) AS c (id)
        CROSS JOIN LATERAL (SELECT {_cars_of('customer_id = c.id')}) AS car
        WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = c.id)
        ON CONFLICT (customer_id) DO UPDATE SET last_paid_visit = excluded.last_paid_visit, {_CAR_SET};"""


PG_FUNCTIONS = {
    "customer_touch_visits_inserted": """
        INSERT INTO customer_touch AS t (customer_id, last_paid_visit)
        SELECT customer_id, max(visit_date) FROM new_rows WHERE paid GROUP BY customer_id
        ON CONFLICT (customer_id) DO UPDATE
        SET last_paid_visit = greatest(t.last_paid_visit, excluded.last_paid_visit);""",
    "customer_touch_cars_inserted": f"""
        INSERT INTO customer_touch AS t ({_CAR_COLUMNS})
        SELECT customer_id, {_cars_of('true').replace('FROM vehicles', 'FROM new_rows')} GROUP BY customer_id
        ON CONFLICT (customer_id) DO UPDATE
        SET last_purchase = greatest(t.last_purchase, excluded.last_purchase),
            cars_mid = t.cars_mid + excluded.cars_mid, cars_premium = t.cars_premium + excluded.cars_premium,
            latest_vehicle_id = greatest(t.latest_vehicle_id, excluded.latest_vehicle_id),
            insured_until = greatest(t.insured_until, excluded.insured_until);""",
    "customer_touch_rows_updated": _pg_recompute(
        "SELECT customer_id FROM old_rows UNION SELECT customer_id FROM new_rows"),
    "customer_touch_rows_deleted": _pg_recompute("SELECT DISTINCT customer_id FROM old_rows"),
}
PG_TRIGGERS = [  # (name, event, table, transition tables, function)
    ("trg_customer_touch_visit_insert", "INSERT", "service_visits", "NEW TABLE AS new_rows",
     "customer_touch_visits_inserted"),
    ("trg_customer_touch_visit_update", "UPDATE", "service_visits", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "customer_touch_rows_updated"),
    ("trg_customer_touch_visit_delete", "DELETE", "service_visits", "OLD TABLE AS old_rows",
     "customer_touch_rows_deleted"),
    ("trg_customer_touch_car_insert", "INSERT", "vehicles", "NEW TABLE AS new_rows", "customer_touch_cars_inserted"),
    ("trg_customer_touch_car_update", "UPDATE", "vehicles", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "customer_touch_rows_updated"),
    ("trg_customer_touch_car_delete", "DELETE", "vehicles", "OLD TABLE AS old_rows", "customer_touch_rows_deleted"),
]

BACKFILL = f"""
    INSERT INTO customer_touch ({_COLUMNS})
    SELECT c.id, paid.last, car.last, coalesce(car.mid, 0), coalesce(car.premium, 0), car.latest, car.insured
    FROM customers c
    LEFT JOIN (SELECT customer_id, max(visit_date) AS last FROM service_visits WHERE paid
               GROUP BY customer_id) paid ON paid.customer_id = c.id
    LEFT JOIN (SELECT customer_id, max(purchase_date) AS last,
                      sum(CASE WHEN tier = 'premium' THEN 0 ELSE 1 END) AS mid,
                      sum(CASE WHEN tier = 'premium' THEN 1 ELSE 0 END) AS premium,
                      max(id) AS latest, max(CASE WHEN insured_here THEN insurance_expiry END) AS insured
               FROM vehicles GROUP BY customer_id) car ON car.customer_id = c.id
    WHERE paid.customer_id IS NOT NULL OR car.customer_id IS NOT NULL
"""


def upgrade() -> None:
    op.create_table('customer_touch',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('last_paid_visit', sa.Date(), nullable=True),
    sa.Column('last_purchase', sa.Date(), nullable=True),
    sa.Column('cars_mid', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('cars_premium', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('latest_vehicle_id', sa.Integer(), nullable=True),
    sa.Column('insured_until', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_touch_customer_id_customers'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_touch'))
    )
    op.execute(BACKFILL)
    with op.batch_alter_table('customer_touch', schema=None) as batch_op:
        batch_op.create_index('ix_customer_touch_last_paid_visit', ['last_paid_visit'], unique=False)
    with op.batch_alter_table('service_visits', schema=None) as batch_op:
        batch_op.create_index('ix_service_visits_vehicle_date', ['vehicle_id', 'visit_date'], unique=False)
        batch_op.drop_index('ix_service_visits_vehicle_id')
    if op.get_bind().dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                       f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$")
        for name, event, table, transition, function in PG_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        op.execute("ANALYZE customer_touch")
    else:
        for sql in SQLITE_TRIGGERS.values():
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _event, table, _transition, _function in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('service_visits', schema=None) as batch_op:
        batch_op.create_index('ix_service_visits_vehicle_id', ['vehicle_id'], unique=False)
        batch_op.drop_index('ix_service_visits_vehicle_date')
    with op.batch_alter_table('customer_touch', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_touch_last_paid_visit')
    op.drop_table('customer_touch')
