//! A tiny in-process OTLP/HTTP trace receiver for Repo Guardian's tests.
//!
//! [`OtlpSink::start`] listens on a free loopback port and accepts what an OpenTelemetry
//! exporter sends to `POST /v1/traces` as protobuf (`application/x-protobuf`), the encoding
//! the worker uses. Tests point `OTEL_EXPORTER_OTLP_ENDPOINT` at [`OtlpSink::endpoint`],
//! run workers, and read the spans back with [`OtlpSink::spans`] or
//! [`OtlpSink::wait_for_spans`]. It is a test double, not a collector: no gRPC, no JSON, no
//! compression, no other signals, and everything is kept in memory until it is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::sync::oneshot;

/// One span as received, with ids in the lower-case hex the W3C `traceparent` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The span name (`plan`, `scan`, … for step spans).
    pub name: String,
    /// The OTLP span kind (`SPAN_KIND_CONSUMER`, …).
    pub kind: String,
    /// The span's attributes, values rendered as text (arrays and maps as JSON-like text).
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource that sent the span.
    pub service_name: Option<String>,
}

impl ReceivedSpan {
    /// An attribute's value, if present.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What the receiver shares with the handler.
#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
}

impl Received {
    /// The span list; a panic in another test thread must not hide what arrived.
    fn lock(&self) -> MutexGuard<'_, Vec<ReceivedSpan>> {
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpSink {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: Option<oneshot::Sender<()>>,
}

impl OtlpSink {
    /// Starts the receiver on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// When no loopback port can be bound, which no test can work around.
    pub async fn start() -> OtlpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("otlp-sink: cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("otlp-sink: no local address: {e}"));
        let received = Arc::new(Received::default());
        let app = Router::new()
            .route("/v1/traces", post(receive_traces))
            .with_state(received.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        OtlpSink {
            addr,
            received,
            stop: Some(stop),
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().clone()
    }

    /// Waits until `done` holds for the spans received so far and returns them, or returns
    /// what arrived when `timeout` passes (exporters batch, so spans arrive late).
    pub async fn wait_for_spans(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `POST /v1/traces`: decodes the batch, stores its spans, answers with an empty
/// `ExportTraceServiceResponse` (full success), as a collector would.
async fn receive_traces(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-protobuf") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "otlp-sink accepts application/x-protobuf only",
        )
            .into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("undecodable OTLP: {e}")).into_response();
        }
    };
    received.lock().extend(flatten(request));
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The spans of a request, each with its resource's service name.
fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|resource| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| render(kv.value.as_ref()))
        });
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let kind =
                    opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(span.kind)
                        .map(|kind| kind.as_str_name().to_owned())
                        .unwrap_or_else(|_| span.kind.to_string());
                spans.push(ReceivedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex::encode(&span.parent_span_id)),
                    name: span.name,
                    kind,
                    attributes: attributes(&span.attributes),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    spans
}

fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

/// An attribute value as text: strings as they are, scalars as literals, composites in a
/// JSON-like notation that is good enough for assertions.
fn render(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(bytes)) => hex::encode(bytes),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(|v| render(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|kv| format!("{}={}", kv.key, render(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", "repo-guardian")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        parent_span_id: vec![0x02; 8],
                        name: "scan".into(),
                        kind: 5,
                        attributes: vec![string("messaging.system", "nats")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn stores_what_an_exporter_posts() {
        let sink = OtlpSink::start().await;
        let client = HttpClient::new(&sink);
        let (status, body) = client
            .post("application/x-protobuf", request().encode_to_vec())
            .await;
        assert_eq!(status, 200, "{body}");

        let spans = sink.spans();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "01".repeat(8));
        assert_eq!(span.parent_span_id.as_deref(), Some(&*"02".repeat(8)));
        assert_eq!(span.name, "scan");
        assert_eq!(span.kind, "SPAN_KIND_CONSUMER");
        assert_eq!(span.attribute("messaging.system"), Some("nats"));
        assert_eq!(span.service_name.as_deref(), Some("repo-guardian"));
    }

    #[tokio::test]
    async fn refuses_json_and_garbage() {
        let sink = OtlpSink::start().await;
        let client = HttpClient::new(&sink);
        let (status, _) = client.post("application/json", b"{}".to_vec()).await;
        assert_eq!(status, 415);
        let (status, _) = client
            .post("application/x-protobuf", vec![0xff, 0xff, 0xff])
            .await;
        assert_eq!(status, 400);
        assert!(sink.spans().is_empty());
    }

    /// A minimal HTTP/1.1 client over a raw socket, so the crate needs no HTTP client
    /// dependency just for its own tests.
    struct HttpClient {
        addr: SocketAddr,
    }

    impl HttpClient {
        fn new(sink: &OtlpSink) -> Self {
            Self { addr: sink.addr }
        }

        async fn post(&self, content_type: &str, body: Vec<u8>) -> (u16, String) {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            let head = format!(
                "POST /v1/traces HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                self.addr,
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            let text = String::from_utf8_lossy(&response).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            (status, text)
        }
    }
}
