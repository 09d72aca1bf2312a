//! The HTTP API (docs/server.md): `POST /v1/query` streams a result in the encoding the
//! `Accept` header asks for ([`crate::format`]); `/v1/query/ws` ([`crate::websocket`]),
//! `/health`, `/metrics`, `/v1/sources`, `/v1/login`, and the status page `/`
//! ([`crate::status`]). Errors are JSON `{"error": {"kind", "message"}}` with a fitting status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;

use crate::Shared;
use crate::auth::Identity;
use crate::error::ServerError;
use crate::format::{Encoder, Format};
use crate::listener::Peer;
use crate::query::{StopSignals, guarded, json_params, plan_with_params};

/// How long `/health` waits for a source's ping.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP API's routes for `shared`, with the same-site check on every request.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(crate::status::page))
        .route("/v1/status", get(crate::status::status))
        .route("/v1/insights", get(crate::status::insights))
        .route("/v1/query", post(query))
        .route("/v1/query/ws", get(crate::websocket::upgrade))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/sources", get(sources))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            same_site_only,
        ))
        .with_state(shared)
}

/// Refuses requests a web page on another site makes (its `Origin` is not this server), and,
/// on a server without logins, requests for a host name other than a loopback one (a page
/// whose name was re-pointed at 127.0.0.1). Clients that are not browsers send no `Origin`.
async fn same_site_only(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host != host {
            return ServerError::Forbidden(format!(
                "cross-site requests are refused: the page at {origin} is not this server"
            ))
            .into_response();
        }
    }
    if !shared.auth.required() && !is_loopback_name(&host) {
        return ServerError::Forbidden(
            "this server has no [users] and answers only to 127.0.0.1, [::1] or localhost".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// `localhost`, `127.0.0.1`, `[::1]`, with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.to_json())).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ibarrow\""),
            );
        }
        if let Some(wait) = self.retry_after() {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

async fn not_found() -> ServerError {
    ServerError::NotFound(
        "no such endpoint; see POST /v1/query, GET /v1/query/ws, GET /health, GET /metrics, \
         GET /v1/sources, GET / (status page)"
            .into(),
    )
}

pub(crate) async fn identify(
    shared: &Shared,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Identity, ServerError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    shared.auth.authenticate(header, peer.0.ip()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ServerError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ServerError::PayloadTooLarge(limit))
}

async fn query(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    let identity = identify(&shared, &headers, peer).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept).ok_or_else(|| {
        ServerError::BadRequest(format!(
            "cannot answer in `{}`; accept application/json, application/x-ndjson, text/csv \
             or {}",
            accept.unwrap_or_default(),
            Format::ARROW_STREAM
        ))
    })?;
    let body = read_body(body, shared.settings.max_body_bytes).await?;
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|err| {
        ServerError::BadRequest(format!(
            "the body must be JSON {{\"sql\": \"...\", \"params\": [...]}}: {err}"
        ))
    })?;
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let session = shared.session(&identity, client, Some(peer.0))?;
    let timeout = shared.settings.request_timeout;
    let deadline = Instant::now() + timeout;
    let started = async {
        let params = json_params(&request.params)?;
        let frame = plan_with_params(&session, &request.sql, Some(params)).await?;
        let stream = session.execute(frame, &request.sql).await?;
        let schema = stream.schema();
        let stop = StopSignals {
            cancel: shared.shutdown.child_token(),
            shutdown: shared.shutdown.clone(),
            deadline: Some((deadline, timeout)),
        };
        let mut batches = Box::pin(guarded(stream, Arc::clone(&schema), stop));
        // The first batch decides the status: an error before any row is an error answer.
        let first = batches.next().await.transpose()?;
        Ok::<_, ServerError>((schema, first, batches))
    };
    let (schema, first, rest) = tokio::time::timeout(timeout, started)
        .await
        .map_err(|_| ServerError::RequestTimeout(timeout))??;
    let mut encoder = Encoder::new(format, &schema)?;
    let head = encoder.start();
    let first = match first {
        Some(batch) => encoder.batch(&batch)?,
        None => bytes::Bytes::new(),
    };
    let encoder = std::sync::Arc::new(std::sync::Mutex::new(encoder));
    let tail_encoder = Arc::clone(&encoder);
    let tail_schema = Arc::clone(&schema);
    let body = futures::stream::iter([Ok(head), Ok(first)])
        .chain(rest.map(move |batch| {
            let batch = batch?;
            let mut encoder = encoder
                .lock()
                .map_err(|_| ServerError::Internal("encoder lock".into()))?;
            Ok::<_, ServerError>(encoder.batch(&batch)?)
        }))
        .chain(futures::stream::once(async move {
            let mut encoder = tail_encoder
                .lock()
                .map_err(|_| ServerError::Internal("encoder lock".into()))?;
            Ok::<_, ServerError>(encoder.finish(&tail_schema)?)
        }))
        .inspect(|chunk| {
            if let Err(err) = chunk {
                // Headers are gone already: the response is cut off, which clients see as
                // an incomplete transfer, never as a complete shorter result.
                tracing::warn!(error = %err, "query failed while streaming its result");
            }
        });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

async fn login(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = shared.auth.login(header, peer.0.ip()).await?;
    let token = shared.auth.issue_token(&identity)?;
    Ok(axum::Json(serde_json::json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": shared.auth.token_ttl().as_secs(),
        "user": identity.user,
    }))
    .into_response())
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    identify(&shared, &headers, peer).await?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ServerError::BadRequest("log out with the bearer token to end".into()))?;
    shared.auth.revoke_token(token.trim());
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn source_health_json(
    health: &ibarrow::SourceHealth,
    with_errors: bool,
) -> serde_json::Value {
    let mut value = serde_json::json!({
        "source": health.source,
        "reachable": health.reachable,
        "latency_ms": health.latency.map(|d| d.as_secs_f64() * 1000.0),
        "breaker": health.breaker.map(|b| format!("{b:?}").to_lowercase()),
        "pool": {"max": health.pool_max, "in_use": health.in_use, "idle": health.idle,
                 "held_too_long": health.held_too_long},
    });
    if with_errors {
        value["error"] = serde_json::json!(health.error);
    }
    // A source with replicas: each endpoint, and whether some of them are down.
    if health.endpoints.len() > 1 {
        value["degraded"] = serde_json::json!(health.degraded());
        value["endpoints"] = health
            .endpoints
            .iter()
            .map(|e| endpoint_health_json(e, with_errors))
            .collect();
    }
    value
}

fn endpoint_health_json(health: &ibarrow::EndpointHealth, with_errors: bool) -> serde_json::Value {
    let lag_secs = match health.lag {
        Some(ibarrow::LagReading::Behind(lag)) => serde_json::json!(lag.as_secs_f64()),
        Some(ibarrow::LagReading::NotReplicating) => serde_json::json!("not_replicating"),
        Some(ibarrow::LagReading::Unknown) => serde_json::json!("unknown"),
        None => serde_json::Value::Null,
    };
    let mut value = serde_json::json!({
        "endpoint": health.label,
        "role": format!("{:?}", health.role).to_lowercase(),
        "reachable": health.reachable,
        "latency_ms": health.latency.map(|d| d.as_secs_f64() * 1000.0),
        "breaker": health.breaker.map(|b| format!("{b:?}").to_lowercase()),
        "pool": {"max": health.pool_max, "in_use": health.in_use, "idle": health.idle,
                 "held_too_long": health.held_too_long},
        "statements": health.statements,
        "failed_over": health.failed_over,
        "lag_secs": lag_secs,
    });
    if with_errors {
        value["connection"] = serde_json::json!(health.connection);
        value["error"] = serde_json::json!(health.error);
    }
    value
}

/// Every source's state; 503 when one is unreachable. Asks for no login (load balancers
/// probe it) and so shows no error texts.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let sources = shared.engine.health(HEALTH_TIMEOUT).await;
    let healthy = sources.iter().all(|s| s.reachable) && !shared.draining();
    let status = if shared.draining() {
        "shutting_down"
    } else if healthy {
        "ok"
    } else {
        "degraded"
    };
    let body = serde_json::json!({
        "status": status,
        "sources": sources.iter().map(|s| source_health_json(s, false)).collect::<Vec<_>>(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    identify(&shared, &headers, peer).await?;
    let mut response = shared.engine.metrics().to_prometheus().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn sources(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    identify(&shared, &headers, peer).await?;
    let health = shared.engine.health(HEALTH_TIMEOUT).await;
    let list: Vec<serde_json::Value> = health
        .iter()
        .map(|h| {
            let mut value = source_health_json(h, true);
            if let Ok(source) = shared.engine.source(&h.source) {
                value["dbms"] = serde_json::json!(source.dbms_name());
            }
            value
        })
        .collect();
    Ok(axum::Json(serde_json::json!({"sources": list})).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_host_names_are_recognised() {
        for host in [
            "localhost:8080",
            "127.0.0.1:1",
            "127.0.0.1",
            "[::1]:80",
            "localhost",
        ] {
            assert!(super::is_loopback_name(host), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:80", "", "[2001:db8::1]:80"] {
            assert!(!super::is_loopback_name(host), "{host}");
        }
    }
}
