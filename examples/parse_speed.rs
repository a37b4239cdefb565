//! A micro-benchmark of the hot parser: the recorded Hugging Face listing (2,500 records) parsed
//! 100 times, best of seven interleaved rounds, with the splitter alone as a baseline measured in
//! the same run, the drift alarm's key walk alone as the share of a parse it costs, and the
//! history digest every record gets (record hash, columns hash) and the content hash the
//! records that differ get.
//! `cargo run --release --example parse_speed` (prints figures; asserts nothing about time).

use std::time::{Duration, Instant};

use model_lens_sync::history;
use model_lens_sync::model::Source;
use model_lens_sync::sources::{parse_payload, split};

fn main() {
    let dir = std::env::var_os("MODEL_LENS_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let body = std::fs::read(dir.join("hf_models.json")).expect("hf_models.json (set MODEL_LENS_FIXTURES_DIR)");
    let runs = 100;
    let records = split::elements(&body).expect("splits");
    let parse = || parse_payload(Source::HuggingFace, &body).expect("parses").records();
    let splitting = || split::elements(&body).expect("splits").len();
    // The drift alarm's share of a parse: the top-level keys of every record (the parser does
    // this for each record that becomes a model).
    let keys = || {
        records
            .iter()
            .map(|record| split::keys(record.bytes).map_or(0, |keys| keys.len().min(1)))
            .sum()
    };
    let models = parse_payload(Source::HuggingFace, &body).expect("parses").models;
    let digest = || models.iter().map(history::digest).count();
    let hash = || models.iter().map(history::content_hash).count();
    let workloads: [(&dyn Fn() -> usize, usize); 5] = [
        (&parse, 2_500),
        (&splitting, 2_500),
        (&keys, 2_500),
        (&digest, models.len()),
        (&hash, models.len()),
    ];
    // Rounds interleave the workloads, so that a busy machine slows each of them alike; the
    // best round of each counts.
    let mut best = [Duration::MAX; 5];
    for _ in 0..7 {
        for (index, (work, expected)) in workloads.iter().enumerate() {
            let started = Instant::now();
            let counted: usize = (0..runs).map(|_| work()).sum();
            assert_eq!(counted, runs * expected, "every record is counted");
            best[index] = best[index].min(started.elapsed());
        }
    }
    let [parsing, splitting, keys, digesting, hashing] = best;
    let per_model = |took: Duration| took.as_nanos() as f64 / (runs * models.len()) as f64;
    println!(
        "hf_models.json ({} bytes, 2,500 records) x{runs}, best of 7 interleaved rounds: parse {parsing:?} \
         ({:.0} ns a record); splitting alone {splitting:?} ({:.2}x of parse); record keys alone \
         (the drift alarm's part of the parse) {keys:?} ({:.2}x of parse); history digest (every \
         record) {digesting:?} ({:.0} ns a model, {:.2}x of parse); content hash (records that \
         differ) {hashing:?} ({:.0} ns a model)",
        body.len(),
        parsing.as_nanos() as f64 / (runs * 2_500) as f64,
        splitting.as_secs_f64() / parsing.as_secs_f64(),
        keys.as_secs_f64() / parsing.as_secs_f64(),
        per_model(digesting),
        digesting.as_secs_f64() / parsing.as_secs_f64(),
        per_model(hashing),
    );
}
