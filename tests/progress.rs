//! Live progress as the pipeline's actors feed it: a real sync (in process, so the test can
//! read the shared counters) against the APIs' paged listings. Afterwards each source's
//! counters hold its pages, its committed records and the size its listing stated, which is
//! what turns a terminal line into a percentage: OpenRouter's `totalCount`, Artificial
//! Analysis' `pagination.total_pages`, Hugging Face's `max_models`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api_server::{ApiServer, Variant};
use common::{BinaryEnv, TestDb};
use model_lens_sync::actors::messages::ForceSyncOutcome;
use model_lens_sync::actors::supervisor::{self, Supervisor, SupervisorArgs};
use model_lens_sync::actors::Services;
use model_lens_sync::config::Config;
use model_lens_sync::model::{Source, SourceSelection};
use model_lens_sync::progress::{Phase, SourceSnapshot, SyncProgress};
use model_lens_sync::report::{SourceStatus, Trigger};
use model_lens_sync::store::{connect_pool, migrations};
use ractor::Actor;
use tokio::sync::broadcast;

#[tokio::test]
async fn the_progress_counters_hold_what_each_listing_says_of_its_size() {
    let db = TestDb::create().await;
    let api = ApiServer::start(Variant::default()).await;
    let env = BinaryEnv::with_base_url(&db, &api.base_url())
        .source("huggingface", "page_size", "100")
        .source("huggingface", "max_models", "250");
    let vars = env.vars.iter().cloned().collect();
    let config = Config::load_from(&vars).expect("the test configuration loads");
    let database = connect_pool(config.database.url.expose(), &config.database).expect("a pool");
    migrations::migrate(&database).await.unwrap();
    let progress = Arc::new(SyncProgress::default());
    let services = Services {
        database,
        config: Arc::new(config),
        budgets: Default::default(),
        progress: progress.clone(),
    };
    let (finished, mut reports) = broadcast::channel(4);
    let (supervisor, _) = Actor::spawn(None, Supervisor, SupervisorArgs { services, finished })
        .await
        .unwrap();
    let selection = SourceSelection::from_names(&["openrouter", "artificial_analysis", "huggingface"]).unwrap();
    let sync_id = match supervisor::force_sync(&supervisor, Trigger::Cli, selection, Duration::from_secs(30)).await {
        ForceSyncOutcome::Started(sync_id) => sync_id,
        other => panic!("the sync did not start: {other:?}"),
    };
    let report = tokio::time::timeout(Duration::from_secs(120), reports.recv())
        .await
        .expect("the sync ends within two minutes")
        .expect("its report");
    assert_eq!(report.id, sync_id);
    supervisor.stop(None);

    let snapshot = progress.snapshot();
    assert_eq!(progress.sync_id(), sync_id);
    let of = |source: Source| -> SourceSnapshot {
        snapshot
            .iter()
            .find(|line| line.source == source)
            .cloned()
            .expect("every source has a line")
    };
    // Records are counted once each, when committed: stored rows plus rejects.
    let committed = |source: Source| {
        let result = report
            .sources
            .iter()
            .find(|result| result.source == source.as_str())
            .expect("every source has a result");
        assert_eq!(result.status, SourceStatus::Success, "{result:?}");
        (result.models_stored + result.models_rejected) as u64
    };

    let openrouter = of(Source::OpenRouter);
    assert_eq!(
        (openrouter.phase, openrouter.pages, openrouter.total),
        (Phase::Success, 2, Some(364)),
        "{openrouter:?}"
    );
    assert_eq!(openrouter.records, committed(Source::OpenRouter));
    assert_eq!(openrouter.percent(), Some(100.0));

    let artificial_analysis = of(Source::ArtificialAnalysis);
    assert_eq!(
        (
            artificial_analysis.phase,
            artificial_analysis.pages,
            artificial_analysis.total,
            artificial_analysis.total_pages
        ),
        (Phase::Success, 2, None, Some(2)),
        "{artificial_analysis:?}"
    );
    assert_eq!(artificial_analysis.records, committed(Source::ArtificialAnalysis));
    assert_eq!(artificial_analysis.percent(), Some(100.0));

    let huggingface = of(Source::HuggingFace);
    assert_eq!(
        (huggingface.phase, huggingface.pages, huggingface.total),
        (Phase::Success, 3, Some(250)),
        "{huggingface:?}"
    );
    assert_eq!(huggingface.records, committed(Source::HuggingFace));
    assert_eq!(huggingface.records, 250);

    // Not selected: skipped from the start, nothing counted.
    let models_dev = of(Source::ModelsDev);
    assert_eq!(
        (models_dev.phase, models_dev.pages, models_dev.records),
        (Phase::Skipped, 0, 0)
    );
}
