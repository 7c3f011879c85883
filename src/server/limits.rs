//! Bounds on each request of the TLS port, enforced before and while its
//! body is read: a body over the cap is refused from its `Content-Length`
//! before a byte of it is read (so `Expect: 100-continue` gets 413, never
//! `100 Continue`), the whole body must arrive within a timeout (nginx's
//! `client_body_timeout`, but for the whole body: a client dripping a byte
//! a second cannot hold a buffer), and all bodies buffered at once share one
//! byte budget, so that memory stays bounded however many connections and
//! streams send at once. Requests wait for the budget in arrival order
//! (a fair semaphore) rather than fail; the wait counts against the body
//! timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::Semaphore;

use crate::server::AppState;

/// The largest AdmissionReview accepted by default: the apiserver's own
/// limit on a request body (3 MiB), so nothing the apiserver accepted is
/// refused here. `serve --max-body-bytes` raises it.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Bytes of request bodies buffered at once, across all connections, by
/// default: eight bodies at the default cap.
pub const BUFFERED_BODY_BYTES: usize = 8 * MAX_BODY_BYTES;

/// How long a request body may take to arrive, whole, by default.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request bounds of the TLS port.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    max_body_bytes: usize,
    body_timeout: Duration,
    buffered: Arc<Semaphore>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits::new(MAX_BODY_BYTES, BODY_TIMEOUT)
    }
}

impl RequestLimits {
    /// Bodies up to `max_body_bytes`, each whole within `body_timeout`; the
    /// budget of buffered bodies is [`BUFFERED_BODY_BYTES`], or one body at
    /// the cap if that is larger.
    #[must_use]
    pub fn new(max_body_bytes: usize, body_timeout: Duration) -> RequestLimits {
        // Permits are bytes, taken up to `u32::MAX` at a time.
        let max_body_bytes = max_body_bytes.min(u32::MAX as usize);
        RequestLimits {
            max_body_bytes,
            body_timeout,
            buffered: Arc::new(Semaphore::new(BUFFERED_BODY_BYTES.max(max_body_bytes))),
        }
    }

    /// The body cap.
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Over the cap.
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    /// Not whole within the body timeout.
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
}

impl BodyError {
    /// The answer to a request whose body was cut off.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn metric_label(self) -> &'static str {
        match self {
            BodyError::TooLarge(_) => "too_large",
            BodyError::TimedOut(_) => "body_timeout",
        }
    }
}

const NOT_CUT: u8 = 0;
const CUT_TOO_LARGE: u8 = 1;
const CUT_TIMED_OUT: u8 = 2;

/// The middleware of the TLS router (see the module doc).
pub(crate) async fn guard(
    State((state, limits)): State<(AppState, RequestLimits)>,
    request: Request,
    next: Next,
) -> Response {
    let hint = request.body().size_hint();
    let http1 = request.version() < Version::HTTP_2;
    let cap = limits.max_body_bytes;
    if usize::try_from(hint.lower()).unwrap_or(usize::MAX) > cap {
        return refuse(&state, BodyError::TooLarge(cap), http1);
    }
    // Reserve what the body declares (the cap when it declares nothing);
    // nothing for a body known to be empty.
    let reserve = hint
        .exact()
        .map_or(cap, |exact| usize::try_from(exact).unwrap_or(cap));
    if reserve == 0 {
        return next.run(request).await;
    }
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let permits = u32::try_from(reserve).unwrap_or(u32::MAX);
    let reserved = tokio::time::timeout_at(
        deadline,
        limits.buffered.clone().acquire_many_owned(permits),
    )
    .await;
    let Ok(Ok(reserved)) = reserved else {
        return refuse(&state, BodyError::TimedOut(limits.body_timeout), http1);
    };
    let cut = Arc::new(AtomicU8::new(NOT_CUT));
    let (parts, body) = request.into_parts();
    let body = Body::new(GuardedBody {
        inner: body,
        left: cap,
        cap,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        timeout: limits.body_timeout,
        cut: cut.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    drop(reserved);
    match cut.load(Ordering::SeqCst) {
        CUT_TOO_LARGE => refuse(&state, BodyError::TooLarge(cap), http1),
        CUT_TIMED_OUT => refuse(&state, BodyError::TimedOut(limits.body_timeout), http1),
        _ => response,
    }
}

/// 413 or 408, counted; on HTTP/1.1 the connection closes after it (the
/// rest of the body is never read).
fn refuse(state: &AppState, error: BodyError, http1: bool) -> Response {
    state.metrics().error(error.metric_label());
    let mut response = (error.status(), error.to_string()).into_response();
    if http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body cut off at the cap or at the deadline.
struct GuardedBody {
    inner: Body,
    left: usize,
    cap: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    cut: Arc<AtomicU8>,
}

impl GuardedBody {
    /// Cuts the body: its deadline has passed.
    fn timed_out(&self) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.cut.store(CUT_TIMED_OUT, Ordering::SeqCst);
        Poll::Ready(Some(Err(axum::Error::new(BodyError::TimedOut(
            self.timeout,
        )))))
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.cut.load(Ordering::SeqCst) != NOT_CUT {
            return Poll::Ready(None);
        }
        // The deadline's timer is armed only when the body makes us wait: a
        // body that is already here (the usual review) costs no timer
        // registration, one that keeps arriving is held to the deadline by
        // the clock.
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Pending => {
                return match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => self.timed_out(),
                    Poll::Pending => Poll::Pending,
                };
            }
            other => return other,
        };
        if tokio::time::Instant::now() >= self.deadline.deadline() {
            return self.timed_out();
        }
        if let Some(data) = frame.data_ref() {
            match self.left.checked_sub(data.len()) {
                Some(left) => self.left = left,
                None => {
                    self.cut.store(CUT_TOO_LARGE, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyError::TooLarge(self.cap)))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole body into one buffer, sized from its declared length.
///
/// # Errors
/// The body failed: cut off by [`guard`] ([`BodyError`] inside), or the
/// client went away.
pub(crate) async fn read_body(mut body: Body) -> Result<Bytes, axum::Error> {
    use http_body_util::BodyExt as _;
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(0);
    let mut buffer = Vec::with_capacity(declared.min(MAX_BODY_BYTES * 4));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// The [`BodyError`] inside a body error, if [`guard`] cut the body off.
#[must_use]
pub(crate) fn body_error(error: &axum::Error) -> Option<BodyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<BodyError>() {
            return Some(*found);
        }
        source = current.source();
    }
    None
}
