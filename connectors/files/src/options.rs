//! The options of a `kind = "files"` source in catalog.toml.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// `[sources.NAME]` with `kind = "files"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesOptions {
    /// The directory holding the data, relative to catalog.toml's directory.
    pub root: String,
    /// Whether CSV files start with a header row (default true).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// The CSV field delimiter (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Relations declared explicitly, by name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableOptions>,
}

/// `[sources.NAME.tables.T]`: one relation declared explicitly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOptions {
    /// A file or a directory of files, relative to the source's root.
    pub path: String,
    /// The files' format; taken from the extension when absent.
    pub format: Option<FileFormatName>,
    /// Overrides the source's `has_header` for this relation.
    pub has_header: Option<bool>,
    /// Overrides the source's `delimiter` for this relation.
    pub delimiter: Option<String>,
}

/// A file format the `files` connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormatName {
    /// Comma (or `delimiter`) separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl FileFormatName {
    /// The format a file's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            "ndjson" | "jsonl" | "json" => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// The extension the files of `dir` in this format carry, so that a listing of the
    /// directory skips files of other kinds (a README, a `_SUCCESS` marker).
    pub(crate) fn extension_of_dir(self, dir: &Path) -> String {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| Self::from_path(p) == Some(self))
            .and_then(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| format!(".{e}"))
            })
            .unwrap_or_default()
    }
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> String {
    ",".to_owned()
}
