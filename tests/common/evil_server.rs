#![allow(dead_code)]
//! A hostile local HTTP server for the fault-injection tests (`tests/faults.rs`, table in
//! `docs/faults.md`). It produces the faults a mocking crate cannot, because they break HTTP
//! itself (a connection reset in the middle of a body, a `Content-Length` that lies, a body that
//! trickles, a gzip bomb), next to the ones a real API produces on purpose (endless or looping
//! `next` links, 429 storms, redirects to another host, 401).
//!
//! Raw HTTP/1.1 on a tokio `TcpListener`, written by hand: one request per connection, every
//! response says `Connection: close`. Like the fixture server, the first path segment picks the
//! behaviour and the rest is the API path, answered from the same recorded payloads
//! (Hugging Face paged by `limit` and an offset `cursor` in a `Link: rel="next"` header):
//!
//! | mode | answer |
//! |---|---|
//! | `/ok/…` | the fixture |
//! | `/reset-once/…` | first request of each URL: headers and half the body, then a TCP reset; then the fixture |
//! | `/hangup-once/…` | first request of each URL: the connection is closed before any byte; then the fixture |
//! | `/short-length-once/…` | first request of each URL: `Content-Length` larger than the body, then close; then the fixture |
//! | `/understated-length/…` | `Content-Length` smaller than the body: the client reads a truncated body |
//! | `/trickle/…` | the fixture, one byte per second |
//! | `/silent/…` | nothing: the request is read and the connection held open without an answer |
//! | `/gzip/…` | the fixture, gzip-compressed (`Content-Encoding: gzip`) |
//! | `/gzip-bomb/…` | [`GZIP_BOMB_INFLATED`] zero bytes, gzip-compressed (a few dozen KiB on the wire) |
//! | `/endless-next/…` | Hugging Face pages whose every `Link` names a new cursor, forever |
//! | `/repeat-next/…` | Hugging Face: page 1 links to page 2, whose `next` link is page 1 again |
//! | `/storm429-after/…` | first 3 requests of each URL: 429 with `Retry-After: 1`; then the fixture |
//! | `/storm429/…` | first 3 requests of each URL: 429 without `Retry-After`; then the fixture |
//! | `/retry-after-day-once/…` | first request of each URL: 429 with `Retry-After: 86400`; then the fixture |
//! | `/always429/…` | 429 without `Retry-After`, every time |
//! | `/redirect-offhost/…` | 302 to the same API path on another host (`127.0.0.2`, which serves the fixture) |
//! | `/redirect-otherport/…` | 302 to the same API path on this host's other port (which serves the fixture) |
//! | `/redirect-samehost/…` | 302 to `/ok/…` on this host |
//! | `/status401/…` | 401, every time |
//!
//! Artificial Analysis answers 401 without an `x-api-key` header, like the real API.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;

use super::fixture_server::{artificial_analysis_pages, page_of, read_fixture, GONE_BODY};

/// How many bytes the gzip bomb inflates to (its compressed size is about a thousandth).
pub const GZIP_BOMB_INFLATED: usize = 64 * 1024 * 1024;

/// Requests of each URL that a storm answers with 429 before it lets one through.
pub const STORM_LENGTH: usize = 3;

/// The request head is read up to this size; larger heads are dropped.
const MAX_HEAD_BYTES: usize = 64 * 1024;

struct Payloads {
    models_dev: Vec<u8>,
    openrouter: Vec<u8>,
    artificial_analysis: Vec<Vec<u8>>,
    huggingface: Vec<serde_json::Value>,
}

#[derive(Default)]
struct Counters {
    /// Requests per mode.
    per_mode: HashMap<String, usize>,
    /// Requests per mode and URL (path and query), for the `-once` modes and the storms.
    per_url: HashMap<String, usize>,
    /// Requests that reached the other host or port (the targets of the redirects).
    elsewhere: HashMap<Origin, usize>,
    /// Of those, the requests that carried a credential (`x-api-key` or `authorization`).
    leaked_credentials: usize,
}

/// Which listener a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `127.0.0.1:PORT`, the server's address.
    Main,
    /// `127.0.0.2`: another host.
    OtherHost,
    /// `127.0.0.1` on a second port: the same host, another origin.
    OtherPort,
}

struct ServerState {
    payloads: Payloads,
    counters: Mutex<Counters>,
    /// The other host's address, for `/redirect-offhost/`.
    offhost_addr: Option<SocketAddr>,
    /// The other port's address, for `/redirect-otherport/`.
    other_port_addr: SocketAddr,
    gzip_bomb: OnceCell<Arc<Vec<u8>>>,
}

pub struct EvilServer {
    pub addr: SocketAddr,
    /// A second listener on `127.0.0.2` (another host as far as URLs go), serving the fixtures;
    /// `None` where that address cannot be bound.
    pub offhost_addr: Option<SocketAddr>,
    /// A second listener on `127.0.0.1`, serving the fixtures.
    pub other_port_addr: SocketAddr,
    state: Arc<ServerState>,
}

impl EvilServer {
    pub async fn start() -> EvilServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let offhost = TcpListener::bind("127.0.0.2:0").await.ok();
        let offhost_addr = offhost.as_ref().and_then(|listener| listener.local_addr().ok());
        let other_port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a second local port");
        let other_port_addr = other_port.local_addr().expect("local address");
        let state = Arc::new(ServerState {
            payloads: Payloads {
                models_dev: read_fixture("modelsdev_api.json"),
                openrouter: read_fixture("openrouter_models.json"),
                artificial_analysis: artificial_analysis_pages(),
                huggingface: serde_json::from_slice(&read_fixture("hf_models.json"))
                    .expect("hf_models.json is a JSON array"),
            },
            counters: Mutex::new(Counters::default()),
            offhost_addr,
            other_port_addr,
            gzip_bomb: OnceCell::new(),
        });
        tokio::spawn(accept_loop(listener, state.clone(), Origin::Main));
        tokio::spawn(accept_loop(other_port, state.clone(), Origin::OtherPort));
        if let Some(offhost) = offhost {
            tokio::spawn(accept_loop(offhost, state.clone(), Origin::OtherHost));
        }
        EvilServer {
            addr,
            offhost_addr,
            other_port_addr,
            state,
        }
    }

    /// `http://127.0.0.1:PORT/<mode>`, to use as a source's `base_url`.
    pub fn base_url(&self, mode: &str) -> String {
        format!("http://{}/{mode}", self.addr)
    }

    /// Requests received in `mode` so far (each attempt of the client counts).
    pub fn requests(&self, mode: &str) -> usize {
        let counters = self.state.counters.lock().unwrap();
        counters.per_mode.get(mode).copied().unwrap_or(0)
    }

    /// Requests that reached another origin (`OtherHost` or `OtherPort`).
    pub fn requests_at(&self, origin: Origin) -> usize {
        let counters = self.state.counters.lock().unwrap();
        counters.elsewhere.get(&origin).copied().unwrap_or(0)
    }

    /// Requests to another origin that carried a credential (`x-api-key` or `authorization`).
    pub fn leaked_credentials(&self) -> usize {
        self.state.counters.lock().unwrap().leaked_credentials
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, origin: Origin) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // Write errors are expected: clients give up on trickles and bombs.
            let _ = serve_connection(stream, &state, origin).await;
        });
    }
}

struct Request {
    /// Path and query, as sent.
    target: String,
    path: String,
    query: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let Some(target) = lines.next().and_then(|line| line.split(' ').nth(1)) else {
        return Ok(None);
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    }))
}

/// A response and the way it is (mis)delivered.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Arc<Vec<u8>>,
    delivery: Delivery,
}

enum Delivery {
    Whole,
    /// The head and half the body, then a TCP reset (`SO_LINGER` 0).
    HalfThenReset,
    /// Closed before anything is written.
    HangUp,
    /// `Content-Length` claims more than is sent; then the connection is closed.
    OverstatedLength,
    /// `Content-Length` claims half of what is sent.
    UnderstatedLength,
    /// One byte per second.
    Trickle,
    /// Nothing at all, the connection held open.
    Silence,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Arc::new(body.into()),
            delivery: Delivery::Whole,
        }
    }

    fn json(body: Vec<u8>, link: Option<String>) -> Answer {
        let mut answer = Answer::new(200, body).header("content-type", "application/json");
        if let Some(link) = link {
            answer = answer.header("link", &link);
        }
        answer
    }

    fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }

    fn delivered(mut self, delivery: Delivery) -> Answer {
        self.delivery = delivery;
        self
    }
}

async fn serve_connection(mut stream: TcpStream, state: &ServerState, origin: Origin) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let answer = match origin {
        Origin::Main => answer(state, &request).await,
        Origin::OtherHost | Origin::OtherPort => {
            let mut counters = state.counters.lock().unwrap();
            *counters.elsewhere.entry(origin).or_insert(0) += 1;
            if request.headers.contains_key("x-api-key") || request.headers.contains_key("authorization") {
                counters.leaked_credentials += 1;
            }
            drop(counters);
            // Whatever the mode segment, the other origins serve the fixture.
            let api_path = request.path.splitn(3, '/').nth(2).unwrap_or("");
            fixture(state, &format!("/{api_path}"), &request, HuggingFaceLinks::Paged)
        }
    };
    if let Delivery::Silence = answer.delivery {
        // Hold the connection open, unanswered, until the client gives up.
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await? > 0 {}
        return Ok(());
    }
    send(&mut stream, answer).await
}

/// How many requests (this one included) the mode has seen for this URL.
fn count(state: &ServerState, mode: &str, request: &Request) -> usize {
    let mut counters = state.counters.lock().unwrap();
    *counters.per_mode.entry(mode.to_string()).or_insert(0) += 1;
    let seen = counters
        .per_url
        .entry(format!("{mode} {}", request.target))
        .or_insert(0);
    *seen += 1;
    *seen
}

async fn answer(state: &ServerState, request: &Request) -> Answer {
    let Some((mode, rest)) = request.path.trim_start_matches('/').split_once('/') else {
        return Answer::new(404, "no mode segment");
    };
    let api_path = format!("/{rest}");
    let seen = count(state, mode, request);
    let served = |links| fixture(state, &api_path, request, links);
    let too_many = || Answer::new(429, r#"{"error":"rate limited"}"#);
    match mode {
        "ok" => served(HuggingFaceLinks::Paged),
        "reset-once" if seen == 1 => served(HuggingFaceLinks::Paged).delivered(Delivery::HalfThenReset),
        "hangup-once" if seen == 1 => served(HuggingFaceLinks::Paged).delivered(Delivery::HangUp),
        "short-length-once" if seen == 1 => served(HuggingFaceLinks::Paged).delivered(Delivery::OverstatedLength),
        "reset-once" | "hangup-once" | "short-length-once" => served(HuggingFaceLinks::Paged),
        "understated-length" => served(HuggingFaceLinks::Paged).delivered(Delivery::UnderstatedLength),
        "trickle" => served(HuggingFaceLinks::Paged).delivered(Delivery::Trickle),
        "silent" => Answer::new(200, "").delivered(Delivery::Silence),
        "gzip" => {
            let plain = served(HuggingFaceLinks::Paged);
            if plain.status != 200 {
                return plain;
            }
            Answer {
                body: Arc::new(gzip(&plain.body)),
                ..plain
            }
            .header("content-encoding", "gzip")
        }
        "gzip-bomb" => {
            let bomb = state
                .gzip_bomb
                .get_or_init(|| async {
                    let bomb = tokio::task::spawn_blocking(|| gzip(&vec![0u8; GZIP_BOMB_INFLATED]));
                    Arc::new(bomb.await.expect("gzip ran"))
                })
                .await;
            Answer {
                body: bomb.clone(),
                ..Answer::new(200, "")
            }
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
        }
        "endless-next" => served(HuggingFaceLinks::Endless),
        "repeat-next" => served(HuggingFaceLinks::Loop),
        "storm429-after" if seen <= STORM_LENGTH => too_many().header("retry-after", "1"),
        "storm429" if seen <= STORM_LENGTH => too_many(),
        "retry-after-day-once" if seen == 1 => too_many().header("retry-after", "86400"),
        "storm429-after" | "storm429" | "retry-after-day-once" => served(HuggingFaceLinks::Paged),
        "always429" => too_many(),
        "redirect-offhost" => match state.offhost_addr {
            Some(other) => redirect(&format!("http://{other}/ok{api_path}"), &request.query),
            None => Answer::new(500, "no other host to redirect to"),
        },
        "redirect-otherport" => redirect(
            &format!("http://{}/ok{api_path}", state.other_port_addr),
            &request.query,
        ),
        "redirect-samehost" => redirect(&format!("/ok{api_path}"), &request.query),
        "status401" => Answer::new(401, r#"{"error":"invalid api key"}"#),
        _ => Answer::new(404, "unknown mode"),
    }
}

fn redirect(location: &str, query: &str) -> Answer {
    let location = match query {
        "" => location.to_string(),
        query => format!("{location}?{query}"),
    };
    Answer::new(302, "").header("location", &location)
}

/// Which `Link` headers the Hugging Face listing sends.
#[derive(Clone, Copy)]
enum HuggingFaceLinks {
    /// The next offset while items remain (the real API's behaviour).
    Paged,
    /// Always a next offset, past the end of the listing and forever.
    Endless,
    /// Page 1 links to page 2 (`cursor=loop`), page 2 links back to page 1.
    Loop,
}

/// The recorded payload for an API path, or the error the real API would answer.
fn fixture(state: &ServerState, api_path: &str, request: &Request, links: HuggingFaceLinks) -> Answer {
    let payloads = &state.payloads;
    match api_path {
        "/api.json" => Answer::json(payloads.models_dev.clone(), None),
        "/api/v1/models" => Answer::json(payloads.openrouter.clone(), None),
        "/api/v2/language/models/free" => match request.headers.get("x-api-key") {
            Some(_) => match page_of(&payloads.artificial_analysis, &request.query) {
                Some(page) => Answer::json(page.clone(), None),
                None => Answer::new(404, r#"{"error":"no such page"}"#),
            },
            None => Answer::new(401, r#"{"error":"missing x-api-key"}"#),
        },
        "/api/v2/data/llms/models" => Answer::new(410, GONE_BODY),
        "/api/models" => huggingface_page(&payloads.huggingface, request, links),
        _ => Answer::new(404, "unknown API path"),
    }
}

const LOOP_CURSOR: &str = "&cursor=loop";

fn huggingface_page(items: &[serde_json::Value], request: &Request, links: HuggingFaceLinks) -> Answer {
    let params: HashMap<String, String> = url::form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let offset: usize = match params.get("cursor").map(String::as_str) {
        Some("loop") => limit,
        Some(cursor) => cursor.parse().unwrap_or(0),
        None => 0,
    };
    // Endless listings wrap around, so every page has items; ids repeat only after the whole
    // listing was served.
    let page: Vec<&serde_json::Value> = match links {
        HuggingFaceLinks::Endless => (offset..offset + limit).map(|i| &items[i % items.len()]).collect(),
        _ => items[offset.min(items.len())..(offset + limit).min(items.len())]
            .iter()
            .collect(),
    };
    let with_cursor = |cursor: &str| {
        let mut next: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| *k != "cursor")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.push(("cursor".into(), cursor.to_string()));
        next.sort();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        format!("{}?{query}", request.path)
    };
    let next = match links {
        HuggingFaceLinks::Paged => (offset + limit < items.len()).then(|| with_cursor(&(offset + limit).to_string())),
        HuggingFaceLinks::Endless => Some(with_cursor(&(offset + limit).to_string())),
        HuggingFaceLinks::Loop => Some(match request.query.strip_suffix(LOOP_CURSOR) {
            // Page 2 sends the client back to exactly the URL of page 1.
            Some(first_query) => format!("{}?{first_query}", request.path),
            None => format!("{}{LOOP_CURSOR}", request.target),
        }),
    };
    Answer::json(
        serde_json::to_vec(&page).unwrap(),
        next.map(|next| format!("<{next}>; rel=\"next\"")),
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    }
}

async fn send(stream: &mut TcpStream, answer: Answer) -> std::io::Result<()> {
    let body = answer.body.as_slice();
    let length = match answer.delivery {
        Delivery::OverstatedLength => body.len() + 1000,
        Delivery::UnderstatedLength => body.len() / 2,
        _ => body.len(),
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {length}\r\nconnection: close\r\n\r\n"));
    match answer.delivery {
        Delivery::HangUp => return Ok(()),
        Delivery::HalfThenReset => {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body[..body.len() / 2]).await?;
            stream.flush().await?;
            // Let the client read what was sent, then reset instead of a clean close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger()?;
            return Ok(());
        }
        Delivery::Trickle => {
            stream.write_all(head.as_bytes()).await?;
            for byte in body {
                stream.write_all(std::slice::from_ref(byte)).await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Delivery::Whole | Delivery::OverstatedLength | Delivery::UnderstatedLength | Delivery::Silence => {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// Gzip-compresses with the system's `gzip` (flate2 is not a dependency of the crate).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gzip program is installed");
    let mut stdin = child.stdin.take().expect("gzip's stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().expect("gzip ran");
    writer.join().expect("the writer thread").expect("gzip read its input");
    assert!(output.status.success(), "gzip failed");
    output.stdout
}
