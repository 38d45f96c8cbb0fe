//! A module's trait served by the generated endpoint and called through the generated client
//! answers exactly as the module does in process; refusals and outages stay apart.

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use async_trait::async_trait;
use modkit::{CallError, Credential, Remote, RemoteSettings};

#[modkit::interface(path = "/internal/library")]
#[async_trait]
pub trait Library: Send + Sync {
    /// The titles among `ids` whose name starts with `prefix`, in order.
    #[idempotent]
    async fn titles(&self, ids: &[u32], prefix: &str) -> Result<Vec<String>, LibraryError>;
    /// Lends a book: not safe to repeat.
    async fn lend(&self, id: u32) -> Result<bool, LibraryError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no such book: {0}")]
    Missing(u32),
    #[error(transparent)]
    Call(#[from] CallError),
}

struct Shelf;

const BOOKS: [&str; 4] = ["Dune", "Emma", "Dracula", "Ulysses"];

#[async_trait]
impl Library for Shelf {
    async fn titles(&self, ids: &[u32], prefix: &str) -> Result<Vec<String>, LibraryError> {
        Ok(ids
            .iter()
            .filter_map(|id| BOOKS.get(*id as usize))
            .filter(|title| title.starts_with(prefix))
            .map(|title| title.to_string())
            .collect())
    }

    async fn lend(&self, id: u32) -> Result<bool, LibraryError> {
        match BOOKS.get(id as usize) {
            Some(_) => Ok(true),
            None => Err(LibraryError::Missing(id)),
        }
    }
}

fn settings(credential: &str) -> RemoteSettings {
    RemoteSettings {
        credential: credential.into(),
        call_timeout_ms: 1_000,
        retries: 1,
        breaker_failures: 50,
        breaker_open_ms: 1_000,
    }
}

/// The module served as its own process would serve it; its base URL.
async fn serve() -> String {
    let server = HttpServer::new(|| {
        App::new()
            .app_data(web::Data::new(Credential("secret".into())))
            .configure(|cfg| serve_library(cfg, Arc::new(Shelf)))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    address
}

fn remote(address: &str, credential: &str) -> LibraryRemote {
    let remote = Remote::new("library", vec![address.into()], &settings(credential)).unwrap();
    LibraryRemote::new(Arc::new(remote))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_answers_as_the_module_does() {
    let address = serve().await;
    let (local, over_http): (Arc<dyn Library>, Arc<dyn Library>) =
        (Arc::new(Shelf), Arc::new(remote(&address, "secret")));
    for (ids, prefix) in [
        (vec![0, 1, 2, 3], "D"),
        (vec![3, 2, 1, 0, 9], ""),
        (vec![], "x"),
        (vec![1], "Émile ☃"),
    ] {
        assert_eq!(
            local.titles(&ids, prefix).await.unwrap(),
            over_http.titles(&ids, prefix).await.unwrap(),
            "{ids:?} {prefix:?}"
        );
    }
    assert!(over_http.lend(2).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_not_an_outage() {
    let address = serve().await;
    let intruder = remote(&address, "a guess");
    let refused = intruder.titles(&[0], "").await.unwrap_err();
    assert!(
        matches!(
            refused,
            LibraryError::Call(CallError::Rejected { status: 401, .. })
        ),
        "{refused:?}"
    );
    // The module's own failure, and a process that is not there: the module is unavailable.
    let failed = remote(&address, "secret").lend(99).await.unwrap_err();
    assert!(
        matches!(&failed, LibraryError::Call(CallError::Unavailable { why, .. }) if why.contains("503")),
        "{failed:?}"
    );
    let gone = remote("http://127.0.0.1:9", "secret")
        .titles(&[0], "")
        .await
        .unwrap_err();
    assert!(
        matches!(gone, LibraryError::Call(CallError::Unavailable { .. })),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_refuses_what_is_not_a_call_of_the_method() {
    let address = serve().await;
    let client = reqwest::Client::new();
    let send = |body: &'static str, credential: &'static str| {
        client
            .post(format!("{address}/internal/library/titles"))
            .header(modkit::CREDENTIAL_HEADER, credential)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, credential, status) in [
        (r#"[[0, 1], "D"]"#, "secret", 200),
        (r#"[[0, 1]]"#, "secret", 422),
        (r#"{"ids": [0]}"#, "secret", 422),
        ("not json", "secret", 422),
        (r#"[[0, 1], "D"]"#, "", 401),
        (r#"[[0, 1], "D"]"#, "Secret", 401),
    ] {
        let answer = send(body, credential).await.unwrap();
        assert_eq!(
            answer.status().as_u16(),
            status,
            "{body} with {credential:?}"
        );
        if status != 200 {
            assert_eq!(answer.headers()["content-type"], "application/problem+json");
        }
    }
}
