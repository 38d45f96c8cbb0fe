//! Mail: composing a queued mail (plain text and HTML, a stable `Message-ID`, one-click
//! unsubscribe), sending it over SMTP or writing it as an `.eml` file, and the worker that
//! drains the queue — claiming each mail for a while so two instances never send it at once,
//! marking it sent once the server took it, retrying with backoff while the server is down or
//! refuses.

use std::{path::PathBuf, sync::Arc, time::Duration};

use chrono::Utc;
use futures_util::StreamExt;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
    transport::smtp::authentication::Credentials,
};
use prometheus::{IntCounter, IntGauge, core::Collector};
use tokio::sync::Notify;

use super::{
    MailSettings,
    store::{self, MailRow},
};
use crate::{
    modules::hosting::HostError,
    platform::{
        db::{Db, DbError},
        now,
    },
};

/// Where mail goes.
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No SMTP server configured: each mail becomes `<dir>/<mail id>.eml`.
    Files(PathBuf),
}

/// Sends queued mail.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

/// Why a mail was not sent; it is tried again later.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct SendError {
    why: String,
    /// The server refused the mail itself (a 5xx): retrying soon will not help.
    permanent: bool,
}

impl Mailer {
    /// The mailer `settings` describe (files under `mail_dir` when no SMTP URL is set).
    pub fn new(settings: &MailSettings, mail_dir: PathBuf) -> Result<Self, HostError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("invalid configuration: smtp.from: {e}"))?;
        let transport = if settings.url.trim().is_empty() {
            std::fs::create_dir_all(&mail_dir)
                .map_err(|e| format!("{}: {e}", mail_dir.display()))?;
            Transport::Files(mail_dir)
        } else {
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
                .map_err(|e| format!("invalid configuration: smtp.url: {e}"))?
                .timeout(Some(Duration::from_secs(10)));
            if !settings.password_file.trim().is_empty() {
                let password = std::fs::read_to_string(&settings.password_file)
                    .map_err(|e| format!("smtp.password_file: {e}"))?;
                let user = url_user(&settings.url).unwrap_or_default();
                builder = builder.credentials(Credentials::new(
                    user,
                    password.trim_end_matches(['\r', '\n']).to_owned(),
                ));
            }
            Transport::Smtp(builder.build())
        };
        Ok(Self { transport, from })
    }

    /// Where mail goes, for the start-up log.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp(_) => "SMTP".to_owned(),
            Transport::Files(dir) => format!(".eml files in {}", dir.display()),
        }
    }

    /// Sends `mail` once.
    pub async fn send(&self, mail: &MailRow) -> Result<(), SendError> {
        let message = compose(&self.from, mail).map_err(|why| SendError {
            why,
            permanent: true,
        })?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| SendError {
                permanent: e.is_permanent(),
                why: e.to_string(),
            }),
            Transport::Files(dir) => {
                // Named by the mail: a resend after a crash rewrites the same file.
                let path = dir.join(format!("{}.eml", mail.id));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|e| SendError {
                        why: format!("{}: {e}", path.display()),
                        permanent: false,
                    })?;
                tracing::info!(path = %path.display(), subject = %mail.subject, "mail written");
                Ok(())
            }
        }
    }
}

/// The user part of `smtp://user@host`, percent-decoded.
fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next()?;
    Some(percent_decode(user).unwrap_or_else(|| user.to_owned()))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The message of a queued mail: plain text and HTML, its stable `Message-ID`, and the
/// one-click unsubscribe headers of RFC 8058 when it can be switched off.
fn compose(from: &Mailbox, mail: &MailRow) -> Result<Message, String> {
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|e| format!("recipient {:?}: {e}", mail.recipient))?;
    let mut builder = Message::builder()
        .message_id(Some(mail.message_id.clone()))
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone());
    if let Some(url) = &mail.unsubscribe_url {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            mail.text_body.clone(),
            mail.html_body.clone(),
        ))
        .map_err(|e| e.to_string())
}

/// The queue's metrics.
#[derive(Clone)]
pub struct MailMetrics {
    depth: IntGauge,
    sent: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
}

impl Default for MailMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        Self {
            depth: IntGauge::new("mail_queue_depth", "Mails waiting to be sent")
                .expect("valid metric"),
            sent: counter(
                "mail_sent_total",
                "Mails the server (or the mail directory) took",
            ),
            failed: counter("mail_failed_total", "Attempts to send a mail that failed"),
            retried: counter(
                "mail_retried_total",
                "Mails sent after at least one failed attempt",
            ),
        }
    }
}

impl MailMetrics {
    /// The collectors to register.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.depth.clone()),
            Box::new(self.sent.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.retried.clone()),
        ]
    }
}

/// How long an instance holds a mail it is sending before another may take it over: far longer
/// than a round of sends can take (a batch in waves of eight, each send bounded by the
/// transport's 10 s timeout per step).
const CLAIM: Duration = Duration::from_secs(600);
/// Mails taken per round.
const BATCH: i64 = 20;
/// Mails sent at once (each on a pooled SMTP connection).
const SENDING_AT_ONCE: usize = 8;

/// Drains the queue: at start, whenever woken, and every poll interval.
pub struct MailWorker {
    pub db: Db,
    pub mailer: Arc<Mailer>,
    pub wakeup: Arc<Notify>,
    pub metrics: MailMetrics,
    pub poll: Duration,
}

impl MailWorker {
    /// Runs until the process ends.
    pub async fn run(self) {
        loop {
            if let Err(err) = self.drain().await {
                tracing::warn!(error = %err, "mail queue stalled; will retry");
            }
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Sends every mail due now; returns how many were sent.
    pub async fn drain(&self) -> Result<usize, DbError> {
        let mut sent = 0;
        loop {
            let due = self
                .db
                .run(|conn| store::due_mail(conn, now(), BATCH).map_err(DbError::from))
                .await?;
            if due.is_empty() {
                break;
            }
            // Claimed one by one (another instance may take some), then sent several at once
            // over the transport's pooled connections.
            let mut claimed = Vec::new();
            for mail in due {
                let id = mail.id.clone();
                let mine = self
                    .db
                    .run(move |conn| {
                        let at = now();
                        store::claim(conn, &id, at, at + CLAIM).map_err(DbError::from)
                    })
                    .await?;
                if mine {
                    claimed.push(mail);
                }
            }
            let progressed = !claimed.is_empty();
            let outcomes: Vec<Result<bool, DbError>> = futures_util::stream::iter(claimed)
                .map(|mail| self.send(mail))
                .buffer_unordered(SENDING_AT_ONCE)
                .collect()
                .await;
            for outcome in outcomes {
                if outcome? {
                    sent += 1;
                }
            }
            if !progressed {
                break;
            }
        }
        let depth = self
            .db
            .run(|conn| store::queue_depth(conn).map_err(DbError::from))
            .await?;
        self.metrics.depth.set(depth);
        Ok(sent)
    }

    /// Sends one claimed mail and records the outcome; `true` when sent.
    async fn send(&self, mail: MailRow) -> Result<bool, DbError> {
        let outcome = self.mailer.send(&mail).await;
        let (id, attempts) = (mail.id.clone(), mail.attempts);
        match outcome {
            Ok(()) => {
                self.db
                    .run(move |conn| store::mark_sent(conn, &id, now()).map_err(DbError::from))
                    .await?;
                self.metrics.sent.inc();
                if attempts > 0 {
                    self.metrics.retried.inc();
                }
                tracing::info!(mail_id = %mail.id, kind = %mail.kind, attempts, "mail sent");
                Ok(true)
            }
            Err(err) => {
                self.metrics.failed.inc();
                let next = Utc::now() + backoff(attempts, err.permanent);
                tracing::warn!(mail_id = %mail.id, error = %err, attempts = attempts + 1, retry_at = %next, "mail not sent; will retry");
                let why = err.to_string();
                self.db
                    .run(move |conn| {
                        store::mark_failed(conn, &id, &why, next).map_err(DbError::from)
                    })
                    .await?;
                Ok(false)
            }
        }
    }
}

/// How long to wait before the next attempt after `attempts` failed ones: doubling from one
/// second up to five minutes; an hour after a permanent refusal.
fn backoff(attempts: i32, permanent: bool) -> chrono::Duration {
    if permanent {
        return chrono::Duration::hours(1);
    }
    let seconds = 1i64 << attempts.clamp(0, 9);
    chrono::Duration::seconds(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes_and_waits_an_hour_after_a_refusal() {
        let secs = |a, p| backoff(a, p).num_seconds();
        assert_eq!(
            [0, 1, 2, 3, 8, 9, 30].map(|a| secs(a, false)),
            [1, 2, 4, 8, 256, 300, 300]
        );
        assert_eq!(secs(0, true), 3600);
    }

    #[test]
    fn smtp_users_are_read_from_the_url() {
        assert_eq!(
            url_user("smtp://mailer%40x.org@host:25").as_deref(),
            Some("mailer@x.org")
        );
        assert_eq!(url_user("smtps://u:p@host").as_deref(), Some("u"));
        assert_eq!(url_user("smtp://host:25"), None);
    }
}
