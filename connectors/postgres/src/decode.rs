//! Rows in PostgreSQL's binary format, decoded straight into Arrow batches.
//!
//! Two inputs feed the same builders: the stream of `COPY ... TO STDOUT (FORMAT binary)`,
//! used for statements without parameters (COPY takes none), and binary `DataRow`s of an
//! extended-protocol query otherwise. Either way each value is decoded from the bytes the
//! server sent, with no allocation per row or per value.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use polygate_connector_core::ConnectorError;
use tokio_postgres::Row;

use crate::schema::{ColumnBuilder, PgColumn, RawValue};

/// The most value bytes one batch holds before it is cut, whatever its row count. Arrow's
/// strings and binaries address their values with 32-bit offsets, so 8,192 values of 300 KB
/// would overflow a column; batches of this size also keep a scan's memory steady.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;

/// Accumulates rows into batches of at most `batch_size` rows and about
/// [`MAX_BATCH_BYTES`] of values.
pub(crate) struct BatchAssembler {
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    /// The value bytes of the rows so far.
    bytes: usize,
    batch_size: usize,
    /// Batches complete and not yet handed out.
    ready: VecDeque<RecordBatch>,
}

impl BatchAssembler {
    pub(crate) fn new(columns: Vec<PgColumn>, schema: SchemaRef, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let builders = columns.iter().map(|c| c.builder(batch_size)).collect();
        Self {
            columns,
            schema,
            builders,
            rows: 0,
            bytes: 0,
            batch_size,
            ready: VecDeque::new(),
        }
    }

    /// A completed batch, if one is waiting.
    pub(crate) fn pop(&mut self) -> Option<RecordBatch> {
        self.ready.pop_front()
    }

    /// Appends value `raw` of column `index` of the current row.
    #[allow(
        clippy::indexing_slicing,
        reason = "`index` is below `columns.len()`: `append_row` counts up to it and `parse` \
                  walks `fields`, which `tuple` fills with exactly that many; `builders` has \
                  one per column"
    )]
    fn append(&mut self, index: usize, raw: Option<&[u8]>) -> Result<(), ConnectorError> {
        self.bytes += raw.map_or(0, <[u8]>::len);
        self.builders[index].append_raw(raw).map_err(|message| {
            ConnectorError::InvalidData(format!("column {}: {message}", self.columns[index].name))
        })
    }

    /// Ends the current row; a batch is completed when it is full.
    fn end_row(&mut self) -> Result<(), ConnectorError> {
        self.rows += 1;
        if self.rows >= self.batch_size || self.bytes >= MAX_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Completes the rows so far into a batch, if there are any.
    pub(crate) fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays = self.builders.iter_mut().map(|b| b.finish()).collect();
        // A select list without columns (count(*)) still has rows.
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
            .map_err(|e| ConnectorError::InvalidData(e.to_string()))?;
        self.ready.push_back(batch);
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Appends one `DataRow` whose values are in binary format.
    pub(crate) fn append_row(&mut self, row: &Row) -> Result<(), ConnectorError> {
        for index in 0..self.columns.len() {
            let raw = row
                .try_get::<_, Option<RawValue>>(index)
                .map_err(|e| crate::remote::query_error(&e))?;
            self.append(index, raw.map(|r| r.0))?;
        }
        self.end_row()
    }
}

/// The signature that opens a binary COPY stream.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Decodes the byte stream of `COPY ... TO STDOUT (FORMAT binary)`, whatever the boundaries of
/// the chunks it arrives in.
pub(crate) struct CopyDecoder {
    header_read: bool,
    ended: bool,
    /// The start of a tuple that the previous chunk cut short.
    carry: Vec<u8>,
    /// The byte ranges of the current tuple's values (reused from row to row).
    fields: Vec<Option<Range<usize>>>,
}

/// What parsing a buffer found.
enum Parsed {
    /// This many bytes were consumed.
    Consumed(usize),
    /// The trailer was reached after this many bytes.
    Ended(usize),
}

impl CopyDecoder {
    pub(crate) fn new() -> Self {
        Self {
            header_read: false,
            ended: false,
            carry: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Feeds one chunk of the stream; complete tuples go to `out`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut BatchAssembler,
    ) -> Result<(), ConnectorError> {
        if self.ended {
            return Err(invalid("data after the end of the COPY stream"));
        }
        if self.carry.is_empty() {
            let consumed = self.parse(chunk, out)?;
            if let Some(rest) = chunk.get(consumed..) {
                self.carry.extend_from_slice(rest);
            }
        } else {
            let mut buffer = std::mem::take(&mut self.carry);
            buffer.extend_from_slice(chunk);
            let consumed = self.parse(&buffer, out)?;
            buffer.drain(..consumed);
            self.carry = buffer;
        }
        Ok(())
    }

    /// Checks that the stream ended where it should.
    pub(crate) fn finish(&self) -> Result<(), ConnectorError> {
        if !self.ended || !self.carry.is_empty() {
            return Err(invalid("the COPY stream ended in the middle of a row"));
        }
        Ok(())
    }

    /// Parses what it can of `buffer`, returning how many bytes it consumed.
    #[allow(
        clippy::indexing_slicing,
        reason = "`at` stays below `buffer.len()` in the loop; `tuple` consumed `length` bytes \
                  of `buffer[at..]` and put each value's range inside them"
    )]
    fn parse(&mut self, buffer: &[u8], out: &mut BatchAssembler) -> Result<usize, ConnectorError> {
        let mut at = 0;
        if !self.header_read {
            match header_length(buffer)? {
                Some(length) => {
                    self.header_read = true;
                    at = length;
                }
                None => return Ok(0),
            }
        }
        while at < buffer.len() {
            match self.tuple(&buffer[at..], out.columns.len())? {
                None => break,
                Some(Parsed::Ended(length)) => {
                    self.ended = true;
                    at += length;
                    if at != buffer.len() {
                        return Err(invalid("data after the end of the COPY stream"));
                    }
                    break;
                }
                Some(Parsed::Consumed(length)) => {
                    let tuple = &buffer[at..at + length];
                    for (index, range) in self.fields.iter().enumerate() {
                        let raw = range.as_ref().map(|r| &tuple[r.clone()]);
                        out.append(index, raw)?;
                    }
                    out.end_row()?;
                    at += length;
                }
            }
        }
        Ok(at)
    }

    /// Locates the values of the tuple at the start of `buffer`, or `None` if the buffer holds
    /// only part of it.
    fn tuple(&mut self, buffer: &[u8], width: usize) -> Result<Option<Parsed>, ConnectorError> {
        let Some(&count) = buffer.first_chunk() else {
            return Ok(None);
        };
        let count = i16::from_be_bytes(count);
        if count == -1 {
            return Ok(Some(Parsed::Ended(2)));
        }
        if usize::try_from(count).ok() != Some(width) {
            return Err(invalid(&format!(
                "a row of {count} values where {width} were expected"
            )));
        }
        self.fields.clear();
        let mut at = 2;
        for _ in 0..width {
            let Some(&length) = buffer.get(at..).and_then(<[u8]>::first_chunk) else {
                return Ok(None);
            };
            let length = i32::from_be_bytes(length);
            at += 4;
            if length < 0 {
                self.fields.push(None);
                continue;
            }
            let end = at + length as usize;
            if end > buffer.len() {
                return Ok(None);
            }
            self.fields.push(Some(at..end));
            at = end;
        }
        Ok(Some(Parsed::Consumed(at)))
    }
}

/// The length of the header at the start of `buffer`, or `None` if it is not all there.
fn header_length(buffer: &[u8]) -> Result<Option<usize>, ConnectorError> {
    let fixed = COPY_SIGNATURE.len() + 8;
    if buffer.len() < fixed {
        return Ok(None);
    }
    if !buffer.starts_with(COPY_SIGNATURE) {
        return Err(invalid("the COPY stream has no binary signature"));
    }
    // The signature, 32 bits of flags, then the length of a header extension.
    let Some(&extension) = buffer
        .get(COPY_SIGNATURE.len() + 4..)
        .and_then(<[u8]>::first_chunk)
    else {
        return Ok(None);
    };
    let extension = u32::from_be_bytes(extension) as usize;
    let length = fixed + extension;
    Ok((buffer.len() >= length).then_some(length))
}

fn invalid(message: &str) -> ConnectorError {
    ConnectorError::InvalidData(format!("malformed binary COPY data: {message}"))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int64Type, Schema};

    use super::*;

    fn columns() -> Vec<PgColumn> {
        vec![
            PgColumn::new("id".into(), 20, "bigint".into(), false),
            PgColumn::new("name".into(), 25, "text".into(), false),
        ]
    }

    fn assembler(batch_size: usize) -> BatchAssembler {
        let columns = columns();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(PgColumn::arrow_field)
                .collect::<Vec<_>>(),
        ));
        BatchAssembler::new(columns, schema, batch_size)
    }

    /// A binary COPY stream of `(id, name)` rows.
    fn stream(rows: &[(i64, Option<&str>)]) -> Vec<u8> {
        let mut bytes = COPY_SIGNATURE.to_vec();
        bytes.extend_from_slice(&0_i32.to_be_bytes());
        bytes.extend_from_slice(&0_i32.to_be_bytes());
        for (id, name) in rows {
            bytes.extend_from_slice(&2_i16.to_be_bytes());
            bytes.extend_from_slice(&8_i32.to_be_bytes());
            bytes.extend_from_slice(&id.to_be_bytes());
            match name {
                Some(name) => {
                    bytes.extend_from_slice(&(name.len() as i32).to_be_bytes());
                    bytes.extend_from_slice(name.as_bytes());
                }
                None => bytes.extend_from_slice(&(-1_i32).to_be_bytes()),
            }
        }
        bytes.extend_from_slice(&(-1_i16).to_be_bytes());
        bytes
    }

    fn decode(bytes: &[u8], chunk: usize, batch_size: usize) -> Result<Vec<RecordBatch>, String> {
        let mut out = assembler(batch_size);
        let mut decoder = CopyDecoder::new();
        for piece in bytes.chunks(chunk) {
            decoder.feed(piece, &mut out).map_err(|e| e.to_string())?;
        }
        decoder.finish().map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        Ok(std::iter::from_fn(|| out.pop()).collect())
    }

    #[test]
    fn rows_survive_any_chunking_and_fill_batches() {
        let rows: Vec<(i64, Option<&str>)> = (0..10)
            .map(|i| (i, if i % 3 == 0 { None } else { Some("ünïcode") }))
            .collect();
        let bytes = stream(&rows);
        for chunk in [1, 2, 3, 7, 19, bytes.len()] {
            let batches = decode(&bytes, chunk, 4).expect("valid stream");
            let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
            assert_eq!(sizes, [4, 4, 2], "chunks of {chunk}");
            let ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            assert_eq!(ids, (0..10).collect::<Vec<_>>());
            let names = batches[0].column(1).as_string::<i32>();
            assert!(names.is_null(0));
            assert_eq!(names.value(1), "ünïcode");
        }
    }

    #[test]
    fn large_values_cut_batches_by_bytes() {
        // 8,192 values of 300 KB in one batch would overflow Arrow's 32-bit string offsets
        // (2.4 GB); ten of a quarter of the limit each come in three batches.
        let value = "x".repeat(MAX_BATCH_BYTES / 4);
        let rows: Vec<(i64, Option<&str>)> = (0..10).map(|i| (i, Some(value.as_str()))).collect();
        let batches = decode(&stream(&rows), 1 << 20, 8192).expect("valid stream");
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert!(
            batches
                .iter()
                .all(|b| b.column(1).as_string::<i32>().value(0) == value)
        );
    }

    #[test]
    fn malformed_streams_are_errors() {
        let good = stream(&[(1, Some("a"))]);
        let check = |bytes: &[u8], expected: &str| {
            let error = decode(bytes, 5, 8).expect_err("malformed");
            assert!(error.contains(expected), "{error}");
        };
        check(&good[..good.len() - 2], "ended in the middle of a row");
        check(&good[..good.len() - 4], "ended in the middle of a row");
        check(b"PGCOPY\nX\r\n\0\0\0\0\0\0\0\0\0", "no binary signature");
        let mut wide = good.clone();
        wide[20] = 3; // the first row's value count, after the 19-byte header
        check(&wide, "a row of 3 values where 2 were expected");
        let mut trailing = good.clone();
        trailing.push(0);
        check(&trailing, "data after the end");
        let mut short_int = stream(&[]);
        let trailer = short_int.split_off(short_int.len() - 2);
        short_int.extend_from_slice(&2_i16.to_be_bytes());
        short_int.extend_from_slice(&4_i32.to_be_bytes());
        short_int.extend_from_slice(&7_i32.to_be_bytes());
        short_int.extend_from_slice(&(-1_i32).to_be_bytes());
        short_int.extend(trailer);
        check(&short_int, "column id: expected 8 bytes");
    }
}
