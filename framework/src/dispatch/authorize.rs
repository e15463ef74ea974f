//! Authorization in code: functions of extractors, registered with
//! [`App::authorize`](crate::App::authorize) or `#[authorize]`, that decide the
//! rules no configuration can express. They run for every frame an
//! authorization rule could govern — `Subscribe`, `Publish`, `Presence` and
//! `History` with their channel, `Send`, `Broadcast`, and application opcodes —
//! after the configured rules ([`crate::config::ChannelRule`],
//! [`crate::config::Permissions`]) and the quotas allowed it, before its handler.
//!
//! An authorizer takes any handler arguments ([`Attempt`] says what the frame
//! asks to do; [`Identity`](crate::node::Identity), `Option<Identity>`,
//! [`Claims<T>`](super::Claims), [`State<T>`](super::State), a typed message,
//! your own extractors...) and returns a [`Verdict`] — `bool`,
//! `Result<(), Denied>` or `Result<(), HandlerError>` — or a future of one. A
//! refusal is answered `Forbidden` (`Unauthorized` when the sender is anonymous),
//! or with the `HandlerError` it returned, and the handler does not run. With
//! several authorizers, each must allow, in the order they were added.
//!
//! ```
//! use framework::dispatch::authorize::Attempt;
//! use framework::dispatch::State;
//! use framework::node::{Action, Identity};
//! use std::collections::HashSet;
//!
//! struct Banned(HashSet<String>);
//!
//! /// Banned users may only read.
//! async fn not_banned(attempt: Attempt, who: Option<Identity>, State(banned): State<Banned>) -> bool {
//!     let banned = who.is_some_and(|w| banned.0.contains(w.user_id()));
//!     !banned || matches!(attempt.action(), Action::Subscribe(_) | Action::History(_))
//! }
//!
//! let _app = framework::App::new()
//!     .with_state(Banned(HashSet::from(["mallory".to_string()])))
//!     .authorize(not_banned);
//! ```
//!
//! Without the builder, `#[authorize]` on the function registers it the same way
//! (see the macro's documentation).

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::extract::{FromRequest, FromRequestParts, StateNeed};
use super::handler::{nest, tally};
use super::reply::{AsyncReply, SyncReply};
use super::{HandlerError, Request};
use crate::node::{Action, Denied};
use crate::protocol::{ErrorCode, Frame};

/// What the frame asks to do, as an extractor: the [`Action`] an authorizer
/// decides on.
///
/// ```
/// use framework::dispatch::authorize::Attempt;
/// use framework::node::Action;
/// fn no_broadcasts(attempt: Attempt) -> bool {
///     attempt.action() != Action::Broadcast
/// }
/// let _app = framework::App::new().authorize(no_broadcasts);
/// ```
#[derive(Debug, Clone)]
pub struct Attempt {
    frame: Frame,
}

impl Attempt {
    /// The action (an application opcode for frames no rule names).
    pub fn action(&self) -> Action<'_> {
        let opcode = self.frame.opcode();
        Action::of(opcode, self.frame.channel()).unwrap_or(Action::Opcode(opcode))
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> u16 {
        self.frame.opcode()
    }

    /// The frame's channel, if it names one.
    pub fn channel(&self) -> Option<&str> {
        self.frame.channel()
    }
}

impl FromRequestParts for Attempt {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(Attempt {
            frame: req.frame.clone(),
        })
    }
}

/// Why an authorizer refused.
#[derive(Debug)]
pub enum Refused {
    /// Refused with [`Denied`]: `Forbidden`, or `Unauthorized` when anonymous.
    Denied(Denied),
    /// Refused with this error (its code and message reach the client).
    Error(HandlerError),
}

impl From<HandlerError> for Refused {
    fn from(e: HandlerError) -> Self {
        Refused::Error(e)
    }
}

impl Refused {
    /// The error the client gets; `anonymous` when the sender has no identity.
    pub(crate) fn into_error(self, anonymous: bool) -> HandlerError {
        match self {
            Refused::Error(e) => e,
            Refused::Denied(d) => denied_error(if anonymous {
                Denied::Unauthenticated
            } else {
                d
            }),
        }
    }
}

/// The error a [`Denied`] is answered with.
pub(crate) fn denied_error(denied: Denied) -> HandlerError {
    match denied {
        Denied::Unauthenticated => {
            HandlerError::new(ErrorCode::Unauthorized, "authentication required")
        }
        Denied::Forbidden => HandlerError::new(ErrorCode::Forbidden, "not allowed to do this"),
    }
}

/// What an authorizer returns: `true`/`Ok(())` allows the frame.
///
/// ```
/// use framework::dispatch::authorize::Verdict;
/// use framework::node::Denied;
/// assert!(true.verdict().is_ok());
/// assert!(Err::<(), _>(Denied::Forbidden).verdict().is_err());
/// ```
pub trait Verdict: Send + 'static {
    /// Allowed, or why not.
    fn verdict(self) -> Result<(), Refused>;
}

impl Verdict for bool {
    fn verdict(self) -> Result<(), Refused> {
        if self {
            Ok(())
        } else {
            Err(Refused::Denied(Denied::Forbidden))
        }
    }
}

impl Verdict for Result<(), Denied> {
    fn verdict(self) -> Result<(), Refused> {
        self.map_err(Refused::Denied)
    }
}

impl Verdict for Result<(), HandlerError> {
    fn verdict(self) -> Result<(), Refused> {
        self.map_err(Refused::Error)
    }
}

/// A [`Verdict`] now (sync authorizers) or a future of one (async ones).
#[doc(hidden)]
pub trait VerdictOutcome<M>: Send + 'static {
    /// The verdict now, or the future of it.
    fn settle(self) -> Check;
}

impl<V: Verdict> VerdictOutcome<SyncReply> for V {
    fn settle(self) -> Check {
        Check::Ready(self.verdict())
    }
}

impl<F> VerdictOutcome<AsyncReply> for F
where
    F: std::future::Future + Send + 'static,
    F::Output: Verdict,
{
    fn settle(self) -> Check {
        Check::Pending(Box::pin(self.map(Verdict::verdict)))
    }
}

/// An authorizer's decision: at once, or later.
#[doc(hidden)]
pub enum Check {
    /// Decided.
    Ready(Result<(), Refused>),
    /// An async authorizer or extractor: decided later.
    Pending(BoxFuture<'static, Result<(), Refused>>),
}

/// A function that authorizes frames (see the [module](self)): sync or async,
/// its arguments any handler arguments, returning a [`Verdict`]. The `T`
/// parameter only tells the impls apart.
///
/// ```
/// use framework::dispatch::authorize::{Attempt, Authorizer};
/// use framework::node::Identity;
/// fn takes<T: 'static>(_: impl Authorizer<T>) {}
/// takes(|| true);
/// takes(|a: Attempt, who: Option<Identity>| who.is_some() || a.opcode() != 200);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an authorizer",
    note = "an authorizer is a sync or async function of handler arguments (Attempt, Identity, Option<Identity>, Claims<T>, State<T>, Extension<T>, a message, ...) returning bool, Result<(), Denied> or Result<(), HandlerError>"
)]
pub trait Authorizer<T: 'static>: Clone + Send + Sync + Sized + 'static {
    /// Decides on `req` (a copy of the frame's request).
    #[doc(hidden)]
    fn check(&self, req: Request, name: &'static str) -> Check;

    /// Shared state the arguments cannot work without.
    #[doc(hidden)]
    fn state_needs() -> Vec<StateNeed>;
}

trait ErasedAuthorizer: Send + Sync + 'static {
    fn check(&self, req: Request) -> Check;
    fn name(&self) -> &'static str;
    fn state_needs(&self) -> &[StateNeed];
}

struct Erased<A, T> {
    authorizer: A,
    name: &'static str,
    needs: Vec<StateNeed>,
    _marker: PhantomData<fn() -> T>,
}

impl<A: Authorizer<T>, T: 'static> ErasedAuthorizer for Erased<A, T> {
    fn check(&self, req: Request) -> Check {
        self.authorizer.check(req, self.name)
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn state_needs(&self) -> &[StateNeed] {
        &self.needs
    }
}

/// A type-erased authorizer.
///
/// ```
/// let a = framework::dispatch::authorize::BoxedAuthorizer::new(|| true);
/// assert!(a.name().contains("closure"));
/// ```
#[derive(Clone)]
pub struct BoxedAuthorizer(Arc<dyn ErasedAuthorizer>);

impl std::fmt::Debug for BoxedAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxedAuthorizer")
            .field(&self.name())
            .finish()
    }
}

impl BoxedAuthorizer {
    /// Erases `authorizer`.
    pub fn new<T: 'static>(authorizer: impl Authorizer<T>) -> Self {
        Self::named(authorizer, None)
    }

    /// Erases `authorizer`, named `name` in logs (the macro passes the
    /// function's path).
    #[doc(hidden)]
    pub fn named<A: Authorizer<T>, T: 'static>(authorizer: A, name: Option<&'static str>) -> Self {
        BoxedAuthorizer(Arc::new(Erased {
            authorizer,
            name: name.unwrap_or(std::any::type_name::<A>()),
            needs: A::state_needs(),
            _marker: PhantomData::<fn() -> T>,
        }))
    }

    /// The function's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub(crate) fn state_needs(&self) -> &[StateNeed] {
        self.0.state_needs()
    }
}

/// Erases an authorizer (what `#[authorize]` registers), named by its path.
#[doc(hidden)]
pub fn authorizer<T: 'static, A: Authorizer<T>>(
    authorizer: A,
    name: &'static str,
) -> BoxedAuthorizer {
    BoxedAuthorizer::named(authorizer, Some(name))
}

/// Runs `authorizers` in order on copies of `req`; the first refusal wins.
/// Stays synchronous until an authorizer is not.
pub(crate) fn check_all(authorizers: &Arc<[BoxedAuthorizer]>, req: &Request) -> Check {
    for (i, a) in authorizers.iter().enumerate() {
        match a.0.check(req.duplicate()) {
            Check::Ready(Ok(())) => continue,
            Check::Ready(refused) => return Check::Ready(refused),
            Check::Pending(first) => {
                let (rest, req) = (authorizers.clone(), req.duplicate());
                return Check::Pending(Box::pin(async move {
                    first.await?;
                    for a in rest.iter().skip(i + 1) {
                        match a.0.check(req.duplicate()) {
                            Check::Ready(r) => r?,
                            Check::Pending(f) => f.await?,
                        }
                    }
                    Ok(())
                }));
            }
        }
    }
    Check::Ready(Ok(()))
}

fn panicked(name: &'static str) -> Refused {
    tracing::error!(authorizer = name, "authorizer panicked");
    Refused::Error(HandlerError::new(ErrorCode::Internal, "internal error"))
}

// One impl per arity; extraction as for handlers (see `impl_handler!`).
macro_rules! impl_authorizer {
    ($($T:ident $M:ident $v:ident),*) => {
        #[allow(non_snake_case)]
        impl<F, R, MR, $($T, $M,)*> Authorizer<(MR, $(($M, $T),)*)> for F
        where
            F: Fn($($T),*) -> R
                + for<'b> Fn($(<$T as FromRequest<$M>>::At<'b>),*) -> R
                + Clone
                + Send
                + Sync
                + 'static,
            R: VerdictOutcome<MR>,
            MR: 'static,
            nest!($($M),*): tally::Tally,
            $($T: FromRequest<$M>, $M: 'static,)*
        {
            #[allow(unused_mut, unused_variables)]
            fn check(&self, req: Request, name: &'static str) -> Check {
                if !(false $(|| <$T as FromRequest<$M>>::ASYNC)*) {
                    let run = AssertUnwindSafe(|| -> Result<Check, HandlerError> {
                        let body = req.body.clone();
                        $(let $v = <$T as FromRequest<$M>>::extract(&req, &body)?;)*
                        let mut slot = Some(req);
                        $(let $v = <$T as FromRequest<$M>>::finish($v, &mut slot);)*
                        Ok(self($($v),*).settle())
                    });
                    match std::panic::catch_unwind(run) {
                        Ok(Ok(Check::Ready(r))) => Check::Ready(r),
                        Ok(Ok(Check::Pending(f))) => Check::Pending(Box::pin(
                            AssertUnwindSafe(f).catch_unwind().map(move |r| r.unwrap_or_else(|_| Err(panicked(name)))),
                        )),
                        Ok(Err(e)) => Check::Ready(Err(Refused::Error(e))),
                        Err(_) => Check::Ready(Err(panicked(name))),
                    }
                } else {
                    let f = self.clone();
                    Check::Pending(Box::pin(async move {
                        let run = async {
                            let body = req.body.clone();
                            $(let $v = <$T as FromRequest<$M>>::extract_async(&req, &body).await?;)*
                            let mut slot = Some(req);
                            $(let $v = <$T as FromRequest<$M>>::finish($v, &mut slot);)*
                            Ok::<_, Refused>(match f($($v),*).settle() {
                                Check::Ready(r) => r,
                                Check::Pending(f) => f.await,
                            })
                        };
                        match AssertUnwindSafe(run).catch_unwind().await {
                            Ok(Ok(r)) => r,
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(panicked(name)),
                        }
                    }))
                }
            }

            fn state_needs() -> Vec<StateNeed> {
                let all: &[Option<StateNeed>] = &[$(<$T as FromRequest<$M>>::state_need()),*];
                all.iter().flatten().copied().collect()
            }
        }
    };
}

impl_authorizer!();
impl_authorizer!(T1 M1 a1);
impl_authorizer!(T1 M1 a1, T2 M2 a2);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7);
impl_authorizer!(T1 M1 a1, T2 M2 a2, T3 M3 a3, T4 M4 a4, T5 M5 a5, T6 M6 a6, T7 M7 a7, T8 M8 a8);
