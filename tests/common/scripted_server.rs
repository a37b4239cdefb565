#![allow(dead_code)]
//! A local HTTP server whose answers the test scripts, page by page, and holds until the test
//! lets them go. It makes the tests that need "a sync still running at this point" wait for
//! states instead of sleeping: a held page keeps its source busy exactly as long as the test
//! wants, and `wait_for_request` says when the sync has reached it.
//!
//! Each API path (`/api/models`, `/api/v1/models`, …) has a list of pages. Page `i` of a path is
//! served for `?cursor=i` (no cursor: page 0) with a Hugging Face style `Link: <…?cursor=i+1>;
//! rel="next"` header while more pages follow. Pages from `hold_from` on wait for `release`.
//! A path with no pages answers 404.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use tokio::sync::Notify;

#[derive(Default)]
struct Route {
    pages: Vec<Vec<u8>>,
    /// Pages with an index at or above this wait until released.
    hold_from: usize,
    /// Requests per page index.
    requests: HashMap<usize, usize>,
    /// Responses completed (body written into the connection) per page index.
    served: HashMap<usize, usize>,
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    changed: Notify,
}

impl Shared {
    fn with_route<T>(&self, path: &str, f: impl FnOnce(&mut Route) -> T) -> T {
        let mut routes = self.routes.lock().unwrap();
        f(routes.entry(path.to_string()).or_default())
    }
}

pub struct ScriptedServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ScriptedServer {
    pub async fn start() -> ScriptedServer {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("a local address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the scripted server runs");
        });
        ScriptedServer { addr, shared }
    }

    /// `http://127.0.0.1:PORT`, to use as a source's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves these bodies as the pages of `path` (all released).
    pub fn pages(&self, path: &str, pages: Vec<Vec<u8>>) {
        self.shared.with_route(path, |route| {
            route.hold_from = pages.len();
            route.pages = pages;
        });
    }

    /// Serves a JSON array split into pages of `page_size` items.
    pub fn json_pages(&self, path: &str, items: &[serde_json::Value], page_size: usize) {
        let pages = items
            .chunks(page_size.max(1))
            .map(|chunk| serde_json::to_vec(chunk).unwrap())
            .collect();
        self.pages(path, pages);
    }

    /// From now on, pages of `path` with index `index` or above wait until released.
    pub fn hold_from(&self, path: &str, index: usize) {
        self.shared.with_route(path, |route| route.hold_from = index);
    }

    /// Lets pages of `path` below `index` go (a held request is answered at once).
    pub fn release_until(&self, path: &str, index: usize) {
        self.shared
            .with_route(path, |route| route.hold_from = route.hold_from.max(index));
        self.shared.changed.notify_waiters();
    }

    pub fn release_all(&self, path: &str) {
        self.release_until(path, usize::MAX);
    }

    /// Requests of `path` so far (every page, every attempt).
    pub fn requests(&self, path: &str) -> usize {
        self.shared.with_route(path, |route| route.requests.values().sum())
    }

    /// Waits until page `index` of `path` has been requested at least once.
    pub async fn wait_for_request(&self, path: &str, index: usize) {
        self.wait_until(path, |route| route.requests.get(&index).is_some_and(|n| *n > 0))
            .await
    }

    /// Waits until page `index` of `path` has been served (its body handed to the connection).
    pub async fn wait_for_served(&self, path: &str, index: usize) {
        self.wait_until(path, |route| route.served.get(&index).is_some_and(|n| *n > 0))
            .await
    }

    async fn wait_until(&self, path: &str, done: impl Fn(&Route) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.shared.changed.notified();
            if self.shared.with_route(path, |route| done(route)) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the scripted server waited 60 s for a state of {path} that never came");
            }
        }
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let index: usize = params.get("cursor").and_then(|cursor| cursor.parse().ok()).unwrap_or(0);
    let exists = shared.with_route(&path, |route| {
        *route.requests.entry(index).or_default() += 1;
        index < route.pages.len()
    });
    shared.changed.notify_waiters();
    if !exists {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("no such page"))
            .unwrap();
    }
    loop {
        let notified = shared.changed.notified();
        if shared.with_route(&path, |route| index < route.hold_from) {
            break;
        }
        notified.await;
    }
    let (body, more) = shared.with_route(&path, |route| {
        *route.served.entry(index).or_default() += 1;
        (route.pages[index].clone(), index + 1 < route.pages.len())
    });
    shared.changed.notify_waiters();
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json");
    if more {
        response = response.header("link", format!("<{path}?cursor={}>; rel=\"next\"", index + 1));
    }
    response.body(Body::from(body)).unwrap()
}
