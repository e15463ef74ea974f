//! Handlers are plain functions of extractors, sync or async. [`Handler`] is
//! implemented (by one `macro_rules!` over tuples) for every such function of up
//! to 16 arguments; [`BoxedHandler`] erases one for the dispatch table.

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::extract::{FromRequest, StateNeed};
use super::reply::{AsyncReply, Encoded, Outcome, ReplyCtx, ReplyMeta, Settled, SyncReply};
use super::{HandlerError, IntoReply, Request};
use crate::session::Connection;

/// What calling a handler yields: the encoded reply at once (sync handlers with
/// sync extractors, no allocation), or a future of it.
#[doc(hidden)]
pub enum Call {
    /// The reply frame, if any.
    Ready(Option<Encoded>),
    /// An async handler or extractor: the reply frame, later.
    Pending(BoxFuture<'static, Option<Encoded>>),
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Call::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// A function that answers protocol frames: a sync or async function (or
/// closure) whose arguments are extractors — `Request` by value, [`Connection`],
/// [`State<T>`](super::State), [`Extension<T>`](super::Extension),
/// [`Trace`](super::Trace), [`Body`](super::Body), your own
/// [`FromRequestParts`](super::FromRequestParts) /
/// [`AsyncFromRequestParts`](super::AsyncFromRequestParts) types — and at most one
/// typed message (a `#[derive(Message)]` type or a flatc table), returning any
/// [`IntoReply`]. The `T` parameter only tells the impls apart; you never name it.
///
/// The same function goes into `#[opcode(N)]`,
/// [`App::register_custom_handler`](crate::App::register_custom_handler) and
/// [`App::override_websocket_handler`](crate::App::override_websocket_handler).
/// A panic in a handler or an extractor is caught: the client gets
/// `Error`/`Internal`, the connection and the server live on.
///
/// ```
/// use framework::dispatch::{Handler, State};
/// use framework::{App, HandlerError, Request};
/// use framework::session::Connection;
///
/// #[derive(framework::Message)]
/// struct Line { text: String }
///
/// struct Greeting(String);
///
/// fn sync_handler(ctx: Request) -> Vec<u8> { ctx.body().to_vec() }
/// async fn async_handler(conn: Connection, line: Line) -> Result<Line, HandlerError> {
///     Ok(Line { text: format!("{} said {}", conn.id(), line.text) })
/// }
/// fn with_state(State(g): State<Greeting>, ctx: Request) -> Option<Vec<u8>> {
///     (!ctx.body().is_empty()).then(|| g.0.clone().into_bytes())
/// }
///
/// fn takes<T: 'static>(_: impl Handler<T>) {}
/// takes(sync_handler);
/// takes(async_handler);
/// takes(|| ());
///
/// let _app = App::new()
///     .with_state(Greeting("hi".into()))
///     .register_custom_handler(200, sync_handler)
///     .register_custom_handler(201, async_handler)
///     .register_custom_handler(202, with_state);
/// ```
pub trait Handler<T: 'static>: Clone + Send + Sync + Sized + 'static {
    /// Handles one request; `name` is for the panic log.
    #[doc(hidden)]
    fn call(&self, req: Request, conn: &Connection, name: &'static str) -> Call;

    /// Shared state the handler's arguments cannot work without.
    #[doc(hidden)]
    fn state_needs() -> Vec<StateNeed> {
        Vec::new()
    }

    /// Whether the handler decides itself over quota (it takes `QuotaResult`).
    #[doc(hidden)]
    fn decides_quota() -> bool {
        false
    }

    /// Erases the handler.
    #[doc(hidden)]
    fn into_boxed(self) -> BoxedHandler {
        BoxedHandler(Arc::new(Erased {
            handler: self,
            name: std::any::type_name::<Self>(),
            _marker: PhantomData::<fn() -> T>,
        }))
    }
}

pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, req: Request, conn: &Connection) -> Call;
    fn name(&self) -> &'static str;
    fn state_needs(&self) -> Vec<StateNeed>;
    fn decides_quota(&self) -> bool;
}

struct Erased<H, T> {
    handler: H,
    name: &'static str,
    _marker: PhantomData<fn() -> T>,
}

impl<H: Handler<T>, T: 'static> ErasedHandler for Erased<H, T> {
    fn call(&self, req: Request, conn: &Connection) -> Call {
        self.handler.call(req, conn, self.name)
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn state_needs(&self) -> Vec<StateNeed> {
        H::state_needs()
    }
    fn decides_quota(&self) -> bool {
        H::decides_quota()
    }
}

/// A type-erased handler, ready for the dispatch table.
///
/// ```
/// use framework::dispatch::{BoxedHandler, Request};
/// let h = BoxedHandler::new(|_ctx: Request| ());
/// assert!(h.name().contains("closure"));
/// ```
#[derive(Clone)]
pub struct BoxedHandler(pub(crate) Arc<dyn ErasedHandler>);

impl std::fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxedHandler").field(&self.0.name()).finish()
    }
}

impl BoxedHandler {
    /// Erases any [`Handler`].
    pub fn new<T: 'static, H: Handler<T>>(handler: H) -> Self {
        handler.into_boxed()
    }

    /// The handler's name (its Rust path), as logs show it.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub(crate) fn state_needs(&self) -> Vec<StateNeed> {
        self.0.state_needs()
    }

    /// Whether the handler decides itself over quota (it takes `QuotaResult`).
    pub(crate) fn decides_quota(&self) -> bool {
        self.0.decides_quota()
    }

    pub(crate) fn call(&self, req: Request, conn: &Connection) -> Call {
        self.0.call(req, conn)
    }
}

/// Marks [`BoxedHandler`] as a [`Handler`].
#[doc(hidden)]
#[derive(Debug)]
pub enum Boxed {}

impl Handler<Boxed> for BoxedHandler {
    fn call(&self, req: Request, conn: &Connection, _: &'static str) -> Call {
        self.0.call(req, conn)
    }
    fn into_boxed(self) -> BoxedHandler {
        self
    }
    fn decides_quota() -> bool {
        false
    }
}

/// A handler or extractor panicked: logged with the opcode and the handler,
/// answered `Error`/`Internal`.
#[doc(hidden)]
pub fn panicked(meta: &ReplyMeta, name: &'static str) -> Option<Encoded> {
    tracing::error!(opcode = meta.opcode, handler = name, "handler panicked");
    meta.encode_error(&HandlerError::internal())
}

/// What a sync attempt at a request came to.
#[doc(hidden)]
pub enum Step<F> {
    /// The reply frame, if any.
    Done(Option<Encoded>),
    /// The handler is async: its future.
    Wait(F),
}

/// Awaits an async handler's future and encodes its reply, answering a panic.
#[doc(hidden)]
pub fn finish_later<F>(fut: F, meta: ReplyMeta, conn: Connection, name: &'static str) -> Call
where
    F: std::future::Future + Send + 'static,
    F::Output: IntoReply,
{
    Call::Pending(Box::pin(async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(reply) => {
                let ctx = ReplyCtx { meta, conn: &conn };
                std::panic::catch_unwind(AssertUnwindSafe(|| reply.encode_reply(&ctx)))
                    .unwrap_or_else(|_| panicked(&meta, name))
            }
            Err(_) => panicked(&meta, name),
        }
    }))
}

/// Type-level counts of a handler's typed messages and `Request`s: each
/// argument's marker says what it is, and a second message or `Request` has no
/// sum, so the typed constructors refuse it at compile time.
#[doc(hidden)]
pub mod tally {
    use crate::dispatch::extract::{
        ViaAsync, ViaMessage, ViaOwnedTable, ViaParts, ViaRequest, ViaTable,
    };

    /// None so far.
    pub enum Zero {}
    /// One so far.
    pub enum One {}

    /// What an argument's marker counts as.
    pub trait Kind {
        /// `One` for typed messages.
        type Message;
        /// `One` for the `Request`.
        type Request;
    }
    macro_rules! kind {
        ($($marker:ty => $message:ty, $request:ty;)*) => {
            $(impl Kind for $marker { type Message = $message; type Request = $request; })*
        };
    }
    kind! {
        ViaParts => Zero, Zero;
        ViaAsync => Zero, Zero;
        ViaMessage => One, Zero;
        ViaTable => One, Zero;
        ViaOwnedTable => One, Zero;
        ViaRequest => Zero, One;
    }

    /// Adds a typed message to the count.
    #[diagnostic::on_unimplemented(
        message = "a handler takes at most one typed message: a frame carries one payload",
        label = "this handler takes two"
    )]
    pub trait AddMessage<B> {
        /// The sum.
        type Sum;
    }
    /// Adds a `Request` to the count.
    #[diagnostic::on_unimplemented(
        message = "a handler takes the `Request` at most once: it can be moved into one argument only",
        label = "this handler takes it twice"
    )]
    pub trait AddRequest<B> {
        /// The sum.
        type Sum;
    }
    macro_rules! sums {
        ($tr:ident) => {
            impl $tr<Zero> for Zero {
                type Sum = Zero;
            }
            impl $tr<One> for Zero {
                type Sum = One;
            }
            impl $tr<Zero> for One {
                type Sum = One;
            }
        };
    }
    sums!(AddMessage);
    sums!(AddRequest);

    /// The counts of a list of markers `(M1, (M2, (.., ())))`.
    pub trait Tally {
        /// Typed messages.
        type Messages;
        /// `Request`s.
        type Requests;
    }
    impl Tally for () {
        type Messages = Zero;
        type Requests = Zero;
    }
    impl<H: Kind, T: Tally> Tally for (H, T)
    where
        H::Message: AddMessage<T::Messages>,
        H::Request: AddRequest<T::Requests>,
    {
        type Messages = <H::Message as AddMessage<T::Messages>>::Sum;
        type Requests = <H::Request as AddRequest<T::Requests>>::Sum;
    }
}

macro_rules! nest {
    () => { () };
    ($M:ident $(, $rest:ident)*) => { ($M, nest!($($rest),*)) };
}
pub(crate) use nest;

// One impl per arity. Extraction is two-step (see `FromRequest`): every argument
// is extracted from `&Request` first, then the `Request` is moved into the one
// argument that takes it. When no argument takes it, typed messages borrow the
// payload from the request; otherwise from a refcounted clone of it.
macro_rules! impl_handler {
    ($($T:ident $M:ident $v:ident),*) => {
        #[allow(non_snake_case)]
        impl<F, R, MR, $($T, $M,)*> Handler<(MR, $(($M, $T),)*)> for F
        where
            F: Fn($($T),*) -> R
                + for<'b> Fn($(<$T as FromRequest<$M>>::At<'b>),*) -> R
                + Clone
                + Send
                + Sync
                + 'static,
            R: Outcome<MR>,
            MR: 'static,
            nest!($($M),*): tally::Tally,
            $($T: FromRequest<$M>, $M: 'static,)*
        {
            #[allow(unused_mut, unused_variables, clippy::let_unit_value)]
            fn call(&self, req: Request, conn: &Connection, name: &'static str) -> Call {
                let meta = req.reply_meta();
                let moves_request = false $(|| <$T as FromRequest<$M>>::IS_REQUEST)*;
                if !(false $(|| <$T as FromRequest<$M>>::ASYNC)*) {
                    let run = AssertUnwindSafe(|| -> Result<Step<R::Future>, HandlerError> {
                        let settled = if moves_request {
                            let body = req.body.clone();
                            $(let $v = <$T as FromRequest<$M>>::extract(&req, &body)?;)*
                            let mut slot = Some(req);
                            $(let $v = <$T as FromRequest<$M>>::finish($v, &mut slot);)*
                            self($($v),*).settle()
                        } else {
                            let body = &req.body;
                            $(let $v = <$T as FromRequest<$M>>::extract(&req, body)?;)*
                            $(let $v = <$T as FromRequest<$M>>::finish($v, &mut None);)*
                            self($($v),*).settle()
                        };
                        Ok(match settled {
                            Settled::Now(reply) => Step::Done(reply.encode_reply(&ReplyCtx { meta, conn })),
                            Settled::Later(fut) => Step::Wait(fut),
                        })
                    });
                    match std::panic::catch_unwind(run) {
                        Ok(Ok(Step::Done(reply))) => Call::Ready(reply),
                        Ok(Ok(Step::Wait(fut))) => finish_later(fut, meta, conn.clone(), name),
                        Ok(Err(e)) => Call::Ready(meta.encode_error(&e)),
                        Err(_) => Call::Ready(panicked(&meta, name)),
                    }
                } else {
                    let f = self.clone();
                    let conn = conn.clone();
                    Call::Pending(Box::pin(async move {
                        let run = async {
                            let settled = if moves_request {
                                let body = req.body.clone();
                                $(let $v = <$T as FromRequest<$M>>::extract_async(&req, &body).await?;)*
                                let mut slot = Some(req);
                                $(let $v = <$T as FromRequest<$M>>::finish($v, &mut slot);)*
                                f($($v),*).settle()
                            } else {
                                let body = &req.body;
                                $(let $v = <$T as FromRequest<$M>>::extract_async(&req, body).await?;)*
                                $(let $v = <$T as FromRequest<$M>>::finish($v, &mut None);)*
                                f($($v),*).settle()
                            };
                            Ok::<_, HandlerError>(match settled {
                                Settled::Now(reply) => reply,
                                Settled::Later(fut) => fut.await,
                            })
                        };
                        match AssertUnwindSafe(run).catch_unwind().await {
                            Ok(Ok(reply)) => {
                                let ctx = ReplyCtx { meta, conn: &conn };
                                std::panic::catch_unwind(AssertUnwindSafe(|| reply.encode_reply(&ctx)))
                                    .unwrap_or_else(|_| panicked(&meta, name))
                            }
                            Ok(Err(e)) => meta.encode_error(&e),
                            Err(_) => panicked(&meta, name),
                        }
                    }))
                }
            }

            fn state_needs() -> Vec<StateNeed> {
                let all: &[Option<StateNeed>] = &[$(<$T as FromRequest<$M>>::state_need()),*];
                all.iter().flatten().copied().collect()
            }

            fn decides_quota() -> bool {
                false $(|| <$T as FromRequest<$M>>::decides_quota())*
            }
        }
    };
}

impl_handler!();
impl_handler!(T1 M1 a1);
impl_handler!(T1 M1 a1, T2 M2 a2);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11, T12 M12 a12);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11, T12 M12 a12, T13 M13 a13);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11, T12 M12 a12, T13 M13 a13, T14 M14 a14);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11, T12 M12 a12, T13 M13 a13, T14 M14 a14, T15 M15 a15);
impl_handler!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8, T9 M9 a9, T10 M10 a10, T11 M11 a11, T12 M12 a12, T13 M13 a13, T14 M14 a14, T15 M15 a15, T16 M16 a16);

// Typed constructors for the macros: the argument and return types are given, so
// a wrong one is one error naming it (not "this function is not a handler"), and
// `BoxedHandler::new` is then certain to apply.
macro_rules! typed_constructors {
    ($sync:ident $async_:ident $($T:ident $M:ident),*) => {
        #[doc(hidden)]
        pub fn $sync<$($T, $M,)* R, F>(f: F) -> BoxedHandler
        where
            F: Fn($($T),*) -> R
                + for<'b> Fn($(<$T as FromRequest<$M>>::At<'b>),*) -> R
                + Clone
                + Send
                + Sync
                + 'static,
            R: IntoReply + Send + 'static,
            nest!($($M),*): tally::Tally,
            $($T: FromRequest<$M>, $M: 'static,)*
        {
            BoxedHandler::new::<(SyncReply, $(($M, $T),)*), F>(f)
        }

        #[doc(hidden)]
        pub fn $async_<$($T, $M,)* O, R, F>(f: F) -> BoxedHandler
        where
            F: Fn($($T),*) -> R
                + for<'b> Fn($(<$T as FromRequest<$M>>::At<'b>),*) -> R
                + Clone
                + Send
                + Sync
                + 'static,
            R: std::future::Future<Output = O> + Send + 'static,
            O: IntoReply + Send,
            nest!($($M),*): tally::Tally,
            $($T: FromRequest<$M>, $M: 'static,)*
        {
            BoxedHandler::new::<(AsyncReply, $(($M, $T),)*), F>(f)
        }
    };
}

/// The macros' typed constructors, by arity.
#[doc(hidden)]
pub mod typed {
    use super::*;
    typed_constructors!(sync0 async0);
    typed_constructors!(sync1 async1 T1 M1);
    typed_constructors!(sync2 async2 T1 M1, T2 M2);
    typed_constructors!(sync3 async3 T1 M1, T2 M2, T3 M3);
    typed_constructors!(sync4 async4 T1 M1, T2 M2, T3 M3, T4 M4);
    typed_constructors!(sync5 async5 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5);
    typed_constructors!(sync6 async6 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6);
    typed_constructors!(sync7 async7 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7);
    typed_constructors!(sync8 async8 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8);
    typed_constructors!(sync9 async9 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9);
    typed_constructors!(sync10 async10 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10);
    typed_constructors!(sync11 async11 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11);
    typed_constructors!(sync12 async12 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11, T12 M12);
    typed_constructors!(sync13 async13 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11, T12 M12, T13 M13);
    typed_constructors!(sync14 async14 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11, T12 M12, T13 M13, T14 M14);
    typed_constructors!(sync15 async15 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11, T12 M12, T13 M13, T14 M14, T15 M15);
    typed_constructors!(sync16 async16 T1 M1, T2 M2, T3 M3, T4 M4, T5 M5, T6 M6, T7 M7, T8 M8, T9 M9, T10 M10, T11 M11, T12 M12, T13 M13, T14 M14, T15 M15, T16 M16);
}
