#![allow(dead_code)]
//! A Hugging Face listing built in memory by a test: `GET /api/models?limit=L[&cursor=K]`
//! answers the current list, paged like the Hub (`Link: <…>; rel="next"`). The test replaces
//! the list between syncs (models changed, added, removed) or makes the server fail.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Listing {
    models: Vec<Value>,
    failing: bool,
}

pub struct HfListing {
    pub addr: SocketAddr,
    state: Arc<Mutex<Listing>>,
}

/// A model record in the Hub's list shape. `version` changes its content (`sha`,
/// `lastModified`); `downloads` and `likes` are volatile.
pub fn hf_model(index: usize, downloads: i64, likes: i64, version: u32) -> Value {
    let id = format!("org-{}/model-{index}", index % 3);
    json!({
        "_id": format!("{index:024x}"),
        "id": id,
        "modelId": id,
        "likes": likes,
        "trendingScore": 0,
        "private": false,
        "downloads": downloads,
        "tags": ["transformers", "safetensors"],
        "pipeline_tag": "text-generation",
        "createdAt": "2025-01-02T03:04:05.000Z",
        "lastModified": format!("2025-06-{:02}T00:00:00.000Z", 1 + version % 28),
        "sha": format!("{:040x}", index as u64 * 1000 + u64::from(version)),
    })
}

impl HfListing {
    pub async fn start(models: Vec<Value>) -> HfListing {
        let state = Arc::new(Mutex::new(Listing { models, failing: false }));
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the listing server runs");
        });
        HfListing { addr, state }
    }

    /// The `base_url` of the `huggingface` source.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, models: Vec<Value>) {
        self.state.lock().unwrap().models = models;
    }

    /// Every request answers 500 while `failing`.
    pub fn fail(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }
}

async fn answer(State(state): State<Arc<Mutex<Listing>>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let (models, failing) = {
        let listing = state.lock().unwrap();
        (listing.models.clone(), listing.failing)
    };
    if failing {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the listing is down"))
            .unwrap();
    }
    if path != "/api/models" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("unknown path"))
            .unwrap();
    }
    super::fixture_server::huggingface_page(&models, &path, &query, request.headers())
}
