//! Randomized differential tests: generated filters, aggregates, TopN, cross-store joins and
//! correlated subqueries run on PostgreSQL itself (the reference) and through each connector,
//! with pushdown on and off.
//! Every answer must be PostgreSQL's.
//!
//! One table, `diff.t`, holds NULLs in every column but `id`, strings that differ by case,
//! by a leading blank and by LIKE's special characters, and the empty string. It is copied into
//! MongoDB and the search test server, where a NULL is a missing field in even rows and an
//! explicit null in odd ones: filters over missing fields get exercised too.
//!
//! The predicates are trees of AND, OR and NOT over comparisons (either way round), IN,
//! BETWEEN, LIKE, IS NULL and boolean columns, with literals drawn from the data and from the
//! edges around it. CI runs a fixed seed and a few hundred queries per connector and mode;
//! `POLYGATE_DIFF_SEED` and `POLYGATE_DIFF_QUERIES` run others, longer, by hand:
//! `POLYGATE_DIFF_SEED=$RANDOM POLYGATE_DIFF_QUERIES=2000 cargo test -p polygate-tests --test differential`.

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use polygate_tests::search::SearchIndices;
use polygate_tests::text_rows;
use serde_json::json;

const FIXTURE: &str = r#"
CREATE SCHEMA diff;
CREATE TABLE diff.t (
    id int8 NOT NULL,
    n int8,
    i int4,
    s text,
    b bool
);
INSERT INTO diff.t
SELECT g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 37) % 41 - 20 END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE (g * 13) % 17 - 8 END,
       CASE WHEN g % 6 = 0 THEN NULL
            ELSE (ARRAY['', 'a', 'A', 'ab', 'b', 'a%b', 'a_b', 'Zz', 'zz', ' a', 'é', 'a\b',
                        'abc', 'B'])[1 + g % 14] END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE g % 3 = 0 END
FROM generate_series(1, 240) AS g;
"#;

/// Integer literals: the data's range, its edges and beyond.
const INTEGERS: &[i64] = &[-21, -20, -8, -3, -1, 0, 1, 2, 5, 8, 9, 20, 21, 100];

/// String literals: the data's values, the empty string, and values between and around them.
const STRINGS: &[&str] = &[
    "", " ", " a", "A", "B", "Zz", "a", "a%b", "a_b", "aa", "ab", "abc", "b", "z", "zz", "é",
    "a\\b", "~",
];

/// LIKE patterns, with LIKE's own escapes.
const PATTERNS: &[&str] = &[
    "", "%", "_", "a%", "%b", "a_b", "a\\%b", "a\\_b", "%a%", "A%", "_b%", "a\\\\b", "%%", "é",
];

/// A small, fast generator (SplitMix64): the same seed, the same queries on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`below` is under the length of the constant, non-empty lists it picks from"
    )]
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A literal for `column`.
fn literal(random: &mut Random, column: &str) -> String {
    match column {
        "s" => quote(random.pick(STRINGS)),
        "b" => random.pick(&["TRUE", "FALSE"]).to_owned(),
        _ => random.pick(INTEGERS).to_string(),
    }
}

/// A predicate over the columns of `alias` (`a.` or nothing), at most `depth` levels deep.
fn predicate(random: &mut Random, alias: &str, depth: u32) -> String {
    if depth > 0 && random.chance(45) {
        let left = predicate(random, alias, depth - 1);
        return match random.below(3) {
            0 => format!("({left} AND {})", predicate(random, alias, depth - 1)),
            1 => format!("({left} OR {})", predicate(random, alias, depth - 1)),
            _ => format!("(NOT {left})"),
        };
    }
    let column = random.pick(&["n", "i", "s", "s", "b"]);
    let field = format!("{alias}{column}");
    match random.below(8) {
        0 | 1 if column != "b" => {
            let op = random.pick(&["=", "<>", "<", "<=", ">", ">="]);
            let value = literal(random, column);
            if random.chance(20) {
                // The literal on the left: the operator turns round.
                format!("{value} {op} {field}")
            } else {
                format!("{field} {op} {value}")
            }
        }
        2 if column != "b" => {
            let values: Vec<String> = (0..1 + random.below(3))
                .map(|_| literal(random, column))
                .collect();
            let not = if random.chance(40) { "NOT " } else { "" };
            format!("{field} {not}IN ({})", values.join(", "))
        }
        3 if column != "b" => {
            let not = if random.chance(40) { "NOT " } else { "" };
            let (low, high) = (literal(random, column), literal(random, column));
            format!("{field} {not}BETWEEN {low} AND {high}")
        }
        4 => {
            let not = if random.chance(40) { "NOT " } else { "" };
            format!("{alias}s {not}LIKE {}", quote(random.pick(PATTERNS)))
        }
        5 => {
            let not = if random.chance(50) { "NOT " } else { "" };
            format!("{field} IS {not}NULL")
        }
        6 => format!("{alias}b"),
        _ => format!("{field} = {}", literal(random, column)),
    }
}

/// One generated query, as PostgreSQL runs it on `diff.t` and polygate on `{t}`; whether its
/// rows come in a defined order.
struct Query {
    sql: String,
    ordered: bool,
}

fn queries(random: &mut Random, count: usize) -> Vec<Query> {
    (0..count)
        .map(|n| {
            let filter = predicate(random, "", 3);
            match n % 5 {
                0 | 1 => Query {
                    sql: format!("SELECT id FROM {{t}} WHERE {filter}"),
                    ordered: false,
                },
                2 if random.chance(50) => Query {
                    sql: format!(
                        "SELECT s, count(*), count(i), min(n), max(n), sum(i) FROM {{t}} \
                         WHERE {filter} GROUP BY s"
                    ),
                    ordered: false,
                },
                2 => Query {
                    sql: format!(
                        "SELECT a.id, p.id FROM {{t}} AS a JOIN {{pg}} AS p ON a.i = p.n \
                         WHERE {}",
                        predicate(random, "a.", 2)
                    ),
                    ordered: false,
                },
                // Correlated subqueries over two tables, correlated on columns of one name.
                4 if random.chance(50) => Query {
                    sql: format!(
                        "SELECT a.id, (SELECT count(*) FROM {{t}} AS x, {{pg}} AS y \
                         WHERE x.i = a.i AND y.i = a.n) FROM {{t}} AS a WHERE {}",
                        predicate(random, "a.", 2)
                    ),
                    ordered: false,
                },
                4 => Query {
                    sql: format!(
                        "SELECT a.id FROM {{t}} AS a WHERE EXISTS (SELECT 1 FROM {{t}} AS x, \
                         {{pg}} AS y WHERE x.n = a.i AND y.n = a.n AND {})",
                        predicate(random, "x.", 2)
                    ),
                    ordered: false,
                },
                _ => {
                    let column = random.pick(&["n", "i", "s", "b"]);
                    let direction = random.pick(&["ASC", "DESC"]);
                    let nulls = random.pick(&["FIRST", "LAST"]);
                    let limit = 1 + random.below(12);
                    Query {
                        sql: format!(
                            "SELECT id FROM {{t}} WHERE {filter} \
                             ORDER BY {column} {direction} NULLS {nulls}, id LIMIT {limit}"
                        ),
                        ordered: true,
                    }
                }
            }
        })
        .collect()
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_queries_answer_as_postgresql_through_every_connector() -> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "differential") else {
        return Ok(());
    };
    let Some(mongo_url) = backends::require(Backend::Mongo, "differential") else {
        return Ok(());
    };
    let Some(search_url) = backends::require(Backend::Search, "differential") else {
        return Ok(());
    };
    let seed = setting("POLYGATE_DIFF_SEED", 17);
    let count = setting("POLYGATE_DIFF_QUERIES", 480) as usize;

    let pg = PgDatabase::create(&admin, "differential").await?;
    let reference = pg.client().await?;
    reference.batch_execute(FIXTURE).await?;
    let mongo = MongoDatabase::create(&mongo_url, "differential").await?;
    mongo.copy_from_postgres(&reference, "diff").await?;
    let mut search = SearchIndices::create(&search_url, "differential");
    let mappings = json!({ "t": { "properties": {
        "id": { "type": "long" },
        "n": { "type": "long" },
        "i": { "type": "integer" },
        "s": { "type": "keyword" },
        "b": { "type": "boolean" },
    } } });
    search
        .copy_from_postgres(&reference, "diff", &mappings)
        .await?;

    let catalog = |pushdown: bool| {
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\nschemas = [\"diff\"]\n\
             pushdown = {pushdown}\n\n{}\n\
             [sources.search]\nkind = \"elasticsearch\"\nurl = \"{}\"\ninclude = [\"t\"]\n\
             pushdown = {pushdown}\n",
            pg.url,
            mongo.source("mongo", &format!("pushdown = {pushdown}")),
            search.url,
        )
    };
    let pushed = TestGateway::with_catalog(&catalog(true)).await?;
    let local = TestGateway::with_catalog(&catalog(false)).await?;
    let gateways = [
        ("pushdown", pushed.connect().await?),
        ("local", local.connect().await?),
    ];

    let mut random = Random(seed);
    let queries = queries(&mut random, count);
    let mut failures = Vec::new();
    let mut compared = 0;
    for query in &queries {
        let direct = query.sql.replace("{t}", "diff.t").replace("{pg}", "diff.t");
        let mut expected = text_rows(&reference, &direct).await?;
        if !query.ordered {
            expected.sort();
        }
        for relation in ["pg.t", "mongo.t", "search.t"] {
            let sql = query.sql.replace("{t}", relation).replace("{pg}", "pg.t");
            for (mode, client) in &gateways {
                compared += 1;
                let answer = match text_rows(client, &sql).await {
                    Ok(mut rows) => {
                        if !query.ordered {
                            rows.sort();
                        }
                        rows
                    }
                    Err(error) => {
                        failures.push(format!("{mode}: {sql}\n  failed: {error}"));
                        continue;
                    }
                };
                if answer != expected {
                    failures.push(format!(
                        "{mode}: {sql}\n  PostgreSQL: {expected:?}\n  polygate:   {answer:?}"
                    ));
                }
            }
        }
    }
    drop(gateways);
    drop((pushed, local));
    pg.drop_database().await?;
    mongo.drop_database().await?;
    search.delete().await?;
    println!(
        "seed {seed}: {} queries, {compared} answers compared, {} differences",
        queries.len(),
        failures.len()
    );
    failures.truncate(20);
    anyhow::ensure!(
        failures.is_empty(),
        "seed {seed}: answers that differ from PostgreSQL's:\n{}",
        failures.join("\n")
    );
    Ok(())
}
