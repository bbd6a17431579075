//! Syntax trees checked against the catalogue (names and the types of both sides of every
//! comparison), then compiled to polars expressions.

use polars::prelude::*;

use super::parse::{parse, CmpOp, Operand, Rule, Spanned};
use super::{Catalog, FieldKind, RuleError};

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

/// Parses `text` and checks every name against `catalog` and the types of both sides of every
/// comparison.
pub fn check(text: &str, catalog: &Catalog) -> Result<CheckedRule, RuleError> {
    let rule = parse(text)?;
    let err = |message: String, at: &std::ops::Range<usize>| RuleError {
        message,
        rule: text.to_string(),
        at: at.clone(),
    };
    let type_of = |(o, at): &Spanned<Operand>| -> Result<Type, RuleError> {
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
                    return Err(err(format!("unknown name \"{name}\"{hint}"), at));
                }
            },
        })
    };
    fn walk(
        r: &Rule,
        type_of: &dyn Fn(&Spanned<Operand>) -> Result<Type, RuleError>,
        err: &dyn Fn(String, &std::ops::Range<usize>) -> RuleError,
    ) -> Result<(), RuleError> {
        match r {
            Rule::Or(a, b) | Rule::And(a, b) => {
                walk(a, type_of, err)?;
                walk(b, type_of, err)
            }
            Rule::Not(a) => walk(a, type_of, err),
            Rule::Cmp(l, op, r) => {
                let (lt, rt) = (type_of(l)?, type_of(r)?);
                if lt != rt {
                    return Err(err(
                        format!("cannot compare {} with {}", lt.name(), rt.name()),
                        &(l.1.start..r.1.end),
                    ));
                }
                let ordered = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge);
                if ordered && matches!(lt, Type::Text | Type::Bool) {
                    return Err(err(
                        format!("{} can only be compared with == or !=", lt.name()),
                        &(l.1.start..r.1.end),
                    ));
                }
                Ok(())
            }
            Rule::In(l, items, _) => {
                let lt = type_of(l)?;
                for item in items {
                    let it = type_of(item)?;
                    if it != lt {
                        return Err(err(
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
            Rule::IsNull(l, _) => type_of(l).map(|_| ()),
            Rule::Truth(o) => match type_of(o)? {
                Type::Bool => Ok(()),
                t => Err(err(
                    format!("{} is not a condition: compare it with something", t.name()),
                    &o.1,
                )),
            },
        }
    }
    walk(&rule, &type_of, &err)?;
    Ok(CheckedRule {
        text: text.to_string(),
        rule,
    })
}

impl CheckedRule {
    /// The polars expression of the rule over a frame holding the catalogue's columns, for a run
    /// on day `run_day` (days since 1970-01-01). Missing values make a condition null, which a
    /// filter treats as not eligible.
    pub fn to_expr(&self, catalog: &Catalog, run_day: i64) -> Expr {
        compile(&self.rule, catalog, run_day)
    }
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
    }
}
