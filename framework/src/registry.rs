//! What the macros register through `inventory`, and how an [`App`] collects it.
//!
//! Handlers in another library crate register too, as long as that crate is
//! linked into the binary: Rust links a dependency only when something in it is
//! used, so a crate that holds nothing but `#[opcode]` functions needs a
//! `use handlers_crate as _;` (or any other use) in the binary.

use crate::app::App;
use crate::dispatch::authorize::BoxedAuthorizer;
use crate::dispatch::hooks::{BoxedConnectHook, BoxedDisconnectHook};
use crate::dispatch::BoxedHandler;
use crate::message::Schema;
use crate::protocol::Opcode;
use crate::raw::BoxedRawHandler;

/// What a registration is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `#[opcode(N)]`.
    Opcode(u16, fn() -> BoxedHandler),
    /// `#[override_opcode(Name)]`.
    Override(Opcode, fn() -> BoxedHandler),
    /// `#[raw_ws(port = P)]`, and the environment variable `env = ".."` names for
    /// its address (besides `FRAMEWORK_RAW_<P>`).
    Raw(u16, Option<&'static str>, fn() -> BoxedRawHandler),
    /// `#[opcode(N, quota = "..")]`: a per-connection frame quota on opcode N (the
    /// rate was checked by the macro).
    Quota(u16, &'static str),
    /// `#[opcode(N, auth)]` / `#[opcode(N, auth = "claim:..")]`: who may send
    /// opcode N (the grant was checked by the macro).
    Require(u16, &'static str),
    /// `#[on_connect]`.
    OnConnect(fn() -> BoxedConnectHook),
    /// `#[on_disconnect]`.
    OnDisconnect(fn() -> BoxedDisconnectHook),
    /// `#[authorize]`.
    Authorize(fn() -> BoxedAuthorizer),
    /// `#[derive(Message)]`: adds the type's table to a schema.
    Message(&'static str, fn(&mut Schema)),
}

/// One item the macros registered, with where it was written.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// What it is.
    pub kind: Kind,
    /// The function or type name.
    pub name: &'static str,
    /// `file!()` of the item.
    pub file: &'static str,
    /// `line!()` of the item.
    pub line: u32,
}

impl Registration {
    /// "`name` at file:line", for error messages.
    pub fn origin(&self) -> String {
        format!("`{}` at {}:{}", self.name, self.file, self.line)
    }
}

inventory::collect!(Registration);

/// Every registration linked into this binary.
///
/// ```
/// let n = framework::registry::all().count();
/// # let _ = n;
/// ```
pub fn all() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// Two Rust types that export different tables under one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two different tables are named `{table}`: {first} and {second}; rename one with #[fbs(name = \"...\")]")]
pub struct SchemaConflict {
    /// The table name.
    pub table: String,
    /// The first type.
    pub first: String,
    /// The second type.
    pub second: String,
}

/// The `.fbs` schema of every `#[derive(Message)]` type linked into this binary,
/// in `namespace`, for generating clients in other languages with flatc.
///
/// ```
/// let fbs = framework::registry::export_schema(Some("app")).unwrap();
/// assert!(fbs.contains("namespace app;"));
/// ```
pub fn export_schema(namespace: Option<&str>) -> Result<String, SchemaConflict> {
    let mut messages: Vec<_> = all()
        .filter_map(|r| match r.kind {
            Kind::Message(table, describe) => Some((table, describe, r)),
            _ => None,
        })
        .collect();
    messages.sort_by_key(|(table, _, r)| (*table, r.file, r.line));
    // One table per name: the same type linked twice is fine, two types are not.
    let mut seen: Vec<(&str, String, &Registration)> = Vec::new();
    for (table, describe, r) in &messages {
        let mut alone = Schema::new(None);
        describe(&mut alone);
        let text = alone.table_text(table).unwrap_or_default().to_string();
        match seen.iter().find(|(t, _, _)| t == table) {
            Some((_, first_text, first)) if *first_text != text => {
                return Err(SchemaConflict {
                    table: table.to_string(),
                    first: first.origin(),
                    second: r.origin(),
                });
            }
            Some(_) => {}
            None => seen.push((table, text, r)),
        }
    }
    let mut schema = Schema::new(namespace);
    for (_, describe, _) in messages {
        describe(&mut schema);
    }
    Ok(schema.to_fbs())
}

/// Writes [`export_schema`] (default namespace) to `target`, a file path or `-`
/// for standard output: what `main!`'s `--export-schema` does. Failures are
/// printed to standard error and give a failing exit code.
///
/// ```
/// assert_eq!(framework::registry::write_schema("-"), std::process::ExitCode::SUCCESS);
/// ```
pub fn write_schema(target: &str) -> std::process::ExitCode {
    let schema = match export_schema(None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let written = if target == "-" {
        use std::io::Write;
        std::io::stdout().write_all(schema.as_bytes())
    } else {
        std::fs::write(target, schema)
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write {target}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl App {
    /// Adds every handler, hook, authorizer and raw service the macros registered in this
    /// binary. Raw services listen on their declared port; the configuration
    /// (`raw.<port>`, `FRAMEWORK_RAW_<port>`, or the variable named by
    /// `#[raw_ws(env = "...")]`) may move them, see [`App::configure`].
    /// Duplicates fail `start`, naming both. Hooks run in source order (file, then
    /// line).
    pub fn with_registered(mut self) -> Self {
        let mut registrations: Vec<&Registration> = all().collect();
        registrations.sort_by_key(|r| (r.file, r.line));
        let (mut connect, mut disconnect, mut authorize) = (Vec::new(), Vec::new(), Vec::new());
        for r in registrations {
            match r.kind {
                Kind::Opcode(opcode, make) => {
                    self.register_custom_boxed(opcode, make(), r.origin())
                }
                Kind::Override(opcode, make) => self.override_boxed(opcode, make(), r.origin()),
                Kind::Raw(port, var, make) => {
                    self = self.raw_service_boxed(port.into(), make(), r.origin(), var);
                }
                Kind::Quota(opcode, rate) => match rate.parse::<crate::config::Rate>() {
                    Ok(rate) => {
                        self = self.quota(crate::config::QuotaRule::opcode(opcode).frames(rate))
                    }
                    Err(e) => tracing::error!(origin = %r.origin(), "bad quota: {e}"),
                },
                Kind::Require(opcode, grant) => match grant.parse::<crate::config::Grant>() {
                    Ok(grant) => self = self.require(opcode, [grant]),
                    Err(e) => tracing::error!(origin = %r.origin(), "bad grant: {e}"),
                },
                Kind::OnConnect(make) => connect.push(make()),
                Kind::OnDisconnect(make) => disconnect.push(make()),
                Kind::Authorize(make) => authorize.push(make()),
                Kind::Message(..) => {}
            }
        }
        // Macro hooks run before those added with App::on_connect/on_disconnect,
        // wherever `with_registered` is called.
        self.prepend_hooks(connect, disconnect, authorize)
    }
}
