//! Discovery and scanning of real files in a temporary directory.

use std::fs;
use std::path::Path;

use datafusion::prelude::SessionContext;

use super::*;

fn options(toml_tables: BTreeMap<String, TableOptions>) -> FilesOptions {
    FilesOptions {
        root: "data".to_owned(),
        has_header: true,
        delimiter: ",".to_owned(),
        tables: toml_tables,
    }
}

fn connector(dir: &Path, tables: BTreeMap<String, TableOptions>) -> FilesConnector {
    let context = SourceContext::new("demo", dir);
    FilesConnector::new(&context, options(tables)).expect("valid options")
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join("data").join(name);
    fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

async fn count_rows(connector: &FilesConnector, table: &str) -> usize {
    let provider = connector
        .table_provider(&TableRef::new(NAMESPACE, table))
        .await
        .expect("provider");
    let ctx = SessionContext::new();
    ctx.read_table(provider)
        .expect("read")
        .count()
        .await
        .expect("count")
}

#[tokio::test]
async fn discovers_files_by_stem_and_directories_as_datasets() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "orders.csv", "id,total\n1,2.5\n2,3.5\n");
    write(
        dir.path(),
        "events.ndjson",
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n",
    );
    write(dir.path(), "clicks/part-0.csv", "x\n1\n");
    write(dir.path(), "clicks/part-1.csv", "x\n2\n");
    write(dir.path(), "README.md", "not data");

    let connector = connector(dir.path(), BTreeMap::new());
    let namespaces = connector.discover().await.expect("discover");
    assert_eq!(
        namespaces,
        vec![Namespace {
            name: NAMESPACE.to_owned(),
            tables: vec!["clicks".into(), "events".into(), "orders".into()],
        }]
    );
    assert_eq!(count_rows(&connector, "orders").await, 2);
    assert_eq!(count_rows(&connector, "events").await, 3);
    assert_eq!(count_rows(&connector, "clicks").await, 2);
}

#[tokio::test]
async fn same_stem_in_two_formats_exposes_neither() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "orders.csv", "id\n1\n");
    write(dir.path(), "orders.ndjson", "{\"id\":1}\n");
    let connector = connector(dir.path(), BTreeMap::new());
    let namespaces = connector.discover().await.expect("discover");
    assert!(namespaces[0].tables.is_empty(), "{namespaces:?}");
}

#[tokio::test]
async fn declared_table_wins_and_needs_a_known_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "legacy.txt", "id;name\n1;a\n2;b\n3;c\n");
    let declared = |format| {
        BTreeMap::from([(
            "legacy".to_owned(),
            TableOptions {
                path: "legacy.txt".into(),
                format,
                has_header: None,
                delimiter: Some(";".into()),
            },
        )])
    };
    let context = SourceContext::new("demo", dir.path());
    let error = FilesConnector::new(&context, options(declared(None))).expect_err("no format");
    assert_eq!(error.key, "tables.legacy.format");

    let connector = connector(dir.path(), declared(Some(FileFormatName::Csv)));
    connector.discover().await.expect("discover");
    assert_eq!(count_rows(&connector, "legacy").await, 3);
}

#[tokio::test]
async fn missing_root_is_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector(dir.path(), BTreeMap::new());
    let error = connector.discover().await.expect_err("no root");
    assert!(matches!(error, ConnectorError::Unavailable(_)), "{error}");
}

#[test]
fn delimiter_must_be_one_byte() {
    let context = SourceContext::new("demo", ".");
    let mut opts = options(BTreeMap::new());
    opts.delimiter = "||".into();
    let error = FilesConnector::new(&context, opts).expect_err("two bytes");
    assert_eq!(error.key, "delimiter");
}
