//! The AdmissionReview extractor of the webhook endpoints (`/mutate`,
//! `/validate-policy`): `Content-Type: application/json`, the body read
//! within the request bounds ([`limits`]), decoded by the one decoder
//! ([`wire::decode`], which checks the envelope) at most a bounded number at
//! once, and off the runtime workers when large. A request that fails any
//! of it never reaches the handler: it is answered by [`BadRequest`].

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::admission::AdmissionRequest;
use crate::admission::wire::{self, Keep, WireError};
use crate::server::AppState;
use crate::server::handlers::bad_request;
use crate::server::limits::{self, BodyError};

/// The admission request of a POST body, keeping `K` of its object
/// ([`wire::Sizing`] or [`wire::Whole`]).
#[derive(Debug)]
pub(crate) struct ReviewRequest<K> {
    /// The decoded request; its envelope and uid are checked.
    pub(crate) request: AdmissionRequest,
    keep: PhantomData<fn() -> K>,
}

/// Why a webhook request gets no AdmissionReview back.
#[derive(Debug)]
pub(crate) enum BadRequest {
    /// A client mistake: 400 with the message, counted and logged.
    Client {
        /// Counts and logs it.
        state: AppState,
        /// Says what is wrong, to the client.
        message: String,
    },
    /// The body was cut off at the cap or the deadline: [`limits::guard`]
    /// answers (413 or 408) and counts it.
    BodyCut(BodyError),
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        match self {
            BadRequest::Client { state, message } => bad_request(&state, message),
            BadRequest::BodyCut(cut) => (cut.status(), cut.to_string()).into_response(),
        }
    }
}

impl<K: Keep + 'static> FromRequest<AppState> for ReviewRequest<K> {
    type Rejection = BadRequest;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, BadRequest> {
        let client = |message: String| BadRequest::Client {
            state: state.clone(),
            message,
        };
        if !is_json(request.headers()) {
            // The body is read (within the same bounds) before the answer:
            // over HTTP/2 an answer sent while the body is still arriving
            // is followed by a reset of the stream, which a client such as
            // curl can see before the answer itself.
            if let Err(error) = limits::read_body(request.into_body()).await
                && let Some(cut) = limits::body_error(&error)
            {
                return Err(BadRequest::BodyCut(cut));
            }
            return Err(client("Content-Type must be application/json".into()));
        }
        let body = limits::read_body(request.into_body())
            .await
            .map_err(|error| match limits::body_error(&error) {
                Some(cut) => BadRequest::BodyCut(cut),
                None => client(format!("reading the request body: {error}")),
            })?;
        let request = decode::<K>(state, body)
            .await
            .map_err(|error| client(error.to_string()))?;
        Ok(ReviewRequest {
            request,
            keep: PhantomData,
        })
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// Bodies up to this size decode on the request's task; larger ones on the
/// blocking pool, so a 3 MiB decode does not hold a runtime worker.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Decodes the review, at most [`AppState`]'s bound of decodes at once
/// (later requests wait their turn): what a decode builds is bounded per
/// request ([`wire::Sizing`]), and this bounds how many build at once.
async fn decode<K: Keep + 'static>(
    state: &AppState,
    body: Bytes,
) -> Result<AdmissionRequest, WireError> {
    let _permit = match state.inner.decodes.try_acquire() {
        Ok(permit) => Ok(permit),
        Err(_) => {
            // A wait for a slot counts against readiness while it lasts.
            let _waiting = state.waits().begin();
            state.inner.decodes.acquire().await
        }
    };
    if body.len() <= INLINE_DECODE_BYTES {
        return wire::decode::<K>(&body);
    }
    tokio::task::spawn_blocking(move || wire::decode::<K>(&body))
        .await
        .map_err(|error| WireError::Undecodable(error.to_string()))?
}
