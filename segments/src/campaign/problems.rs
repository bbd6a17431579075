//! Every problem of a campaign file at once: unknown fields and wrong types found by walking
//! the file against the JSON Schema generated from [`super::CampaignFile`], with a hint for a
//! misspelt name or value and the byte range of each.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::locate;
use crate::rules::closest;
use crate::SegmentError;

/// Problems found in one file, each with the byte range it is about (when known).
pub(super) struct Problems<'a> {
    pub(super) origin: &'a str,
    pub(super) text: &'a str,
    pub(super) list: Vec<(Option<Range<usize>>, String)>,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.list.push((at, message.into()));
    }

    /// Every problem, in the order of the file (those without a place first), each prefixed
    /// with its `file:line:column`.
    pub(super) fn into_error(mut self) -> SegmentError {
        // A stable sort: problems at one place keep the order they were found in.
        self.list
            .sort_by_key(|(at, _)| at.as_ref().map_or((0, 0), |r| (1, r.start)));
        SegmentError::InvalidCampaign {
            problems: self
                .list
                .into_iter()
                .map(|(at, m)| format!("{}: {m}", locate(self.origin, self.text, at)))
                .collect(),
        }
    }
}

/// The schema node `node` points to, following `$ref` and skipping the `null` branch of an
/// optional field.
fn resolve<'a>(root: &'a serde_json::Value, node: &'a serde_json::Value) -> &'a serde_json::Value {
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = node.get(key).and_then(|b| b.as_array()) {
            if let Some(b) = branches
                .iter()
                .map(|b| resolve(root, b))
                .find(|b| b.get("properties").is_some())
            {
                return b;
            }
        }
    }
    node
}

/// Reports every key of `table` that the schema `node` does not allow, with a hint.
pub(super) fn unknown_fields(
    root: &serde_json::Value,
    node: &serde_json::Value,
    table: &DeTable<'_>,
    prefix: &str,
    problems: &mut Problems<'_>,
) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        match props.get(name) {
            Some(sub) => {
                wrong_type(root, sub, value, &format!("{prefix}{name}"), problems);
                if let DeValue::Table(t) = value.get_ref() {
                    unknown_fields(root, sub, t, &format!("{prefix}{name}."), problems);
                }
            }
            None => {
                let hint = closest(name, props.keys().map(String::as_str))
                    .map(|s| format!(", did you mean \"{s}\"?"))
                    .unwrap_or_else(|| {
                        let mut known: Vec<&str> = props.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        format!(" (known: {})", known.join(", "))
                    });
                problems.add(
                    Some(key.span()),
                    format!("unknown field \"{prefix}{name}\"{hint}"),
                );
            }
        }
    }
}

/// The JSON types a schema node accepts (through `$ref` and `anyOf`), and its allowed values
/// when it is an enumeration.
fn accepted<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut types, mut values) = (Vec::new(), Vec::new());
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return accepted(root, def);
        }
    }
    for key in ["anyOf", "oneOf"] {
        for b in node
            .get(key)
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            let (t, v) = accepted(root, b);
            types.extend(t);
            values.extend(v);
        }
    }
    match node.get("type") {
        Some(serde_json::Value::String(t)) => types.push(t.as_str()),
        Some(serde_json::Value::Array(ts)) => types.extend(ts.iter().filter_map(|t| t.as_str())),
        _ => {}
    }
    if let Some(e) = node.get("enum").and_then(|e| e.as_array()) {
        values.extend(e.iter().filter_map(|v| v.as_str()));
        types.push("string");
    }
    if let Some(c) = node.get("const").and_then(|c| c.as_str()) {
        values.push(c);
        types.push("string");
    }
    if node.get("properties").is_some() {
        types.push("object");
    }
    (types, values)
}

/// Reports a value whose TOML type the schema does not accept (every one, unlike serde, which
/// stops at the first), or an enumeration's unknown value, with a hint.
pub(super) fn wrong_type(
    root: &serde_json::Value,
    node: &serde_json::Value,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    problems: &mut Problems<'_>,
) {
    let (types, values) = accepted(root, node);
    if types.is_empty() {
        return;
    }
    let found = match value.get_ref() {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "number",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "object",
    };
    let ok = types.contains(&found) || (found == "integer" && types.contains(&"number"));
    if !ok {
        let mut want: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        want.dedup();
        problems.add(
            Some(value.span()),
            format!("{path} must be {}, not {found}", want.join(" or ")),
        );
        return;
    }
    if let (DeValue::String(v), false) = (value.get_ref(), values.is_empty()) {
        if !values.contains(&v.as_ref()) {
            let hint = closest(v.as_ref(), values.iter().copied())
                .map(|s| format!(", did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!(" (one of {})", values.join(", ")));
            problems.add(
                Some(value.span()),
                format!("{path} {v:?} is not known{hint}"),
            );
        }
    }
    if let (DeValue::Array(items), Some(item)) = (value.get_ref(), node_items(root, node)) {
        for (i, v) in items.iter().enumerate() {
            wrong_type(root, item, v, &format!("{path}[{i}]"), problems);
        }
    }
}

/// The item schema of an array node.
fn node_items<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Option<&'a serde_json::Value> {
    let node = resolve(root, node);
    node.get("items")
}

/// Where a problem with the field at a dotted `path` is shown: the field's value; when the
/// field is absent (a problem of a missing field), the closest enclosing table that is
/// present; else the `kind`, which is what asks for the field.
pub(super) fn place_of(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut path = path;
    loop {
        if let Some(span) = span_of(table, path) {
            return Some(span);
        }
        match path.rsplit_once('.') {
            Some((parent, _)) => path = parent,
            None => return span_of(table, "kind"),
        }
    }
}

/// The byte range of the value at a dotted `path` (e.g. `offer.discount_pct`), if present.
fn span_of(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == head)?;
    match (rest.is_empty(), value.get_ref()) {
        (true, _) => Some(value.span()),
        (false, DeValue::Table(t)) => span_of(t, rest),
        _ => None,
    }
}
