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
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
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
            if !settings.ca_file.trim().is_empty() {
                builder = builder.tls(tls_trusting(&settings.url, &settings.ca_file)?);
            }
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

    /// Deletes the files of mails `ids` (mail written to files: a forgotten person's address
    /// or pruned mail must not stay on disk); nothing for SMTP.
    pub async fn discard(&self, ids: &[String]) {
        let Transport::Files(dir) = &self.transport else {
            return;
        };
        for id in ids {
            let path = dir.join(format!("{id}.eml"));
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "mail file not deleted")
                }
            }
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
                permanent: refuses_the_mail(&e),
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

/// Whether the server refused this mail itself: a 5xx about the mailbox or the address (550
/// to 553, answered to RCPT or DATA). Other 5xx — a refused login (530, 535), a relay refusing
/// the whole session (554), TLS required — are the deployment's to fix, not this mail's: giving
/// up on each mail then would empty the queue in one round, so they are retried like an outage
/// (until `notifications.give_up_after_hours`).
fn refuses_the_mail(error: &lettre::transport::smtp::Error) -> bool {
    error.is_permanent()
        && error
            .status()
            .is_some_and(|code| (550..=553).contains(&u16::from(code)))
}

/// How a URL asks for TLS.
#[derive(Debug, PartialEq, Eq)]
enum TlsMode {
    /// `smtps://`: TLS from the first byte.
    Wrapper,
    /// `?tls=required`: STARTTLS or nothing.
    Required,
    /// `?tls=opportunistic`: STARTTLS when offered.
    Opportunistic,
}

/// The TLS mode `url` asks for and the host its certificate must name.
fn tls_mode(url: &str) -> Result<(TlsMode, String), HostError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("invalid configuration: smtp.url has no scheme")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let asks = |mode: &str| query.split('&').any(|pair| pair == format!("tls={mode}"));
    let mode = match scheme {
        "smtps" => TlsMode::Wrapper,
        _ if asks("required") => TlsMode::Required,
        _ if asks("opportunistic") => TlsMode::Opportunistic,
        _ => return Err("invalid configuration: smtp.ca_file is set but smtp.url asks for no TLS (smtps://, or ?tls=required)".into()),
    };
    Ok((mode, host.to_owned()))
}

/// The TLS `url` asks for, trusting the certificate authorities in `ca_file` (PEM) besides the
/// system's: a relay inside an organisation often has a certificate of its own CA.
fn tls_trusting(url: &str, ca_file: &str) -> Result<Tls, HostError> {
    let (mode, host) = tls_mode(url)?;
    let pem = std::fs::read(ca_file).map_err(|e| format!("smtp.ca_file: {ca_file}: {e}"))?;
    let certificates = pem_certificates(&pem);
    if certificates.is_empty() {
        return Err(format!("smtp.ca_file: {ca_file}: no PEM certificate in it").into());
    }
    let mut parameters = TlsParameters::builder(host);
    for block in certificates {
        let certificate = Certificate::from_pem(block.as_bytes())
            .map_err(|e| format!("smtp.ca_file: {ca_file}: {e}"))?;
        parameters = parameters.add_root_certificate(certificate);
    }
    let parameters = parameters
        .build()
        .map_err(|e| format!("smtp.ca_file: {ca_file}: {e}"))?;
    Ok(match mode {
        TlsMode::Wrapper => Tls::Wrapper(parameters),
        TlsMode::Required => Tls::Required(parameters),
        TlsMode::Opportunistic => Tls::Opportunistic(parameters),
    })
}

/// Each certificate of a PEM bundle, as its own PEM text.
fn pem_certificates(pem: &[u8]) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter_map(|part| {
            let start = part.find("-----BEGIN CERTIFICATE-----")?;
            part.ends_with(END).then(|| part[start..].to_owned())
        })
        .collect()
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
    given_up: IntCounter,
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
            given_up: counter(
                "mail_given_up_total",
                "Mails refused for good by the server, or not sent within the retry period",
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
            Box::new(self.given_up.clone()),
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

/// Drains the queue: at start, whenever woken, and every poll interval; and prunes it.
pub struct MailWorker {
    pub db: Db,
    pub mailer: Arc<Mailer>,
    pub wakeup: Arc<Notify>,
    pub metrics: MailMetrics,
    pub poll: Duration,
    /// A mail not sent this long after it was queued is given up.
    pub give_up_after: chrono::Duration,
    /// How long sent and given-up mail (and the record of handled domain events) is kept.
    pub keep: chrono::Duration,
    /// How often that old mail is pruned.
    pub prune_every: Duration,
}

impl MailWorker {
    /// Runs until the process ends.
    pub async fn run(self) {
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if let Err(err) = self.drain().await {
                tracing::warn!(error = %err, "mail queue stalled; will retry");
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + self.prune_every;
                let before = now() - self.keep;
                match self
                    .db
                    .write(move |conn| store::prune(conn, before).map_err(DbError::from))
                    .await
                {
                    Ok(ids) if ids.is_empty() => {}
                    Ok(ids) => {
                        self.mailer.discard(&ids).await;
                        tracing::info!(mails = ids.len(), %before, "old mail pruned");
                    }
                    Err(err) => tracing::warn!(error = %err, "old mail not pruned; will retry"),
                }
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
                let marked = self
                    .db
                    .run(move |conn| store::mark_sent(conn, &id, now()).map_err(DbError::from))
                    .await?;
                if marked == 0 {
                    // Its person was forgotten while it was being sent: no copy stays here.
                    self.mailer.discard(std::slice::from_ref(&mail.id)).await;
                }
                self.metrics.sent.inc();
                if attempts > 0 {
                    self.metrics.retried.inc();
                }
                tracing::info!(mail_id = %mail.id, kind = %mail.kind, attempts, "mail sent");
                Ok(true)
            }
            Err(err) => {
                self.metrics.failed.inc();
                let why = err.to_string();
                // A refusal of the mail itself (a 5xx, an address that can not be written)
                // will not change; nor is a mail still useful days late.
                let expired = now() - mail.created_at.and_utc() >= self.give_up_after;
                if err.permanent || expired {
                    self.metrics.given_up.inc();
                    tracing::warn!(mail_id = %mail.id, kind = %mail.kind, error = %err, attempts = attempts + 1, expired, "mail given up");
                    self.db
                        .run(move |conn| {
                            store::give_up(conn, &id, &why, now()).map_err(DbError::from)
                        })
                        .await?;
                    return Ok(false);
                }
                let next = Utc::now() + backoff(attempts);
                tracing::warn!(mail_id = %mail.id, error = %err, attempts = attempts + 1, retry_at = %next, "mail not sent; will retry");
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
/// second up to five minutes.
fn backoff(attempts: i32) -> chrono::Duration {
    let seconds = 1i64 << attempts.clamp(0, 9);
    chrono::Duration::seconds(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(
            [0, 1, 2, 3, 8, 9, 30].map(|a| backoff(a).num_seconds()),
            [1, 2, 4, 8, 256, 300, 300]
        );
    }

    #[test]
    fn tls_follows_the_url() {
        let mode = |url| tls_mode(url).map_err(|e| e.to_string());
        assert_eq!(
            mode("smtps://u@mail.example:465"),
            Ok((TlsMode::Wrapper, "mail.example".into()))
        );
        assert_eq!(
            mode("smtp://[::1]:587?tls=required"),
            Ok((TlsMode::Required, "::1".into()))
        );
        assert_eq!(
            mode("smtp://h:25?x=1&tls=opportunistic"),
            Ok((TlsMode::Opportunistic, "h".into()))
        );
        assert!(
            mode("smtp://h:25").is_err(),
            "a CA without TLS is a mistake"
        );
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        assert!(tls_trusting("smtps://h", empty.to_str().unwrap()).is_err());
        assert!(tls_trusting("smtps://h", "/nonexistent/ca.pem").is_err());
    }

    #[test]
    fn each_certificate_of_a_bundle_is_read() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let bundle = format!("# a comment\n{one}\n{one}\ntrailing");
        assert_eq!(pem_certificates(bundle.as_bytes()), vec![one, one]);
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
