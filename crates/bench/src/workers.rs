//! The seven kinds of worker; each runs operations until the plan says stop.
use crate::tally::{Failure, Kind, Tally};
use crate::{grpc, websocket, Limit, Mode, Plan};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One operation that takes longer than this counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn work(plan: Arc<Plan>) -> Tally {
    match plan.mode {
        Mode::Handshake => handshake_worker(&plan).await,
        Mode::Http => keepalive_worker::<Sender>(&plan).await,
        Mode::Enroll => enroll_worker(&plan).await,
        Mode::Hold => hold_worker(&plan).await,
        Mode::Grpc => keepalive_worker::<GrpcSender>(&plan).await,
        Mode::Websocket => websocket_worker(&plan).await,
        Mode::Token => keepalive_worker::<TokenSender>(&plan).await,
    }
}

impl Plan {
    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
        self.connect_to(self.addr).await
    }

    async fn connect_to(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
        let tcp = TcpStream::connect(addr).await.context_kind(format_args!("connect {addr}"), "connect")?;
        tcp.set_nodelay(true).context_kind("TCP_NODELAY", "connect")?;
        self.connector.connect(self.server_name.clone(), tcp).await.context_kind("TLS handshake", "tls")
    }

    fn authorize<B>(&self, request: &mut http::Request<B>) {
        if let Some(v) = &self.authorization {
            request.headers_mut().insert(http::header::AUTHORIZATION, v.clone());
        }
    }

    fn record(&self, tally: &mut Tally, started: Instant, outcome: Result<(), Failure>) {
        tally.record(&self.first_error, started, outcome);
    }
}

/// `timeout(OP_TIMEOUT, op)` with the timeout filed as a kind of failure.
async fn timed<T>(op: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new("timeout", format!("no response within {OP_TIMEOUT:?}"))),
    }
}

async fn handshake_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", plan.path, plan.host);
    while plan.next() {
        let started = Instant::now();
        let outcome = timed(one_handshake(plan, request.as_bytes())).await;
        plan.record(&mut tally, started, outcome);
    }
    tally
}

async fn one_handshake(plan: &Plan, request: &[u8]) -> Result<(), Failure> {
    let mut tls = plan.connect().await?;
    tls.write_all(request).await.context_kind("send request", "send")?;
    let mut response = Vec::with_capacity(512);
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response is fine here.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e).context_kind("read response", "read"),
    }
    let line = response.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    match line.split(|&b| b == b' ').nth(1) {
        Some(b"200") if line.starts_with(b"HTTP/1.1 ") => Ok(()),
        Some(code) if line.starts_with(b"HTTP/1.") && code.len() == 3 && code.iter().all(u8::is_ascii_digit) => {
            Err(Failure::new(
                format!("status {}", String::from_utf8_lossy(code)),
                format!("unexpected response: {:?}", String::from_utf8_lossy(line)),
            ))
        }
        _ => Err(Failure::new("protocol", format!("not an HTTP/1.1 response: {:?}", String::from_utf8_lossy(line)))),
    }
}

/// One keep-alive connection's request sender.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn http_connect(plan: &Plan) -> Result<Sender, Failure> {
    let tls = plan.connect().await?;
    if plan.http2 {
        Ok(Sender::Http2(h2_handshake(tls).await?))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context_kind("HTTP/1.1 handshake", "protocol")?;
        tokio::spawn(conn);
        Ok(Sender::Http1(sender))
    }
}

/// HTTP/2 over a connection that agreed to it in ALPN.
async fn h2_handshake<B>(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> Result<hyper::client::conn::http2::SendRequest<B>, Failure>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(Failure::new("protocol", "the server did not agree to HTTP/2 (ALPN h2)"));
    }
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .context_kind("HTTP/2 handshake", "protocol")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A connection's sender that operations run over, one at a time.
trait KeepAlive: Sized {
    /// One operation, connecting first if `sender` is None.
    async fn op(plan: &Plan, sender: &mut Option<Self>) -> Result<(), Failure>;
    /// Whether a failure was the operation's alone, so the connection stays.
    fn call_only(_failure: &Failure) -> bool {
        false
    }
}

impl KeepAlive for Sender {
    async fn op(plan: &Plan, sender: &mut Option<Self>) -> Result<(), Failure> {
        one_request(plan, sender).await
    }
}

impl KeepAlive for GrpcSender {
    async fn op(plan: &Plan, sender: &mut Option<Self>) -> Result<(), Failure> {
        one_call(plan, sender).await
    }

    /// A gRPC status is the call's answer.
    fn call_only(failure: &Failure) -> bool {
        failure.kind.starts_with("grpc-status")
    }
}

/// Runs operations over one connection kept between them, started over
/// after a failure that was not the operation's alone.
async fn keepalive_worker<S: KeepAlive>(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<S> = None;
    while plan.next() {
        let started = Instant::now();
        let outcome = timed(S::op(plan, &mut sender)).await;
        if outcome.as_ref().is_err_and(|f| !S::call_only(f)) {
            sender = None;
        }
        plan.record(&mut tally, started, outcome);
    }
    tally
}

async fn one_request(plan: &Plan, sender: &mut Option<Sender>) -> Result<(), Failure> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(http_connect(plan).await?),
    };
    let response = match s {
        Sender::Http1(s) => {
            s.ready().await.context_kind("connection closed", "send")?;
            let mut request = http::Request::get(plan.path.as_str())
                .header(http::header::HOST, plan.host.as_str())
                .body(Empty::<Bytes>::new())
                .context_kind("build request", "protocol")?;
            plan.authorize(&mut request);
            s.send_request(request).await.context_kind("send request", "send")?
        }
        Sender::Http2(s) => {
            s.ready().await.context_kind("connection closed", "send")?;
            let mut request = http::Request::get(plan.h2_uri.clone())
                .version(http::Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .context_kind("build request", "protocol")?;
            plan.authorize(&mut request);
            s.send_request(request).await.context_kind("send request", "send")?
        }
    };
    let status = response.status();
    response.into_body().collect().await.context_kind("read response body", "read")?;
    if status != http::StatusCode::OK {
        return Err(Failure::new(format!("status {}", status.as_u16()), format!("unexpected status {status}")));
    }
    Ok(())
}

type EnrollSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How long an enrollment is sent again to the next target (several
/// targets only) while none answers it or they answer 503.
const RESEND_FOR: Duration = Duration::from_secs(90);

async fn enroll_worker(plan: &Plan) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<EnrollSender> = None;
    let mut node = plan.workers_started.fetch_add(1, Ordering::Relaxed) % plan.addrs.len();
    loop {
        let i = plan.started.fetch_add(1, Ordering::Relaxed) as usize;
        let Some(token) = plan.tokens.get(i) else { break };
        if let Limit::Until(deadline) = plan.limit {
            if Instant::now() >= deadline {
                break;
            }
        }
        let started = Instant::now();
        let outcome = async {
            // One key and CSR per token: a request sent again is the same
            // request, which a CA node answers with the certificate already bought.
            let body = enrollment(token)?;
            loop {
                let r = timed(post(
                    plan,
                    plan.addrs[node],
                    &mut sender,
                    "/v1/enroll",
                    "application/json",
                    body.clone(),
                    &[http::StatusCode::CREATED, http::StatusCode::OK],
                ))
                .await;
                match r {
                    Err(f) if plan.addrs.len() > 1 && f.resendable() && started.elapsed() < RESEND_FOR => {
                        sender = None;
                        node = (node + 1) % plan.addrs.len();
                        plan.resent.fetch_add(1, Ordering::Relaxed);
                        // Not a busy loop against a store that is down.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    r => break r,
                }
            }
        }
        .await;
        let outcome = outcome.and_then(|answer| plan.keep_serial(&answer));
        if outcome.is_err() {
            sender = None;
        }
        plan.record(&mut tally, started, outcome);
    }
    tally
}

fn enrollment(token: &str) -> Result<Bytes, Failure> {
    let key = ambos_pki::KeyType::EcP256.generate().kind("client")?;
    let csr = ambos_pki::create_csr(&key, None, &[]).kind("client")?;
    let body =
        serde_json::json!({"token": token, "csr": ambos_pki::pem_encode("CERTIFICATE REQUEST", &csr)}).to_string();
    Ok(Bytes::from(body))
}

impl Plan {
    /// `--serials`: the serial of the certificate in an enrollment's answer.
    fn keep_serial(&self, answer: &[u8]) -> Result<(), Failure> {
        let Some((_, kept)) = &self.serials else { return Ok(()) };
        let v: serde_json::Value = serde_json::from_slice(answer).context_kind("enrollment answer", "protocol")?;
        let serial =
            v["serial"].as_str().ok_or_else(|| Failure::new("protocol", "enrollment answer without a serial"))?;
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(serial.to_string());
        Ok(())
    }
}

/// `token` mode: one access token from `ambos serve` per operation (client
/// credentials over this connection's certificate).
struct TokenSender(EnrollSender);

impl KeepAlive for TokenSender {
    async fn op(plan: &Plan, sender: &mut Option<Self>) -> Result<(), Failure> {
        let mut inner = sender.take().map(|s| s.0);
        let form = Bytes::from_static(b"grant_type=client_credentials");
        let r = post(
            plan,
            plan.addr,
            &mut inner,
            "/v1/oauth/token",
            "application/x-www-form-urlencoded",
            form,
            &[http::StatusCode::OK],
        );
        let outcome = r.await.map(drop);
        *sender = inner.map(TokenSender);
        outcome
    }
}

/// POSTs `body` to `path` at `addr` over the worker's HTTP/1.1 connection
/// (opened if there is none); an answer not in `expect` is a failure with
/// the answer, else the answer's body.
async fn post(
    plan: &Plan,
    addr: std::net::SocketAddr,
    sender: &mut Option<EnrollSender>,
    path: &str,
    content_type: &str,
    body: Bytes,
    expect: &[http::StatusCode],
) -> Result<Bytes, Failure> {
    let s = match sender {
        Some(s) => s,
        None => {
            let tls = plan.connect_to(addr).await?;
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .context_kind("HTTP/1.1 handshake", "protocol")?;
            tokio::spawn(conn);
            sender.insert(s)
        }
    };
    s.ready().await.context_kind("connection closed", "send")?;
    let request = http::Request::post(path)
        .header(http::header::HOST, plan.host.as_str())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .context_kind("build request", "protocol")?;
    let response = s.send_request(request).await.context_kind("send request", "send")?;
    let status = response.status();
    let body = response.into_body().collect().await.context_kind("read response body", "read")?.to_bytes();
    if !expect.contains(&status) {
        return Err(Failure::new(
            format!("status {}", status.as_u16()),
            format!("unexpected status {status}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    Ok(body)
}

/// Opens connections (each completes one keep-alive request, so the server
/// has fully set it up), then holds them all idle.
async fn hold_worker(plan: &Plan) -> Tally {
    hold(plan, || async {
        let mut sender: Option<Sender> = None;
        one_request(plan, &mut sender).await.map(|()| sender)
    })
    .await
}

/// Opens connections upgraded to WebSocket, then holds them all open.
async fn websocket_worker(plan: &Plan) -> Tally {
    hold(plan, || one_upgrade(plan)).await
}

/// Opens connections with `open` until the plan's count is claimed, then,
/// once every worker is done opening, keeps them all for `hold_for`.
async fn hold<T, F, Fut>(plan: &Plan, open: F) -> Tally
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tally = Tally::new();
    let mut held = Vec::new();
    while plan.next() {
        let started = Instant::now();
        let mut kept = None;
        let outcome = timed(async { open().await.map(|c| kept = Some(c)) }).await;
        held.extend(kept);
        plan.opened.fetch_add(1, Ordering::Relaxed); // attempts, failed ones too
        plan.record(&mut tally, started, outcome);
    }
    let total = match plan.limit {
        Limit::Count(n) => n,
        Limit::Until(_) => 0,
    };
    while plan.opened.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(plan.hold_for).await;
    drop(held);
    tally
}

/// A TLS connection (ALPN http/1.1) upgraded to WebSocket, ready to hold.
async fn one_upgrade(plan: &Plan) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let mut tls = plan.connect().await?;
    tls.write_all(websocket::request(&plan.path, &plan.host).as_bytes()).await.context_kind("send upgrade", "send")?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = tls.read(&mut buf).await.context_kind("read upgrade response", "read")?;
        if n == 0 {
            return Err(Failure::new("read", "connection closed before the upgrade response"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = websocket::head_end(&head) {
            break end;
        }
        if head.len() > websocket::MAX_HEAD {
            return Err(Failure::new("protocol", "upgrade response head longer than 8 KiB"));
        }
    };
    websocket::switched(&head[..end])?;
    Ok(tls)
}

type GrpcSender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn one_call(plan: &Plan, sender: &mut Option<GrpcSender>) -> Result<(), Failure> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(h2_handshake(plan.connect().await?).await?),
    };
    s.ready().await.context_kind("connection closed", "send")?;
    let request = grpc::request(&plan.h2_uri).context_kind("build request", "protocol")?;
    let response = s.send_request(request).await.context_kind("send request", "send")?;
    let (head, body) = response.into_parts();
    let body = body.collect().await.context_kind("read response body", "read")?;
    grpc::outcome(head.status, &head.headers, body.trailers())
}
