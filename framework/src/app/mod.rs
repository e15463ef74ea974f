//! Layer 8: the [`App`] builder, the running [`AppHandle`], and what `main!`
//! runs.

mod handle;
pub(crate) mod logging;
mod main;

pub use crate::services::tls::TlsError;
pub use handle::AppHandle;
use handle::{bind_all, local_addrs, ShutdownSignals};
#[doc(hidden)]
pub use main::{listen_addr, run_main};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::Location;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use futures_util::future::BoxFuture;

use crate::broker::{Broker, BrokerError, InMemoryBroker};
use crate::config::{ConfigError, ListenSpec, Settings};
use crate::dispatch::authorize::{Authorizer, BoxedAuthorizer};
use crate::dispatch::hooks::{BoxedConnectHook, BoxedDisconnectHook, ConnectHook, DisconnectHook};
use crate::dispatch::{BoxedHandler, Dispatcher, Handler, HandlerTable, Hooks, StateNeed};
use crate::hub::Hub;
use crate::node::{AppState, Node, Verifier};
use crate::protocol::{Opcode, FIRST_APPLICATION_OPCODE};
use crate::raw::{BoxedRawHandler, RawHandler};
use crate::services::admission::Admission;
use crate::services::http::{HttpState, Routes};
use crate::services::{Service, Shared};
use crate::Config;
use axum::Router;

/// Where a service listens: a port on every interface (`8081`) or an exact address
/// (`"127.0.0.1:0".parse::<SocketAddr>()?`, port 0 picks a free port).
///
/// ```
/// use framework::app::ListenAddr;
/// assert_eq!(ListenAddr::from(8081).0.port(), 8081);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl From<u16> for ListenAddr {
    fn from(port: u16) -> Self {
        ListenAddr(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
    }
}
impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr(addr)
    }
}
impl From<(IpAddr, u16)> for ListenAddr {
    fn from((ip, port): (IpAddr, u16)) -> Self {
        ListenAddr(SocketAddr::new(ip, port))
    }
}

/// Why an app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A custom handler was registered for a reserved opcode.
    #[error("opcode {opcode} is reserved for the framework (application opcodes are 200..=65535), registered at {origin}")]
    ReservedOpcode {
        /// The refused opcode.
        opcode: u16,
        /// Where it was registered.
        origin: String,
    },
    /// `override_websocket_handler` was given an opcode a client cannot send.
    #[error(
        "opcode {opcode} is not a built-in a client sends; it cannot be overridden (at {origin})"
    )]
    NotOverridable {
        /// The refused opcode.
        opcode: u16,
        /// Where it was registered.
        origin: String,
    },
    /// Two handlers for one opcode.
    #[error("opcode {opcode} has two handlers: {first} and {second}")]
    DuplicateHandler {
        /// The opcode.
        opcode: u16,
        /// The first registration.
        first: String,
        /// The second registration.
        second: String,
    },
    /// Two raw services on one port.
    #[error("port {port} has two raw WebSocket services: {first} and {second}")]
    DuplicateRawService {
        /// The port.
        port: u16,
        /// The first registration.
        first: String,
        /// The second registration.
        second: String,
    },
    /// A `channel_options` entry cannot be used (e.g. a history without a
    /// time-to-live).
    #[error("{0}")]
    ChannelOptions(String),
    /// Several of the errors above, all found at once (each on its own line).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<AppError>),
    /// Nothing to run.
    #[error("no service configured: call run_websocket_service, run_service or run_raw_websocket_service")]
    NoService,
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration (file or environment) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Authentication is configured with a key (or JWKS) that does not load.
    #[error("cannot set up authentication: {0}")]
    Auth(#[source] crate::node::AuthSetupError),
    /// The broker could not start (e.g. its engine cannot be reached).
    #[error("cannot start the broker: {0}")]
    Broker(#[source] BrokerError),
    /// A handler or hook needs shared state that was never registered.
    #[error("{user} needs state `{state}`, which was never registered: add it with App::with_state (or main!'s `state = ...`)")]
    MissingState {
        /// The handler or hook (its Rust path, and the opcode for handlers).
        user: String,
        /// The state's type.
        state: &'static str,
    },
    /// Waiting for a shutdown signal failed.
    #[error("cannot wait for a shutdown signal: {0}")]
    Signal(std::io::Error),
    /// TLS is configured with a certificate or key that does not load.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] crate::services::tls::TlsError),
}

type BrokerFuture = BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>>;
type BrokerFactory = Box<dyn FnOnce(Uuid, Arc<Hub>) -> BrokerFuture + Send>;

/// A raw service: where it listens, its handler, where it was registered, and the
/// environment variable `#[raw_ws(env = "..")]` named for its address.
struct RawService {
    addr: ListenAddr,
    declared_port: u16,
    handler: BoxedRawHandler,
    origin: String,
    env: Option<&'static str>,
}

struct Registration {
    opcode: u16,
    handler: BoxedHandler,
    origin: String,
}

/// Builds and runs a real-time server (the C++ guide's `framework::app`).
///
/// ```no_run
/// use framework::{App, dispatch::Request, helpers, Reply};
///
/// fn on_200(mut ctx: Request) -> Reply {
///     helpers::make_empty_response(&mut ctx, 200)
/// }
///
/// # async fn run() -> Result<(), framework::app::AppError> {
/// App::new()
///     .run_websocket_service(8081)
///     .register_custom_handler(200, on_200)
///     .run()
///     .await
/// # }
/// ```
pub struct App {
    config: Config,
    state: AppState,
    node_id: Option<Uuid>,
    websocket: Vec<ListenAddr>,
    services: Vec<ListenAddr>,
    raw: Vec<RawService>,
    router: Option<Router>,
    custom: Vec<Registration>,
    overrides: Vec<Registration>,
    connect_hooks: Vec<BoxedConnectHook>,
    disconnect_hooks: Vec<BoxedDisconnectHook>,
    authorizers: Vec<BoxedAuthorizer>,
    quotas: Vec<crate::config::QuotaRule>,
    channel_options: Vec<crate::config::ChannelOptions>,
    requirements: Vec<(u16, Vec<crate::config::Grant>)>,
    errors: Vec<AppError>,
    broker: Option<BrokerFactory>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("websocket", &self.websocket)
            .field("services", &self.services)
            .field("raw", &self.raw.iter().map(|r| r.addr).collect::<Vec<_>>())
            .field("custom_handlers", &self.custom.len())
            .finish()
    }
}

impl App {
    /// An app with default [`Config`] and no services.
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            state: AppState::default(),
            node_id: None,
            websocket: Vec::new(),
            services: Vec::new(),
            raw: Vec::new(),
            router: None,
            custom: Vec::new(),
            overrides: Vec::new(),
            connect_hooks: Vec::new(),
            disconnect_hooks: Vec::new(),
            authorizers: Vec::new(),
            quotas: Vec::new(),
            channel_options: Vec::new(),
            requirements: Vec::new(),
            errors: Vec::new(),
            broker: None,
        }
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Joins the cluster of nodes sharing the engine `cluster.url` (Redis or
    /// NATS; see [`ClusterConfig`](crate::config::ClusterConfig)): sets
    /// `Config::cluster`, so a later [`config`](Self::config) replaces it, and the
    /// configuration file and `FRAMEWORK_CLUSTER_*` variables of a `main!` app
    /// override it.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), framework::app::AppError> {
    /// use framework::config::ClusterConfig;
    /// let node = framework::App::new()
    ///     .cluster(ClusterConfig::new("nats://10.0.0.5:4222"))
    ///     .run_websocket_service(8081)
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster(mut self, cluster: crate::config::ClusterConfig) -> Self {
        self.config.cluster = Some(cluster);
        self
    }

    /// Serves TLS on every listener (`wss://`, `https://`), with the certificate
    /// chain and key of `tls` (see [`TlsConfig`](crate::config::TlsConfig)): sets
    /// `Config::tls`, so a later [`config`](Self::config) replaces it, and the
    /// configuration file and `FRAMEWORK_TLS_*` variables of a `main!` app
    /// override it.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), framework::app::AppError> {
    /// use framework::config::TlsConfig;
    /// let node = framework::App::new()
    ///     .tls(TlsConfig::new("/etc/framework/fullchain.pem", "/etc/framework/key.pem"))
    ///     .run_service(8443)
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, tls: crate::config::TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Configures history, presence and join/leave events for the channels
    /// matching `options.pattern` (see
    /// [`ChannelOptions`](crate::config::ChannelOptions)), after those of the
    /// configuration (`[[channel_options]]`); the first matching entry decides.
    ///
    /// ```
    /// use std::time::Duration;
    /// use framework::config::ChannelOptions;
    /// let app = framework::App::new().channel_options(
    ///     ChannelOptions::new("chat:*")
    ///         .history(100, Duration::from_secs(600))
    ///         .presence(true)
    ///         .join_leave(true),
    /// );
    /// # let _ = app;
    /// ```
    pub fn channel_options(mut self, options: crate::config::ChannelOptions) -> Self {
        self.channel_options.push(options);
        self
    }

    /// Adds a quota (see [`QuotaRule`](crate::config::QuotaRule)) to the
    /// configured ones (`Config::quotas`, which start as the defaults); quotas
    /// added here (and by `#[opcode(N, quota = "..")]`) stay whatever the
    /// configuration replaces.
    ///
    /// ```
    /// use framework::config::{QuotaRule, QuotaScope, Rate};
    /// let app = framework::App::new()
    ///     .quota(QuotaRule::opcode(200).frames("10/s burst 20".parse().unwrap()))
    ///     .quota(QuotaRule::opcode(201).per(QuotaScope::Ip).frames(Rate::per_second(100)));
    /// # let _ = app;
    /// ```
    pub fn quota(mut self, rule: crate::config::QuotaRule) -> Self {
        self.quotas.push(rule);
        self
    }

    /// Lets only senders matching one of `grants` send application opcode `opcode`
    /// (others get `Forbidden`, or `Unauthorized` when anonymous, and the handler
    /// is not called); adds to `[permissions.opcodes]`.
    ///
    /// ```
    /// use framework::config::Grant;
    /// let app = framework::App::new()
    ///     .require(200, [Grant::Authenticated])
    ///     .require(201, ["claim:role=admin".parse::<Grant>().unwrap()]);
    /// # let _ = app;
    /// ```
    pub fn require(
        mut self,
        opcode: u16,
        grants: impl IntoIterator<Item = crate::config::Grant>,
    ) -> Self {
        self.requirements
            .push((opcode, grants.into_iter().collect()));
        self
    }

    /// Adds shared state of type `T`, available to handlers via
    /// [`Request::state_of`](crate::dispatch::Request::state_of).
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Fixes this node's id (default: a random UUID per start).
    pub fn node_id(mut self, id: Uuid) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Uses a cluster broker instead of the in-memory one. The factory receives the
    /// node id and the node's hub, through which it delivers locally; it runs when
    /// the app starts and may fail (an engine that cannot be reached): `start` then
    /// fails with [`AppError::Broker`] and its cause.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use framework::broker::{Broker, BrokerError, InMemoryBroker};
    ///
    /// let app = framework::App::new().broker(|node_id, hub| async move {
    ///     Ok::<_, BrokerError>(Arc::new(InMemoryBroker::new(node_id, hub)) as Arc<dyn Broker>)
    /// });
    /// # let _ = app;
    /// ```
    pub fn broker<F, Fut>(mut self, factory: F) -> Self
    where
        F: FnOnce(Uuid, Arc<Hub>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn Broker>, BrokerError>> + Send + 'static,
    {
        self.broker = Some(Box::new(move |id, hub| Box::pin(factory(id, hub))));
        self
    }

    /// Runs `hook` when a protocol connection asks to upgrade (on both
    /// `run_websocket_service` and `run_service`), before the WebSocket exists: it
    /// sees the upgrade request (headers, query, peer address) through its
    /// extractors and may refuse the connection with an HTTP status or attach
    /// values to it (see [`hooks`](crate::dispatch::hooks)). Hooks run in the order
    /// they were added (those of `#[on_connect]` first, by source position).
    ///
    /// ```
    /// use framework::dispatch::{hooks::{PeerAddr, Refusal}, Extension};
    ///
    /// #[derive(Clone)]
    /// struct Guest(bool);
    ///
    /// fn mark(PeerAddr(peer): PeerAddr) -> Result<Extension<Guest>, Refusal> {
    ///     if peer.ip().is_unspecified() {
    ///         return Err(Refusal::forbidden("no"));
    ///     }
    ///     Ok(Extension(Guest(!peer.ip().is_loopback())))
    /// }
    /// let _ = framework::App::new().on_connect(mark);
    /// ```
    pub fn on_connect<T, H: ConnectHook<T>>(mut self, hook: H) -> Self {
        self.connect_hooks.push(BoxedConnectHook::new(hook));
        self
    }

    /// Runs `hook` after each protocol session ended, before it leaves its channels
    /// (see [`hooks`](crate::dispatch::hooks)).
    pub fn on_disconnect<T, H: DisconnectHook<T>>(mut self, hook: H) -> Self {
        self.disconnect_hooks.push(BoxedDisconnectHook::new(hook));
        self
    }

    /// Adds an authorizer: a sync or async function of handler arguments that
    /// decides, for every frame an authorization rule could govern (`Subscribe`,
    /// `Publish`, `Presence`, `History`, `Send`, `Broadcast`, application
    /// opcodes), whether it may proceed — after the configured rules and quotas
    /// allowed it, before its handler (see
    /// [`authorize`](crate::dispatch::authorize)). Authorizers run in the order
    /// they were added (those of `#[authorize]` first); each must allow.
    ///
    /// ```
    /// use framework::dispatch::authorize::Attempt;
    /// use framework::node::{Action, Denied, Identity};
    ///
    /// /// Only the owner of `doc:<user>:*` may publish there.
    /// fn own_documents(attempt: Attempt, who: Option<Identity>) -> Result<(), Denied> {
    ///     match (attempt.action(), who) {
    ///         (Action::Publish(ch), Some(who)) if ch.starts_with("doc:") => {
    ///             let owner = ch.split(':').nth(1).unwrap_or_default();
    ///             if owner == who.user_id() { Ok(()) } else { Err(Denied::Forbidden) }
    ///         }
    ///         (Action::Publish(ch), None) if ch.starts_with("doc:") => Err(Denied::Unauthenticated),
    ///         _ => Ok(()),
    ///     }
    /// }
    /// let _ = framework::App::new().authorize(own_documents);
    /// ```
    pub fn authorize<T: 'static, A: Authorizer<T>>(mut self, authorizer: A) -> Self {
        self.authorizers.push(BoxedAuthorizer::new(authorizer));
        self
    }

    /// Puts the macros' hooks and authorizers before those added with the builder.
    pub(crate) fn prepend_hooks(
        mut self,
        connect: Vec<BoxedConnectHook>,
        disconnect: Vec<BoxedDisconnectHook>,
        authorizers: Vec<BoxedAuthorizer>,
    ) -> Self {
        self.connect_hooks.splice(0..0, connect);
        self.disconnect_hooks.splice(0..0, disconnect);
        self.authorizers.splice(0..0, authorizers);
        self
    }

    /// Serves the protocol over WebSocket on `addr` (C++ `run_websocket_service`).
    pub fn run_websocket_service(mut self, addr: impl Into<ListenAddr>) -> Self {
        self.websocket.push(addr.into());
        self
    }

    /// Serves HTTP and the protocol WebSocket on one port (C++ `run_service`): the
    /// upgrade path (`Config::websocket_path`, default `/ws`) speaks the protocol
    /// exactly like `run_websocket_service`; `/`, `/healthz` (liveness), `/readyz`
    /// (readiness), `/metrics` and the server API (`/api/*`, with
    /// `Config::api_key`) are built in, and routes from [`router`](Self::router)
    /// are merged in.
    pub fn run_service(mut self, addr: impl Into<ListenAddr>) -> Self {
        self.services.push(addr.into());
        self
    }

    /// Merges the application's own axum routes into every `run_service` port.
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(match self.router.take() {
            Some(r) => r.merge(router),
            None => router,
        });
        self
    }

    /// Serves raw WebSocket on `addr`: `handler` is called once per connection with
    /// its [`RawConnection`](crate::raw::RawConnection) (C++ `run_raw_websocket_service`).
    #[track_caller]
    pub fn run_raw_websocket_service<M, H: RawHandler<M>>(
        self,
        addr: impl Into<ListenAddr>,
        handler: H,
    ) -> Self {
        let origin = Location::caller().to_string();
        self.raw_service_boxed(addr.into(), handler.into_boxed(), origin, None)
    }

    /// [`run_raw_websocket_service`](Self::run_raw_websocket_service) with an
    /// erased handler and an explicit origin (used by the macros' registry); `env`
    /// names an environment variable that overrides its address.
    pub fn raw_service_boxed(
        mut self,
        addr: ListenAddr,
        handler: BoxedRawHandler,
        origin: String,
        env: Option<&'static str>,
    ) -> Self {
        let port = addr.0.port();
        if let Some(first) = self
            .raw
            .iter()
            .find(|r| port != 0 && r.declared_port == port)
        {
            self.errors.push(AppError::DuplicateRawService {
                port,
                first: first.origin.clone(),
                second: origin,
            });
            return self;
        }
        self.raw.push(RawService {
            addr,
            declared_port: port,
            handler,
            origin,
            env,
        });
        self
    }

    /// Layers a TOML file (when given) and the `FRAMEWORK_*` environment variables
    /// over the configuration and listener addresses set in code (see
    /// [`Settings`] for every key). `main!` binaries do
    /// this at start (the file from `--config <path>` or `FRAMEWORK_CONFIG`). An
    /// unknown key or a bad value is [`AppError::Config`].
    ///
    /// ```
    /// # fn f() -> Result<(), framework::app::AppError> {
    /// let app = framework::App::new()
    ///     .run_websocket_service(8081)
    ///     .configure(None)?; // FRAMEWORK_WEBSOCKET=9000 would move it to 9000
    /// # let _ = app; Ok(()) }
    /// ```
    pub fn configure(mut self, file: Option<&std::path::Path>) -> Result<Self, AppError> {
        let code = Settings {
            config: self.config.clone(),
            websocket: self.websocket.first().map(|a| ListenSpec(a.0)),
            service: self.services.first().map(|a| ListenSpec(a.0)),
            raw: self
                .raw
                .iter()
                .map(|r| (r.declared_port, ListenSpec(r.addr.0)))
                .collect(),
        };
        let settings = code.clone().load(file)?;
        self.config = settings.config;
        if settings.websocket != code.websocket {
            self.websocket = settings
                .websocket
                .map(|s| ListenAddr(s.0))
                .into_iter()
                .collect();
        }
        if settings.service != code.service {
            self.services = settings
                .service
                .map(|s| ListenAddr(s.0))
                .into_iter()
                .collect();
        }
        for (port, spec) in settings.raw {
            let declared: Vec<String> = self
                .raw
                .iter()
                .map(|r| r.declared_port.to_string())
                .collect();
            let Some(raw) = self.raw.iter_mut().find(|r| r.declared_port == port) else {
                return Err(ConfigError::NoSuchRawService(port, declared.join(", ")).into());
            };
            raw.addr = ListenAddr(spec.0);
        }
        // The variable a `#[raw_ws(env = "..")]` names has the last word.
        for raw in &mut self.raw {
            let Some(var) = raw.env else { continue };
            if let Ok(value) = std::env::var(var) {
                let spec: ListenSpec = value.parse().map_err(|e: String| {
                    AppError::Config(ConfigError::Invalid(Box::new(figment::Error::from(
                        format!("{var}: {e}"),
                    ))))
                })?;
                raw.addr = ListenAddr(spec.0);
            }
        }
        Ok(self)
    }

    /// Handles application opcode `opcode` (200..=65535) with `handler` (C++
    /// `register_custom_handler`). A reserved opcode makes `start` fail.
    #[track_caller]
    pub fn register_custom_handler<T: 'static, H: Handler<T>>(
        mut self,
        opcode: u16,
        handler: H,
    ) -> Self {
        let origin = Location::caller().to_string();
        self.register_custom_boxed(opcode, handler.into_boxed(), origin);
        self
    }

    /// [`register_custom_handler`](Self::register_custom_handler) with an already
    /// erased handler and an explicit origin (used by the macros' registry).
    pub fn register_custom_boxed(&mut self, opcode: u16, handler: BoxedHandler, origin: String) {
        if opcode < FIRST_APPLICATION_OPCODE {
            self.errors
                .push(AppError::ReservedOpcode { opcode, origin });
            return;
        }
        self.custom.push(Registration {
            opcode,
            handler,
            origin,
        });
    }

    /// Replaces a built-in opcode's handler (C++ `override_websocket_handler`).
    #[track_caller]
    pub fn override_websocket_handler<T: 'static, H: Handler<T>>(
        mut self,
        opcode: Opcode,
        handler: H,
    ) -> Self {
        let origin = Location::caller().to_string();
        self.override_boxed(opcode, handler.into_boxed(), origin);
        self
    }

    /// [`override_websocket_handler`](Self::override_websocket_handler) with an
    /// erased handler and an explicit origin.
    pub fn override_boxed(&mut self, opcode: Opcode, handler: BoxedHandler, origin: String) {
        if !crate::builtins::is_overridable(opcode.0) {
            self.errors.push(AppError::NotOverridable {
                opcode: opcode.0,
                origin,
            });
            return;
        }
        self.overrides.push(Registration {
            opcode: opcode.0,
            handler,
            origin,
        });
    }

    /// Every registration error, reported at once: one as itself, several as
    /// [`AppError::Several`].
    fn registration_errors(&mut self) -> Result<(), AppError> {
        let mut errors: Vec<AppError> = self.errors.drain(..).collect();
        errors.extend(
            self.config
                .channel_options
                .iter()
                .chain(&self.channel_options)
                .filter_map(|o| o.problem())
                .map(AppError::ChannelOptions),
        );
        for group in [&self.overrides, &self.custom] {
            let mut seen: std::collections::HashMap<u16, &str> = Default::default();
            for r in group.iter() {
                if let Some(first) = seen.insert(r.opcode, &r.origin) {
                    errors.push(AppError::DuplicateHandler {
                        opcode: r.opcode,
                        first: first.to_string(),
                        second: r.origin.clone(),
                    });
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(AppError::Several(errors)),
        }
    }

    fn handler_table(&mut self) -> Result<HandlerTable, AppError> {
        self.registration_errors()?;
        let mut table = HandlerTable::new();
        for builtin in crate::builtins::BUILTINS {
            if let Some(make) = builtin.default {
                table.insert(builtin.opcode.0, make());
            }
        }
        if self.config.auth.is_some() {
            // With authentication, Auth frames present and refresh tokens.
            table.insert(Opcode::Auth.0, BoxedHandler::new(crate::builtins::auth));
        }
        for r in self.overrides.iter().chain(&self.custom) {
            table.insert(r.opcode, r.handler.clone());
        }
        Ok(table)
    }

    /// Every handler's and hook's state needs, checked against the registered state.
    fn check_state(&self, table: &HandlerTable) -> Result<(), AppError> {
        let missing = |need: &StateNeed| !self.state.contains(need.type_id);
        for (opcode, handler) in table.iter() {
            if let Some(need) = handler.state_needs().iter().find(|n| missing(n)) {
                return Err(AppError::MissingState {
                    user: format!("the handler of opcode {opcode} (`{}`)", handler.name()),
                    state: need.type_name,
                });
            }
        }
        let hooks = self
            .connect_hooks
            .iter()
            .map(|h| (h.name(), h.state_needs()))
            .chain(
                self.disconnect_hooks
                    .iter()
                    .map(|h| (h.name(), h.state_needs())),
            )
            .chain(self.authorizers.iter().map(|a| (a.name(), a.state_needs())));
        for (name, needs) in hooks {
            if let Some(need) = needs.iter().find(|n| missing(n)) {
                return Err(AppError::MissingState {
                    user: format!("the hook `{name}`"),
                    state: need.type_name,
                });
            }
        }
        Ok(())
    }

    /// The node, its dispatcher and the hooks, without any listener: checks the
    /// registrations and the state, then starts the broker.
    pub(crate) async fn assemble(&mut self) -> Result<Arc<Dispatcher>, AppError> {
        let table = self.handler_table()?;
        self.check_state(&table)?;
        let node_id = self.node_id.unwrap_or_else(Uuid::new_v4);
        let hub = Arc::new(Hub::new(
            self.config.max_channels_per_session,
            self.config.max_subscribers_per_channel,
        ));
        let broker: Arc<dyn Broker> = match (self.broker.take(), &self.config.cluster) {
            (Some(factory), _) => factory(node_id, hub.clone())
                .await
                .map_err(AppError::Broker)?,
            (None, Some(cluster)) => Arc::new(
                crate::cluster::connect(cluster, node_id, hub.clone())
                    .await
                    .map_err(AppError::Broker)?,
            ),
            (None, None) => Arc::new(InMemoryBroker::with_history_limit(
                node_id,
                hub.clone(),
                self.config.max_history_bytes,
            )),
        };
        let verifier = match &self.config.auth {
            Some(auth) => Some(Verifier::new(auth).await.map_err(AppError::Auth)?),
            None => None,
        };
        let mut config = self.config.clone();
        config.quotas.extend(self.quotas.iter().cloned());
        config
            .channel_options
            .extend(self.channel_options.iter().cloned());
        let node = Node::new(
            hub,
            broker,
            config,
            std::mem::take(&mut self.state),
            verifier,
            &self.requirements,
        );
        node.watch_departures();
        let hooks = Hooks {
            connect: std::mem::take(&mut self.connect_hooks).into(),
            disconnect: std::mem::take(&mut self.disconnect_hooks).into(),
            authorize: std::mem::take(&mut self.authorizers).into(),
        };
        Ok(Arc::new(Dispatcher::new(node, table, hooks)))
    }

    /// Binds every configured service and starts serving; returns at once with a
    /// handle that knows the bound addresses.
    pub async fn start(mut self) -> Result<AppHandle, AppError> {
        if self.websocket.is_empty() && self.services.is_empty() && self.raw.is_empty() {
            return Err(AppError::NoService);
        }
        // Registration errors first: nothing is bound for an app that cannot run
        // (and the error is the registration's, not a port taken meanwhile).
        self.registration_errors()?;
        // A certificate that does not load fails start before anything is bound.
        let tls = match &self.config.tls {
            Some(config) => Some(crate::services::tls::Tls::new(config).map_err(AppError::Tls)?),
            None => None,
        };
        // Bind everything first: a port in use fails start before anything serves.
        let backlog = self.config.listen_backlog;
        let websocket = bind_all(&self.websocket, backlog)?;
        let services = bind_all(&self.services, backlog)?;
        let raw_addrs: Vec<ListenAddr> = self.raw.iter().map(|r| r.addr).collect();
        let raw = bind_all(&raw_addrs, backlog)?;

        let dispatcher = self.assemble().await?;
        let hooks = dispatcher.hooks().clone();
        let node = dispatcher.node().clone();
        let node_id = node.node_id();
        let protocol = Service::Protocol(dispatcher);
        let draining = CancellationToken::new();
        let shared = Arc::new(Shared {
            node: node.clone(),
            admission: Admission::new(node.clone(), draining.clone(), hooks),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let state = |service: Service| HttpState {
            shared: shared.clone(),
            service,
        };

        let mut accept_loops = Vec::new();
        if !node.quotas().is_empty() {
            // Per-address budgets that are full again are forgotten, so addresses
            // that came and went cost nothing.
            let (node, shutdown) = (node.clone(), shared.shutdown.clone());
            accept_loops.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tick.tick() => node.quotas().retain_recent(),
                    }
                }
            }));
        }
        if let Some(tls) = &tls {
            let hangup = crate::services::tls::hangup();
            let watch = tls
                .clone()
                .watch(node.clone(), shared.shutdown.clone(), hangup);
            accept_loops.push(tokio::spawn(watch));
        }
        // With TLS, `run_service` offers HTTP/2 (for WebSockets over extended
        // CONNECT); the WebSocket-only listeners HTTP/1.1 alone.
        let mut listen = |listener: TcpListener, routes: Routes, h2: bool| {
            let acceptor = tls.as_ref().map(|t| t.acceptor(h2));
            accept_loops.push(tokio::spawn(crate::services::accept::serve(
                listener,
                routes,
                shared.clone(),
                acceptor,
            )));
        };
        let websocket_addrs = local_addrs(&websocket);
        let upgrade_only = crate::services::http::upgrade_only(state(protocol.clone()));
        for l in websocket {
            listen(l, upgrade_only.clone(), false);
        }
        let raw_addrs = local_addrs(&raw);
        for (l, r) in raw.into_iter().zip(&self.raw) {
            let raw_service = Service::Raw(r.handler.0.clone());
            listen(
                l,
                crate::services::http::upgrade_only(state(raw_service)),
                false,
            );
        }
        let service_addrs = local_addrs(&services);
        let router = crate::services::http::router(state(protocol), self.router.take());
        for l in services {
            listen(l, Routes::Router(router.clone()), true);
        }
        tracing::info!(
            node = %node_id,
            websocket = ?websocket_addrs,
            service = ?service_addrs,
            raw = ?raw_addrs,
            tls = tls.is_some(),
            "serving"
        );
        Ok(AppHandle {
            node,
            websocket_addrs,
            service_addrs,
            raw_addrs,
            shutdown: shared.shutdown.clone(),
            draining,
            tracker: shared.tracker.clone(),
            accept_loops,
            tls,
        })
    }

    /// Starts, serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> Result<(), AppError> {
        let signals = ShutdownSignals::install()?;
        let handle = self.start().await?;
        signals.wait().await?;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    }
}
