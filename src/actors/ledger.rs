//! What the supervisor knows of one source within one sync, as pure data: which pages were
//! dispatched and not yet committed (with where to fetch each again), which were committed,
//! where the page after the last dispatched one starts, which generation of actors is current,
//! and where the source stands. Every piece of news about the source is an [`Event`];
//! [`SourceLedger::apply`] changes the state and returns what the supervisor must do
//! ([`Effect`]s). No actor, clock or database in here, so every event in every phase is tested
//! as a table below (quickwit keeps its checkpoints out of its actors the same way).
//!
//! The rules it enforces:
//! - a source is complete only when its fetcher has sent its last page *and* every page it
//!   dispatched is committed;
//! - news from an older generation (an actor already replaced) changes nothing, except a
//!   commit: committed rows are durable whoever sent them;
//! - a restart resumes from the earliest uncommitted page, so nothing dispatched is lost;
//! - the first failure wins and is final.

use std::collections::{BTreeMap, BTreeSet};

use crate::actors::messages::FetchPosition;

/// Where a source stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not part of this sync (disabled, or no key).
    Skipped,
    /// The current generation's fetcher is paging.
    Fetching,
    /// The fetcher sent its last page; the pages still pending are on their way to a commit.
    Settling,
    /// The last generation's actors are gone; the next one starts when the backoff is over.
    Restarting,
    /// Every page dispatched is committed and the fetcher said it was the last.
    Succeeded,
    /// Failed for this reason (the first reason given).
    Failed(String),
}

impl Phase {
    pub fn is_finished(&self) -> bool {
        matches!(self, Phase::Skipped | Phase::Succeeded | Phase::Failed(_))
    }
}

/// Where the page after the last dispatched one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was dispatched yet: at the source's first page.
    FirstPage,
    At(FetchPosition),
    /// The last page was dispatched: nothing after it.
    AfterLastPage,
}

/// The two actors of a source; which one an exit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceActor {
    Fetcher,
    Transformer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The fetcher of `generation` handed page `page_no` to its transformer.
    Dispatched {
        generation: u32,
        page_no: u64,
        page: FetchPosition,
        next: Option<FetchPosition>,
    },
    /// The writer committed page `page_no` (of whichever generation).
    Committed { page_no: u64 },
    /// The fetcher of `generation` sent its last page; `truncated`: it stopped on purpose before
    /// the listing's end (`max_models`), so the listing is not the whole catalogue.
    FetchFinished { generation: u32, truncated: bool },
    /// The fetcher of `generation` gave up (HTTP, pagination, …).
    FetchFailed { generation: u32, error: String },
    /// The transformer of `generation` could not parse page `page_no` at all.
    PageFailed {
        generation: u32,
        page_no: u64,
        error: String,
    },
    /// The writer gave up on page `page_no` after its retries.
    NotWritten { page_no: u64, error: String },
    /// An actor of `generation` crashed (or its writer did) and the restart policy allows a
    /// restart: replace the generation.
    Restart { generation: u32 },
    /// The backoff of the restart to `generation` is over (and the writer is alive).
    RestartDue { generation: u32 },
    /// Give up on the source (restart budget spent, timeout, shutdown, lock lost).
    Fail { error: String },
}

/// What the supervisor must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Kill the current generation's fetcher and transformer now.
    KillActors,
    /// Stop the transformer once its mailbox is done (the source succeeded).
    StopTransformer,
    /// Make the writer drop whatever of this source it still buffers.
    AbandonInWriter,
    /// Send `RestartDue { generation }` after the restart policy's delay.
    ScheduleRestart { generation: u32 },
    /// Spawn the actors of `generation`, fetching from `start` (`None`: the first page).
    Spawn {
        generation: u32,
        start: Option<FetchPosition>,
    },
    /// The source reached its end (`phase` says how): record it.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLedger {
    phase: Phase,
    generation: u32,
    /// Dispatched, not yet committed, with where to fetch each again.
    pending: BTreeMap<u64, FetchPosition>,
    /// Committed at least once (a restart may dispatch and commit some again).
    committed: BTreeSet<u64>,
    resume: Resume,
    /// The listing was cut short on purpose (kept until finalization: nothing it lacks was
    /// removed upstream).
    truncated: bool,
}

impl SourceLedger {
    /// A source whose first generation is being spawned.
    pub fn fetching() -> SourceLedger {
        SourceLedger {
            phase: Phase::Fetching,
            generation: 0,
            pending: BTreeMap::new(),
            committed: BTreeSet::new(),
            resume: Resume::FirstPage,
            truncated: false,
        }
    }

    pub fn skipped() -> SourceLedger {
        SourceLedger {
            phase: Phase::Skipped,
            ..SourceLedger::fetching()
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn pending_pages(&self) -> usize {
        self.pending.len()
    }

    pub fn committed_pages(&self) -> usize {
        self.committed.len()
    }

    pub fn is_finished(&self) -> bool {
        self.phase.is_finished()
    }

    /// Whether the listing may not be whole: cut by `max_models`, or finished without the
    /// fetcher's end-of-source news (lost with a crashed actor), where it cannot be known.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether an exit of `actor` of `generation` is news: that actor is current and still
    /// needed. An exit that is not news (an older generation, a transformer stopped after
    /// success) changes nothing; one that is news is a crash, even a clean stop.
    pub fn expects(&self, actor: SourceActor, generation: u32) -> bool {
        generation == self.generation
            && match actor {
                SourceActor::Fetcher => self.phase == Phase::Fetching,
                SourceActor::Transformer => matches!(self.phase, Phase::Fetching | Phase::Settling),
            }
    }

    /// Where the next generation must start so that no uncommitted page is lost: the earliest
    /// pending page, else the page after the last dispatched one. `None` when nothing is left.
    fn restart_position(&self) -> Option<Option<FetchPosition>> {
        if let Some((_, page)) = self.pending.iter().next() {
            return Some(Some(page.clone()));
        }
        match &self.resume {
            Resume::FirstPage => Some(None),
            Resume::At(next) => Some(Some(next.clone())),
            Resume::AfterLastPage => None,
        }
    }

    pub fn apply(&mut self, event: Event) -> Vec<Effect> {
        if self.phase.is_finished() {
            // Finished is final: late commits are durable rows the final recount finds anyway.
            return Vec::new();
        }
        match event {
            Event::Dispatched {
                generation,
                page_no,
                page,
                next,
            } => {
                if generation == self.generation && self.phase == Phase::Fetching {
                    self.pending.insert(page_no, page);
                    self.resume = next.map_or(Resume::AfterLastPage, Resume::At);
                }
                Vec::new()
            }
            Event::Committed { page_no } => {
                self.pending.remove(&page_no);
                self.committed.insert(page_no);
                if self.phase == Phase::Settling && self.pending.is_empty() {
                    self.phase = Phase::Succeeded;
                    return vec![Effect::StopTransformer, Effect::Finished];
                }
                Vec::new()
            }
            Event::FetchFinished { generation, truncated } => {
                if generation != self.generation || self.phase != Phase::Fetching {
                    return Vec::new();
                }
                self.truncated = truncated;
                if self.pending.is_empty() {
                    self.phase = Phase::Succeeded;
                    vec![Effect::StopTransformer, Effect::Finished]
                } else {
                    self.phase = Phase::Settling;
                    Vec::new()
                }
            }
            Event::FetchFailed { generation, error } => {
                if generation != self.generation || self.phase != Phase::Fetching {
                    return Vec::new();
                }
                self.fail(error)
            }
            Event::PageFailed {
                generation,
                page_no,
                error,
            } => {
                if generation != self.generation || self.phase == Phase::Restarting {
                    return Vec::new();
                }
                self.fail(format!("page {page_no}: {error}"))
            }
            Event::NotWritten { page_no, error } => {
                self.pending.remove(&page_no);
                self.fail(format!("could not store its rows: {error}"))
            }
            Event::Restart { generation } => {
                if generation != self.generation || self.phase == Phase::Restarting {
                    return Vec::new();
                }
                if self.restart_position().is_none() {
                    // Every page was dispatched and committed; only the end-of-source news
                    // was lost with the actor, and with it whether `max_models` cut the
                    // listing: assume it did, so nothing is inferred removed from it.
                    self.phase = Phase::Succeeded;
                    self.truncated = true;
                    return vec![Effect::KillActors, Effect::Finished];
                }
                // Pending pages stay pending: the next generation sends them again with the
                // same numbers, and a commit of either copy settles them.
                self.generation += 1;
                self.phase = Phase::Restarting;
                vec![
                    Effect::KillActors,
                    Effect::ScheduleRestart {
                        generation: self.generation,
                    },
                ]
            }
            Event::RestartDue { generation } => {
                if generation != self.generation || self.phase != Phase::Restarting {
                    return Vec::new();
                }
                match self.restart_position() {
                    None => {
                        // As above: the end-of-source news was lost.
                        self.phase = Phase::Succeeded;
                        self.truncated = true;
                        vec![Effect::Finished]
                    }
                    Some(start) => {
                        self.phase = Phase::Fetching;
                        vec![Effect::Spawn { generation, start }]
                    }
                }
            }
            Event::Fail { error } => self.fail(error),
        }
    }

    fn fail(&mut self, error: String) -> Vec<Effect> {
        let actors_alive = self.phase != Phase::Restarting;
        self.phase = Phase::Failed(error);
        self.pending.clear();
        let mut effects = Vec::with_capacity(3);
        if actors_alive {
            effects.push(Effect::KillActors);
        }
        effects.extend([Effect::AbandonInWriter, Effect::Finished]);
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(page_no: u64) -> FetchPosition {
        FetchPosition {
            url: format!("https://example.test/page/{page_no}"),
            page_no,
            remaining_models: None,
            listing: Default::default(),
        }
    }

    fn dispatched(generation: u32, page_no: u64, last: bool) -> Event {
        Event::Dispatched {
            generation,
            page_no,
            page: position(page_no),
            next: (!last).then(|| position(page_no + 1)),
        }
    }

    fn run(events: Vec<Event>) -> SourceLedger {
        let mut ledger = SourceLedger::fetching();
        for event in events {
            ledger.apply(event);
        }
        ledger
    }

    /// The states the table starts from, each reached through real events.
    fn state(name: &str) -> SourceLedger {
        match name {
            "skipped" => SourceLedger::skipped(),
            "fetching, nothing dispatched" => SourceLedger::fetching(),
            // Pages 1 and 2 dispatched, page 1 committed; page 3 is next.
            "fetching, page 2 pending" => run(vec![
                dispatched(0, 1, false),
                dispatched(0, 2, false),
                Event::Committed { page_no: 1 },
            ]),
            "settling, page 2 pending" => run(vec![
                dispatched(0, 1, false),
                dispatched(0, 2, true),
                Event::Committed { page_no: 1 },
                Event::FetchFinished {
                    generation: 0,
                    truncated: false,
                },
            ]),
            "restarting to 1, page 2 pending" => run(vec![
                dispatched(0, 1, false),
                dispatched(0, 2, false),
                Event::Committed { page_no: 1 },
                Event::Restart { generation: 0 },
            ]),
            "succeeded" => run(vec![
                dispatched(0, 1, true),
                Event::Committed { page_no: 1 },
                Event::FetchFinished {
                    generation: 0,
                    truncated: false,
                },
            ]),
            "failed" => run(vec![Event::Fail { error: "first".into() }]),
            other => panic!("no state {other}"),
        }
    }

    fn failed(error: &str) -> Phase {
        Phase::Failed(error.into())
    }

    const FAIL_LIVE: &[Effect] = &[Effect::KillActors, Effect::AbandonInWriter, Effect::Finished];
    const FAIL_RESTARTING: &[Effect] = &[Effect::AbandonInWriter, Effect::Finished];

    /// (state, event, phase after, generation after, pending pages after, effects).
    #[allow(clippy::type_complexity)]
    #[rustfmt::skip]
    fn table() -> Vec<(&'static str, Event, Phase, u32, usize, Vec<Effect>)> {
        use Phase::*;
        let fail = |error: &str| Event::Fail { error: error.into() };
        let fetch_failed = |generation| Event::FetchFailed {
            generation,
            error: "HTTP 500".into(),
        };
        let page_failed = |generation| Event::PageFailed {
            generation,
            page_no: 2,
            error: "not JSON".into(),
        };
        let not_written = Event::NotWritten {
            page_no: 2,
            error: "gone".into(),
        };
        let restart_from_2 = vec![Effect::Spawn {
            generation: 1,
            start: Some(position(2)),
        }];
        vec![
            // Skipped: nothing ever changes it.
            ("skipped", dispatched(0, 1, false), Skipped, 0, 0, vec![]),
            ("skipped", Event::Committed { page_no: 1 }, Skipped, 0, 0, vec![]),
            ("skipped", Event::FetchFinished { generation: 0, truncated: false }, Skipped, 0, 0, vec![]),
            ("skipped", fetch_failed(0), Skipped, 0, 0, vec![]),
            ("skipped", page_failed(0), Skipped, 0, 0, vec![]),
            ("skipped", not_written.clone(), Skipped, 0, 0, vec![]),
            ("skipped", Event::Restart { generation: 0 }, Skipped, 0, 0, vec![]),
            ("skipped", Event::RestartDue { generation: 0 }, Skipped, 0, 0, vec![]),
            ("skipped", fail("x"), Skipped, 0, 0, vec![]),
            // Fetching, nothing dispatched yet.
            ("fetching, nothing dispatched", dispatched(0, 1, false), Fetching, 0, 1, vec![]),
            ("fetching, nothing dispatched", dispatched(1, 1, false), Fetching, 0, 0, vec![]),
            ("fetching, nothing dispatched", Event::FetchFinished { generation: 0, truncated: false }, Succeeded, 0, 0,
                vec![Effect::StopTransformer, Effect::Finished]),
            ("fetching, nothing dispatched", Event::Restart { generation: 0 }, Restarting, 1, 0,
                vec![Effect::KillActors, Effect::ScheduleRestart { generation: 1 }]),
            ("fetching, nothing dispatched", Event::RestartDue { generation: 0 }, Fetching, 0, 0, vec![]),
            ("fetching, nothing dispatched", fetch_failed(0), failed("HTTP 500"), 0, 0, FAIL_LIVE.to_vec()),
            ("fetching, nothing dispatched", Event::Committed { page_no: 1 }, Fetching, 0, 0, vec![]),
            ("fetching, nothing dispatched", page_failed(0), failed("page 2: not JSON"), 0, 0, FAIL_LIVE.to_vec()),
            ("fetching, nothing dispatched", not_written.clone(), failed("could not store its rows: gone"), 0, 0,
                FAIL_LIVE.to_vec()),
            ("fetching, nothing dispatched", fail("shutdown"), failed("shutdown"), 0, 0, FAIL_LIVE.to_vec()),
            // Fetching with page 2 pending.
            ("fetching, page 2 pending", dispatched(0, 3, true), Fetching, 0, 2, vec![]),
            ("fetching, page 2 pending", dispatched(1, 3, true), Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", Event::Committed { page_no: 2 }, Fetching, 0, 0, vec![]),
            ("fetching, page 2 pending", Event::Committed { page_no: 9 }, Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", Event::FetchFinished { generation: 0, truncated: false }, Settling, 0, 1, vec![]),
            ("fetching, page 2 pending", Event::FetchFinished { generation: 1, truncated: false }, Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", fetch_failed(0), failed("HTTP 500"), 0, 0, FAIL_LIVE.to_vec()),
            ("fetching, page 2 pending", fetch_failed(1), Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", page_failed(0), failed("page 2: not JSON"), 0, 0, FAIL_LIVE.to_vec()),
            ("fetching, page 2 pending", page_failed(1), Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", not_written.clone(), failed("could not store its rows: gone"), 0, 0,
                FAIL_LIVE.to_vec()),
            ("fetching, page 2 pending", Event::Restart { generation: 0 }, Restarting, 1, 1,
                vec![Effect::KillActors, Effect::ScheduleRestart { generation: 1 }]),
            ("fetching, page 2 pending", Event::Restart { generation: 1 }, Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", Event::RestartDue { generation: 0 }, Fetching, 0, 1, vec![]),
            ("fetching, page 2 pending", fail("timed out"), failed("timed out"), 0, 0, FAIL_LIVE.to_vec()),
            // Settling: the last page was dispatched, page 2 is still pending.
            ("settling, page 2 pending", Event::Committed { page_no: 2 }, Succeeded, 0, 0,
                vec![Effect::StopTransformer, Effect::Finished]),
            ("settling, page 2 pending", Event::Committed { page_no: 1 }, Settling, 0, 1, vec![]),
            ("settling, page 2 pending", dispatched(0, 3, true), Settling, 0, 1, vec![]),
            ("settling, page 2 pending", Event::FetchFinished { generation: 0, truncated: false }, Settling, 0, 1, vec![]),
            ("settling, page 2 pending", fetch_failed(0), Settling, 0, 1, vec![]),
            ("settling, page 2 pending", page_failed(0), failed("page 2: not JSON"), 0, 0, FAIL_LIVE.to_vec()),
            ("settling, page 2 pending", not_written.clone(), failed("could not store its rows: gone"), 0, 0,
                FAIL_LIVE.to_vec()),
            ("settling, page 2 pending", Event::Restart { generation: 0 }, Restarting, 1, 1,
                vec![Effect::KillActors, Effect::ScheduleRestart { generation: 1 }]),
            ("settling, page 2 pending", Event::RestartDue { generation: 0 }, Settling, 0, 1, vec![]),
            ("settling, page 2 pending", fail("x"), failed("x"), 0, 0, FAIL_LIVE.to_vec()),
            // Restarting to generation 1, page 2 pending.
            ("restarting to 1, page 2 pending", Event::RestartDue { generation: 1 }, Fetching, 1, 1,
                restart_from_2),
            ("restarting to 1, page 2 pending", Event::RestartDue { generation: 0 }, Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", Event::Restart { generation: 1 }, Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", Event::Restart { generation: 0 }, Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", dispatched(0, 3, false), Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", Event::Committed { page_no: 2 }, Restarting, 1, 0, vec![]),
            ("restarting to 1, page 2 pending", Event::FetchFinished { generation: 0, truncated: false }, Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", page_failed(0), Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", page_failed(1), Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", fetch_failed(0), Restarting, 1, 1, vec![]),
            ("restarting to 1, page 2 pending", not_written.clone(), failed("could not store its rows: gone"), 1, 0,
                FAIL_RESTARTING.to_vec()),
            ("restarting to 1, page 2 pending", fail("budget"), failed("budget"), 1, 0, FAIL_RESTARTING.to_vec()),
            // Finished phases are final.
            ("succeeded", dispatched(0, 2, true), Succeeded, 0, 0, vec![]),
            ("succeeded", Event::Committed { page_no: 1 }, Succeeded, 0, 0, vec![]),
            ("succeeded", Event::FetchFinished { generation: 0, truncated: false }, Succeeded, 0, 0, vec![]),
            ("succeeded", fetch_failed(0), Succeeded, 0, 0, vec![]),
            ("succeeded", page_failed(0), Succeeded, 0, 0, vec![]),
            ("succeeded", not_written.clone(), Succeeded, 0, 0, vec![]),
            ("succeeded", Event::Restart { generation: 0 }, Succeeded, 0, 0, vec![]),
            ("succeeded", Event::RestartDue { generation: 0 }, Succeeded, 0, 0, vec![]),
            ("succeeded", fail("late"), Succeeded, 0, 0, vec![]),
            ("failed", dispatched(0, 1, false), failed("first"), 0, 0, vec![]),
            ("failed", Event::Committed { page_no: 1 }, failed("first"), 0, 0, vec![]),
            ("failed", Event::FetchFinished { generation: 0, truncated: false }, failed("first"), 0, 0, vec![]),
            ("failed", fetch_failed(0), failed("first"), 0, 0, vec![]),
            ("failed", page_failed(0), failed("first"), 0, 0, vec![]),
            ("failed", not_written, failed("first"), 0, 0, vec![]),
            ("failed", Event::Restart { generation: 0 }, failed("first"), 0, 0, vec![]),
            ("failed", Event::RestartDue { generation: 0 }, failed("first"), 0, 0, vec![]),
            ("failed", fail("second"), failed("first"), 0, 0, vec![]),
        ]
    }

    const STATES: [&str; 7] = [
        "skipped",
        "fetching, nothing dispatched",
        "fetching, page 2 pending",
        "settling, page 2 pending",
        "restarting to 1, page 2 pending",
        "succeeded",
        "failed",
    ];

    fn kind(event: &Event) -> &'static str {
        match event {
            Event::Dispatched { .. } => "Dispatched",
            Event::Committed { .. } => "Committed",
            Event::FetchFinished { .. } => "FetchFinished",
            Event::FetchFailed { .. } => "FetchFailed",
            Event::PageFailed { .. } => "PageFailed",
            Event::NotWritten { .. } => "NotWritten",
            Event::Restart { .. } => "Restart",
            Event::RestartDue { .. } => "RestartDue",
            Event::Fail { .. } => "Fail",
        }
    }

    #[test]
    fn the_table_has_every_event_in_every_phase() {
        let table = table();
        let kinds = [
            "Dispatched",
            "Committed",
            "FetchFinished",
            "FetchFailed",
            "PageFailed",
            "NotWritten",
            "Restart",
            "RestartDue",
            "Fail",
        ];
        for state in STATES {
            for event in kinds {
                assert!(
                    table.iter().any(|row| row.0 == state && kind(&row.1) == event),
                    "no row for {event} in {state}"
                );
            }
        }
    }

    #[test]
    fn every_event_in_every_phase() {
        for (name, event, phase, generation, pending, effects) in table() {
            let mut ledger = state(name);
            let described = format!("{name} + {event:?}");
            let got = ledger.apply(event);
            assert_eq!(got, effects, "effects of {described}");
            assert_eq!(ledger.phase(), &phase, "phase after {described}");
            assert_eq!(ledger.generation(), generation, "generation after {described}");
            assert_eq!(ledger.pending_pages(), pending, "pending pages after {described}");
        }
    }

    #[test]
    fn a_restart_resumes_from_the_earliest_uncommitted_page_and_counts_each_page_once() {
        let mut ledger = run(vec![
            dispatched(0, 1, false),
            dispatched(0, 2, false),
            dispatched(0, 3, false),
            Event::Committed { page_no: 2 },
            Event::Restart { generation: 0 },
        ]);
        assert_eq!(
            ledger.apply(Event::RestartDue { generation: 1 }),
            vec![Effect::Spawn {
                generation: 1,
                start: Some(position(1))
            }]
        );
        // Generation 1 sends pages 1 to 4 again; page 2 is committed a second time.
        for page_no in 1..=4 {
            ledger.apply(dispatched(1, page_no, page_no == 4));
            ledger.apply(Event::Committed { page_no });
        }
        assert_eq!(ledger.committed_pages(), 4);
        assert_eq!(
            ledger.apply(Event::FetchFinished {
                generation: 1,
                truncated: false
            }),
            vec![Effect::StopTransformer, Effect::Finished]
        );
        assert_eq!(ledger.phase(), &Phase::Succeeded);
    }

    #[test]
    fn restart_positions() {
        // Nothing dispatched: from the first page.
        let mut ledger = run(vec![Event::Restart { generation: 0 }]);
        assert_eq!(
            ledger.apply(Event::RestartDue { generation: 1 }),
            vec![Effect::Spawn {
                generation: 1,
                start: None
            }]
        );
        // Everything dispatched committed, more to come: from the next page.
        let mut ledger = run(vec![
            dispatched(0, 1, false),
            Event::Committed { page_no: 1 },
            Event::Restart { generation: 0 },
        ]);
        assert_eq!(
            ledger.apply(Event::RestartDue { generation: 1 }),
            vec![Effect::Spawn {
                generation: 1,
                start: Some(position(2))
            }]
        );
        // The last page dispatched and committed, only the end-of-source news lost: done.
        let mut ledger = run(vec![dispatched(0, 1, true), Event::Committed { page_no: 1 }]);
        assert_eq!(
            ledger.apply(Event::Restart { generation: 0 }),
            vec![Effect::KillActors, Effect::Finished]
        );
        assert_eq!(ledger.phase(), &Phase::Succeeded);
        // The last page committed during the backoff: done when the backoff is over.
        let mut ledger = run(vec![dispatched(0, 1, true), Event::Restart { generation: 0 }]);
        ledger.apply(Event::Committed { page_no: 1 });
        assert_eq!(
            ledger.apply(Event::RestartDue { generation: 1 }),
            vec![Effect::Finished]
        );
        assert_eq!(ledger.phase(), &Phase::Succeeded);
    }

    #[test]
    fn a_listing_is_truncated_when_the_fetcher_says_so_or_its_end_was_never_heard() {
        let mut cut = run(vec![dispatched(0, 1, true)]);
        cut.apply(Event::FetchFinished {
            generation: 0,
            truncated: true,
        });
        cut.apply(Event::Committed { page_no: 1 });
        assert_eq!((cut.phase(), cut.truncated()), (&Phase::Succeeded, true));
        let whole = state("succeeded");
        assert!(!whole.truncated());
        // The last page committed, the end-of-source news lost with a crashed fetcher.
        let mut unheard = run(vec![dispatched(0, 1, true), Event::Committed { page_no: 1 }]);
        unheard.apply(Event::Restart { generation: 0 });
        assert_eq!((unheard.phase(), unheard.truncated()), (&Phase::Succeeded, true));
    }

    #[test]
    fn which_exits_are_news() {
        let fetching = state("fetching, page 2 pending");
        assert!(fetching.expects(SourceActor::Fetcher, 0));
        assert!(fetching.expects(SourceActor::Transformer, 0));
        assert!(!fetching.expects(SourceActor::Fetcher, 1));
        let settling = state("settling, page 2 pending");
        assert!(
            !settling.expects(SourceActor::Fetcher, 0),
            "a fetcher stops after its last page"
        );
        assert!(settling.expects(SourceActor::Transformer, 0));
        let restarting = state("restarting to 1, page 2 pending");
        assert!(!restarting.expects(SourceActor::Fetcher, 0));
        assert!(!restarting.expects(SourceActor::Transformer, 1));
        let succeeded = state("succeeded");
        assert!(!succeeded.expects(SourceActor::Transformer, 0));
    }
}
