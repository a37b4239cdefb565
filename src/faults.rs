//! Fault injection for the resilience tests: `MODEL_LENS_FAULTS="fetcher_page=2,writer_batch=1"`
//! makes the named point panic the N-th time it is reached (once per process; `name` alone
//! means the first time; `name=always` every time; `name=hang` makes the point wait forever, every
//! time, where the point can wait: see [`maybe_hang`]). Unset in production, where every check is
//! one relaxed atomic load.
//!
//! Points: `fetcher_page` (a fetcher, before fetching a page), `transformer_page` (a transformer,
//! on receiving a page), `parser` (inside a parse, off the async threads), `writer_batch` (the
//! writer, before committing a batch; panics or hangs), `writer_start` (a writer starting),
//! `supervisor_force_sync` (the supervisor, on a trigger), `health_evaluate` (the health monitor,
//! before an evaluation). A point may be narrowed to one source: `fetcher_page:huggingface=always`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

const ALWAYS: u64 = u64::MAX;
const HANG: u64 = u64::MAX - 1;

static ARMED: AtomicBool = AtomicBool::new(true);
static PLAN: OnceLock<Option<Mutex<HashMap<String, u64>>>> = OnceLock::new();

fn plan() -> &'static Option<Mutex<HashMap<String, u64>>> {
    PLAN.get_or_init(|| {
        let spec = std::env::var("MODEL_LENS_FAULTS")
            .ok()
            .filter(|spec| !spec.trim().is_empty());
        let Some(spec) = spec else {
            ARMED.store(false, Ordering::Relaxed);
            return None;
        };
        let points = spec
            .split(',')
            .map(|item| match item.trim().split_once('=') {
                Some((name, "always")) => (name.to_string(), ALWAYS),
                Some((name, "hang")) => (name.to_string(), HANG),
                Some((name, nth)) => (name.to_string(), nth.trim().parse().unwrap_or(1)),
                None => (item.trim().to_string(), 1),
            })
            .collect();
        Some(Mutex::new(points))
    })
}

/// Like [`maybe_panic`] for `point` and for `point:<source>`.
pub fn maybe_panic_for(point: &str, source: crate::model::Source) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    maybe_panic(point);
    maybe_panic(&format!("{point}:{source}"));
}

/// Panics if the fault plan says this is the moment for `point` to fail.
pub fn maybe_panic(point: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let Some(plan) = plan() else {
        return;
    };
    let fire = {
        let mut plan = plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match plan.get_mut(point) {
            Some(remaining) if *remaining == ALWAYS => true,
            Some(remaining) if *remaining == HANG => false,
            Some(remaining) if *remaining <= 1 => {
                plan.remove(point);
                true
            }
            Some(remaining) => {
                *remaining -= 1;
                false
            }
            None => false,
        }
    };
    if fire {
        panic!("injected fault: {point} (MODEL_LENS_FAULTS)");
    }
}

/// Waits forever if the fault plan says `point=hang` (like a database call that never returns);
/// otherwise like [`maybe_panic`].
pub async fn maybe_hang(point: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let hang = plan().as_ref().is_some_and(|plan| {
        let plan = plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        plan.get(point) == Some(&HANG)
    });
    if hang {
        tracing::warn!(point, "injected fault: hanging (MODEL_LENS_FAULTS)");
        std::future::pending::<()>().await;
    }
    maybe_panic(point);
}
