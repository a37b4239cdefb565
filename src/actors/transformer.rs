//! One transformer per source per sync: parses each raw page off the async threads, applies
//! the page-level rules (truncation to `max_models`, duplicates within the page), computes the
//! records' history digests, and streams the rows and rejects to the writer. A page that cannot
//! be parsed at all, or a parser panic, fails the source, never the process.
//!
//! A writer (or supervisor) that is gone is not this transformer's crash: the writer's own
//! exit reaches the supervisor, which replaces it and restarts this source without charging
//! the source's restart budget. The transformer just stops.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::actors::messages::{PageRows, RawPage, SupervisorMsg, TransformerMsg, WriterMsg};
use crate::history::{self, Digest};
use crate::model::{ParsedPage, Reject, RejectReason};
use crate::sources::parse_payload;

pub struct Transformer;

pub struct TransformerArgs {
    pub writer: ActorRef<WriterMsg>,
    pub supervisor: ActorRef<SupervisorMsg>,
}

impl Actor for Transformer {
    type Msg = TransformerMsg;
    type State = TransformerArgs;
    type Arguments = TransformerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TransformerMsg>,
        args: TransformerArgs,
    ) -> Result<TransformerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<TransformerMsg>,
        message: TransformerMsg,
        state: &mut TransformerArgs,
    ) -> Result<(), ActorProcessingErr> {
        let TransformerMsg::Page(page) = message;
        crate::faults::maybe_panic_for("transformer_page", page.ticket.key.source);
        let key = page.ticket.key;
        let span = tracing::info_span!("transform", sync_id = key.sync_id, source = %key.source, page = key.page_no);
        async {
            let RawPage {
                ticket,
                body,
                max_records,
                last,
            } = page;
            let source = key.source;
            // Parsing is CPU work: keep it off the async worker threads. A panic inside comes
            // back as a JoinError instead of unwinding through this actor.
            // The digests that history compares records by are computed here too, in
            // parallel with the writer's database work rather than on its path.
            let parsed = tokio::task::spawn_blocking(move || {
                crate::faults::maybe_panic_for("parser", source);
                let parsed = match max_records {
                    Some(max) => parse_payload(source, &first_records(&body, max)),
                    None => parse_payload(source, &body),
                };
                parsed.map(|mut parsed| {
                    let duplicates = quarantine_duplicates(&mut parsed);
                    let digests: Vec<Digest> = parsed.models.iter().map(history::digest).collect();
                    (parsed, duplicates, digests)
                })
            })
            .await;
            let error = match parsed {
                Ok(Ok((parsed, duplicates, digests))) => {
                    tracing::debug!(
                        models = parsed.models.len(),
                        rejects = parsed.rejects.len(),
                        duplicates,
                        "page parsed"
                    );
                    let rows = WriterMsg::Page(PageRows {
                        ticket,
                        models: parsed.models,
                        digests,
                        rejects: parsed.rejects,
                        fields: parsed.fields,
                        duplicates,
                        last,
                    });
                    if state.writer.cast(rows).is_err() {
                        tracing::warn!("the writer is gone; stopping until the supervisor restarts the source");
                        myself.stop(Some("the writer is gone".into()));
                    }
                    return Ok(());
                }
                Ok(Err(error)) => error.to_string(),
                Err(join_error) => format!("the {source} parser crashed: {}", panic_message(join_error)),
            };
            tracing::error!(%error, "page could not be parsed");
            drop(ticket);
            if state.supervisor.cast(SupervisorMsg::PageFailed { key, error }).is_err() {
                myself.stop(Some("the supervisor is gone".into()));
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// A key listed twice in one page: the first record wins. A later record identical to it (same
/// raw text) is a duplicate, counted and dropped; one with other content is quarantined as
/// `duplicate_id` with its raw text. Returns the duplicates. The same rules apply across pages
/// (`store/batch.rs`), so a repeat is counted the same wherever it is.
/// Keys are borrowed, not copied: this runs for every record of every page.
fn quarantine_duplicates(page: &mut ParsedPage) -> u64 {
    // (index, identical to the first record of its key)
    let repeats: Vec<(usize, bool)> = {
        let mut first: HashMap<(&str, &str), &str> = HashMap::with_capacity(page.models.len());
        page.models
            .iter()
            .enumerate()
            .filter_map(
                |(index, model)| match first.entry((model.provider.as_str(), model.model_id.as_str())) {
                    Entry::Vacant(vacant) => {
                        vacant.insert(model.raw.as_str());
                        None
                    }
                    Entry::Occupied(occupied) => Some((index, *occupied.get() == model.raw.as_str())),
                },
            )
            .collect()
    };
    let mut duplicates = 0;
    for (index, identical) in repeats.into_iter().rev() {
        let model = page.models.remove(index);
        if identical {
            duplicates += 1;
            continue;
        }
        page.rejects.push(Reject {
            source: model.source,
            reason: RejectReason::DuplicateId,
            detail: format!(
                "{}/{} appears more than once in the same page with other content",
                model.provider, model.model_id
            ),
            model_id: Some(model.model_id),
            raw: model.raw,
        });
    }
    duplicates
}

/// The first `max` items of a top-level JSON array, as a JSON array (the last page of a listing
/// bounded by `max_models`). Split with the parsers' tolerant splitter, so a malformed record
/// counts as one item and is judged (rejected) by the parser like any other. A body that is not
/// an array is returned as is for the parser to judge.
fn first_records(body: &[u8], max: usize) -> Vec<u8> {
    match crate::sources::split::elements(body) {
        Ok(items) if items.len() > max => {
            let mut out = Vec::with_capacity(body.len());
            out.push(b'[');
            for (index, item) in items[..max].iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item.bytes);
            }
            out.push(b']');
            out
        }
        _ => body.to_vec(),
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-text payload".into()),
        Err(error) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Source};

    #[test]
    fn the_first_of_a_key_listed_twice_wins_identical_repeats_are_counted_others_quarantined() {
        let model = |id: &str, raw: &str| Model::new(Source::HuggingFace, "org".into(), id.into(), raw.into());
        let mut page = ParsedPage {
            models: vec![
                model("a", "1"),
                model("b", "2"),
                model("a", "3"),
                model("a", "1"),
                model("a", "4"),
                model("b", "2"),
            ],
            ..ParsedPage::default()
        };
        assert_eq!(quarantine_duplicates(&mut page), 2);
        let kept: Vec<&str> = page.models.iter().map(|m| m.raw.as_str()).collect();
        assert_eq!(kept, ["1", "2"]);
        let mut quarantined: Vec<&str> = page.rejects.iter().map(|r| r.raw.as_str()).collect();
        quarantined.sort();
        assert_eq!(quarantined, ["3", "4"]);
        assert!(page.rejects.iter().all(|r| r.reason == RejectReason::DuplicateId));
    }
}
