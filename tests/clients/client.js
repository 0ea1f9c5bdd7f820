// node-postgres against a live polygate (tests/tests/client_compat.rs runs it).
//
// Connection settings come from the PG* environment variables; REVIEWS names the search index
// of reviews. Every check asserts the rows it gets; the script prints "ok" at the end.

'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

const REVIEWS = process.env.REVIEWS;
const JOIN = `
SELECT c.name, count(*) AS orders, sum(o.amount) AS total, max(r.stars) AS stars
FROM pg.customers c
JOIN mongo.orders o ON o.customer_id = c.id
JOIN search.${REVIEWS} r ON r.customer_id = c.id
WHERE c.country = $1
GROUP BY c.name
ORDER BY c.name`;

async function main() {
  const client = new Client(); // PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
  await client.connect();
  try {
    // A parameterised cross-store join (int8 arrives as a string, as node-postgres reads it).
    const joined = await client.query(JOIN, ['NL']);
    assert.deepEqual(joined.rows, [
      { name: 'Ada', orders: '2', total: 30.5, stars: 5 },
      { name: 'Bob', orders: '1', total: 5.25, stars: 3 },
    ]);

    // Types, as node-postgres parses them.
    const typed = await client.query('SELECT * FROM pg.types ORDER BY id');
    assert.equal(typed.rows.length, 2);
    const row = typed.rows[0];
    assert.equal(row.id, 1);
    assert.equal(row.i2, -32768);
    assert.equal(row.i4, 2147483647);
    assert.equal(row.i8, '-9223372036854775808');
    assert.equal(row.f4, 1.5);
    assert.equal(row.f8, 2.25);
    assert.equal(row.n, '1234.567');
    assert.equal(row.t, "ünïcödé 'q'");
    assert.equal(row.b, true);
    assert.equal(row.tz.toISOString(), '2024-03-01T12:00:00.000Z');
    assert.deepEqual(row.by, Buffer.from([0x00, 0xff]));
    assert.deepEqual(row.ai, [1, null, 3]);
    assert.deepEqual(row.at, ['a b', null, '']);
    const nulls = typed.rows[1];
    for (const [column, value] of Object.entries(nulls)) {
      if (column !== 'id') assert.equal(value, null, column);
    }

    // Parameters of several types, sent as text.
    const found = await client.query(
      'SELECT name FROM pg.customers WHERE id = $1 AND joined < $2 AND credit > $3 AND name LIKE $4',
      [1, '2030-01-01T00:00:00Z', '1.5', 'A%'],
    );
    assert.deepEqual(found.rows, [{ name: 'Ada' }]);

    // Writes are refused with 25006.
    await assert.rejects(
      client.query("DELETE FROM pg.customers"),
      (error) => error.code === '25006',
    );
  } finally {
    await client.end();
  }
  console.log('ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
