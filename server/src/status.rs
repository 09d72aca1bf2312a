//! The status page at `GET /`: a small HTML page (`server/src/status.html`, no build step)
//! that polls `GET /v1/status` for the sources' health and breakers, the query counters and
//! the recent queries.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::Shared;
use crate::error::ServerError;
use crate::http::{HEALTH_TIMEOUT, identify, source_health_json};
use crate::listener::Peer;

const PAGE: &str = include_str!("status.html");

/// `GET /`: the status page, for a logged-in user.
pub async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    identify(&shared, &headers, peer).await?;
    let mut response = PAGE.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'",
        ),
    );
    Ok(response)
}

/// Whether `identity` may see every user's statements: always without `[roles]` (no access
/// control), else with a role that has `monitor = true`.
fn sees_every_user(shared: &Shared, identity: &crate::auth::Identity) -> bool {
    shared
        .engine
        .access_policy()
        .is_none_or(|policy| policy.grants(&identity.user).may_monitor())
}

/// `GET /v1/status`: the sources' health, the query counters and the recent queries as JSON,
/// for a logged-in user: under `[roles]`, only the user's own queries unless a role of theirs
/// has `monitor = true`.
pub async fn status(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let identity = identify(&shared, &headers, peer).await?;
    let everyone = sees_every_user(&shared, &identity);
    let sources = shared.engine.health(HEALTH_TIMEOUT).await;
    let recent: Vec<serde_json::Value> = shared
        .engine
        .recent_queries()
        .iter()
        .filter(|q| everyone || q.user == identity.user)
        .map(|q| {
            serde_json::json!({
                "id": q.id,
                "user": q.user,
                "sql": q.sql,
                "duration_ms": q.duration.as_secs_f64() * 1000.0,
                "rows": q.rows,
                "outcome": q.outcome,
                "error_kind": q.error_kind,
                "ended_at_unix": q.ended_at_unix,
                "peak_memory_bytes": q.peak_memory_bytes,
                "cache": q.cache,
            })
        })
        .collect();
    let metrics = shared.engine.metrics();
    Ok(axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": if shared.draining() { "shutting down" } else { "serving" },
        "sources": sources.iter().map(|s| source_health_json(s, true)).collect::<Vec<_>>(),
        "queries": metrics.queries,
        "errors": metrics.errors,
        "recent": recent,
    }))
    .into_response())
}

/// `GET /v1/insights`: the engine's insights (src/insights.rs) as JSON (statements are shown
/// with their literals masked). They rank every user's statements: under `[roles]`, only for
/// a user with a `monitor = true` role.
pub async fn insights(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let identity = identify(&shared, &headers, peer).await?;
    if !sees_every_user(&shared, &identity) {
        return Err(ServerError::Engine(ibarrow::Error::AccessDenied(format!(
            "access denied: `{}` may not see insights, which rank every user's statements; \
             an operator grants them with `monitor = true` in one of the user's [roles.<name>]",
            identity.user
        ))));
    }
    let insights = shared.engine.insights().await;
    Ok(axum::Json(insights).into_response())
}
