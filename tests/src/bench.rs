//! What the benchmark binaries share: timing with CPU time, medians, side-by-side reports,
//! and running queries through an in-process engine.

use std::time::{Duration, Instant};

use anyhow::bail;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use polygate::engine::Engine;

/// This process's CPU time so far (user and system), from /proc.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One run of one side.
pub struct Measure {
    /// Wall-clock time.
    pub wall: Duration,
    /// This process's CPU time.
    pub cpu: Duration,
    /// Until the first batch arrived: planning, the server running the pipeline, and the
    /// first reply.
    pub first: Duration,
}

/// Scans a whole relation through a connector on one cursor (one partition), expecting
/// `documents` rows.
pub async fn scan(engine: &Engine, sql: &str, documents: i64) -> anyhow::Result<Measure> {
    let ctx = engine.default_session("polygate")?.ctx;
    ctx.sql("SET datafusion.execution.target_partitions = 1")
        .await?
        .collect()
        .await?;
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let (mut seen, mut first) = (0, None);
    while let Some(batch) = stream.next().await {
        first.get_or_insert_with(|| start.elapsed());
        seen += batch?.num_rows();
    }
    if seen as i64 != documents {
        bail!("scanned {seen} rows of {documents}");
    }
    Ok(Measure {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
        first: first.unwrap_or_default(),
    })
}

/// Runs `sql`, expecting `rows` rows.
pub async fn query(engine: &Engine, sql: &str, rows: usize) -> anyhow::Result<Measure> {
    let (start, cpu) = (Instant::now(), cpu_time());
    let batches = engine
        .default_session("polygate")?
        .ctx
        .sql(sql)
        .await?
        .collect()
        .await?;
    let seen: usize = batches.iter().map(|b| b.num_rows()).sum();
    if seen != rows {
        bail!("{sql}: {seen} rows, expected {rows}");
    }
    let wall = start.elapsed();
    Ok(Measure {
        wall,
        cpu: cpu_time() - cpu,
        first: wall,
    })
}

/// The median of some durations.
pub fn median(values: impl Iterator<Item = Duration>) -> Duration {
    let mut sorted: Vec<Duration> = values.collect();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Prints the medians and their ratio; returns the median CPU times.
pub fn report(
    what: &str,
    reference: &str,
    base: &[Measure],
    subject: &str,
    measured: &[Measure],
) -> (Duration, Duration) {
    let (base_wall, measured_wall) = (
        median(base.iter().map(|m| m.wall)),
        median(measured.iter().map(|m| m.wall)),
    );
    let (base_cpu, measured_cpu) = (
        median(base.iter().map(|m| m.cpu)),
        median(measured.iter().map(|m| m.cpu)),
    );
    let (base_first, measured_first) = (
        median(base.iter().map(|m| m.first)),
        median(measured.iter().map(|m| m.first)),
    );
    let all = |measures: &[Measure]| {
        let walls: Vec<String> = measures
            .iter()
            .map(|m| format!("{:.1}", m.wall.as_secs_f64()))
            .collect();
        walls.join(" ")
    };
    println!(
        "{what}: {reference} {:.3} s (cpu {:.3} s, first batch {:.3} s), {subject} {:.3} s \
         (cpu {:.3} s, first batch {:.3} s), ratio {:.2}",
        base_wall.as_secs_f64(),
        base_cpu.as_secs_f64(),
        base_first.as_secs_f64(),
        measured_wall.as_secs_f64(),
        measured_cpu.as_secs_f64(),
        measured_first.as_secs_f64(),
        measured_wall.as_secs_f64() / base_wall.as_secs_f64()
    );
    println!(
        "  every run, s: {reference}: {}; {subject}: {}",
        all(base),
        all(measured)
    );
    (base_cpu, measured_cpu)
}

/// The physical plan of `sql` in a new session.
pub async fn explain(engine: &Engine, sql: &str) -> anyhow::Result<String> {
    explain_in(&engine.default_session("polygate")?.ctx, sql).await
}

/// The physical plan of `sql` in the session `ctx`.
pub async fn explain_in(ctx: &SessionContext, sql: &str) -> anyhow::Result<String> {
    use datafusion::arrow::array::AsArray;
    let batches = ctx.sql(&format!("EXPLAIN {sql}")).await?.collect().await?;
    let mut text = String::new();
    for batch in &batches {
        let kinds = batch.column(0).as_string::<i32>();
        let plans = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            if kinds.value(row) == "physical_plan" {
                text.push_str(plans.value(row));
            }
        }
    }
    Ok(text)
}
