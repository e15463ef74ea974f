//! `.fbs` schema text for derived messages, so clients in other languages are
//! generated with flatc from the Rust types.

/// A schema under construction: definitions (tables, enums, unions) in
/// dependency order, each once.
///
/// ```
/// let mut schema = framework::message::Schema::new(Some("chat"));
/// schema.add_table("Empty", |_| "table Empty {\n}\n".to_string());
/// assert!(schema.to_fbs().contains("namespace chat;"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Schema {
    namespace: Option<String>,
    tables: Vec<(String, Option<String>)>,
    uuid: bool,
    root: Option<String>,
}

impl Schema {
    /// An empty schema in `namespace` (none: the global namespace).
    pub fn new(namespace: Option<&str>) -> Self {
        Self {
            namespace: namespace.map(str::to_string),
            ..Self::default()
        }
    }

    /// The schema needs the `Uuid` struct.
    pub fn use_uuid(&mut self) {
        self.uuid = true;
    }

    /// Sets the `root_type`.
    pub fn set_root(&mut self, table: &str) {
        self.root = Some(table.to_string());
    }

    /// Whether `name` (a table, enum or union) is defined (or being defined).
    pub fn has_table(&self, name: &str) -> bool {
        self.tables.iter().any(|(n, _)| n == name)
    }

    /// Adds the definition of `name` (a table, enum or union: they share one
    /// namespace in a schema) once; `render` may add the definitions it refers to
    /// first.
    pub fn add_table(&mut self, name: &str, render: impl FnOnce(&mut Schema) -> String) {
        if self.has_table(name) {
            return;
        }
        // Reserve the name first so recursive types terminate.
        let index = self.tables.len();
        self.tables.push((name.to_string(), None));
        let text = render(self);
        // Dependencies rendered meanwhile come before this definition's text.
        let entry = self.tables.remove(index);
        self.tables.push((entry.0, Some(text)));
    }

    /// The `.fbs` text of `name` (a table, enum or union), once rendered.
    pub fn table_text(&self, name: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.as_deref())
    }

    /// The schema as `.fbs` text.
    pub fn to_fbs(&self) -> String {
        let mut out =
            String::from("// Generated from Rust types by framework's #[derive(Message)].\n\n");
        if let Some(ns) = &self.namespace {
            out.push_str(&format!("namespace {ns};\n\n"));
        }
        if self.uuid {
            out.push_str("/// RFC 4122 UUID, bytes in network order.\nstruct Uuid {\n  bytes: [ubyte:16];\n}\n\n");
        }
        for (_, text) in &self.tables {
            if let Some(t) = text {
                out.push_str(t);
                out.push('\n');
            }
        }
        if let Some(root) = &self.root {
            out.push_str(&format!("root_type {root};\n"));
        }
        out
    }
}
