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

/// What the browser journeys need: Node.js, Chromium, and `npm ci` run in `tests/web`. Missing,
/// the test says so and passes, unless `RSVP_REQUIRE_BROWSER` is set (CI).
fn browser_tools() -> Option<&'static Path> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node").arg("--version").output();
    let missing = if node.is_err() {
        Some("node (Node.js 18 or later)")
    } else if !Path::new(&chromium).exists() {
        Some("chromium (apt install chromium)")
    } else if !web.join("node_modules/playwright-core").exists() {
        Some("playwright-core (cd tests/web && npm ci)")
    } else {
        None
    };
    if let Some(missing) = missing {
        assert!(
            std::env::var("RSVP_REQUIRE_BROWSER").is_err(),
            "RSVP_REQUIRE_BROWSER is set but {missing} is missing"
        );
        eprintln!("SKIPPED: the browser journeys need {missing}");
        return None;
    }
    Some(Box::leak(web.into_boxed_path()))
}

/// SQLite only: the journeys test the app, and the API's backends are tested everywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_in_a_real_browser() {
    let Some(web) = browser_tools() else { return };
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
