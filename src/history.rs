//! The rules of history (DESIGN.md §8), as pure functions: what in a record is volatile, what a
//! model's content is and when it changed, how a re-listed model is classified, what the end of
//! a listing may infer, and which changes are held. No I/O here: `store/history.rs` applies
//! these decisions in SQL, and the tests below are tables of (input → decision).

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{Model, Source};
use crate::sources::split;

/// The channel of `NOTIFY model_lens_changes, '<last change id>'`, sent after each commit that
/// added changes (a wake-up: listeners read `model_changes` by id).
pub const CHANGES_CHANNEL: &str = "model_lens_changes";

/// Whether a top-level key of a `source` record holds a volatile value: one that moves without
/// the model changing (Hugging Face `downloads`, `likes`, `trendingScore`; the Artificial
/// Analysis speed and latency measurements `median_*`). Volatile values are kept in a series,
/// written only when they move, and never make a new version. `sql/0006_history.sql` applies
/// the same rule to convert old snapshot rows.
pub fn is_volatile(source: Source, key: &str) -> bool {
    is_volatile_key(source, key.as_bytes())
}

/// [`is_volatile`] of a key's bytes (every record of every sync asks, so no UTF-8 check).
fn is_volatile_key(source: Source, key: &[u8]) -> bool {
    match source {
        Source::HuggingFace => matches!(key, b"downloads" | b"likes" | b"trendingScore"),
        Source::ArtificialAnalysis => key.starts_with(b"median_"),
        Source::ModelsDev | Source::OpenRouter => false,
    }
}

/// What a new version stores of a record, from one cut of it into members: `data` is the
/// record without its volatile members, `volatile` an object of the volatile members present
/// (`None` when there are none), both keeping the members' exact text, so `data || volatile` in
/// PostgreSQL is the record as jsonb again; and the record's content hash (see
/// [`content_hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionParts {
    pub content_hash: [u8; 16],
    pub data: String,
    pub volatile: Option<String>,
}

/// Whether a member, by its quoted key as written, holds a volatile value. Keys are compared
/// as written unless they hold escapes (then decoded).
fn is_volatile_member(source: Source, quoted_key: &[u8]) -> bool {
    if matches!(source, Source::ModelsDev | Source::OpenRouter) {
        return false;
    }
    let inner = &quoted_key[1..quoted_key.len().saturating_sub(1).max(1)];
    if !inner.contains(&b'\\') {
        return is_volatile_key(source, inner);
    }
    serde_json::from_slice::<String>(quoted_key).is_ok_and(|key| is_volatile(source, &key))
}

/// What every record is compared by first, cheap enough for every record of every sync:
/// `record` hashes the record's exact text (what `model_snapshots.content_hash` always held),
/// `columns` the parsed content columns. The same record and the same columns mean the same
/// content; otherwise [`content_hash`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub record: [u8; 16],
    pub columns: [u8; 16],
}

/// The [`Digest`] of a parsed model.
pub fn digest(model: &Model) -> Digest {
    let mut buffer = Vec::with_capacity(128);
    encode_content(model, &mut buffer);
    Digest {
        record: model.record_hash(),
        columns: first_16(blake3::hash(&buffer)),
    }
}

/// The content hash of a model: its content columns and its record without the volatile
/// members, members in key order (a reordered record is the same content). It excludes every
/// volatile value. Computed only for records whose [`Digest`] differs from the stored one: it
/// cuts the record into members, which costs about as much as parsing it.
pub fn content_hash(model: &Model) -> [u8; 16] {
    version_parts(model).content_hash
}

/// Cuts a model's record into the [`VersionParts`], hashing its content on the way. A record
/// that is not a JSON object has no members to cut: it is kept whole and hashed whole.
pub fn version_parts(model: &Model) -> VersionParts {
    let raw = model.raw.as_str();
    let mut buffer = Vec::with_capacity(raw.len() + 256);
    encode_content(model, &mut buffer);
    let Some(mut members) = split::raw_members(raw.as_bytes()) else {
        encode_bytes(&mut buffer, raw.as_bytes());
        return VersionParts {
            content_hash: first_16(blake3::hash(&buffer)),
            data: raw.to_string(),
            volatile: None,
        };
    };
    let mut volatile: Option<String> = None;
    members.retain(|member| {
        let is_volatile = is_volatile_member(model.source, member.quoted_key);
        if is_volatile {
            let part = volatile.get_or_insert_with(|| String::from("{"));
            if part.len() > 1 {
                part.push(',');
            }
            part.push_str(text_of(raw, member.text));
        }
        !is_volatile
    });
    let data = match &mut volatile {
        None => raw.to_string(),
        Some(part) => {
            part.push('}');
            let mut data = String::with_capacity(raw.len());
            data.push('{');
            for (index, member) in members.iter().enumerate() {
                if index > 0 {
                    data.push(',');
                }
                data.push_str(text_of(raw, member.text));
            }
            data.push('}');
            data
        }
    };
    members.sort_unstable_by(|a, b| a.quoted_key.cmp(b.quoted_key).then(a.value.cmp(b.value)));
    buffer.extend_from_slice(&(members.len() as u64).to_le_bytes());
    for member in members {
        encode_bytes(&mut buffer, member.quoted_key);
        encode_bytes(&mut buffer, member.value);
    }
    VersionParts {
        content_hash: first_16(blake3::hash(&buffer)),
        data,
        volatile,
    }
}

/// The text of `part`, a slice of `raw`'s bytes cut at ASCII bytes (so at character
/// boundaries): taken as a `str` slice without checking its bytes again.
fn text_of<'a>(raw: &'a str, part: &'a [u8]) -> &'a str {
    let start = (part.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
    raw.get(start..start + part.len())
        .unwrap_or_else(|| std::str::from_utf8(part).unwrap_or_default())
}

fn first_16(hash: blake3::Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

fn encode_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

fn encode_option(buffer: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => buffer.push(0),
        Some(text) => {
            buffer.push(1);
            encode_bytes(buffer, text.as_bytes());
        }
    }
}

/// The content columns, in the order of [`CONTENT_COLUMNS`]. Decimals are normalized (`1.50`
/// and `1.5` encode alike), so a source that changes only its number formatting is not a
/// change.
fn encode_content(model: &Model, buffer: &mut Vec<u8>) {
    let decimal = |value: Option<Decimal>| value.map(|value| value.normalize().to_string());
    let list = |value: &Option<Vec<String>>| value.as_ref().map(|items| items.join("\u{1f}"));
    let flag = |value: Option<bool>| value.map(|value| if value { "t" } else { "f" });
    encode_option(buffer, model.name.as_deref());
    encode_option(buffer, model.context_length.map(|v| v.to_string()).as_deref());
    encode_option(buffer, model.max_output_tokens.map(|v| v.to_string()).as_deref());
    for price in [
        model.input_price_per_mtok,
        model.output_price_per_mtok,
        model.cache_read_price_per_mtok,
        model.cache_write_price_per_mtok,
    ] {
        encode_option(buffer, decimal(price).as_deref());
    }
    encode_option(buffer, list(&model.input_modalities).as_deref());
    encode_option(buffer, list(&model.output_modalities).as_deref());
    encode_option(buffer, flag(model.supports_tools));
    encode_option(buffer, flag(model.supports_reasoning));
    encode_option(buffer, flag(model.open_weights));
    encode_option(buffer, model.release_date.map(|v| v.to_string()).as_deref());
    encode_option(buffer, decimal(model.intelligence_index).as_deref());
    let tiers = model.price_tiers.as_ref().map(|tiers| {
        let value = serde_json::to_value(tiers).expect("price tiers are strings and integers");
        normalized_tiers(&value).to_string()
    });
    encode_option(buffer, tiers.as_deref());
    encode_option(buffer, model.status.as_deref());
    encode_option(buffer, model.expires_on.map(|v| v.to_string()).as_deref());
    encode_option(buffer, model.intelligence_index_version.as_deref());
}

/// The content columns of a model (DESIGN.md §4 and §9 without the volatile `downloads` and
/// `likes`), in the order of [`CONTENT_COLUMNS`]. A change of any of them, or of the record
/// without its volatile members, is a change of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub name: Option<String>,
    pub context_length: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub input_price_per_mtok: Option<Decimal>,
    pub output_price_per_mtok: Option<Decimal>,
    pub cache_read_price_per_mtok: Option<Decimal>,
    pub cache_write_price_per_mtok: Option<Decimal>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supports_tools: Option<bool>,
    pub supports_reasoning: Option<bool>,
    pub open_weights: Option<bool>,
    pub release_date: Option<NaiveDate>,
    pub intelligence_index: Option<Decimal>,
    /// As stored: an array of `{"min_context_tokens": int, "input": "dec", ...}`.
    pub price_tiers: Option<serde_json::Value>,
    pub status: Option<String>,
    pub expires_on: Option<NaiveDate>,
    pub intelligence_index_version: Option<String>,
}

/// The names of the content columns, as in `model_versions`, `model_changes.fields` and the
/// keys of `model_changes.before` / `after`.
pub const CONTENT_COLUMNS: [&str; 18] = [
    "name",
    "context_length",
    "max_output_tokens",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cache_read_price_per_mtok",
    "cache_write_price_per_mtok",
    "input_modalities",
    "output_modalities",
    "supports_tools",
    "supports_reasoning",
    "open_weights",
    "release_date",
    "intelligence_index",
    "price_tiers",
    "status",
    "expires_on",
    "intelligence_index_version",
];

/// The price columns: what the price-jump rule watches.
pub const PRICE_COLUMNS: [&str; 4] = [
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cache_read_price_per_mtok",
    "cache_write_price_per_mtok",
];

/// Named in `model_changes.fields` when the stored record (without volatile members) changed.
pub const DATA_FIELD: &str = "data";

impl Content {
    pub fn of(model: &Model) -> Content {
        Content {
            name: model.name.clone(),
            context_length: model.context_length,
            max_output_tokens: model.max_output_tokens,
            input_price_per_mtok: model.input_price_per_mtok,
            output_price_per_mtok: model.output_price_per_mtok,
            cache_read_price_per_mtok: model.cache_read_price_per_mtok,
            cache_write_price_per_mtok: model.cache_write_price_per_mtok,
            input_modalities: model.input_modalities.clone(),
            output_modalities: model.output_modalities.clone(),
            supports_tools: model.supports_tools,
            supports_reasoning: model.supports_reasoning,
            open_weights: model.open_weights,
            release_date: model.release_date,
            intelligence_index: model.intelligence_index,
            price_tiers: model
                .price_tiers
                .as_ref()
                .map(|tiers| serde_json::to_value(tiers).expect("price tiers are strings and integers")),
            status: model.status.clone(),
            expires_on: model.expires_on,
            intelligence_index_version: model.intelligence_index_version.clone(),
        }
    }

    /// The prices of the four price columns, in the order of [`PRICE_COLUMNS`].
    fn prices(&self) -> [Option<Decimal>; 4] {
        [
            self.input_price_per_mtok,
            self.output_price_per_mtok,
            self.cache_read_price_per_mtok,
            self.cache_write_price_per_mtok,
        ]
    }

    /// Whether column `index` of [`CONTENT_COLUMNS`] holds the same value in both. Decimals
    /// compare by value (`1.50` = `1.5`).
    fn same_column(&self, other: &Content, index: usize) -> bool {
        match index {
            0 => self.name == other.name,
            1 => self.context_length == other.context_length,
            2 => self.max_output_tokens == other.max_output_tokens,
            3..=6 => self.prices()[index - 3] == other.prices()[index - 3],
            7 => self.input_modalities == other.input_modalities,
            8 => self.output_modalities == other.output_modalities,
            9 => self.supports_tools == other.supports_tools,
            10 => self.supports_reasoning == other.supports_reasoning,
            11 => self.open_weights == other.open_weights,
            12 => self.release_date == other.release_date,
            13 => self.intelligence_index == other.intelligence_index,
            14 => same_tiers(self.price_tiers.as_ref(), other.price_tiers.as_ref()),
            15 => self.status == other.status,
            16 => self.expires_on == other.expires_on,
            _ => self.intelligence_index_version == other.intelligence_index_version,
        }
    }
}

/// Tiers with their decimal strings normalized, so that `"10.0"` and `"10"` compare equal.
fn normalized_tiers(tiers: &serde_json::Value) -> serde_json::Value {
    match tiers {
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(normalized_tiers).collect()),
        serde_json::Value::Object(members) => serde_json::Value::Object(
            members
                .iter()
                .map(|(key, value)| (key.clone(), normalized_tiers(value)))
                .collect(),
        ),
        serde_json::Value::String(text) => match text.parse::<Decimal>() {
            Ok(value) => serde_json::Value::String(value.normalize().to_string()),
            Err(_) => tiers.clone(),
        },
        other => other.clone(),
    }
}

fn same_tiers(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => normalized_tiers(a) == normalized_tiers(b),
        _ => false,
    }
}

/// The columns that differ between an old and a new content, in [`CONTENT_COLUMNS`] order,
/// then [`DATA_FIELD`] when the record without its volatile members differs. Empty: the same
/// content (what the hash said may have been only formatting).
pub fn changed_fields(old: &Content, new: &Content, same_data: bool) -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = CONTENT_COLUMNS
        .iter()
        .enumerate()
        .filter(|(index, _)| !old.same_column(new, *index))
        .map(|(_, name)| *name)
        .collect();
    if !same_data {
        fields.push(DATA_FIELD);
    }
    fields
}

/// Why a change should be held by consumers, if it should: a price (a price column, or a price
/// of a long-context tier with the same threshold) that moved by a factor of at least
/// `factor`, or went to or from zero. The change is stored as upstream said it either way.
pub fn hold_reason(old: &Content, new: &Content, factor: Decimal) -> Option<String> {
    let mut reasons: Vec<String> = PRICE_COLUMNS
        .iter()
        .zip(old.prices().into_iter().zip(new.prices()))
        .filter_map(|(column, (before, after))| price_jump(column, before?, after?, factor))
        .collect();
    reasons.extend(tier_jumps(old.price_tiers.as_ref(), new.price_tiers.as_ref(), factor));
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// One price's move, described, when it is a jump.
pub fn price_jump(what: &str, before: Decimal, after: Decimal, factor: Decimal) -> Option<String> {
    if before == after {
        return None;
    }
    let (before_text, after_text) = (before.normalize(), after.normalize());
    if before.is_zero() {
        return Some(format!("{what} went from 0 to {after_text}"));
    }
    if after.is_zero() {
        return Some(format!("{what} went to 0 (from {before_text})"));
    }
    let (low, high) = if before < after {
        (before, after)
    } else {
        (after, before)
    };
    let ratio = high.checked_div(low)?;
    (ratio >= factor).then(|| {
        let direction = if after > before { "rose" } else { "fell" };
        format!(
            "{what} {direction} by a factor of {} ({before_text} → {after_text})",
            ratio.round_dp(2).normalize()
        )
    })
}

fn tier_jumps(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>, factor: Decimal) -> Vec<String> {
    let tiers = |value: Option<&serde_json::Value>| -> Vec<serde_json::Map<String, serde_json::Value>> {
        value
            .and_then(|value| value.as_array())
            .map(|items| items.iter().filter_map(|item| item.as_object().cloned()).collect())
            .unwrap_or_default()
    };
    let price = |tier: &serde_json::Map<String, serde_json::Value>, key: &str| -> Option<Decimal> {
        tier.get(key)?.as_str()?.parse().ok()
    };
    let mut reasons = Vec::new();
    for before in tiers(old) {
        let threshold = before.get("min_context_tokens").cloned();
        let Some(after) = tiers(new)
            .into_iter()
            .find(|tier| tier.get("min_context_tokens") == threshold.as_ref())
        else {
            continue;
        };
        for key in ["input", "output", "cache_read", "cache_write"] {
            if let (Some(old_price), Some(new_price)) = (price(&before, key), price(&after, key)) {
                let what = format!(
                    "price_tiers[{}].{key}",
                    threshold.as_ref().map(|v| v.to_string()).unwrap_or_default()
                );
                reasons.extend(price_jump(&what, old_price, new_price, factor));
            }
        }
    }
    reasons
}

/// Why a version stopped being current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// A newer version of the same model replaced it.
    Replaced,
    /// A complete listing lacked the model.
    Removed,
    /// A truncated listing (the Hugging Face window) did not reach the model; it was not
    /// deleted upstream.
    OutOfWindow,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Replaced => "replaced",
            EndReason::Removed => "removed",
            EndReason::OutOfWindow => "out_of_window",
        }
    }

    pub fn parse(text: &str) -> Option<EndReason> {
        [EndReason::Replaced, EndReason::Removed, EndReason::OutOfWindow]
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

/// What `model_changes.kind` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
    Reappeared,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 4] = [
        ChangeKind::Added,
        ChangeKind::Removed,
        ChangeKind::Changed,
        ChangeKind::Reappeared,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Reappeared => "reappeared",
        }
    }

    pub fn parse(text: &str) -> Option<ChangeKind> {
        ChangeKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store knows of a key before a sync's record of it is written (`model_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The sync the key's latest version starts at.
    pub latest_from_sync: i64,
    /// `None` while that version is current.
    pub closed_as: Option<EndReason>,
    /// `None` for a version converted from old snapshot rows (never hashed by this rule).
    pub content_hash: Option<[u8; 16]>,
    /// The hash of the latest version's content columns (`Digest::columns`); `None` like
    /// `content_hash`.
    pub columns_hash: Option<[u8; 16]>,
    pub record_hash: [u8; 16],
}

/// The first look at a record of sync `sync_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLook {
    /// A key never listed before.
    New,
    /// This sync recorded the key already (an earlier batch, or a version it opened): the same
    /// record again is a re-send (a retried batch), another one a second record with the same
    /// key (a duplicate).
    SeenThisSync { same_record: bool },
    /// The key's current version predates this sync. `unchanged`: the same record and the
    /// same columns, so the same content; otherwise [`current_action`] decides with the
    /// content hash.
    Current { unchanged: bool, same_record: bool },
    /// The key has no current version (removed, or out of the window) and is listed again:
    /// its content is compared with its latest version's.
    Returning { closed_as: EndReason },
}

/// How a record's content compares with the key's latest version by hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Same,
    Differs,
    /// The version has no content hash (converted from old rows): compare the content itself.
    Unknown,
}

/// `key` is what the store knows of the record's key; `seen_this_sync` whether this sync
/// recorded the key in an earlier batch.
pub fn first_look(sync_id: i64, digest: &Digest, key: Option<&KeyState>, seen_this_sync: bool) -> FirstLook {
    let Some(key) = key else {
        return FirstLook::New;
    };
    let same_record = key.record_hash == digest.record;
    match key.closed_as {
        _ if seen_this_sync || key.latest_from_sync >= sync_id => FirstLook::SeenThisSync { same_record },
        None => FirstLook::Current {
            unchanged: same_record && key.columns_hash == Some(digest.columns),
            same_record,
        },
        Some(closed_as) => FirstLook::Returning { closed_as },
    }
}

/// How a record's content hash compares with the stored one.
pub fn compare_content(stored: Option<[u8; 16]>, content_hash: [u8; 16]) -> Comparison {
    match stored {
        None => Comparison::Unknown,
        Some(hash) if hash == content_hash => Comparison::Same,
        Some(_) => Comparison::Differs,
    }
}

/// What to do with a record whose key's current version predates the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentAction {
    /// Same record: nothing to write.
    Unchanged,
    /// Same content, other volatile values (or record text): a series row.
    VolatileMoved,
    /// The content hash differs or is unknown: compare the content itself.
    Compare,
}

pub fn current_action(content: Comparison, same_record: bool) -> CurrentAction {
    match (content, same_record) {
        (Comparison::Same, true) => CurrentAction::Unchanged,
        (Comparison::Same, false) => CurrentAction::VolatileMoved,
        // An unknown hash with the same record: the record is the same, but a newer parser may
        // read it differently, so the content is compared once.
        (_, _) => CurrentAction::Compare,
    }
}

/// Where a record that needs a version (or a content comparison) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// A key never listed.
    None,
    /// The key's current version.
    Current,
    /// The key's latest version, closed for this reason.
    Closed(EndReason),
}

/// The outcome of comparing a record's content with the previous version's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether a new version opens (else the current one stays, its hash recorded).
    pub new_version: bool,
    /// The change row to write, if any.
    pub change: Option<ChangeKind>,
}

/// The version and change a compared record makes. `fields` are the [`changed_fields`];
/// `baseline` is true while the source has no successful listing yet (its first listing is
/// its baseline: no changes at all).
///
/// Columns that differ while the record itself (without its volatile members) is the same
/// are not news from upstream but a new reading of the same record (a parser fix, or a
/// database upgraded from a release that did not fill some columns): a new version opens,
/// silently, with no change row.
pub fn outcome(previous: Previous, fields: &[&str], baseline: bool) -> Outcome {
    let reread = !fields.is_empty() && !fields.contains(&DATA_FIELD);
    let (new_version, change) = match previous {
        Previous::None => (true, Some(ChangeKind::Added)),
        Previous::Current if fields.is_empty() => (false, None),
        Previous::Current if reread => (true, None),
        Previous::Current => (true, Some(ChangeKind::Changed)),
        Previous::Closed(EndReason::Removed) => (true, Some(ChangeKind::Reappeared)),
        Previous::Closed(_) if fields.is_empty() || reread => (true, None),
        Previous::Closed(_) => (true, Some(ChangeKind::Changed)),
    };
    Outcome {
        new_version,
        change: change.filter(|_| !baseline),
    }
}

/// How a source's listing ended (the supervisor knows; the store applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingOutcome {
    /// Every page was committed. `truncated`: cut on purpose by `max_models` while the source
    /// had more.
    Succeeded { truncated: bool },
    /// The source failed: what it did not reach says nothing.
    Failed,
}

/// What the store knows at the end of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingFacts {
    /// The source has no successful listing before this one.
    pub baseline: bool,
    /// Current models of the source that this listing lacked.
    pub lacking: u64,
    /// Models of the source that were current before this sync.
    pub current: u64,
}

/// What the end of a listing does with the current models it lacked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListingEnd {
    /// Nothing (the source failed).
    Nothing,
    /// Close them without a change row: a truncated listing, or a baseline.
    CloseOutOfWindow,
    /// Close them as removed, with a change row each.
    Remove,
    /// Close nothing and say so (`model_sync_sources.removals_held`).
    Hold(HoldCause),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HoldCause {
    /// More than `history.max_removed_percent` of the source's models would go.
    TooMany { percent: f64 },
}

impl fmt::Display for HoldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldCause::TooMany { percent } => write!(
                f,
                "the listing lacked {percent:.1}% of the source's models (more than history.max_removed_percent)"
            ),
        }
    }
}

/// Decides what a listing's end closes. Only a complete listing removes; one that would remove
/// more than `max_removed_percent` of the source's models removes nothing.
pub fn listing_end(outcome: ListingOutcome, facts: ListingFacts, max_removed_percent: f64) -> ListingEnd {
    let truncated = match outcome {
        ListingOutcome::Failed => return ListingEnd::Nothing,
        ListingOutcome::Succeeded { truncated } => truncated,
    };
    if facts.lacking == 0 {
        return ListingEnd::Remove;
    }
    if truncated || facts.baseline {
        return ListingEnd::CloseOutOfWindow;
    }
    let percent = facts.lacking as f64 * 100.0 / facts.current.max(1) as f64;
    if percent > max_removed_percent {
        return ListingEnd::Hold(HoldCause::TooMany { percent });
    }
    ListingEnd::Remove
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn hf(raw: &str) -> Model {
        let mut model = Model::new(Source::HuggingFace, "org".into(), "org/m".into(), raw.into());
        model.open_weights = Some(true);
        model
    }

    #[test]
    fn volatile_keys_per_source() {
        let cases = [
            (Source::HuggingFace, "downloads", true),
            (Source::HuggingFace, "likes", true),
            (Source::HuggingFace, "trendingScore", true),
            (Source::HuggingFace, "downloadsAllTime", false),
            (Source::HuggingFace, "sha", false),
            (Source::ArtificialAnalysis, "median_output_tokens_per_second", true),
            (Source::ArtificialAnalysis, "median_time_to_first_token_seconds", true),
            (Source::ArtificialAnalysis, "pricing", false),
            (Source::ModelsDev, "downloads", false),
            (Source::OpenRouter, "likes", false),
        ];
        for (source, key, expected) in cases {
            assert_eq!(is_volatile(source, key), expected, "{source} {key}");
        }
    }

    #[test]
    fn records_split_into_data_and_volatile_members_keeping_their_text() {
        let cases = [
            (
                r#"{"id":"a","downloads":10,"likes":2,"tags":["x"]}"#,
                r#"{"id":"a","tags":["x"]}"#,
                Some(r#"{"downloads":10,"likes":2}"#),
            ),
            (r#"{"id":"a"}"#, r#"{"id":"a"}"#, None),
            (r#"{"downloads":1.50}"#, "{}", Some(r#"{"downloads":1.50}"#)),
            (r#"[1,2]"#, r#"[1,2]"#, None),
            (
                r#"{ "id" : "ü" , "trendingScore" : null }"#,
                r#"{"id" : "ü"}"#,
                Some(r#"{"trendingScore" : null}"#),
            ),
        ];
        for (raw, data, volatile) in cases {
            let parts = version_parts(&hf(raw));
            assert_eq!(parts.data, data, "{raw}");
            assert_eq!(parts.volatile.as_deref(), volatile, "{raw}");
            assert_eq!(parts.content_hash, content_hash(&hf(raw)), "{raw}");
        }
        // Other sources keep every member.
        let mut models_dev = hf(r#"{"downloads":1}"#);
        models_dev.source = Source::ModelsDev;
        let whole = version_parts(&models_dev);
        assert_eq!((whole.data.as_str(), whole.volatile), (r#"{"downloads":1}"#, None));
    }

    #[test]
    fn the_content_hash_ignores_volatile_values_and_member_order_but_not_content() {
        let base = hf(r#"{"id":"org/m","downloads":10,"likes":1,"sha":"a"}"#);
        let volatile_moved = hf(r#"{"id":"org/m","downloads":99,"likes":7,"sha":"a"}"#);
        let reordered = hf(r#"{"sha":"a","likes":1,"id":"org/m","downloads":10}"#);
        let content_moved = hf(r#"{"id":"org/m","downloads":10,"likes":1,"sha":"b"}"#);
        assert_eq!(content_hash(&base), content_hash(&volatile_moved));
        assert_ne!(digest(&base).record, digest(&volatile_moved).record);
        assert_eq!(digest(&base).columns, digest(&volatile_moved).columns);
        assert_eq!(content_hash(&base), content_hash(&reordered));
        assert_ne!(content_hash(&base), content_hash(&content_moved));
        // A parsed column that changes (a new parser filling `status`) changes the content and
        // the columns, not the record.
        let mut with_status = base.clone();
        with_status.status = Some("deprecated".into());
        assert_ne!(content_hash(&with_status), content_hash(&base));
        assert_ne!(digest(&with_status).columns, digest(&base).columns);
        assert_eq!(digest(&with_status).record, digest(&base).record);
        // A price written with more digits is the same price.
        let mut a = hf("{}");
        let mut b = hf("{}");
        a.input_price_per_mtok = Some(dec("1.5"));
        b.input_price_per_mtok = Some(dec("1.50"));
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(digest(&a).columns, digest(&b).columns);
    }

    fn content() -> Content {
        Content::of(&hf("{}"))
    }

    #[test]
    fn changed_fields_name_the_columns_in_order_then_data() {
        let old = content();
        let mut new = content();
        new.output_price_per_mtok = Some(dec("3"));
        new.name = Some("New".into());
        assert_eq!(changed_fields(&old, &new, true), ["name", "output_price_per_mtok"]);
        assert_eq!(
            changed_fields(&old, &new, false),
            ["name", "output_price_per_mtok", "data"]
        );
        assert!(changed_fields(&old, &old.clone(), true).is_empty());
        let mut scaled = content();
        scaled.input_price_per_mtok = Some(dec("2.50"));
        let mut plain = content();
        plain.input_price_per_mtok = Some(dec("2.5"));
        assert!(changed_fields(&scaled, &plain, true).is_empty());
        let mut tiers_a = content();
        tiers_a.price_tiers = Some(serde_json::json!([{"min_context_tokens": 200000, "input": "10.0"}]));
        let mut tiers_b = content();
        tiers_b.price_tiers = Some(serde_json::json!([{"min_context_tokens": 200000, "input": "10"}]));
        assert!(changed_fields(&tiers_a, &tiers_b, true).is_empty());
    }

    #[test]
    fn price_jumps_are_held() {
        let factor = dec("10");
        let cases: [(&str, &str, Option<&str>); 8] = [
            ("2", "3", None),
            ("2", "19.99", None),
            ("2", "20", Some("input rose by a factor of 10 (2 → 20)")),
            ("25", "2", Some("input fell by a factor of 12.5 (25 → 2)")),
            ("0", "3", Some("input went from 0 to 3")),
            ("3", "0", Some("input went to 0 (from 3)")),
            ("0", "0", None),
            ("1.50", "1.5", None),
        ];
        for (before, after, expected) in cases {
            let reason = price_jump("input", before.parse().unwrap(), after.parse().unwrap(), factor);
            assert_eq!(reason.as_deref(), expected, "{before} → {after}");
        }
        let mut old = content();
        let mut new = content();
        old.output_price_per_mtok = Some(dec("1"));
        new.output_price_per_mtok = Some(dec("15"));
        // A price that appears or disappears is not a jump (unknown is not zero).
        new.input_price_per_mtok = Some(dec("5"));
        old.price_tiers = Some(serde_json::json!([{"min_context_tokens": 200000, "input": "10"}]));
        new.price_tiers = Some(serde_json::json!([{"min_context_tokens": 200000, "input": "0"}]));
        assert_eq!(
            hold_reason(&old, &new, factor).as_deref(),
            Some(
                "output_price_per_mtok rose by a factor of 15 (1 → 15); price_tiers[200000].input went to 0 (from 10)"
            )
        );
        assert_eq!(hold_reason(&old, &old.clone(), factor), None);
    }

    #[test]
    fn first_look_table() {
        let digest = Digest {
            record: [2; 16],
            columns: [3; 16],
        };
        let key = |from: i64, closed_as, columns: Option<[u8; 16]>, record: [u8; 16]| KeyState {
            latest_from_sync: from,
            closed_as,
            content_hash: columns.map(|_| [1; 16]),
            columns_hash: columns,
            record_hash: record,
        };
        let (same, other) = (Some([3u8; 16]), Some([9u8; 16]));
        let cases = [
            (None, false, FirstLook::New),
            (
                Some(key(5, None, same, [2; 16])),
                false,
                FirstLook::SeenThisSync { same_record: true },
            ),
            (
                Some(key(5, None, other, [9; 16])),
                false,
                FirstLook::SeenThisSync { same_record: false },
            ),
            (
                Some(key(3, None, same, [2; 16])),
                true,
                FirstLook::SeenThisSync { same_record: true },
            ),
            (
                Some(key(3, None, same, [9; 16])),
                true,
                FirstLook::SeenThisSync { same_record: false },
            ),
            (
                Some(key(3, None, same, [2; 16])),
                false,
                FirstLook::Current {
                    unchanged: true,
                    same_record: true,
                },
            ),
            (
                Some(key(3, None, same, [9; 16])),
                false,
                FirstLook::Current {
                    unchanged: false,
                    same_record: false,
                },
            ),
            (
                Some(key(3, None, other, [2; 16])),
                false,
                FirstLook::Current {
                    unchanged: false,
                    same_record: true,
                },
            ),
            (
                Some(key(3, None, None, [2; 16])),
                false,
                FirstLook::Current {
                    unchanged: false,
                    same_record: true,
                },
            ),
            (
                Some(key(3, Some(EndReason::Removed), same, [2; 16])),
                false,
                FirstLook::Returning {
                    closed_as: EndReason::Removed,
                },
            ),
            (
                Some(key(3, Some(EndReason::OutOfWindow), other, [2; 16])),
                false,
                FirstLook::Returning {
                    closed_as: EndReason::OutOfWindow,
                },
            ),
        ];
        for (state, seen, expected) in cases {
            assert_eq!(
                first_look(5, &digest, state.as_ref(), seen),
                expected,
                "{state:?} seen={seen}"
            );
        }
        assert_eq!(compare_content(None, [1; 16]), Comparison::Unknown);
        assert_eq!(compare_content(Some([1; 16]), [1; 16]), Comparison::Same);
        assert_eq!(compare_content(Some([1; 16]), [2; 16]), Comparison::Differs);
    }

    #[test]
    fn current_action_table() {
        use Comparison::*;
        use CurrentAction::*;
        let cases = [
            (Same, true, Unchanged),
            (Same, false, VolatileMoved),
            (Differs, false, Compare),
            (Differs, true, Compare),
            (Unknown, true, Compare),
            (Unknown, false, Compare),
        ];
        for (content, same_record, expected) in cases {
            assert_eq!(
                current_action(content, same_record),
                expected,
                "{content:?} {same_record}"
            );
        }
    }

    #[test]
    fn outcome_table() {
        let changed: &[&str] = &["input_price_per_mtok", DATA_FIELD];
        let data_only: &[&str] = &[DATA_FIELD];
        // The same record read into other columns (a parser upgrade).
        let reread: &[&str] = &["price_tiers", "status"];
        let none: &[&str] = &[];
        let cases = [
            (Previous::None, none, false, true, Some(ChangeKind::Added)),
            (Previous::None, none, true, true, None),
            (Previous::Current, changed, false, true, Some(ChangeKind::Changed)),
            (Previous::Current, changed, true, true, None),
            (Previous::Current, none, false, false, None),
            (Previous::Current, data_only, false, true, Some(ChangeKind::Changed)),
            (Previous::Current, reread, false, true, None),
            (
                Previous::Closed(EndReason::Removed),
                reread,
                false,
                true,
                Some(ChangeKind::Reappeared),
            ),
            (Previous::Closed(EndReason::OutOfWindow), reread, false, true, None),
            (
                Previous::Closed(EndReason::Removed),
                none,
                false,
                true,
                Some(ChangeKind::Reappeared),
            ),
            (
                Previous::Closed(EndReason::Removed),
                changed,
                false,
                true,
                Some(ChangeKind::Reappeared),
            ),
            (Previous::Closed(EndReason::OutOfWindow), none, false, true, None),
            (
                Previous::Closed(EndReason::OutOfWindow),
                changed,
                false,
                true,
                Some(ChangeKind::Changed),
            ),
        ];
        for (previous, fields, baseline, new_version, change) in cases {
            assert_eq!(
                outcome(previous, fields, baseline),
                Outcome { new_version, change },
                "{previous:?} {fields:?} baseline={baseline}"
            );
        }
    }

    #[test]
    fn listing_end_table() {
        let facts = |baseline, lacking, current| ListingFacts {
            baseline,
            lacking,
            current,
        };
        let complete = ListingOutcome::Succeeded { truncated: false };
        let truncated = ListingOutcome::Succeeded { truncated: true };
        let too_many = |percent| ListingEnd::Hold(HoldCause::TooMany { percent });
        let cases = [
            (ListingOutcome::Failed, facts(false, 50, 100), ListingEnd::Nothing),
            (complete, facts(false, 0, 100), ListingEnd::Remove),
            (complete, facts(false, 10, 100), ListingEnd::Remove),
            (complete, facts(false, 11, 100), too_many(11.0)),
            (complete, facts(false, 1, 0), too_many(100.0)),
            (complete, facts(true, 50, 100), ListingEnd::CloseOutOfWindow),
            (truncated, facts(false, 90, 100), ListingEnd::CloseOutOfWindow),
            (truncated, facts(true, 90, 100), ListingEnd::CloseOutOfWindow),
        ];
        for (outcome, facts, expected) in cases {
            assert_eq!(listing_end(outcome, facts, 10.0), expected, "{outcome:?} {facts:?}");
        }
    }
}
