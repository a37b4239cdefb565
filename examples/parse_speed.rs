//! A micro-benchmark of the hot parser: the recorded Hugging Face listing (2,500 records) parsed
//! 100 times, best of five, with the splitter alone as a baseline measured in the same run; and
//! of the history digest every record gets (record hash, columns hash) and of the content hash
//! the records that differ get.
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
    let best_of_five = |work: &dyn Fn() -> usize| {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                let records: usize = (0..runs).map(|_| work()).sum();
                assert_eq!(records, runs * 2_500, "every record is a model or a reject");
                started.elapsed()
            })
            .min()
            .unwrap_or(Duration::ZERO)
    };
    let parsing = best_of_five(&|| parse_payload(Source::HuggingFace, &body).expect("parses").records());
    let splitting = best_of_five(&|| split::elements(&body).expect("splits").len());
    let models = parse_payload(Source::HuggingFace, &body).expect("parses").models;
    let digesting = best_of_five(&|| models.iter().map(history::digest).count());
    let hashing = best_of_five(&|| models.iter().map(history::content_hash).count());
    println!(
        "hf_models.json ({} bytes, 2,500 records) x{runs}, best of 5: parse {parsing:?} ({:.0} ns a record); \
         splitting alone {splitting:?} ({:.2}x of parse); history digest (every record) {digesting:?} \
         ({:.0} ns a record, {:.2}x of parse); content hash (records that differ) {hashing:?} ({:.0} ns a record)",
        body.len(),
        parsing.as_nanos() as f64 / (runs * 2_500) as f64,
        splitting.as_secs_f64() / parsing.as_secs_f64(),
        digesting.as_nanos() as f64 / (runs * 2_500) as f64,
        digesting.as_secs_f64() / parsing.as_secs_f64(),
        hashing.as_nanos() as f64 / (runs * 2_500) as f64,
    );
}
