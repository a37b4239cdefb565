#![allow(dead_code)]
//! The binary running in the background with its output captured as it comes, so a test can
//! wait for a log line (a state) instead of sleeping.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{BinaryEnv, RunOutput};

pub struct Running {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn collect(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer = [0u8; 8192];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0 {
                return;
            }
            into.lock().unwrap().extend_from_slice(&buffer[..read]);
        }
    })
}

impl Running {
    pub fn start(env: &BinaryEnv, args: &[&str]) -> Running {
        let mut child = env
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).to_string()
    }

    /// Waits until the log (stderr) contains `text`; fails after a minute or if the process ends.
    pub async fn wait_for_log(&mut self, text: &str) {
        self.wait_for_log_count(text, 1).await
    }

    /// Waits until the log (stderr) contains `text` at least `count` times.
    pub async fn wait_for_log_count(&mut self, text: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.stderr().matches(text).count() < count {
            if let Some(status) = self.child.try_wait().expect("poll the binary") {
                panic!(
                    "the binary ended ({status}) before logging {text:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in the log within a minute:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most two minutes) for the process to end; its exit code and whole output.
    pub async fn finish(mut self) -> RunOutput {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the binary finished within two minutes")
            .expect("wait for the binary");
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        RunOutput {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&self.stdout.lock().unwrap()).to_string(),
            stderr: self.stderr(),
        }
    }
}
