//! `changes`: what changed, as a table on a terminal or JSON. Without `--since-sync`, the
//! changes of the syncs that started in the last 24 hours ("since yesterday").

use chrono::{Duration, NaiveDate, Utc};
use serde_json::Value;

use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::history::ChangeKind;
use crate::model::Source;
use crate::store::changes::{self, ChangeFilter, ChangeRecord};

/// How far `changes` looks back when no `--since-sync` is given.
const DEFAULT_WINDOW_HOURS: i64 = 24;
/// A model whose `expires_on` is this close (or past) is flagged.
const EXPIRY_WARNING_DAYS: i64 = 90;

pub struct ChangesArgs {
    pub since_sync: Option<i64>,
    pub source: Option<Source>,
    pub kind: Option<ChangeKind>,
    pub limit: i64,
    pub json: bool,
}

pub async fn run(config: Config, args: ChangesArgs) -> anyhow::Result<i32> {
    let session = DatabaseSession::open(&config).await?;
    let result = list(&session, &args).await;
    session.close().await;
    let (window, records, counts, latest) = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(0);
    }
    print!(
        "{}",
        render(&window, &records, &counts, latest, args.limit, Utc::now().date_naive())
    );
    Ok(0)
}

type Listed = (
    String,
    Vec<ChangeRecord>,
    Vec<(String, String, i64)>,
    Option<(i64, chrono::DateTime<Utc>)>,
);

async fn list(session: &DatabaseSession, args: &ChangesArgs) -> anyhow::Result<Listed> {
    let since = Utc::now() - Duration::hours(DEFAULT_WINDOW_HOURS);
    let filter = ChangeFilter {
        after_sync: args.since_sync,
        syncs_started_since: args.since_sync.is_none().then_some(since),
        source: args.source,
        kind: args.kind,
        after_id: None,
        limit: args.limit.max(1),
    };
    let window = match args.since_sync {
        Some(sync) => format!("Changes recorded by the syncs after sync {sync}"),
        None => format!(
            "Changes recorded by the syncs started since {} (the last {DEFAULT_WINDOW_HOURS} hours; \
             --since-sync N for the syncs after N)",
            since.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    let records = changes::list_changes(&session.database, &filter).await?;
    let counts = changes::count_changes(&session.database, &filter).await?;
    let latest = changes::latest_sync(&session.database).await?;
    Ok((window, records, counts, latest))
}

/// The terminal view: the window, counts per source and kind, then one line per change.
pub fn render(
    window: &str,
    records: &[ChangeRecord],
    counts: &[(String, String, i64)],
    latest: Option<(i64, chrono::DateTime<Utc>)>,
    limit: i64,
    today: NaiveDate,
) -> String {
    let mut out = format!("{window}\n");
    let total: i64 = counts.iter().map(|(_, _, count)| count).sum();
    if total == 0 {
        match latest {
            None => out.push_str("no syncs yet; run `model-lens-sync sync`\n"),
            Some((id, started)) => out.push_str(&format!(
                "no changes (the latest sync is {id}, started {}; the first listing of a source is its \
                 baseline and records none)\n",
                started.format("%Y-%m-%d %H:%M UTC")
            )),
        }
        return out;
    }
    let mut per_source: Vec<(String, Vec<String>)> = Vec::new();
    for (source, kind, count) in counts {
        match per_source.iter_mut().find(|(name, _)| name == source) {
            Some((_, parts)) => parts.push(format!("{count} {kind}")),
            None => per_source.push((source.clone(), vec![format!("{count} {kind}")])),
        }
    }
    for (source, parts) in per_source {
        out.push_str(&format!("  {source}: {}\n", parts.join(", ")));
    }
    out.push('\n');
    let model_width = records
        .iter()
        .map(|record| display_key(record).chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    out.push_str(&format!(
        "{:>6}  {:<19}  {:<10}  {:<model_width$}  {}\n",
        "SYNC", "SOURCE", "KIND", "MODEL", "WHAT"
    ));
    for record in records {
        let mut what = describe(record);
        for note in notes(record, today) {
            what.push_str(&format!("  [{note}]"));
        }
        out.push_str(&format!(
            "{:>6}  {:<19}  {:<10}  {:<model_width$}  {}\n",
            record.sync_id,
            record.source,
            record.kind,
            display_key(record),
            what
        ));
    }
    if total > records.len() as i64 {
        out.push_str(&format!(
            "… {} more (--limit {}, or --json for all fields)\n",
            total - records.len() as i64,
            limit
        ));
    }
    out
}

fn display_key(record: &ChangeRecord) -> String {
    // Hugging Face and OpenRouter ids already start with the provider.
    if record.provider.is_empty() || record.model_id.starts_with(&format!("{}/", record.provider)) {
        record.model_id.clone()
    } else {
        format!("{}/{}", record.provider, record.model_id)
    }
}

/// A short label of a content column for people.
fn label(field: &str) -> &str {
    match field {
        "input_price_per_mtok" => "input $/M",
        "output_price_per_mtok" => "output $/M",
        "cache_read_price_per_mtok" => "cache read $/M",
        "cache_write_price_per_mtok" => "cache write $/M",
        other => other,
    }
}

/// A JSON value of `before` / `after` as people read it.
pub fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "–".into(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

/// What a change says, in one line.
pub fn describe(record: &ChangeRecord) -> String {
    let field = |object: Option<&Value>, name: &str| object.and_then(|value| value.get(name)).cloned();
    match record.kind.as_str() {
        "changed" | "reappeared" => {
            let mut parts: Vec<String> = record
                .fields
                .iter()
                .filter(|name| name.as_str() != crate::history::DATA_FIELD)
                .map(|name| {
                    format!(
                        "{} {} → {}",
                        label(name),
                        shown(field(record.before.as_ref(), name).as_ref()),
                        shown(field(record.after.as_ref(), name).as_ref())
                    )
                })
                .collect();
            if record.fields.iter().any(|name| name == crate::history::DATA_FIELD) {
                parts.push("record changed".into());
            }
            if record.kind == "reappeared" {
                parts.insert(0, "back after removal".into());
            }
            parts.join("; ")
        }
        "added" => summary(record.after.as_ref()),
        "removed" => format!("gone; was {}", summary(record.before.as_ref())),
        _ => String::new(),
    }
}

/// A model's name and prices from a content object.
fn summary(content: Option<&Value>) -> String {
    let get = |name: &str| {
        content
            .and_then(|value| value.get(name))
            .filter(|value| !value.is_null())
    };
    let mut parts = Vec::new();
    if let Some(name) = get("name") {
        parts.push(shown(Some(name)));
    }
    for price in ["input_price_per_mtok", "output_price_per_mtok"] {
        if let Some(value) = get(price) {
            parts.push(format!("{} {}", label(price), shown(Some(value))));
        }
    }
    if let Some(context) = get("context_length") {
        parts.push(format!("context {}", shown(Some(context))));
    }
    if parts.is_empty() {
        "(no name or price)".into()
    } else {
        parts.join(", ")
    }
}

/// Flags a reader should not miss: a held change, a deprecated model, an expiry date near.
pub fn notes(record: &ChangeRecord, today: NaiveDate) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(reason) = &record.hold_reason {
        notes.push(format!("HOLD: {reason}"));
    }
    if record.status.as_deref() == Some("deprecated") {
        notes.push("deprecated".into());
    }
    if let Some(note) = record.expires_on.and_then(|date| expiry_note(date, today)) {
        notes.push(note);
    }
    notes
}

/// "expires 2026-12-01 (in 5 days)" when the date is near, "expired …" when past.
pub fn expiry_note(expires_on: NaiveDate, today: NaiveDate) -> Option<String> {
    let days = (expires_on - today).num_days();
    if days < 0 {
        Some(format!("expired {expires_on}"))
    } else if days <= EXPIRY_WARNING_DAYS {
        Some(format!(
            "expires {expires_on} (in {days} day{})",
            if days == 1 { "" } else { "s" }
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, fields: &[&str], before: Option<Value>, after: Option<Value>) -> ChangeRecord {
        ChangeRecord {
            id: 1,
            sync_id: 7,
            source: "models_dev".into(),
            provider: "anthropic".into(),
            model_id: "claude-opus-4".into(),
            kind: kind.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            before,
            after,
            hold_reason: None,
            created_at: Utc::now(),
            status: None,
            expires_on: None,
        }
    }

    #[test]
    fn changes_read_as_one_line_each() {
        let changed = record(
            "changed",
            &["input_price_per_mtok", "status", "data"],
            Some(json!({"input_price_per_mtok": "15", "status": null})),
            Some(json!({"input_price_per_mtok": "12", "status": "deprecated"})),
        );
        assert_eq!(
            describe(&changed),
            "input $/M 15 → 12; status – → deprecated; record changed"
        );
        let added = record(
            "added",
            &[],
            None,
            Some(json!({"name": "Opus", "input_price_per_mtok": "15", "context_length": 200000})),
        );
        assert_eq!(describe(&added), "Opus, input $/M 15, context 200000");
        let removed = record("removed", &[], Some(json!({"name": "Old"})), None);
        assert_eq!(describe(&removed), "gone; was Old");
        let back = record("reappeared", &[], None, Some(json!({"name": "Opus"})));
        assert_eq!(describe(&back), "back after removal");
    }

    #[test]
    fn notes_flag_holds_deprecation_and_near_expiry() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let mut change = record("changed", &[], None, None);
        change.hold_reason = Some("input went to 0 (from 3)".into());
        change.status = Some("deprecated".into());
        change.expires_on = NaiveDate::from_ymd_opt(2026, 12, 1);
        assert_eq!(
            notes(&change, today),
            [
                "HOLD: input went to 0 (from 3)",
                "deprecated",
                "expires 2026-12-01 (in 1 day)"
            ]
        );
        assert_eq!(
            expiry_note(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), today).as_deref(),
            Some("expired 2026-11-01")
        );
        assert_eq!(expiry_note(NaiveDate::from_ymd_opt(2027, 6, 1).unwrap(), today), None);
    }

    #[test]
    fn the_table_has_counts_a_header_and_says_what_is_left_out() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let records = vec![record("removed", &[], Some(json!({"name": "Old"})), None)];
        let counts = vec![("models_dev".to_string(), "removed".to_string(), 3)];
        let text = render("Changes since X", &records, &counts, None, 1, today);
        assert!(text.starts_with("Changes since X\n  models_dev: 3 removed\n"), "{text}");
        assert!(text.contains("SYNC  SOURCE"), "{text}");
        assert!(
            text.contains("     7  models_dev           removed     anthropic/claude-opus-4  gone; was Old"),
            "{text}"
        );
        assert!(text.contains("… 2 more (--limit 1"), "{text}");
        let empty = render("Changes since X", &[], &[], Some((4, Utc::now())), 10, today);
        assert!(empty.contains("no changes (the latest sync is 4"), "{empty}");
    }
}
