//! `GET /v1/query/ws`: queries over a WebSocket (docs/server.md). The client sends a text
//! frame `{"sql", "params", "format": "ndjson" | "arrow"}`; the result comes as binary frames
//! (NDJSON lines, or the pieces of an Arrow IPC stream), with text frames between them for
//! control: `{"type": "progress", ...}` after each batch, then `done`, `error` or
//! `cancelled`. A text frame `{"cancel": true}` stops the running query; closing the socket
//! drops it. Queries on one socket run one after another: one sent while another runs is
//! answered `{"type": "refused", ...}`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use serde::Deserialize;

use crate::Shared;
use crate::auth::Identity;
use crate::error::ServerError;
use crate::format::{Encoder, Format};
use crate::listener::{ConnectionSlot, Peer};
use crate::query::{StopSignals, guarded, json_params, plan_with_params};

/// The query string of `GET /v1/query/ws`.
#[derive(Deserialize)]
pub struct SocketParams {
    /// A bearer token, for browsers, which cannot set headers on a WebSocket.
    access_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketQuery {
    sql: Option<String>,
    #[serde(default)]
    params: Vec<serde_json::Value>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    cancel: bool,
}

/// `GET /v1/query/ws`: authenticates the caller, then serves queries on the upgraded socket.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Extension(slot): Extension<ConnectionSlot>,
    headers: HeaderMap,
    Query(params): Query<SocketParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ServerError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.access_token.map(|t| format!("Bearer {t}")));
    let identity = shared
        .auth
        .authenticate(header.as_deref(), peer.0.ip())
        .await?;
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("websocket")
        .to_string();
    let limit = shared.settings.max_body_bytes;
    let open = shared.sockets.token();
    Ok(ws
        .max_message_size(limit)
        .on_upgrade(move |socket| async move {
            // Counted under the connection caps, and waited for at shutdown, until it closes.
            let _held = (slot, open);
            serve_socket(shared, identity, client, peer, socket).await
        }))
}

type Sink = SplitSink<WebSocket, Message>;
type Batches = std::pin::Pin<
    Box<dyn Stream<Item = Result<arrow::array::RecordBatch, ServerError>> + Send + 'static>,
>;
type Incoming = SplitStream<WebSocket>;

/// The socket is gone: stop.
struct Gone;

async fn serve_socket(
    shared: Arc<Shared>,
    identity: Identity,
    client: String,
    peer: Peer,
    socket: WebSocket,
) {
    let (mut sink, mut incoming) = socket.split();
    loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            // Shutting down: an idle socket closes; a running query was let finish.
            _ = shared.drain.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return;
            }
        };
        let Some(message) = message else { return };
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let request = match serde_json::from_str::<SocketQuery>(&text) {
            Ok(request) => request,
            Err(err) => {
                let err = ServerError::BadRequest(format!(
                    "send {{\"sql\": \"...\", \"params\": [...], \"format\": \"ndjson\" | \
                     \"arrow\"}}: {err}"
                ));
                if send_error(&mut sink, &err).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if request.cancel {
            // Nothing runs between queries.
            continue;
        }
        let ran = run_query(
            &shared,
            &identity,
            &client,
            peer,
            request,
            &mut sink,
            &mut incoming,
        )
        .await;
        if ran.is_err() {
            return;
        }
    }
}

async fn send_error(sink: &mut Sink, err: &ServerError) -> Result<(), Gone> {
    let mut body = err.to_json();
    body["type"] = "error".into();
    send_text(sink, body).await
}

async fn send_text(sink: &mut Sink, value: serde_json::Value) -> Result<(), Gone> {
    sink.send(Message::Text(value.to_string().into()))
        .await
        .map_err(|_| Gone)
}

async fn send_bytes(sink: &mut Sink, bytes: bytes::Bytes) -> Result<(), Gone> {
    if bytes.is_empty() {
        return Ok(());
    }
    sink.send(Message::Binary(bytes)).await.map_err(|_| Gone)
}

async fn start(
    shared: &Shared,
    identity: &Identity,
    client: &str,
    peer: Peer,
    request: &SocketQuery,
) -> Result<(arrow::datatypes::SchemaRef, Batches), ServerError> {
    let sql = request
        .sql
        .as_deref()
        .ok_or_else(|| ServerError::BadRequest("the message has no `sql`".into()))?;
    let session = shared.session(identity, client, Some(peer.0))?;
    let frame = plan_with_params(&session, sql, Some(json_params(&request.params)?)).await?;
    let stream = session.execute(frame, sql).await?;
    let schema = stream.schema();
    let stop = StopSignals {
        cancel: shared.shutdown.child_token(),
        shutdown: shared.shutdown.clone(),
        deadline: None,
    };
    let batches: Batches = Box::pin(guarded(stream, Arc::clone(&schema), stop));
    Ok((schema, batches))
}

async fn run_query(
    shared: &Shared,
    identity: &Identity,
    client: &str,
    peer: Peer,
    request: SocketQuery,
    sink: &mut Sink,
    incoming: &mut Incoming,
) -> Result<(), Gone> {
    let format = match request.format.as_deref() {
        None | Some("ndjson") => Format::NdJson,
        Some("arrow") => Format::ArrowStream,
        Some(other) => {
            let err = ServerError::BadRequest(format!(
                "format `{other}` is not offered here; use ndjson or arrow"
            ));
            return send_error(sink, &err).await;
        }
    };
    let started = Instant::now();
    let (schema, batches) = match start(shared, identity, client, peer, &request).await {
        Ok(started) => started,
        Err(err) => return send_error(sink, &err).await,
    };
    let mut batches = batches;
    let mut encoder = match Encoder::new(format, &schema) {
        Ok(encoder) => encoder,
        Err(err) => return send_error(sink, &err.into()).await,
    };
    send_bytes(sink, encoder.start()).await?;
    let (mut rows, mut count) = (0u64, 0u64);
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let cancel = serde_json::from_str::<SocketQuery>(&text).is_ok_and(|q| q.cancel);
                    if cancel {
                        // Dropping the stream cancels what runs remotely.
                        return send_text(sink, serde_json::json!({"type": "cancelled", "rows": rows})).await;
                    }
                    let busy = ServerError::BadRequest(
                        "a query is running on this socket; wait for its `done` or send \
                         {\"cancel\": true}".into(),
                    );
                    let mut body = busy.to_json();
                    body["type"] = "refused".into();
                    send_text(sink, body).await?;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(Gone),
                Some(Ok(_)) => {}
            },
            batch = batches.next() => match batch {
                Some(Ok(batch)) => {
                    rows += batch.num_rows() as u64;
                    count += 1;
                    match encoder.batch(&batch) {
                        Ok(bytes) => send_bytes(sink, bytes).await?,
                        Err(err) => return send_error(sink, &err.into()).await,
                    }
                    send_text(sink, serde_json::json!({
                        "type": "progress", "rows": rows, "batches": count,
                        "elapsed_ms": started.elapsed().as_millis() as u64,
                    })).await?;
                }
                Some(Err(err)) => return send_error(sink, &err).await,
                None => {
                    match encoder.finish(&schema) {
                        Ok(bytes) => send_bytes(sink, bytes).await?,
                        Err(err) => return send_error(sink, &err.into()).await,
                    }
                    return send_text(sink, serde_json::json!({
                        "type": "done", "rows": rows, "batches": count,
                        "elapsed_ms": started.elapsed().as_millis() as u64,
                    })).await;
                }
            },
        }
    }
}
