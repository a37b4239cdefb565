//! One fetcher per source per sync: asks the API page by page, within the source's in-flight
//! limit, and hands each complete body to the transformer. It owns the source's pagination
//! state (next URL, pages seen, models requested); its HTTP statistics go to the source's
//! [`Traffic`], which outlives it.
//!
//! A peer that is gone (the transformer or the supervisor refuses a message) is not this
//! source's failure: the peer's own exit reaches the supervisor, which restarts it (and this
//! fetcher with it). The fetcher just stops.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::actors::messages::{FetchPosition, FetcherMsg, PageKey, PageTicket, RawPage, SupervisorMsg, TransformerMsg};
use crate::actors::Services;
use crate::config::SourceConfig;
use crate::fetch::{HttpFetcher, Traffic};
use crate::model::Source;
use crate::sources::huggingface;
use crate::sources::pagination::{self, ListingCount};
use crate::telemetry;

pub struct Fetcher;

pub struct FetcherArgs {
    pub sync_id: i64,
    pub source: Source,
    pub services: Services,
    /// The source's in-flight slots (see [`PageTicket`]).
    pub gate: Arc<Semaphore>,
    pub transformer: ActorRef<TransformerMsg>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub generation: u32,
    /// Resume here (a restart) instead of at the source's first page.
    pub start: Option<FetchPosition>,
    /// The source's HTTP statistics for this sync, shared across restarts.
    pub traffic: Arc<Traffic>,
}

pub struct FetcherState {
    sync_id: i64,
    source: Source,
    generation: u32,
    config: SourceConfig,
    http: HttpFetcher,
    traffic: Arc<Traffic>,
    gate: Arc<Semaphore>,
    transformer: ActorRef<TransformerMsg>,
    supervisor: ActorRef<SupervisorMsg>,
    next_url: Option<String>,
    pages: u64,
    /// Hashes of the URLs fetched so far: a `next` link seen before means a loop.
    seen_urls: HashSet<u64>,
    /// Models still wanted when `max_models` bounds the listing.
    remaining_models: Option<u64>,
    /// Records fetched so far against the total the listing states.
    listing: ListingCount,
    /// `max_models` stopped the listing while the API had more (the listing is not complete).
    truncated: bool,
    started: Instant,
}

/// The URL of a source's first (for most sources, only) page.
pub fn first_url(source: Source, config: &SourceConfig) -> String {
    match source {
        Source::ModelsDev | Source::OpenRouter => format!("{}{}", config.base_url.trim_end_matches('/'), config.path),
        Source::ArtificialAnalysis => {
            let plain = format!("{}{}", config.base_url.trim_end_matches('/'), config.path);
            // A URL that does not parse is requested as it is, and fails with reqwest's reason.
            match url::Url::parse(&plain) {
                Ok(url) => pagination::with_page(&url, 1).to_string(),
                Err(_) => plain,
            }
        }
        Source::HuggingFace => {
            let limit = match config.max_models {
                0 => config.page_size,
                max => config.page_size.min(u32::try_from(max).unwrap_or(u32::MAX)),
            };
            let query = huggingface::ListQuery {
                path: config.path.clone(),
                sort: config.sort.clone(),
                direction: config.direction,
                filters: config.filters.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            huggingface::first_page_url(&config.base_url, &query, limit)
        }
    }
}

fn url_hash(url: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut hasher);
    hasher.finish()
}

impl Actor for Fetcher {
    type Msg = FetcherMsg;
    type State = FetcherState;
    type Arguments = FetcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<FetcherMsg>,
        args: FetcherArgs,
    ) -> Result<FetcherState, ActorProcessingErr> {
        let config = args.services.config.sources.get(args.source).clone();
        let http = HttpFetcher::new(
            args.source,
            &config,
            &args.services.config.api,
            args.services.budgets.clone(),
            args.traffic.clone(),
        )?;
        let start = args.start.unwrap_or_else(|| FetchPosition {
            url: first_url(args.source, &config),
            page_no: 1,
            remaining_models: (args.source == Source::HuggingFace && config.max_models > 0)
                .then_some(config.max_models),
            listing: ListingCount::default(),
        });
        // Start in the message loop, not here: pre_start must stay free of network I/O.
        myself.cast(FetcherMsg::FetchNext)?;
        Ok(FetcherState {
            sync_id: args.sync_id,
            source: args.source,
            generation: args.generation,
            remaining_models: start.remaining_models,
            listing: start.listing,
            truncated: false,
            config,
            http,
            traffic: args.traffic,
            gate: args.gate,
            transformer: args.transformer,
            supervisor: args.supervisor,
            next_url: Some(start.url),
            pages: start.page_no - 1,
            seen_urls: HashSet::new(),
            started: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<FetcherMsg>,
        message: FetcherMsg,
        state: &mut FetcherState,
    ) -> Result<(), ActorProcessingErr> {
        let FetcherMsg::FetchNext = message;
        let span = tracing::info_span!("fetch", sync_id = state.sync_id, source = %state.source);
        async {
            match fetch_next(state).await {
                Ok(true) => myself.cast(FetcherMsg::FetchNext)?,
                Ok(false) => {
                    telemetry::source_fetched(state.source, state.started.elapsed());
                    tracing::info!(
                        pages = state.pages,
                        requests = state.traffic.requests(),
                        bytes = state.traffic.bytes(),
                        truncated = state.truncated,
                        "source fetched"
                    );
                    let fetched = SupervisorMsg::SourceFetched {
                        sync_id: state.sync_id,
                        source: state.source,
                        generation: state.generation,
                        truncated: state.truncated,
                    };
                    if state.supervisor.cast(fetched).is_err() {
                        tracing::debug!("the supervisor is gone");
                    }
                    myself.stop(None);
                }
                Err(Stop::Failed(error)) => {
                    tracing::error!(%error, pages = state.pages, "source fetch failed");
                    let failed = SupervisorMsg::SourceFailed {
                        sync_id: state.sync_id,
                        source: state.source,
                        generation: state.generation,
                        error,
                    };
                    if state.supervisor.cast(failed).is_err() {
                        tracing::debug!("the supervisor is gone");
                    }
                    myself.stop(None);
                }
                Err(Stop::PeerGone(peer)) => {
                    tracing::warn!(
                        peer,
                        "the {peer} is gone; stopping until the supervisor restarts the source"
                    );
                    myself.stop(Some(format!("the {peer} is gone")));
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// Why a fetcher stops before the end of its source.
enum Stop {
    /// The source cannot be fetched (HTTP, pagination): it fails.
    Failed(String),
    /// A peer refused a message: its own exit is the news, not this source's failure.
    PeerGone(&'static str),
}

impl From<String> for Stop {
    fn from(error: String) -> Stop {
        Stop::Failed(error)
    }
}

/// Fetches one page and dispatches it; `Ok(true)` when another page follows.
async fn fetch_next(state: &mut FetcherState) -> Result<bool, Stop> {
    crate::faults::maybe_panic_for("fetcher_page", state.source);
    let Some(url) = state.next_url.take() else {
        return Ok(false);
    };
    let this_page = FetchPosition {
        url: url.clone(),
        page_no: state.pages + 1,
        remaining_models: state.remaining_models,
        listing: state.listing.clone(),
    };
    if state.pages >= state.config.max_pages {
        return Err(Stop::Failed(format!(
            "the listing has more than {} pages (sources.{}.max_pages); stopped",
            state.config.max_pages, state.source
        )));
    }
    let current = url::Url::parse(&url).map_err(|error| format!("{url} is not a valid URL: {error}"))?;
    state.seen_urls.insert(url_hash(current.as_str()));
    // Wait for an in-flight slot before fetching: this is the memory bound.
    let permit = state
        .gate
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| "the sync was stopped".to_string())?;
    let fetched = state.http.get(&url).await.map_err(|error| error.to_string())?;
    state.pages += 1;

    let step = pagination::next_page(state.source, &current, &fetched.body, fetched.link.as_deref())
        .map_err(|error| error.to_string())?;
    let mut max_records = None;
    if let Some(remaining) = state.remaining_models {
        // A malformed record counts, since the parser turns it into a reject; a body that
        // cannot be split is the parser's to fail.
        let records = step.records.unwrap_or(remaining);
        max_records = (records > remaining).then_some(remaining as usize);
        state.remaining_models = Some(remaining.saturating_sub(records));
    }
    let wants_more = state.remaining_models != Some(0);
    if !wants_more && (max_records.is_some() || step.next.is_some()) {
        state.truncated = true;
    }
    state.listing.add(&step).map_err(|error| error.to_string())?;
    let next = match step.next.filter(|_| wants_more) {
        Some(next) => Some(
            pagination::check_origin(&current, next)
                .map_err(|error| error.to_string())?
                .to_string(),
        ),
        None => None,
    };
    if next.is_none() && !state.truncated {
        state
            .listing
            .check_complete(state.source)
            .map_err(|error| error.to_string())?;
    }
    if let Some(next) = &next {
        if state.seen_urls.contains(&url_hash(next)) {
            return Err(Stop::Failed(format!(
                "the API sent a `next` link that was already fetched ({next}); stopped to avoid a loop"
            )));
        }
    }
    let key = PageKey {
        sync_id: state.sync_id,
        source: state.source,
        page_no: state.pages,
        generation: state.generation,
    };
    let next_page = next.as_ref().map(|url| FetchPosition {
        url: url.clone(),
        page_no: state.pages + 1,
        remaining_models: state.remaining_models,
        listing: state.listing.clone(),
    });
    // The supervisor hears of the page before anyone can commit it (mailboxes are FIFO).
    state
        .supervisor
        .cast(SupervisorMsg::PageDispatched {
            key,
            page: this_page,
            next: next_page,
        })
        .map_err(|_| Stop::PeerGone("supervisor"))?;
    state
        .transformer
        .cast(TransformerMsg::Page(RawPage {
            ticket: PageTicket::new(key, permit),
            body: fetched.body,
            max_records,
            last: next.is_none(),
        }))
        .map_err(|_| Stop::PeerGone("transformer"))?;
    state.next_url = next;
    Ok(state.next_url.is_some())
}
