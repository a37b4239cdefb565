//! The supervisor's correctness core, each case a defect it once had: the sync lock lost to
//! another replica, a sync that could stay `running` forever, counters that lost or misfiled
//! records, and the writer's row-by-row path. Most tests run the real binary against a real
//! PostgreSQL; Hugging Face is served by the scripted server so that a test holds a page for
//! exactly as long as it needs the sync to be in the middle of something.

mod common;

use std::time::{Duration, Instant};

use common::{huggingface_items, lock_holder, BinaryEnv, FixtureServer, RunOutput, ScriptedServer, TestDb};
use model_lens_sync::store::syncs::SYNC_LOCK_KEY;
use serde_json::Value;

const HF_PATH: &str = "/api/models";

/// Only Hugging Face (served by `scripted`), so every row of the sync comes from the script.
fn huggingface_only(db: &TestDb, fixtures: &FixtureServer, scripted: &ScriptedServer) -> BinaryEnv {
    BinaryEnv::new(db, fixtures)
        .source("huggingface", "base_url", &scripted.base_url())
        .source("models_dev", "enabled", "false")
        .source("openrouter", "enabled", "false")
        .unset("ARTIFICIAL_ANALYSIS_API_KEY")
}

/// The huggingface row of sync 1: status, fetched, stored, rejected, http_requests, error.
async fn huggingface_result(db: &TestDb) -> (String, i64, i64, i64, i64, Option<String>) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT status, models_fetched, models_stored, models_rejected, http_requests, error
               FROM model_sync_sources WHERE sync_id = 1 AND source = 'huggingface'",
            &[],
        )
        .await
        .expect("the huggingface row of sync 1");
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5))
}

// Defect 1: the sync lock can be lost unnoticed.

#[tokio::test]
async fn a_sync_whose_lock_another_replica_took_ends_interrupted_and_writes_nothing_more() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    scripted.json_pages(HF_PATH, &huggingface_items(), 500);
    scripted.hold_from(HF_PATH, 2);
    let env = BinaryEnv::new(&db, &fixtures).source("huggingface", "base_url", &scripted.base_url());
    let child = env.command(&["sync"]).output();
    let takeover = async {
        // The sync is in the middle: Hugging Face waits for its third page.
        scripted.wait_for_request(HF_PATH, 2).await;
        let holder = lock_holder(&db).await.expect("the running sync holds the lock");
        // Another replica queues for the lock; when the holder's session ends, PostgreSQL hands
        // the lock straight to it, so the sync cannot take it back.
        let replica = db.client().await;
        let replica_pid: i32 = replica.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        let queued = tokio::spawn(async move {
            replica
                .execute("SELECT pg_advisory_lock($1)", &[&SYNC_LOCK_KEY])
                .await
                .expect("the replica gets the lock");
            replica
        });
        common::wait_until(
            &db,
            &format!("SELECT count(*) FROM pg_locks WHERE pid = {replica_pid} AND NOT granted"),
            30,
        )
        .await;
        db.count(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend({holder})) t"
        ))
        .await;
        let replica = queued.await.unwrap();
        // What a replica does when it holds the lock and finds a sync `running`: it is an orphan.
        let mut replica = replica;
        let transaction = replica.transaction().await.unwrap();
        transaction
            .execute(
                "UPDATE model_syncs SET status = 'interrupted', finished_at = now(), error = 'taken over'
                  WHERE status = 'running'",
                &[],
            )
            .await
            .unwrap();
        transaction
            .execute(
                "UPDATE model_sync_sources SET status = 'failed', error = 'taken over' WHERE status = 'running'",
                &[],
            )
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        let rows: i64 = replica
            .query_one("SELECT count(*) FROM model_snapshots", &[])
            .await
            .unwrap()
            .get(0);
        scripted.release_all(HF_PATH);
        (replica, rows)
    };
    let (output, (_replica, rows_at_takeover)) = tokio::join!(child, takeover);
    let run = RunOutput::from(output.expect("the binary ran"));
    assert_eq!(
        db.text("SELECT status FROM model_syncs WHERE id = 1").await,
        "interrupted",
        "the sync came back to life after another replica took over: {run:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots").await,
        rows_at_takeover,
        "rows were written after the lock was lost: {run:?}"
    );
    // Sources that finished before the takeover keep their result; none is left running.
    assert_eq!(
        db.count("SELECT count(*) FROM model_sync_sources WHERE status = 'running'")
            .await,
        0,
        "{run:?}"
    );
    assert_eq!(run.code, 2, "interrupted → exit 2: {run:?}");
    assert!(run.stderr.contains("sync lock"), "the log says what happened: {run:?}");
}

// Defect 3: a sync could stay `running` forever.

#[tokio::test]
async fn sync_timeout_finalizes_and_releases_the_lock_even_when_the_writer_hangs() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    scripted.json_pages(HF_PATH, &huggingface_items(), 1000);
    // Hugging Face never gets past its first page, and the writer hangs in its first batch.
    scripted.hold_from(HF_PATH, 1);
    let env = BinaryEnv::new(&db, &fixtures)
        .source("huggingface", "base_url", &scripted.base_url())
        .set("MODEL_LENS_FAULTS", "writer_batch=hang")
        .set("MODEL_LENS_SYNC__TIMEOUT_SECS", "5");
    let started = Instant::now();
    let run = env.run(&["sync"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: {run:?}",
        started.elapsed()
    );
    assert!(run.stderr.contains("injected fault"), "{run:?}");
    assert_eq!(
        db.text("SELECT status FROM model_syncs WHERE id = 1").await,
        "failed",
        "{run:?}"
    );
    assert_eq!(run.code, 2, "{run:?}");
    let timed_out = db
        .count("SELECT count(*) FROM model_sync_sources WHERE status = 'failed' AND error LIKE '%sync.timeout_secs%'")
        .await;
    assert_eq!(timed_out, 4, "{run:?}");
    assert_eq!(db.count("SELECT count(*) FROM model_snapshots").await, 0);
    scripted.release_all(HF_PATH);
}

#[tokio::test]
async fn a_writer_that_keeps_crashing_or_cannot_restart_ends_the_sync_at_once() {
    let fixtures = FixtureServer::start().await;
    for (faults, error) in [
        ("writer_batch=always", "the writer crashed 2 times within 60s"),
        ("writer_batch=1,writer_start=2", "the writer did not start"),
    ] {
        let db = TestDb::create().await;
        let env = BinaryEnv::new(&db, &fixtures)
            .set("MODEL_LENS_FAULTS", faults)
            .set("MODEL_LENS_SYNC__MAX_RESTARTS", "1");
        let started = Instant::now();
        let run = env.run(&["sync"]).await;
        assert!(started.elapsed() < Duration::from_secs(60), "{faults}: {run:?}");
        assert_eq!(
            db.text("SELECT status FROM model_syncs WHERE id = 1").await,
            "failed",
            "{faults}: {run:?}"
        );
        assert_eq!(run.code, 2, "{faults}: {run:?}");
        let errors = db
            .count(&format!(
                "SELECT count(*) FROM model_sync_sources WHERE status = 'failed' AND error LIKE '%{error}%'"
            ))
            .await;
        assert_eq!(errors, 4, "{faults}: {run:?}");
    }
}

// Defect 5: counters.

#[tokio::test]
async fn a_restarted_fetcher_keeps_the_http_requests_of_the_one_it_replaced() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    let items = huggingface_items();
    scripted.json_pages(HF_PATH, &items, 500);
    let env = huggingface_only(&db, &fixtures, &scripted)
        // The fetcher crashes before its third page, after two requests.
        .set("MODEL_LENS_FAULTS", "fetcher_page:huggingface=3");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("injected fault"), "{run:?}");
    let (status, fetched, stored, _, http_requests, _) = huggingface_result(&db).await;
    assert_eq!(status, "success", "{run:?}");
    assert_eq!((fetched, stored), (items.len() as i64, items.len() as i64));
    assert_eq!(
        http_requests,
        scripted.requests(HF_PATH) as i64,
        "every request the server saw is counted, the crashed fetcher's too"
    );
    assert!(http_requests >= 5, "the crash cost requests: {http_requests}");
}

#[tokio::test]
async fn every_fetched_record_is_stored_rejected_or_counted_as_a_duplicate() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    let items = huggingface_items();
    let (a, b, c, d, e) = (&items[0], &items[1], &items[2], &items[3], &items[4]);
    let mut c_changed = c.clone();
    c_changed["likes"] = Value::from(c["likes"].as_i64().unwrap_or(0) + 1);
    let page = |records: &[&Value]| serde_json::to_vec(records).unwrap();
    scripted.pages(
        HF_PATH,
        vec![
            // `b` twice in one page, identical.
            page(&[a, b, b]),
            // `a` again, identical, in another page.
            page(&[c, a, d]),
            // `c` again with other content: a conflicting record, quarantined.
            page(&[e, &c_changed]),
        ],
    );
    let run = huggingface_only(&db, &fixtures, &scripted).run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let row = db
        .client()
        .await
        .query_one(
            "SELECT models_fetched, models_stored, models_rejected, models_duplicates
               FROM model_sync_sources WHERE sync_id = 1 AND source = 'huggingface'",
            &[],
        )
        .await
        .expect("the source's counts");
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(counts, (8, 5, 1, 2), "(fetched, stored, rejected, duplicates): {run:?}");
    assert_eq!(
        db.text("SELECT reason FROM model_rejects").await,
        "duplicate_id",
        "only the conflicting record is a reject"
    );
    let totals = db
        .client()
        .await
        .query_one(
            "SELECT models_fetched, models_stored, models_rejected, models_duplicates FROM model_syncs WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let totals: (i64, i64, i64, i64) = (totals.get(0), totals.get(1), totals.get(2), totals.get(3));
    assert_eq!(totals, counts);
}

// Defect 6: the writer's row-by-row path.

/// Makes PostgreSQL refuse the row of `refused` for its data (a CHECK constraint), and fail the
/// first insert of `transient` with a serialization failure (a transient error).
async fn sabotage_model_versions(db: &TestDb, refused: &str, transient: Option<&str>) {
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "ALTER TABLE model_versions ADD CONSTRAINT test_refused CHECK (model_id <> '{refused}')"
        ))
        .await
        .unwrap();
    if let Some(transient) = transient {
        client
            .batch_execute(&format!(
                "CREATE SEQUENCE test_transient_once;
                 CREATE FUNCTION test_transient_once() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.model_id = '{transient}' AND nextval('test_transient_once') = 1 THEN
                     RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = '40001';
                   END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER test_transient_once BEFORE INSERT ON model_versions
                   FOR EACH ROW EXECUTE FUNCTION test_transient_once();"
            ))
            .await
            .unwrap();
    }
}

/// Syncs the first three Hugging Face records, in pages of `page_size`, into a table that
/// refuses the record `refused` for its data and fails the first insert of `transient` with a
/// transient error; returns the run and the database.
async fn sync_three_records_into_a_sabotaged_table(
    page_size: usize,
    refused: usize,
    transient: Option<usize>,
    setting: (&str, &str),
) -> (TestDb, RunOutput) {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    let items = huggingface_items();
    scripted.json_pages(HF_PATH, &items[..3], page_size);
    let env = huggingface_only(&db, &fixtures, &scripted).set(setting.0, setting.1);
    assert_eq!(env.run(&["migrate"]).await.code, 0);
    let id = |index: usize| items[index]["id"].as_str().unwrap().to_string();
    sabotage_model_versions(&db, &id(refused), transient.map(id).as_deref()).await;
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (status, fetched, stored, rejected, _, _) = huggingface_result(&db).await;
    assert_eq!(
        (status.as_str(), fetched, stored, rejected),
        ("success", 3, 2, 1),
        "{run:?}"
    );
    (db, run)
}

#[tokio::test]
async fn a_one_row_batch_refused_for_its_data_becomes_a_reject() {
    // One record a page and one page in flight: every batch holds exactly one row.
    let (db, _) =
        sync_three_records_into_a_sabotaged_table(1, 1, None, ("MODEL_LENS_SYNC__MAX_PAGES_IN_FLIGHT", "1")).await;
    let reject = db.text("SELECT reason || ': ' || detail FROM model_rejects").await;
    assert!(
        reject.starts_with("invalid_value: PostgreSQL refused the row") && reject.contains("test_refused"),
        "{reject}"
    );
}

#[tokio::test]
async fn a_transient_error_while_writing_row_by_row_is_retried() {
    // The batch fails for the first row's data, so it is written row by row; there the second
    // row meets a transient error once.
    let (_, run) =
        sync_three_records_into_a_sabotaged_table(3, 0, Some(1), ("MODEL_LENS_WRITER__RETRY_BASE_MS", "50")).await;
    assert!(run.stderr.contains("simulated serialization failure"), "{run:?}");
}

// The final record: a listing whose end cannot be written must not leave the sync running.

#[tokio::test]
async fn a_listing_whose_end_cannot_be_recorded_fails_its_source_and_the_sync_still_ends() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    let items = huggingface_items();
    scripted.json_pages(HF_PATH, &items[..3], 500);
    let env = huggingface_only(&db, &fixtures, &scripted).set("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", "100");
    let first = env.run(&["sync"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    // The next listing lacks one model, and PostgreSQL refuses to record its removal (a
    // non-transient error inside the final transaction).
    scripted.json_pages(HF_PATH, &items[..2], 500);
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION test_refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'simulated refusal of a change row'; END $$;
             CREATE TRIGGER test_refuse_changes BEFORE INSERT ON model_changes
               FOR EACH ROW EXECUTE FUNCTION test_refuse_changes();",
        )
        .await
        .unwrap();
    let refused = env.run(&["sync"]).await;
    assert_eq!(
        refused.code, 2,
        "the only source failed, so the sync failed: {refused:?}"
    );
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 2").await, "failed");
    let error = db
        .text("SELECT error FROM model_sync_sources WHERE sync_id = 2 AND source = 'huggingface'")
        .await;
    assert!(
        error.contains("could not be recorded in history") && error.contains("simulated refusal"),
        "{error}"
    );
    // Nothing was closed on a listing whose end is unknown; the failed source shows its last
    // known state, and the lock is free for the next sync.
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_to_sync IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots WHERE sync_id = 2").await,
        3
    );
    assert_eq!(db.count("SELECT count(*) FROM model_sync_seen").await, 0);
    db.client()
        .await
        .batch_execute("DROP TRIGGER test_refuse_changes ON model_changes")
        .await
        .unwrap();
    let next = env.run(&["sync"]).await;
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM model_changes WHERE sync_id = 3 AND kind = 'removed'")
            .await,
        1
    );
}

// In-process tests of the actors themselves, with a probe in the supervisor's place.

mod in_process {
    use std::sync::Arc;
    use std::time::Duration;

    use model_lens_sync::actors::fetcher::{Fetcher, FetcherArgs};
    use model_lens_sync::actors::messages::{
        ChildRole, ForceSyncOutcome, PageKey, PageTicket, RawPage, SupervisorMsg, TransformerMsg, WriterMsg,
    };
    use model_lens_sync::actors::supervisor::{self, Supervisor, SupervisorArgs};
    use model_lens_sync::actors::transformer::{Transformer, TransformerArgs};
    use model_lens_sync::actors::Services;
    use model_lens_sync::config::Config;
    use model_lens_sync::model::{Source, SourceSelection};
    use model_lens_sync::report::{SourceStatus, SyncReport, Trigger};
    use model_lens_sync::store::{connect_pool, migrations, syncs};
    use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
    use tokio::sync::{broadcast, mpsc, Semaphore};

    use super::common::{read_fixture, BinaryEnv, FixtureServer, ScriptedServer, TestDb};
    use super::HF_PATH;

    /// Stands in for the supervisor: the actors under test are linked to it; it records what
    /// they send and how they end.
    struct Probe;

    impl Actor for Probe {
        type Msg = SupervisorMsg;
        type State = mpsc::UnboundedSender<String>;
        type Arguments = mpsc::UnboundedSender<String>;

        async fn pre_start(
            &self,
            _myself: ActorRef<SupervisorMsg>,
            events: mpsc::UnboundedSender<String>,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(events)
        }

        async fn handle(
            &self,
            _myself: ActorRef<SupervisorMsg>,
            message: SupervisorMsg,
            events: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let name = match message {
                SupervisorMsg::PageDispatched { .. } => "PageDispatched".to_string(),
                SupervisorMsg::SourceFailed { error, .. } => format!("SourceFailed: {error}"),
                SupervisorMsg::SourceFetched { .. } => "SourceFetched".to_string(),
                SupervisorMsg::PageFailed { error, .. } => format!("PageFailed: {error}"),
                SupervisorMsg::ChildExited { error: None, .. } => "exited".to_string(),
                SupervisorMsg::ChildExited { error: Some(error), .. } => format!("crashed: {error}"),
                _ => "another message".to_string(),
            };
            let _ = events.send(name);
            Ok(())
        }

        /// Like the supervisor, an exit is re-queued behind what the actor sent before it.
        async fn handle_supervisor_evt(
            &self,
            myself: ActorRef<SupervisorMsg>,
            event: SupervisionEvent,
            _events: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let error = match event {
                SupervisionEvent::ActorTerminated(..) => None,
                SupervisionEvent::ActorFailed(_, error) => Some(error.to_string()),
                _ => return Ok(()),
            };
            myself.cast(SupervisorMsg::ChildExited {
                sync_id: 0,
                role: ChildRole::Writer,
                error,
            })?;
            Ok(())
        }
    }

    /// An actor that takes writer messages and is stopped before anyone uses it: a dead writer.
    struct Sink;

    impl Actor for Sink {
        type Msg = WriterMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _myself: ActorRef<WriterMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    async fn dead_writer() -> ActorRef<WriterMsg> {
        let (writer, handle) = Actor::spawn(None, Sink, ()).await.expect("the sink starts");
        writer.stop(None);
        handle.await.expect("the sink stops");
        writer
    }

    /// Collects probe events until one says the actor under test ended.
    async fn until_exit(events: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
                .await
                .unwrap_or_else(|_| panic!("the actor did not end; saw {seen:?}"))
                .expect("the probe runs");
            let done = event.starts_with("exited") || event.starts_with("crashed");
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    fn services(env: &BinaryEnv) -> Services {
        let vars = env.vars.iter().cloned().collect();
        let config = Config::load_from(&vars).expect("the test configuration loads");
        let database = connect_pool(config.database.url.expose(), &config.database).expect("a pool");
        Services {
            database,
            config: Arc::new(config),
            budgets: Default::default(),
            progress: Default::default(),
        }
    }

    /// A supervisor in this process on a migrated database, with a sync started: the
    /// supervisor, where its finished syncs are announced, and the sync's id.
    async fn started_supervisor(env: &BinaryEnv) -> (ActorRef<SupervisorMsg>, broadcast::Receiver<SyncReport>, i64) {
        let services = services(env);
        migrations::migrate(&services.database).await.unwrap();
        let (finished, reports) = broadcast::channel(4);
        let (supervisor, _) = Actor::spawn(None, Supervisor, SupervisorArgs { services, finished })
            .await
            .unwrap();
        match supervisor::force_sync(
            &supervisor,
            Trigger::Cli,
            SourceSelection::all(),
            Duration::from_secs(30),
        )
        .await
        {
            ForceSyncOutcome::Started(sync_id) => (supervisor, reports, sync_id),
            other => panic!("the sync did not start: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_fetcher_whose_transformer_is_gone_stops_without_failing_its_source() {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let services = services(&BinaryEnv::new(&db, &fixtures));
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (probe, _) = Actor::spawn(None, Probe, events_tx).await.unwrap();
        let (transformer, handle) = Actor::spawn(
            None,
            Transformer,
            TransformerArgs {
                writer: dead_writer().await,
                supervisor: probe.clone(),
            },
        )
        .await
        .unwrap();
        transformer.stop(None);
        handle.await.unwrap();
        let args = FetcherArgs {
            sync_id: 1,
            source: Source::OpenRouter,
            services,
            gate: Arc::new(Semaphore::new(4)),
            transformer,
            supervisor: probe.clone(),
            generation: 0,
            start: None,
            traffic: Default::default(),
        };
        Actor::spawn_linked(None, Fetcher, args, probe.get_cell())
            .await
            .unwrap();
        let seen = until_exit(&mut events).await;
        assert!(
            !seen.iter().any(|event| event.starts_with("SourceFailed")),
            "a transformer that is gone failed the source for good: {seen:?}"
        );
        assert!(seen.last().unwrap().starts_with("exited"), "{seen:?}");
    }

    #[tokio::test]
    async fn a_transformer_whose_writer_is_gone_stops_without_a_crash_of_its_own() {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (probe, _) = Actor::spawn(None, Probe, events_tx).await.unwrap();
        let args = TransformerArgs {
            writer: dead_writer().await,
            supervisor: probe.clone(),
        };
        let (transformer, _) = Actor::spawn_linked(None, Transformer, args, probe.get_cell())
            .await
            .unwrap();
        let gate = Arc::new(Semaphore::new(1));
        let key = PageKey {
            sync_id: 1,
            source: Source::OpenRouter,
            page_no: 1,
            generation: 0,
        };
        transformer
            .cast(TransformerMsg::Page(RawPage {
                ticket: PageTicket::new(key, gate.acquire_owned().await.unwrap()),
                body: read_fixture("openrouter_models.json").into(),
                max_records: None,
                last: true,
            }))
            .unwrap();
        let seen = until_exit(&mut events).await;
        assert!(
            seen.last().unwrap().starts_with("exited"),
            "the writer's death was charged to the transformer: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_page_failure_of_a_replaced_generation_changes_nothing() {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let scripted = ScriptedServer::start().await;
        scripted.json_pages(HF_PATH, &super::huggingface_items(), 500);
        scripted.hold_from(HF_PATH, 1);
        let (supervisor, mut reports, sync_id) =
            started_supervisor(&super::huggingface_only(&db, &fixtures, &scripted)).await;
        scripted.wait_for_request(HF_PATH, 1).await;
        // The fetcher of generation 0 crashes; its source restarts as generation 1. Then a
        // transformer of generation 0 reports that a page could not be parsed: old news.
        supervisor
            .cast(SupervisorMsg::ChildExited {
                sync_id,
                role: ChildRole::Fetcher(Source::HuggingFace, 0),
                error: Some("injected crash".into()),
            })
            .unwrap();
        supervisor
            .cast(SupervisorMsg::PageFailed {
                key: PageKey {
                    sync_id,
                    source: Source::HuggingFace,
                    page_no: 1,
                    generation: 0,
                },
                error: "stale news".into(),
            })
            .unwrap();
        scripted.release_all(HF_PATH);
        let report = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .expect("the sync finished")
            .unwrap();
        let huggingface = report
            .sources
            .iter()
            .find(|source| source.source == "huggingface")
            .unwrap();
        assert_eq!(huggingface.status, SourceStatus::Success, "{huggingface:?}");
        supervisor.stop(None);
    }

    #[tokio::test]
    async fn the_supervisor_answers_while_postgresql_is_stuck_on_its_bookkeeping() {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let scripted = ScriptedServer::start().await;
        scripted.json_pages(HF_PATH, &super::huggingface_items(), 1000);
        scripted.hold_from(HF_PATH, 1);
        let env = BinaryEnv::new(&db, &fixtures).source("huggingface", "base_url", &scripted.base_url());
        let (supervisor, mut reports, sync_id) = started_supervisor(&env).await;
        // Every source but Hugging Face is done; then the table of source results is locked,
        // and Hugging Face finishes: recording its end waits for the lock.
        scripted.wait_for_request(HF_PATH, 1).await;
        super::common::wait_until(
            &db,
            "SELECT (count(*) = 3)::int::bigint FROM model_sync_sources WHERE status <> 'running'",
            60,
        )
        .await;
        let mut holder = db.client().await;
        let lock = holder.transaction().await.unwrap();
        lock.batch_execute("LOCK TABLE model_sync_sources IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        scripted.release_all(HF_PATH);
        super::common::wait_until(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            60,
        )
        .await;
        let running = supervisor
            .call(SupervisorMsg::GetRunning, Some(Duration::from_secs(3)))
            .await
            .expect("the supervisor runs");
        assert!(
            matches!(running, ractor::rpc::CallResult::Success(Some(id)) if id == sync_id),
            "GetRunning did not answer while PostgreSQL was stuck"
        );
        let again = supervisor::force_sync(
            &supervisor,
            Trigger::Manual,
            SourceSelection::all(),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(again, ForceSyncOutcome::AlreadyRunning(Some(sync_id)));
        lock.commit().await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .expect("the sync finished")
            .unwrap();
        assert_eq!(report.status, model_lens_sync::report::SyncStatus::Success);
        supervisor.stop(None);
    }

    #[tokio::test]
    async fn force_sync_tells_a_dead_supervisor_from_a_slow_one() {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let services = services(&BinaryEnv::new(&db, &fixtures));
        let (finished, _) = broadcast::channel(4);
        let (supervisor, handle) = Actor::spawn(None, Supervisor, SupervisorArgs { services, finished })
            .await
            .unwrap();
        supervisor.stop(None);
        handle.await.unwrap();
        match supervisor::force_sync(
            &supervisor,
            Trigger::Manual,
            SourceSelection::all(),
            Duration::from_secs(5),
        )
        .await
        {
            ForceSyncOutcome::Failed(error) => {
                assert!(
                    !error.contains("in time"),
                    "a dead supervisor reported as slow: {error}"
                );
                assert!(error.contains("not running"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn marking_orphans_is_all_or_nothing() {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let services = services(&BinaryEnv::new(&db, &fixtures));
        let database = services.database.clone();
        migrations::migrate(&database).await.unwrap();
        let client = db.client().await;
        client
            .batch_execute(
                "INSERT INTO model_syncs (trigger, status) VALUES ('cli', 'running');
                 INSERT INTO model_sync_sources (sync_id, source, status) VALUES (1, 'openrouter', 'running');
                 CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                 CREATE TRIGGER test_refuse BEFORE UPDATE ON model_sync_sources
                   FOR EACH ROW EXECUTE FUNCTION test_refuse();",
            )
            .await
            .unwrap();
        let lock = syncs::SyncLock::try_acquire(&database)
            .await
            .unwrap()
            .expect("the lock");
        let marked = syncs::mark_orphans_interrupted(&database, &lock).await;
        assert!(marked.is_err(), "{marked:?}");
        assert_eq!(
            db.text("SELECT status FROM model_syncs WHERE id = 1").await,
            "running",
            "half of the marking stayed"
        );
        lock.release().await;
    }
}

// Defect 7: `initdb` ran on the async threads.

#[tokio::test(flavor = "current_thread")]
async fn initdb_runs_off_the_async_threads() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gate = root.path().join("gate");
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // An initdb that waits up to 10 s for a file that only this test's runtime can create.
    let script = format!(
        "#!/bin/sh\nfor i in $(seq 100); do\n  if [ -e '{}' ]; then echo 'gate seen' >&2; exit 3; fi\n  sleep 0.1\ndone\necho 'gate never seen' >&2\nexit 4\n",
        gate.display()
    );
    for (name, text) in [("initdb", script.as_str()), ("postgres", "#!/bin/sh\nexit 1\n")] {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let opener = {
        let gate = gate.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            std::fs::write(&gate, b"open").unwrap();
        })
    };
    let started =
        model_lens_sync::store::embedded::EmbeddedPostgres::start(&root.path().join("cluster"), Some(&bin)).await;
    let error = match started {
        Ok(_) => panic!("the fake initdb cannot make a cluster"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("gate seen"),
        "initdb blocked the runtime that had to open its gate: {error}"
    );
    opener.await.unwrap();
}
