//! Rules as text to syntax trees: the tokenizer and a recursive-descent parser with bounded
//! depth and length, whose errors point at the offending span.

use super::RuleError;

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

pub(super) type Spanned<T> = (T, std::ops::Range<usize>);

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
                if let Some(len) = misshapen_date(&rule[start..]) {
                    return Err(err(
                        format!(
                            "{} is not a date: dates are written YYYY-MM-DD, e.g. 2026-01-05",
                            &rule[start..start + len]
                        ),
                        start..start + len,
                    ));
                }
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
                // 2026/11/01 and 11/01/2026 are dates written another way.
                let hint = if ch == '/' {
                    ": dates are written YYYY-MM-DD, e.g. 2026-11-01"
                } else {
                    ""
                };
                return Err(err(
                    format!("unexpected character {ch:?}{hint}"),
                    start..start + ch.len_utf8(),
                ));
            }
        }
    }
    Ok(out)
}

/// The length of a date written with dashes but not as `YYYY-MM-DD` at the start of `s`
/// (`2026-1-5`, `01-11-2026`), if there is one.
fn misshapen_date(s: &str) -> Option<usize> {
    let parts: Vec<usize> = {
        let mut parts = Vec::new();
        let mut rest = s;
        for k in 0..3 {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            parts.push(digits);
            rest = &rest[digits..];
            if k < 2 {
                rest = rest.strip_prefix('-')?;
            }
        }
        parts
    };
    let len = parts.iter().sum::<usize>() + 2;
    let next = s.as_bytes().get(len);
    let whole = next.is_none_or(|b| !b.is_ascii_alphanumeric());
    (whole && !looks_like_date(s) && parts.iter().all(|&p| p <= 4)).then_some(len)
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
pub(super) fn chrono_days(s: &str) -> Option<i64> {
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
    /// `item in deal_items`: an item condition's test against a list the campaign names.
    InList(Spanned<Operand>, Spanned<String>, bool),
    /// `wishlist has …` or `owns …`: whether any item the user holds that way meets an item
    /// condition. `text` is the expression as written (it names the column that holds it).
    Has {
        relation: Relation,
        condition: Box<Rule>,
        text: String,
    },
}

/// How a user holds an item, as an item-aware rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// On the user's wishlist (added before the run date).
    Wishlist,
    /// Bought by the user for themselves, or received as a gift, before the run date.
    Owns,
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
        if let Some(relation) = self.relation() {
            let start = self.here().start;
            self.pos += if relation == Relation::Wishlist { 2 } else { 1 };
            if self.pos >= self.tokens.len() {
                return Err(self.err(
                    "expected an item condition, like game_id == 1234 or item in deal_items",
                    self.here(),
                ));
            }
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.err(
                    format!("rule nested deeper than {MAX_DEPTH} levels"),
                    self.here(),
                ));
            }
            let condition = Box::new(self.condition()?);
            self.depth -= 1;
            let end = self.tokens[self.pos - 1].1.end;
            return Ok(Rule::Has {
                relation,
                condition,
                text: self.rule[start..end].to_string(),
            });
        }
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(&Token::RParen, "')'")?;
            return Ok(inner);
        }
        let left = self.operand()?;
        let negated = self.keyword("not");
        if negated {
            self.pos += 1;
            if !self.keyword("in") {
                return Err(self.err("expected 'in' after 'not' here", self.here()));
            }
        }
        if self.keyword("in") {
            self.pos += 1;
            if let Some((Token::Ident(name), at)) = self.tokens.get(self.pos).cloned() {
                self.pos += 1;
                return Ok(Rule::InList(left, (name, at), negated));
            }
            return Ok(Rule::In(left, self.list()?, negated));
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

    /// The relation an item-aware condition starts with here, if any: `wishlist has` or `owns`.
    fn relation(&self) -> Option<Relation> {
        let next =
            matches!(self.tokens.get(self.pos + 1), Some((Token::Ident(w), _)) if w == "has");
        if self.keyword("wishlist") && next {
            Some(Relation::Wishlist)
        } else if self.keyword("owns") {
            Some(Relation::Owns)
        } else {
            None
        }
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
