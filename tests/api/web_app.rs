//! The web app: its files as the server sends them (policy, validators, `HEAD`), and its main
//! journeys in a real browser (`tests/web/journeys.mjs`, Debian's Chromium driven by
//! playwright-core) against this deployment, whichever topology the suite runs.

use std::path::Path;

use reqwest::StatusCode;

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, topology},
};

backend_tests!(the_files_are_served_under_a_strict_policy);

async fn the_files_are_served_under_a_strict_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty());

        // Revalidation: the same file is a 304 without a body; HEAD has the headers only.
        let etag = headers["etag"].to_str().unwrap();
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()["etag"], etag);
        assert!(head.bytes().await.unwrap().is_empty());
        let post = app.client.post(app.url(path)).send().await.unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    let page = app.get("/", None).await.text().await.unwrap();
    assert!(page.contains("src=\"/assets/app.js\"") && page.contains("href=\"/api/docs\""));
    assert!(!page.contains("<script>"), "no inline script");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from elsewhere"
    );
}

/// Where the browser journeys live (`tests/web`).
fn web_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// What the browser journeys need and this machine lacks: Node.js, Chromium, or `npm ci` run in
/// `tests/web`. The harness then reports the journeys as ignored (or, with
/// `RSVP_REQUIRE_BROWSER=1` as in CI, runs them to fail).
pub fn browser_missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node").arg("--version").output();
    if node.is_err() {
        Some("the browser journeys need node (Node.js 18 or later)".into())
    } else if !Path::new(&chromium).exists() {
        Some("the browser journeys need chromium (apt install chromium)".into())
    } else if !web_dir().join("node_modules/playwright-core").exists() {
        Some("the browser journeys need playwright-core (cd tests/web && npm ci)".into())
    } else {
        None
    }
}

crate::tests!(needs [Browser]: journeys_in_a_real_browser);

/// SQLite only: the journeys test the app, and the API's backends are tested everywhere else.
async fn journeys_in_a_real_browser() {
    if let Some(missing) = browser_missing() {
        panic!("{missing}");
    }
    let web = web_dir();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.admin().await;
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(format!("{:?}", topology()).to_lowercase());
    let output = tokio::process::Command::new("node")
        .arg(web.join("journeys.mjs"))
        .env("BASE_URL", &app.address)
        .env("ADMIN_EMAIL", &admin.email)
        .env("ADMIN_PASSWORD", &admin.password)
        .env(
            "MAIL_DIRS",
            std::env::join_paths(app.mail_dirs()).expect("mail directories"),
        )
        .env("SCREENSHOTS", &screenshots)
        .output()
        .await
        .expect("node runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "journeys failed:\n{printed}");
    eprintln!("{printed}screenshots: {}", screenshots.display());
}
