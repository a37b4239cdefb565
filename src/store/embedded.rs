//! A private PostgreSQL cluster for when no `DATABASE_URL` is given: initialized under
//! `.model-lens/postgres` with the server binaries already on the machine, reachable only
//! through a Unix socket in that folder, and stopped when this process ends.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres`
//! account (which every PostgreSQL package creates). The server is started with a parent-death
//! signal, so even `kill -9` of this process shuts it down rather than leaving it behind.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, Uid, User};

const PORT: u16 = 5432;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) found; looked in: {searched}. \
         Install them (Debian/Ubuntu: `apt-get install postgresql`, Fedora: `dnf install postgresql-server`, \
         macOS: `brew install postgresql@15`), or set MODEL_LENS_DATABASE__POSTGRES_BIN_DIR to the folder \
         that holds them, or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "PostgreSQL refuses to run as root, so the embedded cluster must run as the `postgres` user, \
         but that account does not exist. Create it (`useradd --system postgres`), run as a normal user, \
         or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error(
        "the embedded cluster runs as the `postgres` user, which cannot enter {0}. Run from a folder \
         that user can reach, set MODEL_LENS_DATABASE__EMBEDDED_DIR to such a folder, or set DATABASE_URL"
    )]
    NotReachable(PathBuf),
    #[error("cannot prepare {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("initdb failed for {dir} (exit {status}): {output}")]
    InitdbFailed {
        dir: PathBuf,
        status: String,
        output: String,
    },
    #[error("the embedded PostgreSQL did not start: {0}")]
    StartFailed(String),
}

/// A running embedded cluster. Stop it with [`EmbeddedPostgres::stop`]; dropping it stops it too.
pub struct EmbeddedPostgres {
    root: PathBuf,
    keeper: Option<Keeper>,
}

/// The thread that owns the server process. The parent-death signal fires when the *thread*
/// that spawned the child ends, so the child is spawned from this dedicated thread, which
/// lives until the cluster is stopped or the process exits, never from a runtime worker that
/// may come and go.
struct Keeper {
    /// The signal to stop the server with (SIGINT fast, SIGQUIT immediate).
    stop: std::sync::mpsc::Sender<Signal>,
    exited: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    fn spawn(mut command: Command, program: PathBuf) -> Result<Keeper, EmbeddedError> {
        let (stop, stop_requested) = std::sync::mpsc::channel::<Signal>();
        let (started_tx, started) = std::sync::mpsc::channel::<Result<(), String>>();
        let exited = Arc::new(AtomicBool::new(false));
        let exited_flag = exited.clone();
        let thread = std::thread::Builder::new()
            .name("embedded-postgres".into())
            .spawn(move || {
                // SAFETY: prctl is async-signal-safe and the closure allocates nothing.
                unsafe {
                    command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from));
                }
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(error) => {
                        let _ = started_tx.send(Err(format!("cannot run {}: {error}", program.display())));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                // Until asked to stop (or the handle is dropped), watch for the server dying.
                let signal = loop {
                    match stop_requested.recv_timeout(Duration::from_millis(200)) {
                        Ok(signal) => break signal,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Signal::SIGINT,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            if let Ok(Some(_)) = child.try_wait() {
                                exited_flag.store(true, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                };
                stop_child(child, signal);
                exited_flag.store(true, Ordering::SeqCst);
            })
            .map_err(|error| EmbeddedError::StartFailed(format!("cannot start the keeper thread: {error}")))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Keeper {
                stop,
                exited,
                thread: Some(thread),
            }),
            Ok(Err(error)) => Err(EmbeddedError::StartFailed(error)),
            Err(_) => Err(EmbeddedError::StartFailed("the keeper thread died".into())),
        }
    }

    fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    /// Stops the server with `signal` and waits for it (blocking).
    fn stop(mut self, signal: Signal) {
        let _ = self.stop.send(signal);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedPostgres {
    /// Initializes the cluster on first use, starts it and waits until it accepts connections.
    pub async fn start(dir: &Path, bin_dir: Option<&Path>) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bin = find_binaries(bin_dir)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| EmbeddedError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let root = std::fs::canonicalize(dir).map_err(io(dir))?;
        let owner = server_account()?;
        if let Some(account) = &owner {
            ensure_reachable(&root, account)?;
            chown(&root, account).map_err(io(&root))?;
        }
        let data = root.join("data");
        if !data.join("PG_VERSION").exists() {
            initdb(&bin, &data, owner.as_ref())?;
        }
        let log_path = root.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        if let Some(account) = &owner {
            chown(&log_path, account).map_err(io(&log_path))?;
        }
        let mut command = Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&root)
            .args([
                "-p",
                &PORT.to_string(),
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io(&log_path))?)
            .stderr(log)
            .current_dir("/");
        run_as(&mut command, owner.as_ref());
        let keeper = Keeper::spawn(command, bin.join("postgres"))?;
        let mut cluster = EmbeddedPostgres {
            root,
            keeper: Some(keeper),
        };
        cluster.wait_until_ready(&log_path).await?;
        tracing::info!(dir = %cluster.root.display(), "embedded PostgreSQL started");
        Ok(cluster)
    }

    /// A connection string for the cluster (Unix socket, trust authentication).
    pub fn url(&self) -> String {
        format!("host={} port={PORT} user=postgres dbname=postgres", self.root.display())
    }

    async fn wait_until_ready(&mut self, log_path: &Path) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let config: tokio_postgres::Config = self.url().parse().expect("the embedded URL is well formed");
        loop {
            if self.keeper.as_ref().is_none_or(Keeper::has_exited) {
                self.keeper = None;
                return Err(EmbeddedError::StartFailed(format!(
                    "postgres exited; its log ({}) ends with: {}",
                    log_path.display(),
                    log_tail(log_path)
                )));
            }
            if config.connect(tokio_postgres::NoTls).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::StartFailed(format!(
                    "not accepting connections after {}s; see {}",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown: active sessions are ended, committed data is safe.
    pub async fn stop(self) {
        self.stop_with(Signal::SIGINT).await;
    }

    /// Immediate shutdown, as after a crash: sessions are cut, nothing is flushed, and the next
    /// start recovers from the WAL. The fault tests use it.
    pub async fn stop_immediately(self) {
        self.stop_with(Signal::SIGQUIT).await;
    }

    async fn stop_with(mut self, signal: Signal) {
        if let Some(keeper) = self.keeper.take() {
            let _ = tokio::task::spawn_blocking(move || keeper.stop(signal)).await;
            tracing::info!("embedded PostgreSQL stopped");
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.stop(Signal::SIGINT);
        }
    }
}

fn stop_child(mut child: Child, signal: Signal) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, signal);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Immediate shutdown: the server recovers from its WAL at the next start.
    let _ = kill(pid, Signal::SIGQUIT);
    let _ = child.wait();
}

/// Where `initdb` and `postgres` are: the configured folder, `pg_config --bindir`,
/// the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
pub fn find_binaries(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = configured {
        candidates.push(dir.to_path_buf());
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|entry| entry.path().join("bin")).collect();
        versions.sort_by_key(|path| {
            let version = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("");
            std::cmp::Reverse(version.parse::<u32>().unwrap_or(0))
        });
        candidates.extend(versions);
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    let found = candidates
        .iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file());
    match (configured, found) {
        (Some(dir), Some(found)) if found != dir => Err(EmbeddedError::BinariesNotFound {
            searched: dir.display().to_string(),
        }),
        (_, Some(found)) => Ok(found.clone()),
        (_, None) => Err(EmbeddedError::BinariesNotFound {
            searched: "pg_config --bindir, /usr/lib/postgresql/*/bin, PATH".into(),
        }),
    }
}

/// The account the server runs as: `None` (ourselves) unless we are root.
fn server_account() -> Result<Option<User>, EmbeddedError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(EmbeddedError::NoUnprivilegedUser),
    }
}

/// Every ancestor of `dir` must be searchable by `account`, or initdb fails obscurely.
fn ensure_reachable(dir: &Path, account: &User) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == account.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == account.gid.as_raw() && mode & 0o010 != 0);
        if !searchable {
            return Err(EmbeddedError::NotReachable(ancestor.to_path_buf()));
        }
    }
    Ok(())
}

fn chown(path: &Path, account: &User) -> std::io::Result<()> {
    nix::unistd::chown(path, Some(account.uid), Some(account.gid)).map_err(std::io::Error::from)
}

fn run_as(command: &mut Command, account: Option<&User>) {
    if let Some(account) = account {
        command
            .uid(account.uid.as_raw())
            .gid(account.gid.as_raw())
            .env("HOME", &account.dir)
            .env("USER", &account.name);
    }
}

fn initdb(bin: &Path, data: &Path, owner: Option<&User>) -> Result<(), EmbeddedError> {
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir("/")
        .stdin(Stdio::null());
    run_as(&mut command, owner);
    let output = command.output().map_err(|error| EmbeddedError::InitdbFailed {
        dir: data.to_path_buf(),
        status: "not run".into(),
        output: error.to_string(),
    })?;
    if !output.status.success() {
        return Err(EmbeddedError::InitdbFailed {
            dir: data.to_path_buf(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    tracing::info!(dir = %data.display(), "initialized the embedded PostgreSQL cluster");
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
