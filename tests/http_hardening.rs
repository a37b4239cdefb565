//! The HTTP surface of `serve` against hostile clients: the token-less admin mode refuses what a
//! web page or a DNS-rebinding page could send, IPv4-mapped loopback clients count as loopback,
//! slow or silent connections are closed by the header-read and idle timeouts, the connection
//! cap holds, and the probes neither query the database per request nor show its errors.
//!
//! Requests are written by hand on raw TCP, so every header (Host included) is exactly what an
//! attacker would send. Timings are measured and printed; the assertions leave wide margins.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::worker::{free_port, ServeProcess};
use common::{BinaryEnv, FixtureServer, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above every timeout the tests configure, far below "never".
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

fn worker_env(db: &TestDb, server: &FixtureServer) -> BinaryEnv {
    BinaryEnv::new(db, server)
        .set("MODEL_LENS_SCHEDULE__ENABLED", "false")
        .unset("ADMIN_TOKEN")
}

/// Sends `head` (a request without its final blank line) plus `Connection: close`, and returns
/// the status code and the body.
async fn request(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the worker");
    stream
        .write_all(format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(CLOSE_LIMIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits until the peer closes `stream` (EOF or reset) and returns how long that took.
async fn time_until_closed(stream: &mut TcpStream, started: Instant) -> Duration {
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(CLOSE_LIMIT, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {CLOSE_LIMIT:?}"),
        }
    }
}

async fn count_syncs(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM model_syncs").await
}

#[tokio::test]
async fn without_a_token_cross_site_and_rebinding_requests_are_refused() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let worker = ServeProcess::start(&worker_env(&db, &server)).await;
    let addr = worker.connect_addr();
    let host = format!("Host: 127.0.0.1:{}", addr.port());

    // What a web page can send without a preflight: a "simple" cross-site POST.
    let (status, body) = request(
        addr,
        &format!(
            "POST /api/admin/sync-models HTTP/1.1\r\n{host}\r\nContent-Type: text/plain\r\nOrigin: https://attacker.example\r\nSec-Fetch-Site: cross-site"
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // The same from an older browser without Sec-Fetch-* headers.
    let (status, body) = request(
        addr,
        &format!("POST /api/admin/sync-models HTTP/1.1\r\n{host}\r\nContent-Type: text/plain\r\nOrigin: null"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host header stays theirs.
    for method in ["POST", "GET"] {
        let (status, body) = request(
            addr,
            &format!(
                "{method} /api/admin/sync-models HTTP/1.1\r\nHost: attacker.example:{}",
                addr.port()
            ),
        )
        .await;
        assert_eq!(status, 403, "{method}: {body}");
        assert!(body.contains("Host"), "{body}");
    }
    assert_eq!(count_syncs(&db).await, 0, "a refused request started a sync");

    // A local tool (curl, `model-lens-sync trigger`) still works.
    let (status, body) = request(addr, &format!("POST /api/admin/sync-models HTTP/1.1\r\n{host}")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = request(
        addr,
        &format!("GET /api/admin/sync-models HTTP/1.1\r\nHost: localhost:{}", addr.port()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The public probes are not admin routes: any Host may read them.
    let (status, _) = request(addr, "GET /healthz HTTP/1.1\r\nHost: attacker.example").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn trigger_reaches_a_worker_listening_on_every_interface_through_loopback() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server);
    let port = free_port();
    // Dual stack: IPv4 clients arrive as ::ffff:127.0.0.1 and must count as loopback.
    let mut worker = ServeProcess::spawn(&env, SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    worker.wait_ready().await;

    let (status, body) = request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &format!("GET /api/admin/sync-models HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(status, 200, "an IPv4 client of a dual-stack socket: {body}");
    let (status, body) = request(
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        &format!("GET /api/admin/sync-models HTTP/1.1\r\nHost: [::1]:{port}"),
    )
    .await;
    assert_eq!(status, 200, "an IPv6 loopback client: {body}");

    // `trigger` with http.listen = [::]:PORT (as in a container) goes to loopback.
    let trigger = env
        .clone()
        .set("MODEL_LENS_HTTP__LISTEN", &format!("[::]:{port}"))
        .run(&["trigger"])
        .await;
    assert_eq!(trigger.code, 0, "{trigger:?}");
}

#[tokio::test]
async fn slow_or_silent_request_heads_are_cut_off_by_the_header_read_timeout() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("MODEL_LENS_HTTP__HEADER_READ_TIMEOUT_SECS", "2");
    let worker = ServeProcess::start(&env).await;
    let addr = worker.connect_addr();

    // Half a request head, then silence.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    silent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let silent_closed = time_until_closed(&mut silent, started).await;

    // A head trickled one byte every 200 ms: each byte is "progress", the head never completes.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut trickle_closed = None;
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            trickle_closed = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut probe)).await {
            trickle_closed = Some(started.elapsed());
            break;
        }
    }
    let trickle_closed = trickle_closed.expect("the trickled head was cut off before it was complete");

    // A connection that sends nothing at all.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let idle_closed = time_until_closed(&mut idle, Instant::now()).await;

    println!(
        "header_read_timeout_secs = 2: partial head closed after {:.2} s, trickled head after {:.2} s, nothing sent after {:.2} s",
        silent_closed.as_secs_f64(),
        trickle_closed.as_secs_f64(),
        idle_closed.as_secs_f64()
    );
    for closed in [silent_closed, trickle_closed, idle_closed] {
        assert!(
            closed >= Duration::from_millis(1500),
            "closed before the timeout: {closed:?}"
        );
    }
    // The worker still serves ordinary requests.
    let (status, _) = request(addr, "GET /healthz HTTP/1.1\r\nHost: localhost").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_HTTP__HEADER_READ_TIMEOUT_SECS", "60")
        .set("MODEL_LENS_HTTP__REQUEST_TIMEOUT_SECS", "2")
        .set("MODEL_LENS_HTTP__IDLE_TIMEOUT_SECS", "2");
    let worker = ServeProcess::start(&env).await;

    let mut stream = TcpStream::connect(worker.connect_addr()).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Read the whole answer ("ok\n", 3 bytes of body), then stay silent.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let read = tokio::time::timeout(CLOSE_LIMIT, stream.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            read > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..read]);
    }
    let closed = time_until_closed(&mut stream, Instant::now()).await;
    println!(
        "idle_timeout_secs = 2 (header_read_timeout_secs = 60): kept-alive connection closed after {:.2} s",
        closed.as_secs_f64()
    );
    assert!(
        closed >= Duration::from_millis(1500),
        "closed before the idle timeout: {closed:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("MODEL_LENS_HTTP__MAX_CONNECTIONS", "2");
    let worker = ServeProcess::start(&env).await;
    let addr = worker.connect_addr();

    // Two connections hold both permits; the first is known to be served.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(CLOSE_LIMIT, first.read(&mut buffer))
        .await
        .expect("first answered")
        .unwrap();
    assert!(read > 0);
    let second = TcpStream::connect(addr).await.unwrap();

    // A third client is accepted by the kernel but not served while both are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let waited = Instant::now();
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buffer)).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond max_connections = 2"
    );

    drop(first);
    let read = tokio::time::timeout(CLOSE_LIMIT, third.read(&mut buffer))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    println!(
        "max_connections = 2: the third connection was served {:.2} s after it sent its request (1 s of it held back on purpose)",
        waited.elapsed().as_secs_f64()
    );
    drop(second);
}

#[tokio::test]
async fn readiness_is_cached_so_probes_never_query_the_database_per_request() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_HTTP__READINESS_CACHE_SECS", "3600")
        .set("MODEL_LENS_DATABASE__STATEMENT_TIMEOUT_SECS", "1");
    let worker = ServeProcess::start(&env).await;
    let addr = worker.connect_addr();

    // With the migrations table locked, every check would time out; the cached answer stands.
    let client = db.client().await;
    client
        .batch_execute("BEGIN; LOCK TABLE model_lens_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    for _ in 0..20 {
        let (status, body) = request(addr, "GET /readyz HTTP/1.1\r\nHost: localhost").await;
        assert_eq!(status, 200, "the answer was not reused: {body}");
    }
    client.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn probes_use_their_own_small_pool_and_give_a_generic_reason() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_HTTP__READINESS_CACHE_SECS", "0")
        .set("MODEL_LENS_HEALTH__INTERVAL_SECS", "1")
        .set("MODEL_LENS_DATABASE__STATEMENT_TIMEOUT_SECS", "1");
    let worker = ServeProcess::start(&env).await;
    let addr = worker.connect_addr();

    // A burst of probes opens at most database.probe_pool_size (2) sessions, all named as probes.
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(request(addr, "GET /readyz HTTP/1.1\r\nHost: localhost")))
        .collect();
    for probe in burst {
        assert_eq!(probe.await.unwrap().0, 200);
    }
    let probe_sessions = db
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'model-lens-sync probes'",
            db.name
        ))
        .await;
    assert!((1..=2).contains(&probe_sessions), "{probe_sessions} probe sessions");

    // Locked tables make the checks fail with a statement timeout: the answers say so generically.
    let client = db.client().await;
    client
        .batch_execute("BEGIN; LOCK TABLE model_lens_migrations, model_syncs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let deadline = Instant::now() + CLOSE_LIMIT;
    let body = loop {
        let (status, body) = request(addr, "GET /readyz HTTP/1.1\r\nHost: localhost").await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
    };
    assert_eq!(body, "not ready: database unavailable\n");
    let deadline = Instant::now() + CLOSE_LIMIT;
    let report = loop {
        let (_, body) = request(addr, "GET /api/health HTTP/1.1\r\nHost: localhost").await;
        let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        let database = report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["name"] == "database"))
            .cloned()
            .expect("a database check");
        if database["ok"] == false {
            break report;
        }
        assert!(Instant::now() < deadline, "the database check never failed: {report}");
    };
    let text = report.to_string();
    for leak in [
        "statement timeout",
        "canceling",
        "model_lens_migrations",
        "SQLSTATE",
        "57014",
    ] {
        assert!(
            !text.contains(leak),
            "the health report shows the database error: {text}"
        );
    }
    client.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        worker.log().contains("canceling statement"),
        "the cause is in the worker's log"
    );
}
