//! Messages between the actors, named for what happened or what is asked.

use bytes::Bytes;
use ractor::RpcReplyPort;
use tokio::sync::OwnedSemaphorePermit;

use crate::history::Digest;
use crate::model::{Model, Reject, Source, SourceSelection};
use crate::report::{SyncReport, Trigger};
use crate::sources::pagination::ListingCount;
use crate::store::batch::BatchOutcome;

/// Identifies one page of one source within one sync. `generation` counts the restarts of
/// the source's fetcher and transformer: news from an older generation is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub sync_id: i64,
    pub source: Source,
    pub page_no: u64,
    pub generation: u32,
}

/// Where a fetcher starts or resumes: the URL of page `page_no`, how many models were still
/// wanted before it (`max_models`), and the records counted before it against the listing's
/// stated total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    pub url: String,
    pub page_no: u64,
    pub remaining_models: Option<u64>,
    pub listing: ListingCount,
}

/// Travels with a page from the fetcher to the writer. Holding it keeps one of the source's
/// in-flight slots taken; dropping it (after the commit, or when the page is given up) frees
/// the slot so the fetcher may fetch another page.
#[derive(Debug)]
pub struct PageTicket {
    pub key: PageKey,
    _permit: OwnedSemaphorePermit,
}

impl PageTicket {
    pub fn new(key: PageKey, permit: OwnedSemaphorePermit) -> PageTicket {
        PageTicket { key, _permit: permit }
    }
}

/// A fetched response body on its way to be parsed.
#[derive(Debug)]
pub struct RawPage {
    pub ticket: PageTicket,
    pub body: Bytes,
    /// Keep at most this many records of the page (Hugging Face `max_models`).
    pub max_records: Option<usize>,
    /// The fetcher will send no more pages for this source after this one.
    pub last: bool,
}

/// A parsed page on its way to be written.
#[derive(Debug)]
pub struct PageRows {
    pub ticket: PageTicket,
    pub models: Vec<Model>,
    /// `history::digest` of each model, in the same order.
    pub digests: Vec<Digest>,
    pub rejects: Vec<Reject>,
    /// The distinct top-level keys of the page's models (recorded for the drift alarm).
    pub fields: Vec<String>,
    /// Records dropped as identical repeats of another record of the page.
    pub duplicates: u64,
    pub last: bool,
}

pub enum SupervisorMsg {
    /// Start a sync now unless one runs (`ForceSync` of DESIGN.md).
    ForceSync {
        trigger: Trigger,
        /// The sources to fetch; the others are `skipped` in this sync.
        sources: SourceSelection,
        reply: Option<RpcReplyPort<ForceSyncOutcome>>,
    },
    /// The id of the sync running in this process, if any.
    GetRunning(RpcReplyPort<Option<i64>>),
    /// Stop: let a running sync finish within the grace period, then interrupt it.
    Shutdown {
        grace: std::time::Duration,
        reply: RpcReplyPort<()>,
    },
    /// The lock was taken and the sync recorded (or not), off the supervisor's mailbox.
    SyncStarted(Result<StartedSync, StartFailure>),
    /// The sync's final status is written and its lock released.
    SyncFinalized { report: SyncReport },
    /// The sync lock's session ended and the lock could not be taken back.
    LockLost { sync_id: i64, error: String },
    /// The grace period of a shutdown is over.
    InterruptNow { sync_id: i64 },
    /// The sync's overall deadline passed.
    SyncTimedOut { sync_id: i64 },
    /// A fetcher handed a page to its transformer (sent before the page itself), with where
    /// to fetch it again and where the next page starts, for a restart.
    PageDispatched {
        key: PageKey,
        page: FetchPosition,
        next: Option<FetchPosition>,
    },
    /// A fetcher finished its source: no more pages will come.
    SourceFetched {
        sync_id: i64,
        source: Source,
        generation: u32,
        /// The listing was cut short on purpose (Hugging Face `max_models` reached while the
        /// API had more): it is not the whole catalogue, so nothing it lacks was removed.
        truncated: bool,
    },
    /// A fetcher could not finish its source.
    SourceFailed {
        sync_id: i64,
        source: Source,
        generation: u32,
        error: String,
    },
    /// A page could not be parsed as a whole (the source fails; the page is settled).
    PageFailed { key: PageKey, error: String },
    /// The writer committed these pages (their rows and rejects are durable).
    PagesCommitted {
        sync_id: i64,
        pages: Vec<PageKey>,
        outcome: BatchOutcome,
    },
    /// The writer gave up on these pages after its retries.
    PagesNotWritten {
        sync_id: i64,
        pages: Vec<PageKey>,
        error: String,
    },
    /// Time to restart a source's fetcher and transformer (after the backoff).
    RestartSource {
        sync_id: i64,
        source: Source,
        generation: u32,
    },
    /// Time to replace a crashed writer (after the backoff).
    RestartWriter { sync_id: i64 },
    /// A child actor stopped or died; handled as a message so that it is ordered after what
    /// the child sent before.
    ChildExited {
        sync_id: i64,
        role: ChildRole,
        error: Option<String>,
    },
}

/// A sync that the start job recorded: its lock is held by `keeper`.
pub struct StartedSync {
    pub sync_id: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub owner_token: String,
    pub keeper: crate::actors::lock_keeper::LockKeeper,
    /// Which sources run, and why the others do not.
    pub plan: Vec<(Source, crate::report::SourceStatus, Option<String>)>,
}

/// Why a sync did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// Another process holds the sync lock (with its running sync, if the database names one).
    AlreadyRunning(Option<i64>),
    Failed(String),
}

/// Which part of a sync a child actor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildRole {
    /// A source's fetcher of the given generation.
    Fetcher(Source, u32),
    Transformer(Source, u32),
    Writer,
}

impl ChildRole {
    pub fn kind(self) -> &'static str {
        match self {
            ChildRole::Fetcher(..) => "fetcher",
            ChildRole::Transformer(..) => "transformer",
            ChildRole::Writer => "writer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceSyncOutcome {
    Started(i64),
    AlreadyRunning(Option<i64>),
    Failed(String),
}

pub enum FetcherMsg {
    FetchNext,
}

pub enum TransformerMsg {
    Page(RawPage),
}

pub enum WriterMsg {
    Page(PageRows),
    /// Time to look at the age of the buffer.
    FlushTick,
    /// Drop buffered and future pages of these sources (they were failed).
    Abandon(Vec<Source>),
}
