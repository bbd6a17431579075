//! Syntax trees checked against the catalogue (names and the types of both sides of every
//! comparison), then compiled to polars expressions.

use polars::prelude::*;

use super::parse::{parse, CmpOp, Operand, Relation, Rule, Spanned};
use super::{closest, item_catalog, list_column, Catalog, FieldKind, RuleError, DEAL_ITEMS};

/// The type of an operand once names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Number,
    Bool,
    Text,
    Date,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Bool => "true/false",
            Type::Text => "text",
            Type::Date => "a date",
        }
    }
}

/// A parsed rule whose names and types were checked against a catalogue: it always compiles.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRule {
    pub text: String,
    rule: Rule,
}

/// An item condition checked against the item catalogue ([`super::item_catalog`]): what
/// `owns …` and `wishlist has …` test, and what `[items] where` selects. It compiles over an
/// item frame, one row per item, never over the users.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemCondition {
    pub text: String,
    rule: Rule,
}

/// One `owns …` or `wishlist has …` of a rule: the column of the users' frame that holds it
/// (1 when the user holds an item that meets the condition, else 0), computed from the tables
/// by `segments::items`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPredicate {
    pub column: String,
    pub relation: Relation,
    pub condition: ItemCondition,
}

/// What the names of a (part of a) rule refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The users' catalogue; `owns` and `wishlist has` open an item condition.
    Users,
    /// The item catalogue, inside an item condition.
    Items,
}

struct Checker<'a> {
    text: &'a str,
    users: &'a Catalog,
    items: Catalog,
}

impl Checker<'_> {
    fn err(&self, message: String, at: &std::ops::Range<usize>) -> RuleError {
        RuleError {
            message,
            rule: self.text.to_string(),
            at: at.clone(),
        }
    }

    fn type_of(&self, (o, at): &Spanned<Operand>, scope: Scope) -> Result<Type, RuleError> {
        let catalog = match scope {
            Scope::Users => self.users,
            Scope::Items => &self.items,
        };
        Ok(match o {
            Operand::Number(_) => Type::Number,
            Operand::Text(_) => Type::Text,
            Operand::Bool(_) => Type::Bool,
            Operand::Date(_) | Operand::RunDate(_) => Type::Date,
            Operand::Field(name) => match catalog.get(name) {
                Some(f) => match f.kind {
                    FieldKind::Number => Type::Number,
                    FieldKind::Bool => Type::Bool,
                    FieldKind::Text { .. } => Type::Text,
                    FieldKind::DaysBefore => Type::Date,
                },
                None => {
                    let hint = catalog
                        .suggest(name)
                        .map(|s| format!(", did you mean \"{s}\"?"))
                        .unwrap_or_default();
                    let of = match scope {
                        Scope::Users => "",
                        Scope::Items => " of an item",
                    };
                    return Err(self.err(format!("unknown name{of} \"{name}\"{hint}"), at));
                }
            },
        })
    }

    fn walk(&self, r: &Rule, scope: Scope) -> Result<(), RuleError> {
        match r {
            Rule::Or(a, b) | Rule::And(a, b) => {
                self.walk(a, scope)?;
                self.walk(b, scope)
            }
            Rule::Not(a) => self.walk(a, scope),
            Rule::Cmp(l, op, r) => {
                let (lt, rt) = (self.type_of(l, scope)?, self.type_of(r, scope)?);
                if lt != rt {
                    // A date in quotes is text: say how dates are written.
                    let hint = if [lt, rt].contains(&Type::Date) && [lt, rt].contains(&Type::Text) {
                        ": dates are written YYYY-MM-DD without quotes, e.g. 2026-11-01"
                    } else {
                        ""
                    };
                    return Err(self.err(
                        format!("cannot compare {} with {}{hint}", lt.name(), rt.name()),
                        &(l.1.start..r.1.end),
                    ));
                }
                let ordered = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge);
                if ordered && matches!(lt, Type::Text | Type::Bool) {
                    return Err(self.err(
                        format!("{} can only be compared with == or !=", lt.name()),
                        &(l.1.start..r.1.end),
                    ));
                }
                Ok(())
            }
            Rule::In(l, items, _) => {
                let lt = self.type_of(l, scope)?;
                for item in items {
                    let it = self.type_of(item, scope)?;
                    if it != lt {
                        return Err(self.err(
                            format!(
                                "the list holds {} but the left side is {}",
                                it.name(),
                                lt.name()
                            ),
                            &item.1,
                        ));
                    }
                }
                Ok(())
            }
            Rule::InList(l, (name, at), _) => {
                if scope == Scope::Users {
                    return Err(self.err(
                        format!(
                            "{name} is a list of items: test it inside an item condition, as \
                             in `wishlist has item in {name}`"
                        ),
                        at,
                    ));
                }
                if !matches!(&l.0, Operand::Field(f) if f == "item") {
                    return Err(self.err(
                        format!("a list of items holds item ids: write `item in {name}`"),
                        &l.1,
                    ));
                }
                if !self.users.lists.iter().any(|known| known == name) {
                    let hint = if name == DEAL_ITEMS {
                        ": give the campaign an [items] table".to_string()
                    } else {
                        match closest(name, [DEAL_ITEMS].into_iter()) {
                            Some(s) => format!(", did you mean \"{s}\"?"),
                            None => String::new(),
                        }
                    };
                    return Err(self.err(format!("unknown list \"{name}\"{hint}"), at));
                }
                Ok(())
            }
            Rule::IsNull(l, _) => self.type_of(l, scope).map(|_| ()),
            Rule::Truth(o) => match self.type_of(o, scope)? {
                Type::Bool => Ok(()),
                t => Err(self.err(
                    format!("{} is not a condition: compare it with something", t.name()),
                    &o.1,
                )),
            },
            Rule::Has {
                condition, text, ..
            } => {
                if scope == Scope::Items {
                    let at = self.text.find(text.as_str()).unwrap_or(0);
                    return Err(self.err(
                        "an item condition cannot hold another `owns` or `wishlist has`".into(),
                        &(at..at + text.len()),
                    ));
                }
                self.walk(condition, Scope::Items)
            }
        }
    }
}

/// Parses `text` and checks every name against `catalog` and the types of both sides of every
/// comparison; inside `owns …` and `wishlist has …`, against the item catalogue.
pub fn check(text: &str, catalog: &Catalog) -> Result<CheckedRule, RuleError> {
    let rule = parse(text)?;
    checker(text, catalog).walk(&rule, Scope::Users)?;
    Ok(CheckedRule {
        text: text.to_string(),
        rule,
    })
}

/// Parses and checks an item condition on its own (`[items] where`): names from the item
/// catalogue, and no item list (it is what defines one).
pub fn check_items(text: &str) -> Result<ItemCondition, RuleError> {
    let rule = parse(text)?;
    checker(text, &Catalog::default()).walk(&rule, Scope::Items)?;
    Ok(ItemCondition {
        text: text.to_string(),
        rule,
    })
}

fn checker<'a>(text: &'a str, users: &'a Catalog) -> Checker<'a> {
    Checker {
        text,
        users,
        items: item_catalog(Vec::new(), Vec::new()),
    }
}

impl CheckedRule {
    /// The polars expression of the rule over a frame holding the catalogue's columns (and the
    /// columns of its [item predicates](CheckedRule::item_predicates)), for a run on day
    /// `run_day` (days since 1970-01-01). Missing values make a condition null, which a filter
    /// treats as not eligible.
    pub fn to_expr(&self, catalog: &Catalog, run_day: i64) -> Expr {
        compile(&self.rule, catalog, run_day)
    }

    /// Every `owns …` and `wishlist has …` of the rule, in the order written.
    pub fn item_predicates(&self) -> Vec<ItemPredicate> {
        fn walk(r: &Rule, out: &mut Vec<ItemPredicate>) {
            match r {
                Rule::Or(a, b) | Rule::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Rule::Not(a) => walk(a, out),
                Rule::Has {
                    relation,
                    condition,
                    text,
                } => out.push(ItemPredicate {
                    column: item_predicate_column(text),
                    relation: *relation,
                    condition: ItemCondition {
                        text: text.clone(),
                        rule: (**condition).clone(),
                    },
                }),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.rule, &mut out);
        out
    }
}

impl ItemCondition {
    /// The polars expression of the condition over an item frame holding the item catalogue's
    /// columns (with `catalog`'s text values) and a [`list_column`] per list it names.
    pub fn to_expr(&self, catalog: &Catalog, run_day: i64) -> Expr {
        compile(&self.rule, catalog, run_day)
    }
}

/// The column of the users' frame that holds an item predicate written as `text`: the same
/// text is the same predicate.
fn item_predicate_column(text: &str) -> String {
    format!("[{text}]")
}

/// An operand as a Float64 expression: numbers as they are, booleans as 0/1, dates as days since
/// 1970-01-01, text as its level index (`-1` when the data has no such level, so it matches
/// nobody).
fn value(o: &Operand, catalog: &Catalog, run_day: i64, text_levels: Option<&[String]>) -> Expr {
    match o {
        Operand::Number(v) => lit(*v),
        Operand::Bool(b) => lit(if *b { 1.0 } else { 0.0 }),
        Operand::Date(d) => lit(*d as f64),
        Operand::RunDate(offset) => lit((run_day + offset) as f64),
        Operand::Text(t) => {
            let code = text_levels
                .and_then(|l| l.iter().position(|v| v == t))
                .map_or(-1.0, |p| p as f64);
            lit(code)
        }
        Operand::Field(name) => match catalog.get(name) {
            Some(f) => {
                let c = col(f.column.as_str()).cast(DataType::Float64);
                match f.kind {
                    FieldKind::DaysBefore => lit(run_day as f64) - c,
                    _ => c,
                }
            }
            // `check` has refused unknown names; a null matches nobody.
            None => lit(NULL).cast(DataType::Float64),
        },
    }
}

/// The levels of the text field among operands, if any.
fn levels_of<'a>(catalog: &'a Catalog, operands: &[&Operand]) -> Option<&'a [String]> {
    operands.iter().find_map(|o| match o {
        Operand::Field(name) => match catalog.get(name).map(|f| &f.kind) {
            Some(FieldKind::Text { levels }) => Some(levels.as_slice()),
            _ => None,
        },
        _ => None,
    })
}

fn compile(r: &Rule, catalog: &Catalog, run_day: i64) -> Expr {
    match r {
        Rule::Or(a, b) => compile(a, catalog, run_day).or(compile(b, catalog, run_day)),
        Rule::And(a, b) => compile(a, catalog, run_day).and(compile(b, catalog, run_day)),
        Rule::Not(a) => compile(a, catalog, run_day).not(),
        Rule::Cmp((l, _), op, (r, _)) => {
            let levels = levels_of(catalog, &[l, r]);
            let (l, r) = (
                value(l, catalog, run_day, levels),
                value(r, catalog, run_day, levels),
            );
            match op {
                CmpOp::Eq => l.eq(r),
                CmpOp::Ne => l.neq(r),
                CmpOp::Lt => l.lt(r),
                CmpOp::Le => l.lt_eq(r),
                CmpOp::Gt => l.gt(r),
                CmpOp::Ge => l.gt_eq(r),
            }
        }
        Rule::In((l, _), items, negated) => {
            let mut all: Vec<&Operand> = vec![l];
            all.extend(items.iter().map(|(o, _)| o));
            let levels = levels_of(catalog, &all);
            let left = value(l, catalog, run_day, levels);
            // `x in []` holds for nobody; a missing x stays null either way.
            let any = items.iter().fold(lit(false), |acc, (o, _)| {
                acc.or(left.clone().eq(value(o, catalog, run_day, levels)))
            });
            let any = when(left.clone().is_null())
                .then(lit(NULL).cast(DataType::Boolean))
                .otherwise(any);
            if *negated {
                any.not()
            } else {
                any
            }
        }
        Rule::IsNull((o, _), negated) => {
            let v = value(o, catalog, run_day, None);
            if *negated {
                v.is_not_null()
            } else {
                v.is_null()
            }
        }
        Rule::Truth((o, _)) => value(o, catalog, run_day, None).eq(lit(1.0)),
        Rule::InList(_, (name, _), negated) => {
            let member = col(list_column(name).as_str())
                .cast(DataType::Float64)
                .eq(lit(1.0));
            if *negated {
                member.not()
            } else {
                member
            }
        }
        Rule::Has { text, .. } => col(item_predicate_column(text).as_str())
            .cast(DataType::Float64)
            .eq(lit(1.0)),
    }
}
