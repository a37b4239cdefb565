//! Serves the recorded API payloads locally, like the tests do, so a sync can be tried
//! without internet: `cargo run --example fixture_server -- 127.0.0.1:9000`.
//! Every source's `base_url` is then `http://127.0.0.1:9000/ok` (see scripts/offline-sync.sh).

#[path = "../tests/common/fixture_server.rs"]
mod fixture_server;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let server = fixture_server::FixtureServer::start_at(&addr).await;
    println!(
        "serving ../shared/fixtures at {}/ok (Ctrl-C to stop)",
        server.base_url("ok").trim_end_matches("/ok")
    );
    let _ = tokio::signal::ctrl_c().await;
}
