use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{HandlerError, IntoReply, Reply, Request};

/// What calling an erased handler yields: sync handlers answer without allocating.
pub(crate) enum HandlerFuture {
    Ready(Reply),
    Pending(BoxFuture<'static, Reply>),
}

impl HandlerFuture {
    pub(crate) async fn reply(self) -> Reply {
        match self {
            HandlerFuture::Ready(r) => r,
            HandlerFuture::Pending(f) => f.await,
        }
    }
}

pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, req: Request) -> HandlerFuture;
}

/// A type-erased handler, ready for the dispatch table.
///
/// ```
/// use framework::dispatch::{BoxedHandler, Request};
/// let h = BoxedHandler::new(|_ctx: Request| ());
/// # let _ = h;
/// ```
#[derive(Clone)]
pub struct BoxedHandler(pub(crate) Arc<dyn ErasedHandler>);

impl std::fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedHandler")
    }
}

impl BoxedHandler {
    /// Erases any [`Handler`].
    pub fn new<M, H: Handler<M>>(handler: H) -> Self {
        handler.into_boxed()
    }
}

/// A function that can answer a protocol frame: sync `Fn(Request) -> R` or async
/// `Fn(Request) -> impl Future<Output = R>`, where `R:` [`IntoReply`]. The `M`
/// parameter only tells the two apart; you never name it.
///
/// A panic in a handler is caught: the client gets `Error`/`Internal`, the
/// connection and the server live on.
///
/// ```
/// use framework::{dispatch::{Handler, Request}, HandlerError};
/// fn takes<M>(_: impl Handler<M>) {}
/// takes(|_ctx: Request| ());
/// takes(|ctx: Request| async move { Ok::<_, HandlerError>(ctx.body().to_vec()) });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protocol handler",
    note = "a handler is `fn(Request) -> R` or `async fn(Request) -> R` where `R: IntoReply`"
)]
pub trait Handler<M>: Send + Sync + Sized + 'static {
    /// Erases the handler.
    fn into_boxed(self) -> BoxedHandler;
}

/// Marks sync handlers.
#[doc(hidden)]
pub struct SyncHandler<R>(PhantomData<fn() -> R>);
/// Marks async handlers.
#[doc(hidden)]
pub struct AsyncHandler<Fut>(PhantomData<fn() -> Fut>);

struct SyncFn<F, R>(F, PhantomData<fn() -> R>);
struct AsyncFn<F, Fut>(F, PhantomData<fn() -> Fut>);

fn panicked() -> Reply {
    tracing::error!("handler panicked");
    Reply::error(HandlerError::internal())
}

impl<F, R> ErasedHandler for SyncFn<F, R>
where
    F: Fn(Request) -> R + Send + Sync + 'static,
    R: IntoReply + 'static,
{
    fn call(&self, req: Request) -> HandlerFuture {
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| (self.0)(req).into_reply()))
            .unwrap_or_else(|_| panicked());
        HandlerFuture::Ready(reply)
    }
}

impl<F, Fut> ErasedHandler for AsyncFn<F, Fut>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoReply,
{
    fn call(&self, req: Request) -> HandlerFuture {
        match std::panic::catch_unwind(AssertUnwindSafe(|| (self.0)(req))) {
            Ok(fut) => HandlerFuture::Pending(Box::pin(
                AssertUnwindSafe(fut)
                    .catch_unwind()
                    .map(|r| r.map_or_else(|_| panicked(), IntoReply::into_reply)),
            )),
            Err(_) => HandlerFuture::Ready(panicked()),
        }
    }
}

impl<F, R> Handler<SyncHandler<R>> for F
where
    F: Fn(Request) -> R + Send + Sync + 'static,
    R: IntoReply + 'static,
{
    fn into_boxed(self) -> BoxedHandler {
        BoxedHandler(Arc::new(SyncFn(self, PhantomData)))
    }
}

impl<F, Fut> Handler<AsyncHandler<Fut>> for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoReply,
{
    fn into_boxed(self) -> BoxedHandler {
        BoxedHandler(Arc::new(AsyncFn(self, PhantomData)))
    }
}

impl Handler<()> for BoxedHandler {
    fn into_boxed(self) -> BoxedHandler {
        self
    }
}
