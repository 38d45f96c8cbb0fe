//! Two tiny modules, `greetings` and `visits`; `visits` greets its visitors through the
//! `Greetings` trait and never knows where that module runs.
//!
//! ```sh
//! cargo run -p modkit --features remote --example two_modules            # in one process
//! cargo run -p modkit --features remote --example two_modules -- split   # greetings over HTTP
//! ```
//!
//! Split, the greetings module is served on a port of its own (as its own process would serve
//! it) and `visits` holds a `GreetingsRemote` instead of the module: the same calls, the same
//! answers. A caller with the wrong credential is refused, and told so apart from an outage.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actix_web::{App, HttpServer, web};
use async_trait::async_trait;
use modkit::{CallError, Credential, Remote, RemoteSettings};

mod greetings {
    use super::*;

    /// What the greetings module offers other modules.
    #[modkit::interface(path = "/internal/greetings")]
    #[async_trait]
    pub trait Greetings: Send + Sync {
        /// A greeting for `name`, the `count`th time they come.
        #[idempotent]
        async fn greeting(&self, name: &str, count: u64) -> Result<String, GreetingsError>;
    }

    /// Why a greeting could not be had.
    #[derive(Debug, thiserror::Error)]
    pub enum GreetingsError {
        #[error(transparent)]
        Call(#[from] CallError),
    }

    /// The module itself.
    pub struct Greeter;

    #[async_trait]
    impl Greetings for Greeter {
        async fn greeting(&self, name: &str, count: u64) -> Result<String, GreetingsError> {
            Ok(match count {
                1 => format!("Welcome, {name}!"),
                n => format!("Welcome back, {name} (visit {n})."),
            })
        }
    }
}

mod visits {
    use super::*;
    use crate::greetings::{Greetings, GreetingsError};

    /// The visits module: counts visitors and has them greeted by whoever `greetings` is.
    pub struct Visits {
        pub greetings: Arc<dyn Greetings>,
        pub count: AtomicU64,
    }

    impl Visits {
        pub async fn visit(&self, name: &str) -> Result<String, GreetingsError> {
            let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            self.greetings.greeting(name, count).await
        }
    }
}

fn settings(credential: &str) -> RemoteSettings {
    RemoteSettings {
        credential: credential.into(),
        call_timeout_ms: 2_000,
        retries: 2,
        breaker_failures: 5,
        breaker_open_ms: 5_000,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use greetings::{Greeter, Greetings, GreetingsRemote, serve_greetings};
    let split = std::env::args().nth(1).as_deref() == Some("split");
    let module: Arc<dyn Greetings> = Arc::new(Greeter);
    let greetings: Arc<dyn Greetings> = if split {
        // What the greetings process runs: its module behind the internal endpoint.
        let served = module.clone();
        let server = HttpServer::new(move || {
            let served = served.clone();
            App::new()
                .app_data(web::Data::new(Credential("shared secret".into())))
                .configure(move |cfg| serve_greetings(cfg, served))
        })
        .workers(1)
        .bind("127.0.0.1:0")?;
        let address = format!("http://{}", server.addrs()[0]);
        tokio::spawn(server.run());
        println!("greetings served at {address}");
        let remote = Remote::new(
            "greetings",
            vec![address.clone()],
            &settings("shared secret"),
        )?;
        let intruder = GreetingsRemote::new(Arc::new(Remote::new(
            "greetings",
            vec![address],
            &settings("a guess"),
        )?));
        let refused = intruder.greeting("Mallory", 1).await.unwrap_err();
        println!("wrong credential: {refused}");
        Arc::new(GreetingsRemote::new(Arc::new(remote)))
    } else {
        module
    };
    let visits = visits::Visits {
        greetings,
        count: AtomicU64::new(0),
    };
    for name in ["Ada", "Grace", "Ada"] {
        println!("{}", visits.visit(name).await?);
    }
    Ok(())
}
