-- The data tests/slt/elasticsearch/*.slt query, as schema search in PostgreSQL (the
-- reference) and, copied by tests/src/search.rs, as indices of the search test server with
-- the mappings of mappings.json: there a NULL is a missing field in even rows and an explicit
-- null in odd ones.
CREATE SCHEMA search;

CREATE TABLE search.products (
    id int8 NOT NULL,
    sku text NOT NULL,
    title text,
    category text,
    price int4,
    stock int2,
    rating float8,
    added timestamptz,
    active bool
);
INSERT INTO search.products
SELECT i,
       'SKU-' || lpad(i::text, 3, '0'),
       CASE WHEN i % 19 = 0 THEN NULL
            ELSE (ARRAY['Red shoes', 'Blue shoes', 'Red hat', 'Green socks', 'red-shoes bundle',
                        '*:* OR title:x', 'back\slash "quoted"', 'it''s 100% wool'])[1 + i % 8]
                 || ' ' || (i % 5)
       END,
       (ARRAY['shoes', 'hats', 'socks', NULL, 'Shoes', '$gt', 'a*b?c'])[1 + i % 7],
       CASE WHEN i % 6 = 0 THEN NULL ELSE (i * 37) % 500 - 100 END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE i % 9 END,
       (i % 20) / 4.0,
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '11 hours 7 minutes'
       END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE i % 3 <> 0 END
FROM generate_series(1, 120) AS i;

-- Doubles at the edges of their order (JSON holds no NaN or infinity): both zeros, the
-- extremes, NULLs.
CREATE TABLE search.readings (
    id int8 NOT NULL,
    f float8
);
INSERT INTO search.readings VALUES
    (1, 1e308), (2, -1e308), (4, '-0'), (5, 0), (6, 1.5), (7, -2.5),
    (8, NULL), (9, 1e300), (10, -1e-300), (11, 3.25), (12, NULL);
