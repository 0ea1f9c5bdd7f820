//! Runs every `tests/slt/*.slt` file against a live gateway serving the demo catalog.

use polygate_tests::gateway::TestGateway;
use polygate_tests::slt::PgSlt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass_against_the_demo() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let dir = polygate_tests::repo_root().join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let url = gateway.url("polygate");
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move {
                let client = polygate_tests::backends::connect(&url)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .expect("connects to the gateway");
                Ok::<_, polygate_tests::slt::SltError>(PgSlt::new(client, "polygate"))
            }
        });
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{}: {error}", file.display()));
        }
        eprintln!("ran {}", file.display());
    }
    anyhow::ensure!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    Ok(())
}
