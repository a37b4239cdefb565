//! Publishing the catalog to a real `redis-server` (DESIGN.md §10) through the real `sync`
//! binary: one hash per source that holds exactly the source's current rows as the API's
//! JSON, with its expiry and the meta hash; a second sync swaps the hash atomically while a
//! reader watches; and Redis dying mid-sync never fails the sync.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{fixture_records, read_fixture, BinaryEnv, FixtureServer, TestDb};
use redis::AsyncCommands;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];

fn models_dev_records(fixture: &str) -> i64 {
    let value: Value = serde_json::from_slice(&read_fixture(fixture)).unwrap();
    value
        .as_object()
        .unwrap()
        .values()
        .map(|provider| provider["models"].as_object().map_or(0, |models| models.len() as i64))
        .sum()
}

async fn hash(redis: &RedisServer, key: &str) -> BTreeMap<String, String> {
    let mut connection = redis.connection().await.expect("connect to Redis");
    connection.hgetall(key).await.expect("HGETALL")
}

/// Every `redis-server` command, as `redis-cli monitor` prints it, until stopped.
struct Monitor {
    child: tokio::process::Child,
    lines: tokio::task::JoinHandle<Vec<String>>,
}

impl Monitor {
    async fn start(redis: &RedisServer) -> Monitor {
        let mut child = tokio::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "monitor"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-cli starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // `OK` once the monitor is attached: commands after this point are all seen.
        let first = lines.next_line().await.unwrap();
        assert_eq!(first.as_deref(), Some("OK"));
        let lines = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line);
            }
            seen
        });
        Monitor { child, lines }
    }

    async fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill().await;
        self.lines.await.unwrap()
    }
}

#[tokio::test]
async fn each_successful_source_is_published_whole_and_swapped_atomically() {
    let redis = RedisServer::start().await;
    let db = TestDb::create().await;
    let old_server = FixtureServer::start_with_models_dev("modelsdev_api_2025-11.json").await;
    let env = BinaryEnv::new(&db, &old_server)
        .set("REDIS_URL", &redis.url())
        // Small chunks: the new hash is written in many steps, which a reader must not see.
        .set("MODEL_LENS_REDIS__CHUNK_SIZE", "50");
    let first = env.run(&["sync"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("redis: published"), "{first:?}");

    // One field per current model of each source, with an expiry.
    let old_models_dev = models_dev_records("modelsdev_api_2025-11.json");
    let mut connection = redis.connection().await.unwrap();
    for source in SOURCES {
        let key = format!("model_lens:catalog:{source}");
        let expected = if source == "models_dev" {
            old_models_dev
        } else {
            fixture_records(source)
        };
        let fields: i64 = connection.hlen(&key).await.unwrap();
        assert_eq!(fields, expected, "{key}");
        let ttl: i64 = connection.ttl(&key).await.unwrap();
        assert!((86_000..=86_400).contains(&ttl), "{key} TTL {ttl}");
    }
    let meta = hash(&redis, "model_lens:catalog:meta").await;
    assert_eq!(meta["sync_id"], "1");
    assert_eq!(meta["openrouter_count"], fixture_records("openrouter").to_string());
    assert_eq!(meta["models_dev_count"], old_models_dev.to_string());
    assert!(meta["synced_at"].ends_with('Z'), "{meta:?}");
    let ttl: i64 = connection.ttl("model_lens:catalog:meta").await.unwrap();
    assert!(ttl > 86_000, "meta TTL {ttl}");

    // Values exact: each field is `<provider>|<model_id>` → the same JSON as the API.
    let run = env
        .run(&["models", "--json", "--source", "openrouter", "--limit", "1000"])
        .await;
    let page: Value = serde_json::from_str(&run.stdout).unwrap();
    let from_api: BTreeMap<String, Value> = page["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            let field = format!(
                "{}|{}",
                model["provider"].as_str().unwrap(),
                model["model_id"].as_str().unwrap()
            );
            (field, model.clone())
        })
        .collect();
    let published: BTreeMap<String, Value> = hash(&redis, "model_lens:catalog:openrouter")
        .await
        .into_iter()
        .map(|(field, json)| (field, serde_json::from_str(&json).unwrap()))
        .collect();
    assert_eq!(published, from_api);
    let opus = &published["anthropic|anthropic/claude-opus-4.7-fast"];
    assert_eq!(
        (
            &opus["input_price_per_mtok"],
            &opus["output_price_per_mtok"],
            &opus["cache_write_price_per_mtok"]
        ),
        (&Value::from("30"), &Value::from("150"), &Value::from("37.5"))
    );

    // A second sync brings the 2026 models.dev listing (3.3 times more models). A reader
    // polling the hash meanwhile sees the old hash or the new one, never one in between.
    let new_server = FixtureServer::start().await;
    // History would hold the 15.8% of models the new listing lacks (more than
    // history.max_removed_percent): they would stay in the catalog. Let them go, so the hash
    // is exactly the new listing.
    let new_env = BinaryEnv::new(&db, &new_server)
        .set("REDIS_URL", &redis.url())
        .set("MODEL_LENS_REDIS__CHUNK_SIZE", "50")
        .set("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", "100");
    let new_models_dev = fixture_records("models_dev");
    let monitor = Monitor::start(&redis).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut connection = redis.connection().await.unwrap();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                let fields: i64 = connection.hlen("model_lens:catalog:models_dev").await.unwrap();
                seen.insert(fields);
                reads += 1;
            }
            (seen, reads)
        })
    };
    let second = new_env.run(&["sync"]).await;
    done.store(true, Ordering::SeqCst);
    let (seen, reads) = reader.await.unwrap();
    let commands = monitor.stop().await;
    assert_eq!(second.code, 0, "{second:?}");
    assert!(reads > 0);
    assert!(
        seen.iter()
            .all(|fields| [old_models_dev, new_models_dev].contains(fields)),
        "a reader saw a half-written hash: sizes {seen:?}"
    );
    let fields: i64 = connection.hlen("model_lens:catalog:models_dev").await.unwrap();
    assert_eq!(fields, new_models_dev);
    let meta = hash(&redis, "model_lens:catalog:meta").await;
    assert_eq!(meta["sync_id"], "2");
    assert_eq!(meta["models_dev_count"], new_models_dev.to_string());

    // How it was written: chunks only into a temporary key, which is renamed inside MULTI.
    // (The reader's own HLENs are in the log too.)
    let published_keys: Vec<&String> = commands
        .iter()
        .filter(|line| line.contains("\"model_lens:catalog:models_dev\"") && !line.contains("\"HLEN\""))
        .collect();
    assert!(!published_keys.is_empty(), "the monitor saw the swap");
    for line in &published_keys {
        assert!(
            line.contains("\"RENAME\"") || line.contains("\"EXPIRE\""),
            "the published hash is only renamed into place and given its expiry: {line}"
        );
    }
    let hsets = commands
        .iter()
        .filter(|line| line.contains("\"HSET\" \"model_lens:catalog:models_dev:publishing:"))
        .count();
    assert!(hsets >= (new_models_dev / 50) as usize, "{hsets} chunks");
    let multi = commands.iter().position(|line| line.contains("\"MULTI\"")).unwrap();
    let rename = commands
        .iter()
        .position(|line| line.contains("\"RENAME\"") && line.contains(":models_dev:publishing:"))
        .unwrap();
    let exec = commands.iter().rposition(|line| line.contains("\"EXEC\"")).unwrap();
    assert!(multi < rename && rename < exec, "RENAME inside MULTI … EXEC");
    let leftovers: Vec<String> = connection.keys("model_lens:catalog:*:publishing:*").await.unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn redis_stopping_mid_sync_does_not_fail_the_sync() {
    let mut redis = RedisServer::start().await;
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .set("REDIS_URL", &redis.url())
        // models.dev answers after 3 s: the sync is running when Redis goes away.
        .source("models_dev", "base_url", &server.base_url("slow"));
    let child = env
        .command(&["sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .try_count("SELECT count(*) FROM model_syncs WHERE status = 'running'")
        .await
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the sync did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.stop();
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("sync finished")
        .expect("sync ran");
    let run = common::RunOutput::from(output);
    assert_eq!(run.code, 0, "the sync succeeds without Redis: {run:?}");
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "success");
    assert!(
        run.stderr.contains("could not publish the catalog to Redis"),
        "a warning says so: {run:?}"
    );
    assert!(!run.stdout.contains("redis: published"), "{run:?}");
}

#[tokio::test]
async fn publish_refills_a_redis_that_lost_its_data() {
    let redis = RedisServer::start().await;
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server).set("REDIS_URL", &redis.url());
    let nothing = env.run(&["publish"]).await;
    assert_eq!(nothing.code, 1, "no catalog yet: {nothing:?}");
    let no_redis = env.clone().unset("REDIS_URL").run(&["publish"]).await;
    assert_eq!(no_redis.code, 2, "{no_redis:?}");
    assert!(no_redis.stderr.contains("REDIS_URL"), "{no_redis:?}");

    // Hugging Face synced alone later: the meta names the newest sync, each source its own.
    assert_eq!(env.clone().unset("REDIS_URL").run(&["sync"]).await.code, 0);
    assert_eq!(
        env.clone()
            .unset("REDIS_URL")
            .run(&["sync", "--source", "huggingface"])
            .await
            .code,
        0
    );
    let run = env.run(&["publish"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut connection = redis.connection().await.unwrap();
    for source in SOURCES {
        let fields: i64 = connection.hlen(format!("model_lens:catalog:{source}")).await.unwrap();
        assert_eq!(fields, fixture_records(source), "{source}");
    }
    let meta = hash(&redis, "model_lens:catalog:meta").await;
    assert_eq!(meta["sync_id"], "2");
    assert_eq!(meta["huggingface_sync_id"], "2");
    assert_eq!(meta["openrouter_sync_id"], "1");
}
