//! Bounds on each request of the TLS port, enforced before and while its
//! body is read.
//!
//! - A body over the cap is refused from its `Content-Length` before a byte
//!   of it is read (so `Expect: 100-continue` gets 413, never
//!   `100 Continue`).
//! - The whole body must arrive within a timeout (nginx's
//!   `client_body_timeout`, but for the whole body: a client dripping a byte
//!   a second cannot hold a buffer).
//! - All bodies buffered at once share one byte budget, charged as the
//!   bytes arrive, chunk by chunk: a body that declares 3 MiB and sends
//!   nothing holds nothing. A chunk that finds the budget spent waits for it
//!   in arrival order (a fair semaphore), within the body timeout.
//! - While a chunk waits, bodies that hold part of the budget and have been
//!   arriving for longer than [`RECLAIM_AFTER`] give way (408), so that an
//!   unfinished body cannot hold its bytes for the whole body timeout:
//!   every such body waiting on its client, at once; and, once a chunk has
//!   waited [`RECLAIM_AFTER`] itself, the one of them holding most (even if
//!   it waits for the budget too: bodies that all wait for each other would
//!   otherwise wait until their timeout), one every 50 ms. A client that
//!   wants to keep the budget spent must send all of it again every
//!   [`RECLAIM_AFTER`], and a chunk that waits gets the bytes freed before
//!   any chunk that came after it.
//! - At most [`MAX_BODIES_IN_FLIGHT`] bodies are being received at once, all
//!   connections together (with HTTP/2 this bounds the unread data
//!   flow-control windows can hold: each stream's window is small). A new
//!   body past it takes the place of the oldest one (408), the oldest
//!   waiting on its client first.
//!
//! A request that waits for the server's own capacity (the budget, a decode
//! slot) is recorded in [`Waits`]: `/readyz` is not ready while one has
//! waited longer than [`SATURATED_AFTER`].

use crate::sizing::ErrorReason;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

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

/// Request bodies being received at once, all connections of the TLS port
/// together, by default (`serve --max-bodies-in-flight`).
pub const MAX_BODIES_IN_FLIGHT: usize = 256;

/// While a request waits for the body budget, a body still arriving after
/// this long gives way (see the module doc).
pub const RECLAIM_AFTER: Duration = Duration::from_millis(100);

/// `/readyz` is not ready while a request has waited this long for the
/// server's own capacity (the body budget, a decode slot): a third of the
/// 3 s the manifests give the webhook.
pub const SATURATED_AFTER: Duration = Duration::from_secs(1);

/// The largest request head (request line and headers), on both ports:
/// HTTP/1.1 answers 431 past it, HTTP/2 refuses the stream.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How often a waiting chunk looks for bodies to reclaim.
const RECLAIM_CHECK: Duration = Duration::from_millis(50);

/// The request bounds of the TLS port.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    max_body_bytes: usize,
    body_timeout: Duration,
    bodies: Arc<Bodies>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits::new(MAX_BODY_BYTES, BODY_TIMEOUT)
    }
}

impl RequestLimits {
    /// Bodies up to `max_body_bytes`, each whole within `body_timeout`; the
    /// budget of buffered bodies is [`BUFFERED_BODY_BYTES`], or one body at
    /// the cap if that is larger; at most [`MAX_BODIES_IN_FLIGHT`] bodies
    /// being received at once.
    #[must_use]
    pub fn new(max_body_bytes: usize, body_timeout: Duration) -> RequestLimits {
        // Permits are bytes, taken up to `u32::MAX` at a time.
        let max_body_bytes = max_body_bytes.min(u32::MAX as usize);
        let capacity = BUFFERED_BODY_BYTES.max(max_body_bytes);
        RequestLimits {
            max_body_bytes,
            body_timeout,
            bodies: Arc::new(Bodies {
                budget: Arc::new(Semaphore::new(capacity)),
                capacity,
                max_in_flight: MAX_BODIES_IN_FLIGHT,
                receiving: Mutex::new(Receiving::default()),
            }),
        }
    }

    /// The same bounds with at most `max` bodies being received at once
    /// (at least one).
    #[must_use]
    pub fn with_max_bodies_in_flight(self, max: usize) -> RequestLimits {
        RequestLimits {
            bodies: Arc::new(Bodies {
                budget: Arc::new(Semaphore::new(self.bodies.capacity)),
                capacity: self.bodies.capacity,
                max_in_flight: max.max(1),
                receiving: Mutex::new(Receiving::default()),
            }),
            ..self
        }
    }

    /// The body cap.
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// Why a body was cut off, or never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Over the cap.
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    /// Not whole within the body timeout.
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    /// Still arriving after [`RECLAIM_AFTER`] while other requests waited
    /// for the room it held, or the oldest of too many bodies in flight.
    #[error(
        "request body still arriving after {RECLAIM_AFTER:?} while other requests waited for the server's body buffers"
    )]
    Reclaimed,
}

impl BodyError {
    /// The answer to a request whose body was cut off.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut(_) | BodyError::Reclaimed => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn metric_label(self) -> ErrorReason {
        match self {
            BodyError::TooLarge(_) => ErrorReason::TooLarge,
            BodyError::TimedOut(_) => ErrorReason::BodyTimeout,
            BodyError::Reclaimed => ErrorReason::BodyReclaimed,
        }
    }
}

const NOT_CUT: u8 = 0;
const CUT_TOO_LARGE: u8 = 1;
const CUT_TIMED_OUT: u8 = 2;
const CUT_RECLAIMED: u8 = 3;

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
    if hint.exact() == Some(0) {
        return next.run(request).await;
    }
    let arrival = limits.bodies.admit(state.waits().clone());
    let deadline = Instant::now() + limits.body_timeout;
    let cut = Arc::new(AtomicU8::new(NOT_CUT));
    let held = arrival.held.clone();
    let (parts, body) = request.into_parts();
    let body = Body::new(GuardedBody {
        inner: body,
        left: cap,
        cap,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        timeout: limits.body_timeout,
        cut: cut.clone(),
        arrival,
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    // What the body charged is held until the answer is ready: the buffer
    // it filled lives as long as the handler.
    drop(held);
    match cut.load(Ordering::SeqCst) {
        CUT_TOO_LARGE => refuse(&state, BodyError::TooLarge(cap), http1),
        CUT_TIMED_OUT => refuse(&state, BodyError::TimedOut(limits.body_timeout), http1),
        CUT_RECLAIMED => refuse(&state, BodyError::Reclaimed, http1),
        _ => response,
    }
}

/// 413 or 408, counted; on HTTP/1.1 the connection closes after it
/// (the rest of the body is never read).
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

/// The body budget, and the bodies being received.
#[derive(Debug)]
struct Bodies {
    /// Permits are bytes.
    budget: Arc<Semaphore>,
    capacity: usize,
    max_in_flight: usize,
    receiving: Mutex<Receiving>,
}

/// The bodies being received, by arrival (a smaller id came first).
#[derive(Debug, Default)]
struct Receiving {
    next_id: u64,
    bodies: BTreeMap<u64, Receiver>,
    /// When a waiting chunk last looked for bodies to reclaim.
    last_reclaim: Option<Instant>,
}

#[derive(Debug)]
struct Receiver {
    started: Instant,
    /// Bytes of the budget it holds.
    held: usize,
    /// Its next chunk's wait for the budget: how many bytes, since when
    /// (none: it waits for its client, or for nothing).
    waiting: Option<(usize, Instant)>,
    /// Cancelled when it must give way.
    give_way: CancellationToken,
}

impl Receiving {
    /// Cuts the body `id` off: it gives way, and no longer counts.
    fn cut(&mut self, id: u64) {
        if let Some(receiver) = self.bodies.remove(&id) {
            receiver.give_way.cancel();
        }
    }
}

impl Bodies {
    fn lock(&self) -> std::sync::MutexGuard<'_, Receiving> {
        self.receiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new body; at the bound, the oldest body gives way to
    /// it (the oldest waiting on its client, if any does).
    fn admit(self: &Arc<Self>, waits: Arc<Waits>) -> Arrival {
        let mut receiving = self.lock();
        if receiving.bodies.len() >= self.max_in_flight {
            let oldest = receiving
                .bodies
                .iter()
                .find(|(_, receiver)| receiver.waiting.is_none())
                .or_else(|| receiving.bodies.iter().next())
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                receiving.cut(oldest);
            }
        }
        let id = receiving.next_id;
        receiving.next_id += 1;
        let give_way = CancellationToken::new();
        receiving.bodies.insert(
            id,
            Receiver {
                started: Instant::now(),
                held: 0,
                waiting: None,
                give_way: give_way.clone(),
            },
        );
        Arrival {
            bodies: self.clone(),
            id,
            given_way: Box::pin(give_way.clone().cancelled_owned()),
            give_way,
            held: Arc::new(Mutex::new(None)),
            waiting: None,
            waits,
        }
    }

    /// Records that `id` holds `bytes` more, and waits for nothing.
    fn charged(&self, id: u64, bytes: usize) {
        if let Some(receiver) = self.lock().bodies.get_mut(&id) {
            receiver.held += bytes;
            receiver.waiting = None;
        }
    }

    /// Records that `id` waits for `bytes` of the budget from now on.
    fn waits_for(&self, id: u64, bytes: usize) {
        if let Some(receiver) = self.lock().bodies.get_mut(&id) {
            receiver.waiting = Some((bytes, Instant::now()));
        }
    }

    /// Cuts off the bodies that give way to waiting chunks (see the module
    /// doc), at most once per [`RECLAIM_CHECK`] whoever asks.
    fn reclaim(&self, now: Instant) {
        let mut receiving = self.lock();
        if receiving
            .last_reclaim
            .is_some_and(|last| now.duration_since(last) < RECLAIM_CHECK)
        {
            return;
        }
        receiving.last_reclaim = Some(now);
        let old = |receiver: &Receiver| now.duration_since(receiver.started) >= RECLAIM_AFTER;
        let on_client: Vec<u64> = receiving
            .bodies
            .iter()
            .filter(|(_, receiver)| {
                receiver.held > 0 && receiver.waiting.is_none() && old(receiver)
            })
            .map(|(id, _)| *id)
            .collect();
        if !on_client.is_empty() {
            for id in on_client {
                receiving.cut(id);
            }
            return;
        }
        let longest_waiter = receiving
            .bodies
            .iter()
            .filter_map(|(id, receiver)| Some((*id, receiver.waiting?.1)))
            .min_by_key(|(_, since)| *since)
            .filter(|(_, since)| now.duration_since(*since) >= RECLAIM_AFTER)
            .map(|(id, _)| id);
        let Some(longest_waiter) = longest_waiter else {
            return;
        };
        let largest = receiving
            .bodies
            .iter()
            .filter(|(id, receiver)| **id != longest_waiter && receiver.held > 0 && old(receiver))
            .max_by_key(|(_, receiver)| receiver.held)
            .map(|(id, _)| *id);
        if let Some(id) = largest {
            receiving.cut(id);
        }
    }
}

/// A chunk's wait for the budget.
type BudgetWait = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

/// One body being received: its place among [`Bodies`], and what it holds
/// of the budget (shared with [`guard`], which keeps it until the answer).
struct Arrival {
    bodies: Arc<Bodies>,
    id: u64,
    give_way: CancellationToken,
    given_way: Pin<Box<WaitForCancellationFutureOwned>>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// A chunk waiting for the budget, and the wait.
    waiting: Option<(Frame<Bytes>, BudgetWait)>,
    waits: Arc<Waits>,
}

impl Arrival {
    fn hold(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(holding) => holding.merge(permit),
            None => *held = Some(permit),
        }
    }

    /// Charges `frame`'s bytes: `Ok` when they were free, else the chunk
    /// waits (`Err`, the frame kept).
    fn charge(&mut self, frame: Frame<Bytes>) -> Result<Frame<Bytes>, ()> {
        let bytes = frame.data_ref().map_or(0, Bytes::len);
        if bytes == 0 {
            return Ok(frame);
        }
        // A chunk is at most the body cap, itself at most `u32::MAX`.
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        if let Ok(permit) = self.bodies.budget.clone().try_acquire_many_owned(permits) {
            self.hold(permit);
            self.bodies.charged(self.id, bytes);
            return Ok(frame);
        }
        self.bodies.waits_for(self.id, bytes);
        let (bodies, waiting) = (self.bodies.clone(), self.waits.begin());
        let wait = async move {
            let _waiting = waiting;
            let acquire = bodies.budget.clone().acquire_many_owned(permits);
            tokio::pin!(acquire);
            loop {
                bodies.reclaim(Instant::now());
                tokio::select! {
                    permit = &mut acquire => return permit.ok(),
                    () = tokio::time::sleep(RECLAIM_CHECK) => {}
                }
            }
        };
        self.waiting = Some((frame, Box::pin(wait)));
        Err(())
    }

    /// The waiting chunk, once its bytes are charged.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<Frame<Bytes>> {
        let Some((_, wait)) = self.waiting.as_mut() else {
            return Poll::Pending;
        };
        match wait.as_mut().poll(cx) {
            // The semaphore is never closed.
            Poll::Pending | Poll::Ready(None) => Poll::Pending,
            Poll::Ready(Some(permit)) => {
                let bytes = permit.num_permits();
                self.hold(permit);
                self.bodies.charged(self.id, bytes);
                match self.waiting.take() {
                    Some((frame, _)) => Poll::Ready(frame),
                    None => Poll::Pending,
                }
            }
        }
    }

    fn has_given_way(&mut self, cx: &mut Context<'_>) -> bool {
        self.given_way.as_mut().poll(cx).is_ready()
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.bodies.lock().bodies.remove(&self.id);
    }
}

/// A request body charged to the budget as it arrives, cut off at the cap,
/// at the deadline, or when it must give way.
struct GuardedBody {
    inner: Body,
    left: usize,
    cap: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    cut: Arc<AtomicU8>,
    arrival: Arrival,
}

type Polled = Poll<Option<Result<Frame<Bytes>, axum::Error>>>;

impl GuardedBody {
    fn cut_off(&self, error: BodyError) -> Polled {
        let code = match error {
            BodyError::TooLarge(_) => CUT_TOO_LARGE,
            BodyError::Reclaimed => CUT_RECLAIMED,
            BodyError::TimedOut(_) => CUT_TIMED_OUT,
        };
        self.cut.store(code, Ordering::SeqCst);
        Poll::Ready(Some(Err(axum::Error::new(error))))
    }

    /// Nothing to hand out now: cut off if the deadline passed or the body
    /// must give way, else wait (woken by either, or by what is pending).
    fn pending(&mut self, cx: &mut Context<'_>) -> Polled {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.cut_off(BodyError::TimedOut(self.timeout));
        }
        if self.arrival.has_given_way(cx) {
            return self.cut_off(BodyError::Reclaimed);
        }
        Poll::Pending
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        if this.cut.load(Ordering::SeqCst) != NOT_CUT {
            return Poll::Ready(None);
        }
        if this.arrival.waiting.is_some() {
            return match this.arrival.poll_waiting(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(Ok(frame))),
                Poll::Pending => this.pending(cx),
            };
        }
        // The deadline's timer is armed only when the body makes us wait: a
        // body that is already here (the usual review) costs no timer
        // registration, one that keeps arriving is held to the deadline by
        // the clock.
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Pending => return this.pending(cx),
            other => return other,
        };
        if Instant::now() >= this.deadline.deadline() {
            return this.cut_off(BodyError::TimedOut(this.timeout));
        }
        if this.arrival.give_way.is_cancelled() {
            return this.cut_off(BodyError::Reclaimed);
        }
        if let Some(data) = frame.data_ref() {
            match this.left.checked_sub(data.len()) {
                Some(left) => this.left = left,
                None => return this.cut_off(BodyError::TooLarge(this.cap)),
            }
        }
        match this.arrival.charge(frame) {
            Ok(frame) => Poll::Ready(Some(Ok(frame))),
            Err(()) => match this.arrival.poll_waiting(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(Ok(frame))),
                Poll::Pending => this.pending(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.arrival.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Requests waiting for the server's own capacity (the body budget, a
/// decode slot), for readiness.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    next_id: AtomicU64,
    /// Since when each waits, by id (a smaller id began first).
    waiting: Mutex<BTreeMap<u64, Instant>>,
}

/// One wait, recorded until dropped.
#[derive(Debug)]
pub(crate) struct Waiting {
    waits: Arc<Waits>,
    id: u64,
}

impl Waits {
    /// Records a wait that begins now.
    pub(crate) fn begin(self: &Arc<Self>) -> Waiting {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Instant::now());
        Waiting {
            waits: self.clone(),
            id,
        }
    }

    /// How long the longest wait in progress has lasted.
    pub(crate) fn longest(&self) -> Option<Duration> {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting
            .values()
            .min()
            .map(|since| Instant::now().duration_since(*since))
    }

    /// Whether a request has waited [`SATURATED_AFTER`] or longer.
    pub(crate) fn is_saturated(&self) -> bool {
        self.longest().is_some_and(|wait| wait >= SATURATED_AFTER)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waits
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Reads a whole body into one buffer, grown as the body arrives (doubling,
/// never past its declared length), so memory follows what was received.
///
/// # Errors
/// The body failed: cut off by [`guard`] ([`BodyError`] inside), or the
/// client went away.
pub(crate) async fn read_body(mut body: Body) -> Result<Bytes, axum::Error> {
    use http_body_util::BodyExt as _;
    let declared = match usize::try_from(body.size_hint().lower()) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(declared) => declared,
    };
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let needed = buffer.len() + data.len();
            if needed > buffer.capacity() {
                let grown = (2 * buffer.capacity()).min(declared).max(needed);
                buffer.reserve_exact(grown - buffer.len());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(max_in_flight: usize) -> Arc<Bodies> {
        Arc::new(Bodies {
            budget: Arc::new(Semaphore::new(1000)),
            capacity: 1000,
            max_in_flight,
            receiving: Mutex::new(Receiving::default()),
        })
    }

    fn cut(arrival: &Arrival) -> bool {
        arrival.give_way.is_cancelled()
    }

    #[test]
    fn a_body_past_the_bound_takes_the_place_of_the_oldest_waiting_on_its_client() {
        let bodies = bodies(2);
        let waits = Arc::new(Waits::default());
        let first = bodies.admit(waits.clone());
        let second = bodies.admit(waits.clone());
        bodies.waits_for(first.id, 10);
        // The first waits for the budget: the second, on its client, goes.
        let third = bodies.admit(waits.clone());
        assert!(!cut(&first) && cut(&second) && !cut(&third));
        bodies.waits_for(third.id, 10);
        // Every one waits for the budget: the oldest goes.
        let fourth = bodies.admit(waits);
        assert!(cut(&first) && !cut(&third) && !cut(&fourth));
        assert_eq!(bodies.lock().bodies.len(), 2);
    }

    #[test]
    fn holders_waiting_on_their_client_give_way_once_old() {
        let bodies = bodies(8);
        let waits = Arc::new(Waits::default());
        let stalled = bodies.admit(waits.clone());
        bodies.charged(stalled.id, 600);
        let silent = bodies.admit(waits.clone());
        let waiting = bodies.admit(waits);
        bodies.waits_for(waiting.id, 500);
        let admitted = Instant::now();
        bodies.reclaim(admitted + RECLAIM_AFTER / 2);
        assert!(!cut(&stalled), "younger than {RECLAIM_AFTER:?}");
        // The next look comes RECLAIM_CHECK later at the earliest.
        bodies.reclaim(admitted + RECLAIM_AFTER + RECLAIM_CHECK);
        assert!(cut(&stalled));
        // A body holding nothing frees nothing; one waiting is not stalled.
        assert!(!cut(&silent) && !cut(&waiting));
    }

    #[test]
    fn once_a_chunk_has_waited_the_old_body_holding_most_gives_way() {
        let bodies = bodies(8);
        let waits = Arc::new(Waits::default());
        let longest = bodies.admit(waits.clone());
        let small = bodies.admit(waits.clone());
        let large = bodies.admit(waits);
        bodies.charged(longest.id, 400);
        bodies.charged(small.id, 100);
        bodies.charged(large.id, 500);
        for arrival in [&longest, &small, &large] {
            bodies.waits_for(arrival.id, 50);
        }
        let since = Instant::now();
        bodies.reclaim(since + RECLAIM_AFTER / 2);
        assert!(!cut(&longest) && !cut(&small) && !cut(&large));
        bodies.reclaim(since + RECLAIM_AFTER + RECLAIM_CHECK);
        // The longest waiter (the head of the queue) is not the one cut.
        assert!(!cut(&longest) && !cut(&small) && cut(&large));
        bodies.reclaim(since + RECLAIM_AFTER + 2 * RECLAIM_CHECK);
        assert!(!cut(&longest) && cut(&small));
    }

    #[test]
    fn a_lone_waiter_cuts_nothing_when_answered_requests_hold_the_budget() {
        let bodies = bodies(8);
        let waiting = bodies.admit(Arc::new(Waits::default()));
        bodies.charged(waiting.id, 40);
        bodies.waits_for(waiting.id, 60);
        bodies.reclaim(Instant::now() + 10 * RECLAIM_AFTER);
        assert!(!cut(&waiting));
    }

    #[test]
    fn a_finished_body_no_longer_counts() {
        let bodies = bodies(1);
        let first = bodies.admit(Arc::new(Waits::default()));
        drop(first);
        let second = bodies.admit(Arc::new(Waits::default()));
        assert!(!cut(&second));
        assert_eq!(bodies.lock().bodies.len(), 1);
    }

    #[test]
    fn saturated_once_a_wait_lasts_the_bound() {
        let waits = Arc::new(Waits::default());
        assert!(!waits.is_saturated());
        let waiting = waits.begin();
        assert!(!waits.is_saturated());
        let mut entry = waits.waiting.lock().expect("lock");
        let since = entry.get_mut(&waiting.id).expect("recorded");
        *since = Instant::now()
            .checked_sub(SATURATED_AFTER)
            .expect("the clock is past the bound");
        drop(entry);
        assert!(waits.is_saturated());
        drop(waiting);
        assert!(!waits.is_saturated());
        assert_eq!(waits.longest(), None);
    }
}
