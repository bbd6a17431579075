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

use std::fmt;

use polars::prelude::*;

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

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    /// `YYYY-MM-DD`, as days since 1970-01-01.
    Date(i64),
    /// `14d` or `2w`, in days.
    Span(i64),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

type Spanned<T> = (T, std::ops::Range<usize>);

fn tokenize(rule: &str) -> Result<Vec<Spanned<Token>>, RuleError> {
    let err = |message: String, at: std::ops::Range<usize>| RuleError {
        message,
        rule: rule.to_string(),
        at,
    };
    let bytes = rule.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' | b')' | b'[' | b']' | b',' => {
                i += 1;
                out.push((
                    match c {
                        b'(' => Token::LParen,
                        b')' => Token::RParen,
                        b'[' => Token::LBracket,
                        b']' => Token::RBracket,
                        _ => Token::Comma,
                    },
                    start..i,
                ));
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', true) => "==",
                    (b'!', true) => "!=",
                    (b'<', true) => "<=",
                    (b'>', true) => ">=",
                    (b'<', false) => "<",
                    (b'>', false) => ">",
                    (b'=', false) => return Err(err("use == to compare".into(), start..i + 1)),
                    _ => return Err(err("use != or not".into(), start..i + 1)),
                };
                i += op.len();
                out.push((Token::Op(op), start..i));
            }
            b'+' | b'-' => {
                i += 1;
                out.push((Token::Op(if c == b'+' { "+" } else { "-" }), start..i));
            }
            b'"' => {
                i += 1;
                let mut text = String::new();
                loop {
                    match rule[i..].chars().next() {
                        None => return Err(err("unterminated string".into(), start..rule.len())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let next = rule[i + 1..].chars().next();
                            match next {
                                Some(ch @ ('"' | '\\')) => {
                                    text.push(ch);
                                    i += 2;
                                }
                                _ => {
                                    return Err(err(
                                        "only \\\" and \\\\ are escapes in a string".into(),
                                        i..i + 1 + next.map_or(0, char::len_utf8),
                                    ))
                                }
                            }
                        }
                        Some(ch) => {
                            text.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push((Token::Text(text), start..i));
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'-')
                {
                    // A '-' continues only a date (2026-11-01), never a subtraction (x-1 is
                    // not a rule anyone writes; "run_date - 14d" has spaces).
                    if bytes[i] == b'-' && !looks_like_date(&rule[start..]) {
                        break;
                    }
                    i += 1;
                }
                let word = &rule[start..i];
                out.push((
                    number_like(word).ok_or_else(|| {
                        err(
                            format!(
                                "{word:?} is not a number, a date (YYYY-MM-DD) or a span like 14d"
                            ),
                            start..i,
                        )
                    })?,
                    start..i,
                ));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((Token::Ident(rule[start..i].to_string()), start..i));
            }
            _ => {
                let ch = rule[i..].chars().next().unwrap_or('?');
                return Err(err(
                    format!("unexpected character {ch:?}"),
                    start..start + ch.len_utf8(),
                ));
            }
        }
    }
    Ok(out)
}

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

fn number_like(word: &str) -> Option<Token> {
    if looks_like_date(word) && word.len() == 10 {
        let d = chrono_days(word)?;
        return Some(Token::Date(d));
    }
    for (suffix, days) in [("d", 1), ("w", 7)] {
        if let Some(n) = word.strip_suffix(suffix) {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return n.parse::<i64>().ok()?.checked_mul(days).map(Token::Span);
            }
        }
    }
    let v: f64 = word.parse().ok()?;
    v.is_finite().then_some(Token::Number(v))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date, or `None` when it is not a real date.
fn chrono_days(s: &str) -> Option<i64> {
    let y: i64 = s[..4].parse().ok()?;
    let m: i64 = s[5..7].parse().ok()?;
    let d: i64 = s[8..10].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// A value in a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(String),
    Number(f64),
    Text(String),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i64),
    /// The run date plus this many days.
    RunDate(i64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Or(Box<Rule>, Box<Rule>),
    And(Box<Rule>, Box<Rule>),
    Not(Box<Rule>),
    Cmp(Spanned<Operand>, CmpOp, Spanned<Operand>),
    In(Spanned<Operand>, Vec<Spanned<Operand>>, bool),
    IsNull(Spanned<Operand>, bool),
    /// A boolean field or literal on its own.
    Truth(Spanned<Operand>),
}

/// Nesting deeper than this is refused, so no input can exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Longer rules are refused: the expression tree (and its polars plan) grows with every term.
const MAX_TOKENS: usize = 1000;

struct Parser<'a> {
    rule: &'a str,
    tokens: Vec<Spanned<Token>>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>, at: std::ops::Range<usize>) -> RuleError {
        RuleError {
            message: message.into(),
            rule: self.rule.to_string(),
            at,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    /// The span of the current token, or the end of the rule.
    fn here(&self) -> std::ops::Range<usize> {
        self.tokens
            .get(self.pos)
            .map_or(self.rule.len()..self.rule.len() + 1, |(_, s)| s.clone())
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn bump(&mut self) -> Option<Spanned<Token>> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), RuleError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}"), self.here()))
        }
    }

    fn or(&mut self) -> Result<Rule, RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                format!("rule nested deeper than {MAX_DEPTH} levels"),
                self.here(),
            ));
        }
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Rule::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Rule::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Rule, RuleError> {
        if self.keyword("not") {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.err(
                    format!("rule nested deeper than {MAX_DEPTH} levels"),
                    self.here(),
                ));
            }
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Rule::Not(Box::new(inner)));
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Rule, RuleError> {
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(&Token::RParen, "')'")?;
            return Ok(inner);
        }
        let left = self.operand()?;
        if self.keyword("in") {
            self.pos += 1;
            return Ok(Rule::In(left, self.list()?, false));
        }
        if self.keyword("not") {
            self.pos += 1;
            if !self.keyword("in") {
                return Err(self.err("expected 'in' after 'not' here", self.here()));
            }
            self.pos += 1;
            return Ok(Rule::In(left, self.list()?, true));
        }
        if self.keyword("is") {
            self.pos += 1;
            let negated = self.keyword("not");
            if negated {
                self.pos += 1;
            }
            if !self.keyword("null") {
                return Err(self.err("expected 'null'", self.here()));
            }
            self.pos += 1;
            return Ok(Rule::IsNull(left, negated));
        }
        let op = match self.peek() {
            Some(Token::Op("==")) => CmpOp::Eq,
            Some(Token::Op("!=")) => CmpOp::Ne,
            Some(Token::Op("<")) => CmpOp::Lt,
            Some(Token::Op("<=")) => CmpOp::Le,
            Some(Token::Op(">")) => CmpOp::Gt,
            Some(Token::Op(">=")) => CmpOp::Ge,
            _ => return Ok(Rule::Truth(left)),
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Rule::Cmp(left, op, right))
    }

    fn list(&mut self) -> Result<Vec<Spanned<Operand>>, RuleError> {
        self.expect(&Token::LBracket, "'[' to start a list")?;
        let mut items = Vec::new();
        if self.peek() == Some(&Token::RBracket) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            let item = self.operand()?;
            if matches!(item.0, Operand::Field(_)) {
                return Err(self.err("a list holds values, not names", item.1));
            }
            items.push(item);
            match self.bump() {
                Some((Token::Comma, _)) => {}
                Some((Token::RBracket, _)) => return Ok(items),
                _ => {
                    self.pos -= 1;
                    return Err(self.err("expected ',' or ']'", self.here()));
                }
            }
        }
    }

    fn operand(&mut self) -> Result<Spanned<Operand>, RuleError> {
        let at = self.here();
        let Some((token, span)) = self.bump() else {
            return Err(self.err("the rule ends here: expected a value or a name", at));
        };
        Ok(match token {
            Token::Number(v) => (Operand::Number(v), span),
            Token::Op("-") => match self.bump() {
                Some((Token::Number(v), s)) => (Operand::Number(-v), span.start..s.end),
                _ => {
                    self.pos -= 1;
                    return Err(self.err("expected a number after '-'", self.here()));
                }
            },
            Token::Text(t) => (Operand::Text(t), span),
            Token::Date(d) => (Operand::Date(d), span),
            Token::Ident(w) if w == "true" || w == "false" => (Operand::Bool(w == "true"), span),
            Token::Ident(w) if w == "run_date" => {
                let sign = match self.peek() {
                    Some(Token::Op("+")) => 1,
                    Some(Token::Op("-")) => -1,
                    _ => return Ok((Operand::RunDate(0), span)),
                };
                self.pos += 1;
                match self.bump() {
                    Some((Token::Span(days), s)) => {
                        (Operand::RunDate(sign * days), span.start..s.end)
                    }
                    _ => {
                        self.pos -= 1;
                        return Err(self.err(
                            "expected a number of days or weeks, like 14d or 2w",
                            self.here(),
                        ));
                    }
                }
            }
            Token::Ident(w) if ["and", "or", "not", "in", "is", "null"].contains(&w.as_str()) => {
                return Err(self.err(format!("expected a value or a name, found '{w}'"), span))
            }
            Token::Ident(w) => (Operand::Field(w), span),
            Token::Span(_) => {
                return Err(self.err(
                    "a span like 14d only follows run_date (run_date - 14d)",
                    span,
                ))
            }
            _ => return Err(self.err("expected a value or a name", span)),
        })
    }
}

/// Parses a rule (syntax only; see [`check`] for names and types).
pub fn parse(rule: &str) -> Result<Rule, RuleError> {
    let tokens = tokenize(rule)?;
    let mut p = Parser {
        rule,
        tokens,
        pos: 0,
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Err(p.err("the rule is empty", 0..1));
    }
    if p.tokens.len() > MAX_TOKENS {
        let at = p.tokens[MAX_TOKENS].1.clone();
        return Err(p.err(
            format!("the rule is longer than {MAX_TOKENS} words and symbols; split it"),
            at,
        ));
    }
    let r = p.or()?;
    if p.pos < p.tokens.len() {
        let what = if p.peek() == Some(&Token::RParen) {
            "unmatched ')'"
        } else {
            "expected 'and', 'or' or the end of the rule"
        };
        return Err(p.err(what, p.here()));
    }
    Ok(r)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::Gen;

    fn catalog() -> Catalog {
        let f = |name: &str, kind: FieldKind, column: &str| Field {
            name: name.into(),
            kind,
            column: column.into(),
            description: String::new(),
        };
        Catalog {
            fields: vec![
                f(
                    "days_since_last_purchase",
                    FieldKind::Number,
                    "days_since_last_purchase",
                ),
                f("orders_total", FieldKind::Number, "orders_total"),
                f("is_new_buyer", FieldKind::Bool, "is_new_buyer"),
                f(
                    "country",
                    FieldKind::Text {
                        levels: vec!["CA".into(), "DE".into(), "US".into()],
                    },
                    "country",
                ),
                f(
                    "last_purchase_date",
                    FieldKind::DaysBefore,
                    "days_since_last_purchase",
                ),
            ],
        }
    }

    fn frame() -> DataFrame {
        df! {
            "user_id" => [1i64, 2, 3, 4, 5],
            "days_since_last_purchase" => [Some(3.0), Some(20.0), None, Some(40.0), Some(14.0)],
            "orders_total" => [2.0, 5.0, 0.0, 1.0, 3.0],
            "is_new_buyer" => [0.0, 0.0, 1.0, 0.0, 0.0],
            // US, CA, DE, missing, US
            "country" => [Some(2.0), Some(0.0), Some(1.0), None, Some(2.0)],
        }
        .unwrap()
    }

    /// Users a rule selects from [`frame`] (run date 2026-11-20).
    fn selects(rule: &str) -> Vec<i64> {
        let c = catalog();
        let checked = check(rule, &c).unwrap_or_else(|e| panic!("{e}"));
        let run_day = chrono_days("2026-11-20").unwrap();
        frame()
            .lazy()
            .filter(checked.to_expr(&c, run_day))
            .collect()
            .unwrap()
            .column("user_id")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .flatten()
            .collect()
    }

    #[test]
    fn the_issue_example_selects_by_hand() {
        // 1: too recent; 2: CA, 20 days; 3: new buyer; 4: country missing; 5: US, 14 days.
        assert_eq!(
            selects(
                r#"days_since_last_purchase >= 14 and country in ["US", "CA"] and not is_new_buyer"#
            ),
            vec![2, 5]
        );
    }

    #[test]
    fn comparisons_logic_and_nulls() {
        assert_eq!(selects("orders_total > 2"), vec![2, 5]);
        assert_eq!(
            selects("orders_total == 0 or orders_total >= 5"),
            vec![2, 3]
        );
        assert_eq!(selects("not (orders_total > 2)"), vec![1, 3, 4]);
        // Missing values satisfy neither a comparison nor its negation.
        assert_eq!(selects("days_since_last_purchase < 15"), vec![1, 5]);
        assert_eq!(selects("not (days_since_last_purchase < 15)"), vec![2, 4]);
        assert_eq!(selects("days_since_last_purchase is null"), vec![3]);
        assert_eq!(
            selects("days_since_last_purchase is not null"),
            vec![1, 2, 4, 5]
        );
        assert_eq!(selects(r#"country not in ["US"]"#), vec![2, 3]);
        assert_eq!(selects(r#"country == "DE""#), vec![3]);
        assert_eq!(selects(r#"country != "DE""#), vec![1, 2, 5]);
        // A level the data does not have matches nobody.
        assert_eq!(selects(r#"country == "FR""#), Vec::<i64>::new());
        assert_eq!(selects("is_new_buyer"), vec![3]);
        assert_eq!(
            selects("is_new_buyer == false and orders_total < 2"),
            vec![4]
        );
        assert_eq!(selects("orders_total in []"), Vec::<i64>::new());
        assert_eq!(selects("orders_total >= -1.5"), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn dates_relative_to_the_run_date() {
        // Run date 2026-11-20: the last purchase of user 2 was on 2026-10-31.
        assert_eq!(selects("last_purchase_date < run_date - 2w"), vec![2, 4]);
        assert_eq!(
            selects("last_purchase_date <= run_date - 14d"),
            vec![2, 4, 5]
        );
        assert_eq!(selects("last_purchase_date == 2026-10-31"), vec![2]);
        assert_eq!(selects("last_purchase_date >= 2026-11-06"), vec![1, 5]);
    }

    fn error(rule: &str) -> RuleError {
        check(rule, &catalog()).unwrap_err()
    }

    #[test]
    fn errors_point_at_the_fault() {
        let e = error("days_since_purchase >= 14");
        assert_eq!(
            e.message,
            "unknown name \"days_since_purchase\", did you mean \"days_since_last_purchase\"?"
        );
        assert_eq!(e.at, 0..19);
        assert_eq!(
            e.to_string(),
            "unknown name \"days_since_purchase\", did you mean \"days_since_last_purchase\"?\n    \
             days_since_purchase >= 14\n    ^^^^^^^^^^^^^^^^^^^"
        );
        let e = error("orders_total >= 14 and");
        assert_eq!(e.message, "the rule ends here: expected a value or a name");
        assert_eq!(e.at, 22..23);
        let e = error("orders_total = 3");
        assert_eq!((e.message.as_str(), e.at), ("use == to compare", 13..14));
        let e = error("(orders_total > 1");
        assert_eq!(e.message, "expected ')'");
        let e = error("orders_total > 1)");
        assert_eq!((e.message.as_str(), e.at), ("unmatched ')'", 16..17));
        let e = error(r#"country > "US""#);
        assert_eq!(e.message, "text can only be compared with == or !=");
        let e = error(r#"orders_total == "3""#);
        assert_eq!(e.message, "cannot compare a number with text");
        let e = error("orders_total");
        assert_eq!(
            e.message,
            "a number is not a condition: compare it with something"
        );
        let e = error("last_purchase_date < 2026-02-30");
        assert!(
            e.message.contains("\"2026-02-30\" is not a number, a date"),
            "{}",
            e.message
        );
        let e = error(r#"country in ["US", 3]"#);
        assert_eq!(
            (e.message.as_str(), e.at),
            ("the list holds a number but the left side is text", 18..19)
        );
        let e = error("last_purchase_date < run_date - 14");
        assert_eq!(
            e.message,
            "expected a number of days or weeks, like 14d or 2w"
        );
        let e = error("");
        assert_eq!(e.message, "the rule is empty");
        let e = error(&format!(
            "{}orders_total > 1{}",
            "(".repeat(100),
            ")".repeat(100)
        ));
        assert!(e.message.contains("nested deeper than 64"), "{}", e.message);
    }

    #[test]
    fn suggestions_only_for_likely_typos() {
        let c = catalog();
        assert_eq!(c.suggest("orders_totl"), Some("orders_total"));
        assert_eq!(c.suggest("holdout"), None);
        assert_eq!(
            closest("holdot", ["holdout", "id", "kind"].into_iter()),
            Some("holdout")
        );
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        // Random token soups from the language's own pieces plus arbitrary bytes: every one
        // either parses or gives an error whose span lies inside (or just after) the rule.
        let pieces = [
            "orders_total",
            "country",
            "is_new_buyer",
            "last_purchase_date",
            "x",
            "and",
            "or",
            "not",
            "in",
            "is",
            "null",
            "(",
            ")",
            "[",
            "]",
            ",",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "=",
            "!",
            "-",
            "+",
            "run_date",
            "14d",
            "2w",
            "3",
            "-2.5",
            "1e3",
            ".",
            "\"US\"",
            "\"",
            "\\",
            "2026-11-01",
            "2026-13-01",
            "true",
            "false",
            "é",
            "\u{1F600}",
            "\t",
            " ",
            "99999999999999999999d",
            "0x1F",
            "--",
        ];
        let c = catalog();
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let n = 1 + g.next() % 12;
            let mut rule = String::new();
            for _ in 0..n {
                rule.push_str(g.pick(&pieces));
                if !g.next().is_multiple_of(3) {
                    rule.push(' ');
                }
            }
            match check(&rule, &c) {
                Ok(r) => {
                    let _ = r.to_expr(&c, 20_000);
                }
                Err(e) => {
                    assert!(e.at.start <= rule.len(), "{rule:?}: {e:?}");
                    let _ = e.to_string();
                }
            }
        }
        // Arbitrary bytes (as lossy UTF-8), too.
        for _ in 0..20_000 {
            let len = g.next() % 40;
            let bytes: Vec<u8> = (0..len).map(|_| (g.next() % 256) as u8).collect();
            let rule = String::from_utf8_lossy(&bytes).to_string();
            if let Err(e) = check(&rule, &c) {
                let _ = e.to_string();
            }
        }
    }
}
