#![allow(dead_code)]
//! A local server at the APIs' own paths (no mode prefix, unlike `fixture_server.rs`), for the
//! paged listings as the APIs serve them in 2026: a host-relative OpenRouter `links.next` then
//! resolves exactly as against the real host. It serves the recorded payloads, and variants
//! made in memory from them (never written to disk): a `totalCount` that does not match, next
//! links to another origin, extra record keys, long-context overrides.
//!
//! | path | answer |
//! |---|---|
//! | `/api.json` | models.dev (the fixture chosen by [`Variant::models_dev`]) |
//! | `/api/v1/models`, `?offset=200&limit=200` | OpenRouter's two recorded pages (`links.next`, `totalCount`) |
//! | `/api/v2/language/models/free?page=N` | Artificial Analysis' two recorded pages (401 without `x-api-key`) |
//! | `/api/v2/data/llms/models` | 410 Gone, as the real API since 2026-11-04 |
//! | `/api/models` | Hugging Face, paged by `limit` and an offset `cursor` in `Link: rel="next"` |
//!
//! [`ApiServer::elsewhere`] is a second listener on another port: whatever the variant points
//! there must never be asked, and it counts every request (and those carrying a credential).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use super::fixture_server::{self, artificial_analysis_pages, json, page_of, read_fixture, status, GONE_BODY};

/// How the server deviates from the recordings. Changed between syncs with [`ApiServer::set`].
#[derive(Clone, Debug)]
pub struct Variant {
    /// The models.dev fixture file served at `/api.json`.
    pub models_dev: &'static str,
    /// OpenRouter's `totalCount` on every page instead of the recorded 364.
    pub openrouter_total: Option<i64>,
    /// Top-level keys (with a value) added to every OpenRouter record of the first page.
    pub openrouter_extra_keys: Vec<(String, Value)>,
    /// `pricing.overrides` set on the OpenRouter record with this id.
    pub openrouter_overrides: Option<(String, Value)>,
    /// Next links (Hugging Face `Link`, OpenRouter `links.next`) and Artificial Analysis'
    /// second page (a redirect) point at [`ApiServer::elsewhere`].
    pub next_elsewhere: bool,
}

impl Default for Variant {
    fn default() -> Variant {
        Variant {
            models_dev: "modelsdev_api.json",
            openrouter_total: None,
            openrouter_extra_keys: Vec::new(),
            openrouter_overrides: None,
            next_elsewhere: false,
        }
    }
}

struct Payloads {
    openrouter: [Value; 2],
    artificial_analysis: Vec<Vec<u8>>,
    huggingface: Vec<Value>,
}

#[derive(Default)]
struct Counters {
    /// Requests per path (without the query).
    per_path: HashMap<String, usize>,
    /// Requests that reached the other origin, and of those the ones with a credential.
    elsewhere: usize,
    elsewhere_with_credential: usize,
}

struct ServerState {
    payloads: Payloads,
    variant: Mutex<Variant>,
    counters: Mutex<Counters>,
    elsewhere: SocketAddr,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    /// Another origin (same host, another port): must never be asked.
    pub elsewhere: SocketAddr,
    state: Arc<ServerState>,
}

impl ApiServer {
    pub async fn start(variant: Variant) -> ApiServer {
        let page = |name: &str| -> Value { serde_json::from_slice(&read_fixture(name)).expect("a JSON fixture") };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let other = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a second port");
        let addr = listener.local_addr().expect("local address");
        let elsewhere = other.local_addr().expect("local address");
        let state = Arc::new(ServerState {
            payloads: Payloads {
                openrouter: [
                    page("openrouter_models_page1.json"),
                    page("openrouter_models_page2.json"),
                ],
                artificial_analysis: artificial_analysis_pages(),
                huggingface: page("hf_models.json").as_array().expect("an array").clone(),
            },
            variant: Mutex::new(variant),
            counters: Mutex::new(Counters::default()),
            elsewhere,
        });
        let app = Router::new().fallback(answer).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the API server runs") });
        let other_app = Router::new().fallback(answer_elsewhere).with_state(state.clone());
        tokio::spawn(async move { axum::serve(other, other_app).await.expect("the other origin runs") });
        ApiServer { addr, elsewhere, state }
    }

    /// `http://127.0.0.1:PORT`, every source's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, variant: Variant) {
        *self.state.variant.lock().unwrap() = variant;
    }

    /// Requests received at `path` (any query).
    pub fn requests(&self, path: &str) -> usize {
        self.state
            .counters
            .lock()
            .unwrap()
            .per_path
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests the other origin received: `(all, with a credential)`.
    pub fn elsewhere_requests(&self) -> (usize, usize) {
        let counters = self.state.counters.lock().unwrap();
        (counters.elsewhere, counters.elsewhere_with_credential)
    }
}

async fn answer_elsewhere(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let mut counters = state.counters.lock().unwrap();
    counters.elsewhere += 1;
    let headers = request.headers();
    if headers.contains_key("authorization") || headers.contains_key("x-api-key") {
        counters.elsewhere_with_credential += 1;
    }
    // Answer like the API would, so that a client that came here would go on happily.
    json(b"[]".to_vec(), None)
}

async fn answer(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    *state.counters.lock().unwrap().per_path.entry(path.clone()).or_insert(0) += 1;
    let variant = state.variant.lock().unwrap().clone();
    let payloads = &state.payloads;
    let elsewhere = format!("http://{}", state.elsewhere);
    match path.as_str() {
        "/api.json" => json(read_fixture(variant.models_dev), None),
        "/api/v1/models" => {
            let second = query.contains("offset=200");
            let mut page = payloads.openrouter[usize::from(second)].clone();
            if let Some(total) = variant.openrouter_total {
                page["totalCount"] = Value::from(total);
            }
            if variant.next_elsewhere && !second {
                page["links"]["next"] = Value::from(format!("{elsewhere}/api/v1/models?offset=200&limit=200"));
            }
            for record in page["data"].as_array_mut().expect("a data array") {
                if !second {
                    for (key, value) in &variant.openrouter_extra_keys {
                        record[key.as_str()] = value.clone();
                    }
                }
                if let Some((id, overrides)) = &variant.openrouter_overrides {
                    if record["id"] == id.as_str() {
                        record["pricing"]["overrides"] = overrides.clone();
                    }
                }
            }
            json(serde_json::to_vec(&page).unwrap(), None)
        }
        "/api/v2/language/models/free" => {
            if request.headers().get("x-api-key").is_none() {
                return status(StatusCode::UNAUTHORIZED, r#"{"error":"missing x-api-key"}"#);
            }
            if variant.next_elsewhere && query.contains("page=2") {
                return Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", format!("{elsewhere}{path}?{query}"))
                    .body(Body::empty())
                    .unwrap();
            }
            match page_of(&payloads.artificial_analysis, &query) {
                Some(page) => json(page.clone(), None),
                None => status(StatusCode::NOT_FOUND, r#"{"error":"no such page"}"#),
            }
        }
        "/api/v2/data/llms/models" => status(StatusCode::GONE, GONE_BODY),
        "/api/models" => huggingface_page(
            &payloads.huggingface,
            &query,
            variant.next_elsewhere.then_some(&elsewhere),
        ),
        _ => status(StatusCode::NOT_FOUND, "unknown API path"),
    }
}

/// The fixture server's Hugging Face page at the API's own path; the next page's link is
/// host-relative, or made absolute on `elsewhere`.
fn huggingface_page(items: &[Value], query: &str, elsewhere: Option<&String>) -> Response {
    let mut page = fixture_server::huggingface_page(items, "/api/models", query, &HeaderMap::new());
    if let (Some(origin), Some(link)) = (elsewhere, page.headers().get("link").cloned()) {
        let relative = link.to_str().expect("an ASCII Link header");
        let absolute = relative.replacen('<', &format!("<{origin}"), 1);
        page.headers_mut()
            .insert("link", HeaderValue::from_str(&absolute).expect("a valid header"));
    }
    page
}
