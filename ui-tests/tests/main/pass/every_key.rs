//! `main!` with every key. The generated `fn main` serves until a signal, so it is
//! generated inside a module and only compiled here.

#![allow(dead_code)]

struct Greeting(&'static str);

mod every_key {
    fn routes() -> axum::Router {
        axum::Router::new()
    }
    framework::main!(
        websocket = 8081,
        service = "127.0.0.1:8080",
        state = super::Greeting("hello"),
        config = framework::Config::default(),
        router = routes(),
        tls = framework::config::TlsConfig::new("fullchain.pem", "key.pem"),
    );
}

mod addresses {
    framework::main!(websocket = "[::1]:0", service = "9000");
}

mod several_states {
    struct Counter(u64);
    framework::main!(websocket = 0, state = [super::Greeting("hi"), Counter(0)]);
}

mod websocket_only {
    framework::main!(websocket = 0);
}

mod expressions {
    const PORT: u16 = 9000;
    framework::main!(
        service = PORT + 1,
        websocket = std::net::SocketAddr::from(([127, 0, 0, 1], PORT)),
        config = framework::Config {
            ..Default::default()
        }
    );
}

mod nothing {
    // No listener: only `#[raw_ws]` services (none here, so start-up fails at run time).
    framework::main!();
}

fn main() {}
