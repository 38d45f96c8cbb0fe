//! Slow clients: a request body must arrive in full within `server.body_timeout_ms` of the
//! request's start, or reading it fails with [`BodyTimedOut`] and the reader answers `408`.
//! (The HTTP layer already bounds the headers with `server.header_timeout_ms`.) Without this, a
//! client that declares `Content-Length: 100` and sends two bytes holds a connection, and a
//! worker's attention, for as long as it likes.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header,
    middleware::Next,
    web::{self, Bytes},
};
use futures_util::Stream;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::platform::json::BodyTimedOut;

/// How long a request body may take to arrive, installed as app data by the gateway.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

/// A payload that fails once its deadline has passed.
struct TimedPayload {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired = true;
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    BodyTimedOut,
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether the request announces a body (most reads do not, and pay nothing here).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

/// Puts the body deadline on the payload of every request that has one.
pub async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if has_body(&req)
        && let Some(limit) = req.app_data::<web::Data<BodyDeadline>>().map(|d| d.0)
    {
        let inner = req.take_payload();
        let timed = TimedPayload {
            inner,
            deadline: Box::pin(sleep_until(Instant::now() + limit)),
            expired: false,
        };
        req.set_payload(Payload::from(
            Box::pin(timed) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
        ));
    }
    next.call(req).await
}
