//! The eligibility rule language: small, safe boolean expressions over the feature catalogue,
//! written by the marketing team and compiled to polars expressions. Rules never reach SQL.
//!
//! ```text
//! days_since_last_purchase >= 14 and country in ["US", "CA"] and not is_new_buyer
//! last_purchase_date < run_date - 30d or wishlist_items > 0
//! discount_share_orders_365d is null or discount_share_orders_365d <= 0.5
//! ```
//!
//! - comparisons `==`, `!=`, `<`, `<=`, `>`, `>=`; `and`, `or`, `not`, parentheses;
//! - `x in [...]` and `x not in [...]` with a list of literals;
//! - `x is null`, `x is not null`;
//! - literals: numbers, `"strings"`, `true`/`false`, dates `2026-11-01`, and dates relative to
//!   the run date: `run_date`, `run_date - 14d`, `run_date + 2w`;
//! - a boolean field alone is a condition (`is_new_buyer`, `not has_email`).
//!
//! A comparison with a missing value is neither true nor false, and the user is *not* eligible
//! (as in SQL): `not (x > 3)` does not select users whose `x` is missing. Check for missing
//! values explicitly with `is null`.
//!
//! Names are checked against a [`Catalog`] at validation time, with the types of both sides of
//! every comparison, so a rule that validates always compiles.

mod check;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

pub use check::{check, check_items, CheckedRule, ItemCondition, ItemPredicate};
pub use parse::{parse, CmpOp, Operand, Relation, Rule};

/// The list of a campaign's own items (`[items]`), as item conditions name it.
pub const DEAL_ITEMS: &str = "deal_items";

/// The column of an item frame that holds 1 for the items of a named list, 0 for the others.
pub fn list_column(list: &str) -> String {
    format!("in {list}")
}

/// The names an item condition may use: the items contract's columns, as the item frame holds
/// them (`segments::items::ItemFrame`). With the catalogue's text values (`category`, `kind`),
/// text compiles to their codes; without, names and types are checked and values are not.
pub fn item_catalog(category: Vec<String>, kind: Vec<String>) -> Catalog {
    let field = |name: &str, kind: FieldKind, description: &str| Field {
        name: name.into(),
        kind,
        column: name.into(),
        description: description.into(),
    };
    Catalog {
        fields: vec![
            field("item", FieldKind::Number, "the item's id (items.item_id)"),
            field("game_id", FieldKind::Number, "the game the item belongs to"),
            field("publisher_id", FieldKind::Number, "the item's publisher"),
            field(
                "category",
                FieldKind::Text { levels: category },
                "the item's category, e.g. \"rpg\"",
            ),
            field(
                "kind",
                FieldKind::Text { levels: kind },
                "\"1p\" (our own) or \"3p\" (a partner's)",
            ),
            field(
                "list_price",
                FieldKind::Number,
                "the list price, in currency units",
            ),
            Field {
                column: "days_since_release".into(),
                ..field(
                    "release_date",
                    FieldKind::DaysBefore,
                    "the date the item was released",
                )
            },
        ],
        lists: Vec::new(),
    }
}

/// What a catalogue name holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A number.
    Number,
    /// 0/1 in the frame; `true`/`false` in rules.
    Bool,
    /// A categorical feature: the frame holds the index of the value in `levels`.
    Text { levels: Vec<String> },
    /// A date, held in the frame as a number of days *before the run date* in `column` (e.g.
    /// `last_purchase_date` from `days_since_last_purchase`).
    DaysBefore,
}

/// A name a rule may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    /// Column of the scored frame that holds it.
    pub column: String,
    pub description: String,
}

/// The names rules may use: the feature catalogue plus derived booleans and dates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub fields: Vec<Field>,
    /// The item lists an item condition may test with `item in <list>` (`deal_items` for a
    /// campaign with `[items]`).
    pub lists: Vec<String>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The known name closest to `name`, when it is close enough to be a typo.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        closest(name, self.fields.iter().map(|f| f.name.as_str()))
    }
}

/// The candidate closest to `word` by edit distance, when at most a third of it differs (at
/// least 2 edits allowed): a likely typo rather than another word.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Edits between two words, counting a swap of two neighbouring characters as one (optimal
/// string alignment): `orders_356d` is one edit from `orders_365d`, two from `orders_30d`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: edits between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A rule that failed to parse or check: the message and the byte range of the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub message: String,
    pub rule: String,
    pub at: std::ops::Range<usize>,
}

impl fmt::Display for RuleError {
    /// The message, then the rule with a caret under the fault.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad = self.rule[..self.at.start.min(self.rule.len())]
            .chars()
            .count();
        let width = self.rule[self.at.start.min(self.rule.len())..self.at.end.min(self.rule.len())]
            .chars()
            .count()
            .max(1);
        write!(
            f,
            "{}\n    {}\n    {}{}",
            self.message,
            self.rule,
            " ".repeat(pad),
            "^".repeat(width)
        )
    }
}
