-- The data tests/slt/postgres/*.slt query, as schema pg. Deterministic, with NULLs in every
-- nullable column, orders whose customer does not exist, text that differs only by case,
-- and a char(n) column whose values differ only by trailing blanks.
CREATE SCHEMA pg;

CREATE TABLE pg.customers (
    id int8 PRIMARY KEY,
    name text NOT NULL,
    country text,
    vip bool,
    born date,
    code char(3)
);
INSERT INTO pg.customers
SELECT i,
       'customer ' || i,
       (ARRAY['GB', 'NL', 'US', NULL])[1 + i % 4],
       CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3 = 0 END,
       DATE '1970-01-01' + i * 400,
       (ARRAY['ab', 'ab ', 'cd'])[1 + i % 3]
FROM generate_series(1, 40) AS i;

CREATE TABLE pg.orders (
    id int8 PRIMARY KEY,
    customer_id int8,
    amount numeric(10, 2),
    status text,
    qty int4,
    weight float8,
    placed timestamptz
);
INSERT INTO pg.orders
SELECT i,
       CASE WHEN i % 17 = 0 THEN NULL ELSE 1 + (i * 7) % 45 END,
       CASE WHEN i % 13 = 0 THEN NULL ELSE round((i * 37 % 1000) / 7.0, 2) END,
       (ARRAY['shipped', 'pending', 'lost', 'Shipped'])[1 + i % 4],
       CASE WHEN i % 11 = 0 THEN NULL ELSE i % 9 END,
       (i % 50) / 4.0,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '7 hours 13 minutes'
FROM generate_series(1, 300) AS i;

CREATE TABLE pg.returns (order_id int8, reason text);
INSERT INTO pg.returns
SELECT i * 3, (ARRAY['damaged', 'late', 'o''brien'])[1 + i % 3]
FROM generate_series(1, 60) AS i;

ANALYZE;

-- Doubles at the edges of their order: NaN, both infinities, both zeros, the extremes, NULLs.
CREATE TABLE pg.readings (
    id int8 PRIMARY KEY,
    f float8
);
INSERT INTO pg.readings VALUES
    (1, 'NaN'), (2, 'Infinity'), (3, '-Infinity'), (4, '-0'), (5, 0), (6, 1.5), (7, -2.5),
    (8, NULL), (9, 1e300), (10, -1e-300), (11, 3.25), (12, NULL);
