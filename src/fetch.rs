//! HTTP for the fetchers: one request with every cap (timeouts, response size counted after
//! decompression, same-host redirects only), wrapped in retries with exponential backoff and
//! full jitter, `Retry-After`, a per-source rate limit and an optional daily request budget.
//!
//! A page is retried as a whole: a body that is cut short is an error of the attempt, never a
//! shorter page.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{NaiveDate, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LINK, RETRY_AFTER};
use reqwest::StatusCode;

use crate::backoff::Backoff;
use crate::config::{ApiConfig, SourceConfig};
use crate::model::Source;
use crate::sources::pagination::same_origin;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} answered HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        /// What to do about it, naming the setting to change (may be empty).
        hint: String,
    },
    #[error("{url} sent more than {limit} bytes (sources.<name>.max_response_bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("gave up on {url} after {attempts} attempts; last error: {last}")]
    Exhausted { url: String, attempts: u32, last: String },
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("the daily request budget of {budget} for this source is used up (resets at 00:00 UTC)")]
    BudgetExhausted { budget: u64 },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// One response body, complete, with the `Link` header if the server sent one.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub link: Option<String>,
}

/// Request counts per source per UTC day, kept across syncs for the life of the process.
#[derive(Debug, Default)]
pub struct DailyBudgets {
    used: Mutex<std::collections::HashMap<Source, (NaiveDate, u64)>>,
}

impl DailyBudgets {
    /// Takes one request from the budget; `false` when today's budget is used up.
    fn take(&self, source: Source, budget: u64) -> bool {
        if budget == 0 {
            return true;
        }
        let today = Utc::now().date_naive();
        let mut used = self
            .used
            .lock()
            .expect("budget lock is never poisoned: no panics inside");
        let entry = used.entry(source).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if entry.1 >= budget {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// Why one attempt failed, and whether another attempt may succeed.
struct AttemptError {
    transient: bool,
    /// A fixed word for the retries metric.
    reason: &'static str,
    retry_after: Option<Duration>,
    error: FetchError,
}

impl AttemptError {
    /// The error without the URL (for messages that already name it).
    fn short(&self) -> String {
        match &self.error {
            FetchError::Request { message, .. } => message.clone(),
            FetchError::Status { status, hint, .. } => format!("HTTP {status}{hint}"),
            other => other.to_string(),
        }
    }
}

pub struct HttpFetcher {
    source: Source,
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    budgets: Arc<DailyBudgets>,
    max_retries: u32,
    max_response_bytes: u64,
    daily_budget: u64,
    backoff: Backoff,
    max_retry_after: Duration,
    traffic: Arc<Traffic>,
}

/// Requests sent and bytes received for one source in one sync. Shared with the supervisor,
/// so the attempts of a fetcher that crashed or was killed still count.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl HttpFetcher {
    pub fn new(
        source: Source,
        config: &SourceConfig,
        api: &ApiConfig,
        budgets: Arc<DailyBudgets>,
        traffic: Arc<Traffic>,
    ) -> Result<HttpFetcher, FetchError> {
        let mut headers = HeaderMap::new();
        if !config.api_key.is_empty() {
            let value = match source {
                Source::ArtificialAnalysis => config.api_key.expose().to_string(),
                _ => format!("Bearer {}", config.api_key.expose()),
            };
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| FetchError::Client(format!("the API key of {source} is not a valid header value")))?;
            value.set_sensitive(true);
            let name = match source {
                Source::ArtificialAnalysis => reqwest::header::HeaderName::from_static("x-api-key"),
                _ => AUTHORIZATION,
            };
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .user_agent(&api.user_agent)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .read_timeout(Duration::from_secs(config.read_timeout_secs))
            .timeout(config.timeout())
            .redirect(same_host_redirects())
            .gzip(true)
            .build()
            .map_err(|error| FetchError::Client(error.to_string()))?;
        let per_second = NonZeroU32::new(config.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(per_second);
        Ok(HttpFetcher {
            source,
            client,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            budgets,
            max_retries: config.max_retries,
            max_response_bytes: config.max_response_bytes,
            daily_budget: config.daily_request_budget,
            backoff: Backoff::new(
                Duration::from_millis(api.retry_ms),
                Duration::from_millis(api.max_retry_delay_ms),
            ),
            max_retry_after: Duration::from_secs(api.max_retry_after_secs),
            traffic,
        })
    }

    /// GETs `url` until it succeeds, fails for good, or the retries are spent.
    pub async fn get(&mut self, url: &str) -> Result<Fetched, FetchError> {
        let mut attempt = 0u32;
        loop {
            self.limiter.until_ready().await;
            if !self.budgets.take(self.source, self.daily_budget) {
                return Err(FetchError::BudgetExhausted {
                    budget: self.daily_budget,
                });
            }
            self.traffic.requests.fetch_add(1, Ordering::Relaxed);
            match self.attempt(url).await {
                Ok(fetched) => {
                    telemetry::source_request(self.source, "success");
                    self.traffic
                        .bytes
                        .fetch_add(fetched.body.len() as u64, Ordering::Relaxed);
                    return Ok(fetched);
                }
                Err(failure) if failure.transient && attempt < self.max_retries => {
                    telemetry::source_request(self.source, "retry");
                    telemetry::source_retry(self.source, failure.reason);
                    let delay = self.backoff(attempt, failure.retry_after);
                    tracing::warn!(
                        source = %self.source,
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %failure.error,
                        "request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failure) => {
                    telemetry::source_request(self.source, "error");
                    if failure.transient {
                        return Err(FetchError::Exhausted {
                            url: url.to_string(),
                            attempts: attempt + 1,
                            last: failure.short(),
                        });
                    }
                    return Err(failure.error);
                }
            }
        }
    }

    /// Full jitter (uniform in 0..=base·2^attempt, capped); a server's `Retry-After` wins,
    /// up to `max_retry_after`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        self.backoff.jittered(attempt)
    }

    async fn attempt(&self, url: &str) -> Result<Fetched, AttemptError> {
        let transport = |error: reqwest::Error| {
            let reason = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else if error.is_body() || error.is_decode() {
                "body"
            } else {
                "transport"
            };
            AttemptError {
                transient: !error.is_redirect() && !error.is_builder(),
                reason,
                retry_after: None,
                error: FetchError::Request {
                    url: url.to_string(),
                    message: describe(error),
                },
            }
        };
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let transient = status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error();
            let reason = match status.as_u16() {
                408 => "status_408",
                429 => "status_429",
                _ if status.is_server_error() => "status_5xx",
                _ => "status_4xx",
            };
            let hint = status_hint(self.source, status.as_u16());
            return Err(AttemptError {
                transient,
                reason,
                retry_after: parse_retry_after(response.headers()),
                error: FetchError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    hint,
                },
            });
        }
        let too_large = || AttemptError {
            transient: false,
            reason: "too_large",
            retry_after: None,
            error: FetchError::TooLarge {
                url: url.to_string(),
                limit: self.max_response_bytes,
            },
        };
        // Content-Length is the compressed size when the body is compressed, so it can only
        // reject early; the real check counts decompressed bytes below.
        if response
            .content_length()
            .is_some_and(|length| length > self.max_response_bytes)
            && response.headers().get(reqwest::header::CONTENT_ENCODING).is_none()
        {
            return Err(too_large());
        }
        let link = response
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (body.len() + chunk.len()) as u64 > self.max_response_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body: body.freeze(),
            link: Some(link).filter(|link| !link.is_empty()),
        })
    }
}

/// What an operator should do about a final HTTP status. 410 Gone is an API that retired the
/// endpoint (Artificial Analysis' `/api/v2/data/*` since 2026-11-04); 404 on a listing is a
/// wrong base URL or path. Neither is retried: no later attempt can succeed.
fn status_hint(source: Source, status: u16) -> String {
    match status {
        401 | 403 => format!(" (check the API key for this source, {})", key_setting(source)),
        404 => format!(" Not Found: check sources.{source}.base_url and sources.{source}.path"),
        410 => format!(
            " Gone: the API retired this endpoint; set sources.{source}.path to its current path \
             (the README lists each source's path)"
        ),
        _ => String::new(),
    }
}

/// Where a source's credential comes from, for messages.
fn key_setting(source: Source) -> &'static str {
    match source {
        Source::ModelsDev => "none is needed",
        Source::OpenRouter => "OPENROUTER_API_KEY",
        Source::HuggingFace => "HF_TOKEN",
        Source::ArtificialAnalysis => "ARTIFICIAL_ANALYSIS_API_KEY",
    }
}

/// Follows redirects only within the same host, port and scheme (see [`same_origin`]): a
/// listing API has no business sending us elsewhere, and a key must never follow a redirect.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        let allowed = attempt
            .previous()
            .first()
            .is_some_and(|original| same_origin(original, attempt.url()));
        if allowed {
            attempt.follow()
        } else {
            attempt.error("redirect to another host, port or scheme refused")
        }
    })
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// reqwest's Display hides the cause ("error sending request"); include the chain, without
/// the URL (the caller names it once).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut previous = text.clone();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrapped layers often repeat their inner error's message: say it once.
        if cause_text != previous {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        previous = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let parsed = parse_retry_after(&headers).unwrap();
        assert!(
            parsed <= Duration::from_secs(30) && parsed >= Duration::from_secs(28),
            "{parsed:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn gone_and_not_found_name_the_setting_to_change() {
        assert_eq!(
            status_hint(Source::ArtificialAnalysis, 410),
            " Gone: the API retired this endpoint; set sources.artificial_analysis.path to its \
             current path (the README lists each source's path)"
        );
        assert_eq!(
            status_hint(Source::OpenRouter, 404),
            " Not Found: check sources.openrouter.base_url and sources.openrouter.path"
        );
        assert_eq!(
            status_hint(Source::HuggingFace, 401),
            " (check the API key for this source, HF_TOKEN)"
        );
        assert_eq!(status_hint(Source::ModelsDev, 400), "");
    }

    #[test]
    fn daily_budget_stops_at_the_limit() {
        let budgets = DailyBudgets::default();
        assert!(budgets.take(Source::ArtificialAnalysis, 2));
        assert!(budgets.take(Source::ArtificialAnalysis, 2));
        assert!(!budgets.take(Source::ArtificialAnalysis, 2));
        assert!(budgets.take(Source::OpenRouter, 0));
    }
}
