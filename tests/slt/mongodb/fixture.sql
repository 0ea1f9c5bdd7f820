-- The data tests/slt/mongodb/*.slt query, as schema mongo in PostgreSQL (the reference) and,
-- copied by tests/src/mongo.rs, as collections of a MongoDB database: there a NULL is a
-- missing field in even rows and a BSON null in odd ones, int8 values alternate between int32
-- and int64, numeric values are Decimal128 and timestamptz values are dates.
CREATE SCHEMA mongo;

CREATE TABLE mongo.customers (
    id int8 NOT NULL,
    name text NOT NULL,
    country text,
    vip bool,
    score int4,
    joined timestamptz
);
INSERT INTO mongo.customers
SELECT i,
       'customer ' || i,
       (ARRAY['GB', 'NL', 'US', NULL])[1 + i % 4],
       CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3 = 0 END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 13) % 100 - 20 END,
       TIMESTAMPTZ '2020-01-01 00:00:00+00' + i * INTERVAL '9 days 5 hours'
FROM generate_series(1, 40) AS i;

CREATE TABLE mongo.orders (
    id int8 NOT NULL,
    customer_id int8,
    amount numeric(10, 2),
    status text,
    qty int4,
    weight float8,
    placed timestamptz,
    note text
);
INSERT INTO mongo.orders
SELECT i,
       CASE WHEN i % 17 = 0 THEN NULL ELSE 1 + (i * 7) % 45 END,
       CASE WHEN i % 13 = 0 THEN NULL ELSE round((i * 37 % 1000) / 7.0, 2) END,
       (ARRAY['shipped', 'pending', 'lost', 'Shipped'])[1 + i % 4],
       CASE WHEN i % 11 = 0 THEN NULL ELSE i % 9 END,
       (i % 50) / 4.0,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '7 hours 13 minutes',
       (ARRAY['$where', '{"$gt": ""}', 'o''brien', 'a.b', '100%_sure', 'Zoë 🚀', 'back\slash',
              '$gt', NULL, 'line
break'])[1 + i % 10]
FROM generate_series(1, 300) AS i;

-- Doubles at the edges of their order: NaN, both infinities, both zeros, the extremes, NULLs.
CREATE TABLE mongo.readings (
    id int8 NOT NULL,
    f float8
);
INSERT INTO mongo.readings VALUES
    (1, 'NaN'), (2, 'Infinity'), (3, '-Infinity'), (4, '-0'), (5, 0), (6, 1.5), (7, -2.5),
    (8, NULL), (9, 1e300), (10, -1e-300), (11, 3.25), (12, NULL);
