//! The embedded PostgreSQL as root, against a hostile `postgres` account (which owns the cluster
//! folder and may put links there), its place when root works in a private folder, and the
//! environment its server sees. CI runs as root, so these run as root there; the checks that
//! need root say so when they run without it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::worker::ServeProcess;
use common::{BinaryEnv, FixtureServer, TestDb};
use model_lens_sync::store::embedded::{EmbeddedError, EmbeddedPostgres};
use nix::unistd::{Uid, User};

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh path under the (world-searchable) test folder, so that `postgres` can reach it.
fn scratch_path(label: &str) -> PathBuf {
    let root = std::env::temp_dir().join("model-lens-tests");
    std::fs::create_dir_all(&root).expect("create the test folder");
    let path = root.join(format!(
        "{label}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

fn is_root() -> bool {
    Uid::effective().is_root()
}

fn postgres_account() -> User {
    User::from_name("postgres")
        .expect("read the user database")
        .expect("the postgres account exists (CI creates it)")
}

/// A root-owned file standing for something like /etc/passwd.
struct Victim {
    path: PathBuf,
}

const VICTIM_TEXT: &str = "root:x:0:0:precious\n";

impl Victim {
    fn create() -> Victim {
        let path = scratch_path("victim");
        std::fs::write(&path, VICTIM_TEXT).expect("write the victim file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod the victim");
        Victim { path }
    }

    /// Neither chowned nor appended to, nor made writable.
    fn assert_untouched(&self) {
        let meta = std::fs::metadata(&self.path).expect("the victim still exists");
        assert_eq!(
            std::fs::read_to_string(&self.path).unwrap(),
            VICTIM_TEXT,
            "something was appended to the link's target"
        );
        assert_eq!(meta.mode() & 0o7777, 0o644, "the target's mode changed");
        if is_root() {
            assert_eq!(meta.uid(), 0, "the link's target was chowned away from root");
        }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Makes `link` belong to the postgres account, as if that account had created it.
fn give_link_to_postgres(link: &Path) {
    if is_root() {
        let account = postgres_account();
        nix::unistd::fchownat(
            None,
            link,
            Some(account.uid),
            Some(account.gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .expect("lchown the link");
    }
}

/// A cluster started once and stopped, so that its folder and log exist as after a real run.
async fn a_used_cluster(label: &str) -> PathBuf {
    let dir = scratch_path(label);
    let cluster = EmbeddedPostgres::start(&dir, None).await.expect("the cluster starts");
    cluster.stop().await;
    assert!(dir.join("postgres.log").is_file());
    dir
}

fn assert_refused(result: Result<EmbeddedPostgres, EmbeddedError>, why: &str) {
    match result {
        Err(error @ EmbeddedError::Unsafe { .. }) => {
            assert!(error.to_string().contains(why), "{error}")
        }
        Err(other) => panic!("expected a refusal ({why}), got: {other}"),
        Ok(_) => panic!("the cluster started although {why}"),
    }
}

#[tokio::test]
async fn a_postgres_owned_symlink_in_place_of_the_log_is_neither_chowned_nor_appended_to() {
    let dir = a_used_cluster("symlinked-log").await;
    let victim = Victim::create();
    let log = dir.join("postgres.log");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim.path, &log).unwrap();
    give_link_to_postgres(&log);

    let result = EmbeddedPostgres::start(&dir, None).await;

    assert_refused(result, "symbolic link");
    victim.assert_untouched();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_hard_link_in_place_of_the_log_is_refused() {
    if !is_root() {
        eprintln!("skipped: hard links to files of other users need root (CI runs as root)");
        return;
    }
    let dir = a_used_cluster("hardlinked-log").await;
    let victim = Victim::create();
    let log = dir.join("postgres.log");
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&victim.path, &log).unwrap();

    let result = EmbeddedPostgres::start(&dir, None).await;

    assert_refused(result, "hard links");
    victim.assert_untouched();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_symlink_in_place_of_the_cluster_folder_is_not_followed() {
    if !is_root() {
        eprintln!("skipped: the folder is handed to postgres only when we are root (CI runs as root)");
        return;
    }
    let target = scratch_path("victim-dir");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = scratch_path("symlinked-dir");
    std::os::unix::fs::symlink(&target, &dir).unwrap();
    give_link_to_postgres(&dir);

    let result = EmbeddedPostgres::start(&dir, None).await;

    assert_refused(result, "symbolic link");
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.uid(), 0, "the link's target folder was chowned");
    assert_eq!(meta.mode() & 0o777, 0o755, "the link's target folder's mode changed");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "something was created in the target"
    );
    let _ = std::fs::remove_file(&dir);
    let _ = std::fs::remove_dir_all(&target);
}

#[tokio::test]
async fn the_cluster_folder_and_log_belong_to_the_server_account_and_stay_private() {
    let dir = a_used_cluster("ownership").await;
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "the cluster folder is private");
    let log = std::fs::metadata(dir.join("postgres.log")).unwrap();
    assert_eq!(log.mode() & 0o077, 0, "the log is readable by its owner only");
    let owner = if is_root() {
        postgres_account().uid
    } else {
        Uid::effective()
    };
    assert_eq!(meta.uid(), owner.as_raw());
    assert_eq!(log.uid(), owner.as_raw());
    // A second start reuses both.
    let cluster = EmbeddedPostgres::start(&dir, None)
        .await
        .expect("the cluster starts again");
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every process of the server: the postmaster (first line of `postmaster.pid`) and its children.
fn server_processes(data_dir: &Path) -> Vec<u32> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn the_embedded_server_sees_no_secret_in_its_environment() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let cluster_dir = scratch_path("environment");
    let secrets = [
        ("ADMIN_TOKEN", "admin-secret-5f1c9e"),
        ("HF_TOKEN", "hf_secret_7d2a41"),
        ("OPENROUTER_API_KEY", "sk-or-secret-93be0c"),
        ("ARTIFICIAL_ANALYSIS_API_KEY", "aa-secret-1e77d4"),
        ("MODEL_LENS_SOURCES__HUGGINGFACE__API_KEY", "hf_nested_secret_c0ffee"),
    ];
    let mut env = BinaryEnv::new(&db, &server)
        .unset("DATABASE_URL")
        .set("MODEL_LENS_SCHEDULE__ENABLED", "false")
        .set("MODEL_LENS_DATABASE__EMBEDDED_DIR", cluster_dir.to_str().unwrap());
    for (key, value) in secrets {
        env = env.set(key, value);
    }
    let worker = ServeProcess::start(&env).await;

    let pids = server_processes(&cluster_dir.join("data"));
    assert!(pids.len() > 1, "the postmaster and its background processes: {pids:?}");
    for pid in &pids {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue; // a backend that ended meanwhile
        };
        let environ = String::from_utf8_lossy(&environ);
        for (key, value) in secrets {
            assert!(!environ.contains(value), "process {pid} sees {key}: {environ:?}");
        }
        for word in ["MODEL_LENS_", "DATABASE_URL", "TOKEN", "API_KEY"] {
            assert!(!environ.contains(word), "process {pid} sees {word}: {environ:?}");
        }
    }
    // The postmaster keeps its environment block as it was given: only these variables.
    let postmaster_environ = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
    for variable in postmaster_environ
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
    {
        let variable = String::from_utf8_lossy(variable);
        let name = variable.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "HOME", "USER", "LANG", "LANGUAGE"].contains(&name) || name.starts_with("LC_"),
            "the server inherited {name}"
        );
    }
    drop(worker);
    let _ = std::fs::remove_dir_all(&cluster_dir);
}

#[tokio::test]
async fn root_in_a_private_folder_gets_a_stable_cluster_the_postgres_account_can_reach() {
    if !is_root() {
        eprintln!("skipped: only root hands the cluster to another account (CI runs as root)");
        return;
    }
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    // A folder like root's home or `mktemp -d`: mode 0700, postgres cannot enter it.
    let private = tempfile::tempdir().expect("a private folder");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let fallback = scratch_path("fallback");
    let env = BinaryEnv::new(&db, &server)
        .unset("DATABASE_URL")
        .set("MODEL_LENS_DATABASE__EMBEDDED_FALLBACK_DIR", fallback.to_str().unwrap());
    let run = |args: &'static [&'static str]| {
        let mut command = env.command(args);
        command.current_dir(private.path());
        async move {
            let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
                .await
                .expect("finished within two minutes")
                .expect("the binary ran");
            common::RunOutput::from(output)
        }
    };

    let first = run(&["sync"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let clusters: Vec<PathBuf> = std::fs::read_dir(&fallback)
        .expect("the fallback folder was created")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(clusters.len(), 1, "one cluster for the project: {clusters:?}");
    let cluster = &clusters[0];
    let shown = format!("{}{}", first.stdout, first.stderr);
    assert!(
        shown.contains(&cluster.display().to_string()),
        "the location is stated: {first:?}"
    );
    let meta = std::fs::metadata(cluster).unwrap();
    assert_eq!(meta.uid(), postgres_account().uid.as_raw(), "created for postgres");
    assert_eq!(meta.mode() & 0o777, 0o700, "created private");
    let base = std::fs::metadata(&fallback).unwrap();
    assert_eq!(
        (base.uid(), base.mode() & 0o022),
        (0, 0),
        "the base belongs to root alone"
    );
    assert!(cluster.join("data/PG_VERSION").is_file());
    assert!(
        !private.path().join(".model-lens/postgres/data").exists(),
        "nothing was initialized in the private folder"
    );

    // The next run from the same folder finds the same cluster and its data.
    let second = run(&["syncs", "--json"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    let history: serde_json::Value = serde_json::from_str(&second.stdout).expect("JSON history");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(std::fs::read_dir(&fallback).unwrap().count(), 1, "still one cluster");
    let _ = std::fs::remove_dir_all(&fallback);
}
