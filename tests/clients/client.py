"""psycopg 3 and SQLAlchemy 2 against a live polygate (tests/tests/client_compat.rs runs it).

Connection settings come from the PG* environment variables; REVIEWS names the search index
of reviews. Every check asserts the rows it gets; the script prints "ok" at the end.
"""

import datetime
import decimal
import os

import psycopg
from sqlalchemy import (
    MetaData,
    Numeric,
    Table,
    create_engine,
    inspect,
    select,
    text,
)

REVIEWS = os.environ["REVIEWS"]
JOIN = f"""
SELECT c.name, count(*) AS orders, sum(o.amount) AS total, max(r.stars) AS stars
FROM pg.customers c
JOIN mongo.orders o ON o.customer_id = c.id
JOIN search.{REVIEWS} r ON r.customer_id = c.id
WHERE c.country = %s
GROUP BY c.name
ORDER BY c.name
"""
EXPECTED_JOIN = [("Ada", 2, 30.5, 5), ("Bob", 1, 5.25, 3)]

UTC = datetime.timezone.utc
EXPECTED_TYPES = [
    (
        1,
        -32768,
        2147483647,
        -9223372036854775808,
        1.5,
        2.25,
        decimal.Decimal("1234.567"),
        "ünïcödé 'q'",
        True,
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 2, 29, 23, 59, 59, 123456),
        datetime.datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC),
        b"\x00\xff",
        [1, None, 3],
        ["a b", None, ""],
    ),
    (2,) + (None,) * 14,
]


def check_psycopg(conninfo):
    with psycopg.connect(conninfo) as conn:
        # A parameterised cross-store join, by the extended protocol.
        rows = conn.execute(JOIN, ("NL",)).fetchall()
        assert rows == EXPECTED_JOIN, rows
        # Every type, in text and in binary format.
        for binary in (False, True):
            with conn.cursor(binary=binary) as cursor:
                cursor.execute("SELECT * FROM pg.types ORDER BY id")
                rows = cursor.fetchall()
                assert rows == EXPECTED_TYPES, (binary, rows)
        # Session statements psycopg users write.
        conn.execute("SET search_path TO pg")
        (count,) = conn.execute("SELECT count(*) FROM customers").fetchone()
        assert count == 3, count
        conn.rollback()
        # Read-only: writes are refused with 25006.
        try:
            conn.execute("INSERT INTO pg.customers (id, name) VALUES (9, 'x')")
        except psycopg.errors.ReadOnlySqlTransaction:
            conn.rollback()
        else:
            raise AssertionError("an INSERT was accepted")


def check_sqlalchemy(url):
    engine = create_engine(url)
    inspector = inspect(engine)
    assert "pg" in inspector.get_schema_names(), inspector.get_schema_names()
    tables = inspector.get_table_names(schema="pg")
    assert {"customers", "types"} <= set(tables), tables
    columns = [
        (c["name"], type(c["type"]).__name__, c["default"], c.get("identity"))
        for c in inspector.get_columns("customers", schema="pg")
    ]
    assert columns == [
        ("id", "INTEGER", None, None),
        ("name", "TEXT", None, None),
        ("country", "TEXT", None, None),
        ("joined", "TIMESTAMP", None, None),
        ("credit", "NUMERIC", None, None),
    ], columns
    # Reflection of the whole table: columns, keys, indexes, constraints, comment. polygate
    # reports no keys or indexes (its sources' constraints are not carried over).
    customers = Table("customers", MetaData(), autoload_with=engine, schema="pg")
    assert [c.name for c in customers.columns] == [
        "id", "name", "country", "joined", "credit"
    ], list(customers.columns)
    assert isinstance(customers.c.credit.type, Numeric), customers.c.credit.type
    assert inspector.get_pk_constraint("customers", schema="pg")["constrained_columns"] == []
    assert inspector.get_indexes("customers", schema="pg") == []
    assert inspector.get_unique_constraints("customers", schema="pg") == []
    assert inspector.get_foreign_keys("customers", schema="pg") == []
    with engine.connect() as conn:
        rows = conn.execute(
            select(customers.c.name, customers.c.credit, customers.c.joined)
            .where(customers.c.id == 1)
        ).all()
        assert rows == [
            ("Ada", decimal.Decimal("100.50"), datetime.datetime(2020, 5, 17, 8, 30))
        ], rows
        rows = conn.execute(
            text(JOIN.replace("%s", ":country")), {"country": "NL"}
        ).all()
        assert [tuple(r) for r in rows] == EXPECTED_JOIN, rows


def main():
    env = os.environ
    conninfo = (
        f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} "
        f"password={env['PGPASSWORD']} dbname={env['PGDATABASE']}"
    )
    check_psycopg(conninfo)
    url = (
        f"postgresql+psycopg://{env['PGUSER']}:{env['PGPASSWORD']}"
        f"@{env['PGHOST']}:{env['PGPORT']}/{env['PGDATABASE']}"
    )
    check_sqlalchemy(url)
    print("ok")


if __name__ == "__main__":
    main()
