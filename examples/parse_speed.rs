//! A micro-benchmark of the hot parser: the recorded Hugging Face listing (2,500 records) parsed
//! 100 times, best of seven interleaved rounds, with the splitter alone as a baseline measured in
//! the same run, and the drift alarm's key walk alone as the share of a parse it costs.
//! `cargo run --release --example parse_speed` (prints figures; asserts nothing about time).

use std::time::{Duration, Instant};

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
    let workloads: [&dyn Fn() -> usize; 3] = [&parse, &splitting, &keys];
    // Rounds interleave the workloads, so that a busy machine slows each of them alike; the
    // best round of each counts.
    let mut best = [Duration::MAX; 3];
    for _ in 0..7 {
        for (index, work) in workloads.iter().enumerate() {
            let started = Instant::now();
            let counted: usize = (0..runs).map(|_| work()).sum();
            assert_eq!(counted, runs * 2_500, "every record is a model or a reject");
            best[index] = best[index].min(started.elapsed());
        }
    }
    let [parsing, splitting, keys] = best;
    println!(
        "hf_models.json ({} bytes, 2,500 records) x{runs}, best of 7 interleaved rounds: parse {parsing:?} \
         ({:.0} ns a record); splitting alone {splitting:?} ({:.2}x of parse); record keys alone \
         (the drift alarm's part of the parse) {keys:?} ({:.2}x of parse)",
        body.len(),
        parsing.as_nanos() as f64 / (runs * 2_500) as f64,
        splitting.as_secs_f64() / parsing.as_secs_f64(),
        keys.as_secs_f64() / parsing.as_secs_f64(),
    );
}
