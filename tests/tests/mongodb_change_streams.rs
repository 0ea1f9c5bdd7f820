//! The Mongo-wire test server's change streams, read through the driver polygate uses, as a
//! cache's change feed will read them: inserts, updates with the document looked up, deletes,
//! each with its key, and a stream resumed after the last event it delivered.
//!
//! What the server lacks: it keeps its history in memory, and a resume token carries no
//! identity of the server that issued it. After a restart an old token is accepted without
//! error and the events up to its position are skipped, where MongoDB would refuse the token
//! (286, ChangeStreamHistoryLost). A feed must therefore re-copy after it reconnects to a
//! server it cannot tell is the same, never trust the token alone.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::options::FullDocumentType;
use polygate_tests::backends::{self, Backend};
use polygate_tests::mongo::MongoDatabase;

/// The next event of `stream`, within a few seconds.
async fn next(
    stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
) -> anyhow::Result<ChangeStreamEvent<Document>> {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(event)) => Ok(event?),
        Ok(None) => anyhow::bail!("the change stream ended"),
        Err(_) => anyhow::bail!("no change event within 10 s"),
    }
}

#[tokio::test]
async fn the_test_server_streams_changes_and_resumes() -> anyhow::Result<()> {
    let test = "the_test_server_streams_changes_and_resumes";
    let Some(url) = backends::require(Backend::Mongo, test) else {
        return Ok(());
    };
    let database = MongoDatabase::create(&url, "change_streams").await?;
    let items = database.db().collection::<Document>("items");
    items.insert_one(doc! { "_id": 0 }).await?;

    let mut stream = items
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .await?;
    items.insert_one(doc! { "_id": 1, "a": 1 }).await?;
    items
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "a": 2 } })
        .await?;

    let insert = next(&mut stream).await?;
    assert_eq!(insert.operation_type, OperationType::Insert);
    assert_eq!(insert.document_key, Some(doc! { "_id": 1 }));
    assert_eq!(insert.full_document, Some(doc! { "_id": 1, "a": 1 }));
    let update = next(&mut stream).await?;
    assert_eq!(update.operation_type, OperationType::Update);
    assert_eq!(update.full_document, Some(doc! { "_id": 1, "a": 2 }));
    let updated = update.update_description.map(|d| d.updated_fields);
    assert_eq!(updated, Some(doc! { "a": 2 }));

    items.delete_one(doc! { "_id": 1 }).await?;
    let delete = next(&mut stream).await?;
    assert_eq!(delete.operation_type, OperationType::Delete);
    assert_eq!(delete.document_key, Some(doc! { "_id": 1 }));

    // A stream resumed after the delete sees what came after it, and nothing before.
    let token = stream.resume_token();
    assert!(token.is_some(), "a resume token after an event");
    drop(stream);
    items.insert_one(doc! { "_id": 2 }).await?;
    let mut resumed = items.watch().resume_after(token).await?;
    let insert = next(&mut resumed).await?;
    assert_eq!(insert.operation_type, OperationType::Insert);
    assert_eq!(insert.document_key, Some(doc! { "_id": 2 }));
    drop(resumed);

    database.drop_database().await
}
