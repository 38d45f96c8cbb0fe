//! The current request's identity, as a task-local, so outgoing calls (proxy, service clients)
//! can pass on `X-Request-Id` and a W3C `traceparent` without threading them through every
//! signature.

use rand::Rng;

/// The request id and W3C trace of the request being served, passed to every call it makes.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub request_id: String,
    /// 32 lower-case hex digits.
    pub trace_id: String,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// Keeps the caller's trace id from a valid `traceparent`, or starts a new trace.
    pub fn new(request_id: String, traceparent: Option<&str>) -> Self {
        let trace_id = traceparent
            .and_then(parse_trace_id)
            .unwrap_or_else(|| random_hex(16));
        Self {
            request_id,
            trace_id,
        }
    }

    /// A `traceparent` for an outgoing call made on behalf of this request: the current span's
    /// when spans are exported (so the callee's span hangs under it), else a fresh parent id.
    pub fn child_traceparent(&self) -> String {
        super::telemetry::current_traceparent()
            .unwrap_or_else(|| format!("00-{}-{}-01", self.trace_id, random_hex(8)))
    }

    /// Runs `f` with `self` as the current context.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// The current request's context, when there is one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; an all-zero id is invalid.
fn parse_trace_id(header: &str) -> Option<String> {
    let parts: Vec<&str> = header.trim().split('-').collect();
    let [version, trace_id, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, len| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = hex(version, 2)
        && *version != "ff"
        && hex(trace_id, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| (*trace_id).to_owned())
}

/// `bytes` random bytes in hex, from the thread's CSPRNG (seeded by the OS, never a system call
/// per id: every request makes one).
fn random_hex(bytes: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::thread_rng();
    (0..bytes)
        .flat_map(|_| {
            let byte: u8 = rng.r#gen();
            [byte >> 4, byte & 0xf]
        })
        .map(|nibble| char::from(DIGITS[usize::from(nibble)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_kept_when_valid() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ctx = TraceContext::new("r".into(), Some(&format!("00-{id}-00f067aa0ba902b7-01")));
        assert_eq!(ctx.trace_id, id);
        let child = ctx.child_traceparent();
        assert!(child.starts_with(&format!("00-{id}-")) && child.len() == 55);
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_ne!(TraceContext::new("r".into(), Some(bad)).trace_id, id);
        }
    }
}
