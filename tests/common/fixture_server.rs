#![allow(dead_code)]
//! A local HTTP server that answers like the four APIs, from the recorded payloads of
//! `../shared/fixtures` (or `MODEL_LENS_FIXTURES_DIR`).
//!
//! The first path segment chooses the behaviour, so one server serves every test and each
//! source's `base_url` picks what it gets:
//! - `/ok/…`: the fixture (Hugging Face paginated with `limit` and a `Link: rel="next"` cursor)
//! - `/status500/…`, `/status404/…`: that status, every time
//! - `/garbage/…`: 200 with a body that is not JSON
//! - `/slow/…`: the fixture after a 3 second pause
//! - `/flaky/…`: 503 with `Retry-After: 0` on the first request of each path, then the fixture
//!
//! Artificial Analysis answers 401 without an `x-api-key` header, serves the two recorded pages
//! of `/api/v2/language/models/free?page=N`, and answers 410 Gone at the retired
//! `/api/v2/data/llms/models`, like the real API. OpenRouter serves the single-body list at
//! `/api/v1/models`; the paged list is served by `api_server.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;

pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MODEL_LENS_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read {} ({error}); set MODEL_LENS_FIXTURES_DIR", path.display()))
}

struct Payloads {
    models_dev: Vec<u8>,
    openrouter: Vec<u8>,
    /// The recorded pages of `/api/v2/language/models/free`, first page first.
    artificial_analysis: Vec<Vec<u8>>,
    huggingface: Vec<serde_json::Value>,
}

/// The recorded pages of Artificial Analysis' `/api/v2/language/models/free`.
pub fn artificial_analysis_pages() -> Vec<Vec<u8>> {
    vec![
        read_fixture("aa_language_models_free_page1.json"),
        read_fixture("aa_language_models_free_page2.json"),
    ]
}

/// The answer of Artificial Analysis' retired endpoint, as the real API gives it.
pub const GONE_BODY: &str = r#"{"error":"This endpoint was retired on 2026-11-04. Use /api/v2/language/models/free."}"#;

/// Page `page` (1-based, from `?page=`) of a recorded paged listing, or `None` past its end.
pub fn page_of<'a>(pages: &'a [Vec<u8>], query: &str) -> Option<&'a Vec<u8>> {
    let page: usize = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "page")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1);
    pages.get(page.checked_sub(1)?)
}

#[derive(Clone)]
struct ServerState {
    payloads: Arc<Payloads>,
    requests: Arc<AtomicUsize>,
    seen_paths: Arc<Mutex<HashMap<String, usize>>>,
}

pub struct FixtureServer {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl FixtureServer {
    /// Serves the default fixtures (models.dev of 2026-03).
    pub async fn start() -> FixtureServer {
        FixtureServer::start_with_models_dev("modelsdev_api.json").await
    }

    /// Serves the default fixtures on a given address (the offline demo).
    pub async fn start_at(addr: &str) -> FixtureServer {
        FixtureServer::serve("modelsdev_api.json", addr).await
    }

    pub async fn start_with_models_dev(models_dev_fixture: &str) -> FixtureServer {
        FixtureServer::serve(models_dev_fixture, "127.0.0.1:0").await
    }

    async fn serve(models_dev_fixture: &str, addr: &str) -> FixtureServer {
        let huggingface: Vec<serde_json::Value> =
            serde_json::from_slice(&read_fixture("hf_models.json")).expect("hf_models.json is a JSON array");
        let state = ServerState {
            payloads: Arc::new(Payloads {
                models_dev: read_fixture(models_dev_fixture),
                openrouter: read_fixture("openrouter_models.json"),
                artificial_analysis: artificial_analysis_pages(),
                huggingface,
            }),
            requests: Arc::new(AtomicUsize::new(0)),
            seen_paths: Arc::new(Mutex::new(HashMap::new())),
        };
        let requests = state.requests.clone();
        let app = Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fixture server runs");
        });
        FixtureServer { addr, requests }
    }

    /// `http://127.0.0.1:PORT/<mode>`, to use as a source's `base_url`.
    pub fn base_url(&self, mode: &str) -> String {
        format!("http://{}/{mode}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(State(state): State<ServerState>, request: Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let (mode, api_path) = match path.trim_start_matches('/').split_once('/') {
        Some((mode, rest)) => (mode.to_string(), format!("/{rest}")),
        None => return status(StatusCode::NOT_FOUND, "no mode segment"),
    };
    match mode.as_str() {
        "ok" => {}
        "status500" => return status(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        "status404" => return status(StatusCode::NOT_FOUND, "not found"),
        "garbage" => return status(StatusCode::OK, "<html>this is not JSON</html>"),
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        "flaky" => {
            let first = {
                let mut seen = state.seen_paths.lock().unwrap();
                let count = seen.entry(format!("{api_path}?{query}")).or_insert(0);
                *count += 1;
                *count == 1
            };
            if first {
                return Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .header("retry-after", "0")
                    .body(Body::from("try again"))
                    .unwrap();
            }
        }
        _ => return status(StatusCode::NOT_FOUND, "unknown mode"),
    }
    let payloads = &state.payloads;
    match api_path.as_str() {
        "/api.json" => json(payloads.models_dev.clone(), None),
        "/api/v1/models" => json(payloads.openrouter.clone(), None),
        "/api/v2/language/models/free" => {
            if request.headers().get("x-api-key").is_none() {
                return status(StatusCode::UNAUTHORIZED, r#"{"error":"missing x-api-key"}"#);
            }
            match page_of(&payloads.artificial_analysis, &query) {
                Some(page) => json(page.clone(), None),
                None => status(StatusCode::NOT_FOUND, r#"{"error":"no such page"}"#),
            }
        }
        "/api/v2/data/llms/models" => status(StatusCode::GONE, GONE_BODY),
        "/api/models" => huggingface_page(&payloads.huggingface, &path, &query, request.headers()),
        _ => status(StatusCode::NOT_FOUND, "unknown API path"),
    }
}

/// A page of the listing: `limit` items from `cursor` (an offset here; opaque to clients).
pub fn huggingface_page(items: &[serde_json::Value], path: &str, query: &str, _headers: &HeaderMap) -> Response {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let offset: usize = params.get("cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = (offset + limit).min(items.len());
    let page = &items[offset.min(items.len())..end];
    let link = (end < items.len()).then(|| {
        let mut next: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "cursor").collect();
        next.push(("cursor".into(), end.to_string()));
        next.sort();
        let next_query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        format!("<{path}?{next_query}>; rel=\"next\"")
    });
    json(serde_json::to_vec(page).unwrap(), link)
}

pub fn json(body: Vec<u8>, link: Option<String>) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json");
    if let Some(link) = link {
        response = response.header("link", link);
    }
    response.body(Body::from(body)).unwrap()
}

pub fn status(code: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder().status(code).body(body.into()).unwrap()
}
