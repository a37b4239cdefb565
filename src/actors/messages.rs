//! Messages between the actors, named for what happened or what is asked.

use bytes::Bytes;
use ractor::RpcReplyPort;
use tokio::sync::OwnedSemaphorePermit;

use crate::history::Digest;
use crate::model::{Model, Reject, Source};
use crate::report::{SyncReport, Trigger};
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

/// Where a fetcher starts or resumes: the URL of page `page_no` and how many models were
/// still wanted before it (`max_models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    pub url: String,
    pub page_no: u64,
    pub remaining_models: Option<u64>,
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
    pub last: bool,
}

pub enum SupervisorMsg {
    /// Start a sync now unless one runs (`ForceSync` of DESIGN.md).
    ForceSync {
        trigger: Trigger,
        reply: Option<RpcReplyPort<ForceSyncOutcome>>,
    },
    /// The id of the sync running in this process, if any.
    GetRunning(RpcReplyPort<Option<i64>>),
    /// Stop: let a running sync finish within the grace period, then interrupt it.
    Shutdown {
        grace: std::time::Duration,
        reply: RpcReplyPort<()>,
    },
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
        http_requests: u64,
        bytes: u64,
        /// The listing was cut on purpose (`max_models` reached while the source had more):
        /// what it did not reach was not removed upstream.
        truncated: bool,
    },
    /// A fetcher could not finish its source.
    SourceFailed {
        sync_id: i64,
        source: Source,
        generation: u32,
        http_requests: u64,
        bytes: u64,
        error: String,
    },
    /// A page could not be parsed as a whole (the source fails; the page is settled).
    PageFailed { key: PageKey, error: String },
    /// The writer committed these pages (their rows and rejects are durable).
    PagesCommitted {
        sync_id: i64,
        pages: Vec<(PageKey, usize)>,
        outcome: BatchOutcome,
    },
    /// The writer gave up on these pages after its retries.
    PagesNotWritten {
        sync_id: i64,
        pages: Vec<PageKey>,
        error: String,
    },
    /// The writer flushed everything and will write nothing more for this sync.
    WriterDrained { sync_id: i64 },
    /// Time to restart a source's fetcher and transformer (after the backoff).
    RestartSource {
        sync_id: i64,
        source: Source,
        generation: u32,
    },
    /// A child actor died; handled as a message so that it is ordered after what the child
    /// sent before dying.
    ChildExited {
        sync_id: i64,
        role: ChildRole,
        error: Option<String>,
    },
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
    /// Write what is buffered, then report `WriterDrained`.
    Drain,
    /// Drop buffered and future pages of these sources (they were failed).
    Abandon(Vec<Source>),
}

/// Broadcast to whoever waits for syncs (the `sync` command, tests).
pub type SyncFinished = SyncReport;
