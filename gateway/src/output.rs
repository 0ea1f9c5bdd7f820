//! Printing query results for `polygate query`.

use std::io::Write;

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

/// How `polygate query` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table (the whole result is read before printing, to size the columns).
    Table,
    /// CSV with a header row, streamed.
    Csv,
    /// One JSON object per row (NDJSON), streamed.
    Json,
}

/// Writes every batch of `batches` to `out` in `format`.
pub async fn write_results(
    mut batches: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut impl Write,
) -> Result<(), DataFusionError> {
    match format {
        OutputFormat::Table => {
            let mut all: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = batches.next().await {
                all.push(batch?);
            }
            if all.is_empty() {
                all.push(RecordBatch::new_empty(batches.schema()));
            }
            writeln!(out, "{}", pretty_format_batches(&all)?)?;
        }
        OutputFormat::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(&mut *out);
            let mut wrote_any = false;
            while let Some(batch) = batches.next().await {
                writer.write(&batch?)?;
                wrote_any = true;
            }
            if !wrote_any {
                // An empty result still has a header.
                writer.write(&RecordBatch::new_empty(batches.schema()))?;
            }
        }
        OutputFormat::Json => {
            let mut writer = LineDelimitedWriter::new(&mut *out);
            while let Some(batch) = batches.next().await {
                writer.write(&batch?)?;
            }
            writer.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}
