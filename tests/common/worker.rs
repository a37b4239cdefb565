#![allow(dead_code)]
//! `serve` as a child process for the hardening tests: started on a loopback port (or any
//! address the test chooses), polled until `/readyz` answers, killed when dropped, its output
//! printed when the test fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::BinaryEnv;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServeProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts `serve` on a free loopback port and waits until it is ready.
    pub async fn start(env: &BinaryEnv) -> ServeProcess {
        let mut process = ServeProcess::spawn(env, SocketAddr::from(([127, 0, 0, 1], free_port())));
        process.wait_ready().await;
        process
    }

    /// Starts `serve` listening on `listen`, without waiting.
    pub fn spawn(env: &BinaryEnv, listen: SocketAddr) -> ServeProcess {
        let (child, log_path, log_dir) = spawn_serve(env, listen);
        ServeProcess {
            child,
            addr: listen,
            log_path,
            _log_dir: log_dir,
        }
    }

    /// The loopback address to connect to (an unspecified listen address becomes loopback).
    pub fn connect_addr(&self) -> SocketAddr {
        match self.addr {
            SocketAddr::V4(addr) if addr.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
            SocketAddr::V6(addr) if addr.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
            }
            addr => addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.connect_addr())
    }

    /// Polls `/readyz` until it answers 200; fails if the process exits or time runs out.
    pub async fn wait_ready(&mut self) {
        let url = self.url("/readyz");
        wait_until_ok(&mut self.child, &url, READY_TIMEOUT).await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- serve log ({})\n{}", self.addr, self.log());
        }
    }
}

/// Starts `serve` on `listen` with its output in a log file of a new temporary folder; returns
/// the process, the log's path and the folder (which lives as long as the caller keeps it).
pub fn spawn_serve(env: &BinaryEnv, listen: SocketAddr) -> (tokio::process::Child, PathBuf, tempfile::TempDir) {
    let env = env.clone().set("MODEL_LENS_HTTP__LISTEN", &listen.to_string());
    let log_dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = log_dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("create the worker's log file");
    let child = env
        .command(&["serve"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file handle"))
        .stderr(log)
        .spawn()
        .expect("the binary starts");
    (child, log_path, log_dir)
}

/// Polls `url` until it answers 200; panics if `child` exits first or `limit` passes.
pub async fn wait_until_ok(child: &mut tokio::process::Child, url: &str, limit: Duration) {
    let client = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll the worker") {
            panic!("serve exited ({status}) before {url} answered 200");
        }
        let answer = client.get(url).timeout(Duration::from_secs(2)).send().await;
        if answer.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not answer 200 within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a local address").port()
}
