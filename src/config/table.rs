//! How the declarations read in the documentation and in error messages:
//! each variable's default and accepted values as phrases, and the README's
//! configuration table made from them.

use std::fmt::Write;

use super::vars::{Allowed, Unset, VARS};
use Allowed::{Flag, Int, MinBytes, OneOf, Prefix, Text, TimeOfDay};

impl Unset {
    /// The documentation's default column.
    pub fn describe(&self) -> String {
        match self {
            Unset::Value(v) => format!("`{v}`"),
            Unset::Means(text) => text.to_string(),
        }
    }
}

impl Allowed {
    /// The accepted values as a phrase, for the documentation and for the
    /// messages that reject a value (`X="..." is not {this}`).
    pub fn describe(&self) -> String {
        match self {
            Int { min, max } if *max == u64::MAX => {
                format!("a whole number >= {min}")
            }
            Int { min, max } => format!("a whole number from {min} to {max}"),
            Flag => "`true` or `false`".into(),
            OneOf(words) => either(words, ""),
            TimeOfDay => "a time of day `HH:MM` (UTC)".into(),
            Prefix(prefixes) => format!("a URL starting with {}", either(prefixes, "...")),
            MinBytes(n) => format!("a string of at least {n} bytes"),
            Text(text) => text.to_string(),
        }
    }
}

/// "`a`, `b` or `c`", each with `suffix` inside the backticks.
fn either(words: &[&str], suffix: &str) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}{suffix}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// The configuration table of `README.md`, one row per variable.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | allowed | meaning |\n|---|---|---|---|\n");
    for v in VARS {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            v.name,
            v.unset.describe(),
            v.allowed.describe(),
            v.doc
        );
    }
    out
}
