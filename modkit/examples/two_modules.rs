//! Two tiny modules, `greetings` and `visits`, declared once each and checked as a registry.
//! `visits` greets its visitors through the `Greetings` trait (found in [`modkit::Apis`]) and
//! never knows where that module runs; after each visit it publishes a `visit.recorded` domain
//! event, which `greetings` consumes to keep its guest book.
//!
//! ```sh
//! cargo run -p modkit --features remote,nats --example two_modules            # one process
//! cargo run -p modkit --features remote,nats --example two_modules -- split   # HTTP + NATS
//! ```
//!
//! Split, the greetings module is served on a port of its own (as its own process would serve
//! it), `visits` holds a `GreetingsRemote` instead of the module, and the domain events travel
//! through NATS JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`): the same calls, the same
//! answers. A caller with the wrong credential is refused, and told so apart from an outage.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actix_web::{App, HttpServer, web};
use async_trait::async_trait;
use modkit::{
    Apis, CallError, Credential, Declaration, Remote, RemoteSettings,
    events::{DeliveryError, DomainEvent, EventHandler, EventPublisher, InProcessBus},
};

/// The topic `visits` publishes and `greetings` consumes.
const VISIT_RECORDED: &str = "visit.recorded";

/// The registry: each module declared once.
const MODULES: [Declaration; 2] = [
    Declaration {
        name: "greetings",
        routes: &[],
        publishes: &[],
        consumes: &[VISIT_RECORDED],
        default_url: "http://127.0.0.1:9101",
    },
    Declaration {
        name: "visits",
        routes: &["/visits"],
        publishes: &[VISIT_RECORDED],
        consumes: &[],
        default_url: "http://127.0.0.1:9102",
    },
];

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

    /// The guest book: whoever a `visit.recorded` event names, in order.
    #[derive(Default)]
    pub struct GuestBook(pub std::sync::Mutex<Vec<String>>);

    #[async_trait]
    impl EventHandler for GuestBook {
        fn topics(&self) -> &'static [&'static str] {
            &[VISIT_RECORDED]
        }

        async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
            let name = event.payload["name"].as_str().unwrap_or("someone");
            self.0.lock().unwrap().push(name.to_owned());
            Ok(())
        }
    }

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
    use crate::greetings::Greetings;

    /// The visits module: counts visitors, has them greeted by whoever `greetings` is, and
    /// tells whoever listens.
    pub struct Visits {
        pub greetings: Arc<dyn Greetings>,
        pub events: Arc<dyn EventPublisher>,
        pub count: AtomicU64,
    }

    impl Visits {
        pub async fn visit(&self, name: &str) -> Result<String, Box<dyn std::error::Error>> {
            let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            let greeting = self.greetings.greeting(name, count).await?;
            let event = DomainEvent {
                id: uuid::Uuid::new_v4(),
                topic: VISIT_RECORDED.to_owned(),
                payload: serde_json::json!({ "name": name, "count": count }),
                occurred_at: chrono::Utc::now(),
            };
            self.events.publish(&event).await?;
            Ok(greeting)
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
    use greetings::{Greeter, Greetings, GreetingsRemote, GuestBook, serve_greetings};
    modkit::check_registry(&MODULES)?;
    let split = std::env::args().nth(1).as_deref() == Some("split");
    let module: Arc<dyn Greetings> = Arc::new(Greeter);
    let guest_book = Arc::new(GuestBook::default());
    let apis = Apis::default();
    let (greetings, events, stream): (Arc<dyn Greetings>, Arc<dyn EventPublisher>, _) = if split {
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
        // Domain events through the broker: the greetings process consumes them as a work queue.
        let nats = modkit::nats::NatsSettings {
            url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            stream: format!("MODKIT_EXAMPLE_{}", uuid::Uuid::new_v4().simple()),
            subject_prefix: format!("modkit_example_{}", uuid::Uuid::new_v4().simple()),
            consumer: "greetings".into(),
        };
        let js = modkit::nats::connect(&nats).await?;
        modkit::nats::spawn_subscription(
            js.clone(),
            nats.clone(),
            "greetings".into(),
            modkit::events::Subscription::work_queue(guest_book.clone()),
        );
        let publisher = modkit::nats::NatsPublisher::new(js.clone(), &nats);
        let remote: Arc<dyn Greetings> = Arc::new(GreetingsRemote::new(Arc::new(remote)));
        (remote, Arc::new(publisher), Some((js, nats.stream)))
    } else {
        let bus = InProcessBus::default().subscribe(guest_book.clone());
        (module, Arc::new(bus), None)
    };
    apis.provide::<dyn Greetings>(greetings);
    let visits = visits::Visits {
        greetings: apis.get::<dyn Greetings>()?,
        events,
        count: AtomicU64::new(0),
    };
    for name in ["Ada", "Grace", "Ada"] {
        println!("{}", visits.visit(name).await?);
    }
    // Delivery is asynchronous across processes: wait (a little) for the guest book.
    for _ in 0..100 {
        if guest_book.0.lock().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("guest book: {}", guest_book.0.lock().unwrap().join(", "));
    if let Some((js, stream)) = stream {
        js.delete_stream(&stream).await?;
    }
    Ok(())
}
