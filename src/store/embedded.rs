//! A private PostgreSQL cluster for when no `DATABASE_URL` is given: initialized under
//! `.model-lens/postgres` with the server binaries already on the machine, reachable only
//! through a Unix socket in that folder, and stopped when this process ends.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres`
//! account (which every PostgreSQL package creates). That account then owns the cluster folder,
//! so everything root does inside it goes through descriptors opened without following links
//! (`openat` with `O_NOFOLLOW`, then `fchown`/`fstat` on the descriptor): a link or hard link
//! that `postgres` put in place of the folder or of `postgres.log` is refused, never followed.
//! When root works in a folder `postgres` cannot enter (root's home, a `mktemp -d` folder), the
//! default cluster lives in `database.embedded_fallback_dir` (`/var/lib/model-lens/<name>`)
//! instead: a stable place per project folder, created 0700 for `postgres`.
//!
//! The server starts with a cleared environment (PATH, the locale, HOME and USER), so none of
//! our secrets (`ADMIN_TOKEN`, API keys, `DATABASE_URL`) is readable in its
//! `/proc/<pid>/environ`, and with a parent-death signal, so even `kill -9` of this process
//! shuts it down rather than leaving it behind.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, openat, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, Pid, Uid, User};

const DEFAULT_PORT: u16 = 5432;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_FILE: &str = "postgres.log";
/// The only variables the server and `initdb` inherit from us.
const LOCALE_VARIABLES: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NUMERIC",
    "LC_TIME",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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
         that user can reach, set MODEL_LENS_DATABASE__EMBEDDED_DIR to such a folder (or leave it unset: \
         the default then moves to MODEL_LENS_DATABASE__EMBEDDED_FALLBACK_DIR, /var/lib/model-lens), \
         or set DATABASE_URL"
    )]
    NotReachable(PathBuf),
    #[error("refusing to use {path} for the embedded cluster: {reason}")]
    Unsafe { path: PathBuf, reason: String },
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

/// How the server listens beyond its private Unix socket, and extra settings. The tests use it
/// for a cluster with TLS on a loopback port; the commands use the default.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Also listen on 127.0.0.1 at this TCP port (the socket file is named after it too).
    pub tcp_port: Option<u16>,
    /// Server settings (`-c key=value`), applied after the built-in ones.
    pub settings: Vec<(String, String)>,
}

/// A running embedded cluster. Stop it with [`EmbeddedPostgres::stop`]; dropping it stops it too.
pub struct EmbeddedPostgres {
    root: PathBuf,
    port: u16,
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
        EmbeddedPostgres::start_with(dir, bin_dir, &ServerOptions::default()).await
    }

    /// [`EmbeddedPostgres::start`] with listening and server settings of its own.
    pub async fn start_with(
        dir: &Path,
        bin_dir: Option<&Path>,
        options: &ServerOptions,
    ) -> Result<EmbeddedPostgres, EmbeddedError> {
        // `pg_config` and `initdb` are processes we wait for: off the async threads.
        let configured = bin_dir.map(Path::to_path_buf);
        let bin = blocking(move || find_binaries(configured.as_deref())).await?;
        let owner = server_account()?;
        if let Some(account) = &owner {
            let absolute = std::path::absolute(dir).map_err(|error| EmbeddedError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
            ensure_reachable(&absolute, account)?;
        }
        let (root, root_fd) = open_cluster_root(dir, owner.as_ref())?;
        let data = root.join("data");
        if !data.join("PG_VERSION").exists() {
            let (bin, data, owner) = (bin.clone(), data.clone(), owner.clone());
            blocking(move || initdb(&bin, &data, owner.as_ref())).await?;
        }
        let log = open_log(&root_fd, &root, owner.as_ref())?;
        let log_path = root.join(LOG_FILE);
        let port = options.tcp_port.unwrap_or(DEFAULT_PORT);
        let listen = if options.tcp_port.is_some() { "127.0.0.1" } else { "" };
        let mut command = Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&root)
            .args(["-p", &port.to_string()])
            .args(["-c", &format!("listen_addresses={listen}")])
            .args(["-c", "unix_socket_permissions=0700"]);
        for (key, value) in &options.settings {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        let log_handle = || {
            log.try_clone().map_err(|error| EmbeddedError::Io {
                path: log_path.clone(),
                error,
            })
        };
        command.stdin(Stdio::null()).stdout(log_handle()?).stderr(log_handle()?);
        isolate(&mut command, owner.as_ref());
        let keeper = Keeper::spawn(command, bin.join("postgres"))?;
        let mut cluster = EmbeddedPostgres {
            root,
            port,
            keeper: Some(keeper),
        };
        cluster.wait_until_ready(&log, &log_path).await?;
        tracing::info!(dir = %cluster.root.display(), "embedded PostgreSQL started");
        Ok(cluster)
    }

    /// The folder that holds the cluster (`data/`, `postgres.log` and the socket).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// A connection string for the cluster (Unix socket, trust authentication).
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            quote_connection_value(&self.root.to_string_lossy()),
            self.port
        )
    }

    async fn wait_until_ready(&mut self, log: &File, log_path: &Path) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let config: tokio_postgres::Config = self.url().parse().expect("the embedded URL is well formed");
        loop {
            if self.keeper.as_ref().is_none_or(Keeper::has_exited) {
                self.keeper = None;
                return Err(EmbeddedError::StartFailed(format!(
                    "postgres exited; its log ({}) ends with: {}",
                    log_path.display(),
                    log_tail(log)
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

/// Runs blocking work (waiting for a process) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EmbeddedError> + Send + 'static,
) -> Result<T, EmbeddedError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| EmbeddedError::StartFailed(format!("a blocking step panicked: {error}")))?
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

/// Where the default cluster of `configured` lives. For root, when the `postgres` account cannot
/// enter `configured` (root's home, a `mktemp -d` folder, both mode 0700), that is a folder of
/// its own under `fallback_base`, named after the project folder and stable across runs;
/// otherwise `configured` itself.
pub fn default_cluster_dir(configured: &Path, fallback_base: &Path) -> Result<PathBuf, EmbeddedError> {
    let Some(account) = server_account()? else {
        return Ok(configured.to_path_buf());
    };
    let absolute = std::path::absolute(configured).map_err(|error| EmbeddedError::Io {
        path: configured.to_path_buf(),
        error,
    })?;
    let Err(EmbeddedError::NotReachable(blocked)) = ensure_reachable(&absolute, &account) else {
        return Ok(configured.to_path_buf());
    };
    prepare_fallback_base(fallback_base)?;
    let dir = fallback_base.join(fallback_name(&absolute));
    tracing::warn!(
        private = %blocked.display(),
        dir = %dir.display(),
        "the postgres account cannot enter this folder; the embedded cluster of this project lives in {} \
         (set MODEL_LENS_DATABASE__EMBEDDED_FALLBACK_DIR to move it)",
        dir.display()
    );
    Ok(dir)
}

/// `<project folder>-<hash of the cluster path>`: readable, and unique per project folder.
fn fallback_name(absolute: &Path) -> String {
    let project = absolute
        .ancestors()
        .filter_map(|ancestor| ancestor.file_name()?.to_str())
        .find(|name| !name.starts_with('.') && *name != "postgres")
        .unwrap_or("root");
    let label: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    let hash = blake3::hash(absolute.as_os_str().as_encoded_bytes()).to_hex();
    format!("{label}-{}", &hash[..12])
}

/// The fallback base must be a real folder owned by root that nobody else can write to, since
/// root creates the clusters' folders in it.
fn prepare_fallback_base(base: &Path) -> Result<(), EmbeddedError> {
    let io = |error| EmbeddedError::Io {
        path: base.to_path_buf(),
        error,
    };
    if let Some(parent) = base.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(base) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    let meta = std::fs::symlink_metadata(base).map_err(io)?;
    if !meta.file_type().is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(EmbeddedError::Unsafe {
            path: base.to_path_buf(),
            reason: "it must be a folder (not a link) owned by root and writable only by root".into(),
        });
    }
    Ok(())
}

/// Creates (0700) or opens the cluster folder and, for root, hands it to `account`. The last
/// component is opened relative to its parent without following links, and the ownership is
/// changed on that descriptor: a link put in its place is refused, never followed.
fn open_cluster_root(dir: &Path, account: Option<&User>) -> Result<(PathBuf, OwnedFd), EmbeddedError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error: std::io::Error| EmbeddedError::Io { path, error }
    };
    let unsafe_path = |reason: &str| EmbeddedError::Unsafe {
        path: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| unsafe_path("it does not end in a folder name"))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    // The parent is the operator's choice and may be reached through links.
    let parent = std::fs::canonicalize(parent).map_err(io(parent))?;
    let parent_fd = open_fd(None, &parent, OFlag::O_DIRECTORY | OFlag::O_RDONLY).map_err(io(&parent))?;
    match mkdirat(Some(parent_fd.as_raw_fd()), name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(io(dir)(errno.into())),
    }
    let root = parent.join(name);
    let mut flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
    if account.is_some() {
        flags |= OFlag::O_NOFOLLOW;
    }
    let root_fd = match open_fd(Some(&parent_fd), Path::new(name), flags) {
        Ok(fd) => fd,
        Err(error)
            if [Errno::ELOOP, Errno::ENOTDIR]
                .into_iter()
                .any(|errno| error.raw_os_error() == Some(errno as i32)) =>
        {
            return Err(unsafe_path("it is a symbolic link or not a folder"));
        }
        Err(error) => return Err(io(&root)(error)),
    };
    if let Some(account) = account {
        let stat = fstat(root_fd.as_raw_fd()).map_err(|errno| io(&root)(errno.into()))?;
        if stat.st_uid != 0 && stat.st_uid != account.uid.as_raw() {
            return Err(unsafe_path("it belongs to another user"));
        }
        fchown(root_fd.as_raw_fd(), Some(account.uid), Some(account.gid)).map_err(|errno| io(&root)(errno.into()))?;
        fchmod(root_fd.as_raw_fd(), Mode::from_bits_truncate(0o700)).map_err(|errno| io(&root)(errno.into()))?;
    }
    Ok((root, root_fd))
}

fn open_fd(dir: Option<&OwnedFd>, path: &Path, flags: OFlag) -> std::io::Result<OwnedFd> {
    let raw = openat(
        dir.map(|fd| fd.as_raw_fd()),
        path,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Opens `postgres.log` for appending through the cluster folder's descriptor: never through a
/// link, never a file with other hard links, never anything but a regular file; for root, the
/// descriptor (not the path) is handed to `account`.
fn open_log(root_fd: &OwnedFd, root: &Path, account: Option<&User>) -> Result<File, EmbeddedError> {
    let path = root.join(LOG_FILE);
    let refuse = |reason: &str| EmbeddedError::Unsafe {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let io = |error: std::io::Error| EmbeddedError::Io {
        path: path.clone(),
        error,
    };
    // O_NONBLOCK: a FIFO in place of the log must not block the open.
    let flags = OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let fd = match open_fd(Some(root_fd), Path::new(LOG_FILE), flags) {
        Ok(fd) => fd,
        Err(error) if error.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Err(refuse("it is a symbolic link; remove it"));
        }
        Err(error) if error.raw_os_error() == Some(Errno::ENXIO as i32) => {
            return Err(refuse("it is not a regular file; remove it"));
        }
        Err(error) => return Err(io(error)),
    };
    let stat = fstat(fd.as_raw_fd()).map_err(|errno| io(errno.into()))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(refuse("it is not a regular file; remove it"));
    }
    if stat.st_nlink != 1 {
        return Err(refuse("it has other hard links; remove it"));
    }
    if let Some(account) = account {
        if stat.st_uid != 0 && stat.st_uid != account.uid.as_raw() {
            return Err(refuse("it belongs to another user; remove it"));
        }
        fchown(fd.as_raw_fd(), Some(account.uid), Some(account.gid)).map_err(|errno| io(errno.into()))?;
    }
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_APPEND)).map_err(|errno| io(errno.into()))?;
    Ok(File::from(fd))
}

/// Runs `command` as `account` (when root) with a cleared environment: PATH, the locale, HOME
/// and USER. Nothing else of ours (tokens, keys, `DATABASE_URL`) reaches the server.
fn isolate(command: &mut Command, account: Option<&User>) {
    command.env_clear().current_dir("/");
    command.env("PATH", std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()));
    for name in LOCALE_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let myself = match account {
        Some(account) => Some(account.clone()),
        None => User::from_uid(Uid::effective()).ok().flatten(),
    };
    if let Some(user) = &myself {
        command.env("HOME", &user.dir).env("USER", &user.name);
    }
    if let Some(account) = account {
        command.uid(account.uid.as_raw()).gid(account.gid.as_raw());
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
        .stdin(Stdio::null());
    isolate(&mut command, owner);
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

/// The last lines of the log, read through the descriptor we opened (never the path again).
fn log_tail(log: &File) -> String {
    const TAIL_BYTES: u64 = 8192;
    let length = log.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = length.saturating_sub(TAIL_BYTES);
    let mut buffer = vec![0; (length - start) as usize];
    let read = log.read_at(&mut buffer, start).unwrap_or(0);
    let text = String::from_utf8_lossy(&buffer[..read]);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// A value of a libpq `key=value` string, quoted so that spaces and quotes survive.
fn quote_connection_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}
