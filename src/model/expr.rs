//! Expressions of computed channels (`compute.<channel>.expr`): a small
//! recursive-descent parser and an evaluator over `f64`.
//!
//! Our own rather than a crate: the grammar is a dozen rules, every error
//! must carry the byte offset it is at (for a `validate` diagnostic that
//! points into the expression), channel names contain dots (`pump.power`),
//! evaluation must be deterministic and allocation-free per reading, and the
//! units of the channels must be checked over the same tree.
//!
//! Grammar, loosest first:
//!
//! ```text
//! expr    := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/") unary)*
//! unary   := "-" unary | power
//! power   := atom ("^" unary)?                 right-associative: -2^2 = -4
//! atom    := number | name | name "(" expr ("," expr)* ")" | "(" expr ")"
//! name    := [A-Za-z_][A-Za-z0-9_]* ("." [A-Za-z0-9_]+)*  |  "`" any but "`" "`"
//! ```
//!
//! A comparison is 1 when it holds and 0 when not. Functions: `min`, `max`
//! (one or more arguments), `abs`, `sqrt`, `exp`, `ln`, `log10`, `floor`,
//! `ceil`, `round` (one), `clamp(x, low, high)`, `if(condition, then, else)`
//! (the condition holds when it is not 0).
//!
//! Units are text, compared as written: `+`, `-`, comparisons, `min`, `max`,
//! `clamp` and both branches of `if` need equal units where both sides have
//! one, and keep it; a number added takes the unit of the other side; `*`,
//! `/` (even by a number: `/ 1000` may turn W into kW), `^`, `sqrt` and the
//! other functions give a value whose unit is not known.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
    /// Channel names in order of first use; `Node::Var` indexes this.
    names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    /// Byte offset in the source where this node starts (its operator for
    /// a binary node).
    at: usize,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Num(f64),
    Var(usize),
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Min,
    Max,
    Abs,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Floor,
    Ceil,
    Round,
    Clamp,
    If,
}

const FUNCS: &[(&str, Func)] = &[
    ("min", Func::Min),
    ("max", Func::Max),
    ("abs", Func::Abs),
    ("sqrt", Func::Sqrt),
    ("exp", Func::Exp),
    ("ln", Func::Ln),
    ("log10", Func::Log10),
    ("floor", Func::Floor),
    ("ceil", Func::Ceil),
    ("round", Func::Round),
    ("clamp", Func::Clamp),
    ("if", Func::If),
];

impl Func {
    /// Argument count: at least, at most.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Min | Func::Max => (1, usize::MAX),
            Func::Abs | Func::Sqrt | Func::Exp | Func::Ln | Func::Log10 | Func::Floor | Func::Ceil | Func::Round => {
                (1, 1)
            }
            Func::Clamp | Func::If => (3, 3),
        }
    }
}

/// Why an expression does not parse or its units disagree, and where (a
/// byte offset into the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub at: usize,
    pub message: String,
    /// A name the author may have meant (unknown functions).
    pub hint: Option<String>,
}

/// Expressions longer than this are refused (a spec is read by people).
const MAX_LEN: usize = 4096;
/// Nesting deeper than this is refused (the parser recurses).
const MAX_DEPTH: usize = 64;

impl Expr {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_LEN {
            return Err(err(0, format!("the expression is longer than {MAX_LEN} bytes")));
        }
        let mut p = Parser { src, pos: 0, names: Vec::new(), depth: 0 };
        p.skip_ws();
        if p.pos == src.len() {
            return Err(err(0, "the expression is empty"));
        }
        let root = p.expr()?;
        p.skip_ws();
        if p.pos < src.len() {
            return Err(err(p.pos, format!("unexpected `{}`", p.rest_token())));
        }
        Ok(Expr { root, names: p.names })
    }

    /// The channel names it reads, in order of first use.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Byte offset of the first use of name `i` (for a diagnostic).
    pub fn name_at(&self, i: usize) -> usize {
        fn find(n: &Node, i: usize) -> Option<usize> {
            match &n.kind {
                Kind::Var(v) if *v == i => Some(n.at),
                Kind::Num(_) | Kind::Var(_) => None,
                Kind::Neg(a) => find(a, i),
                Kind::Bin(_, a, b) => find(a, i).or_else(|| find(b, i)),
                Kind::Call(_, args) => args.iter().find_map(|a| find(a, i)),
            }
        }
        find(&self.root, i).unwrap_or(0)
    }

    /// The value, given the value of each name (in [`Expr::names`] order).
    /// Not finite when the arithmetic is not (a division by zero).
    pub fn eval(&self, vars: &[f64]) -> f64 {
        eval(&self.root, vars)
    }

    /// The unit of the result, given the unit of each name where known.
    /// An error where two units that must agree do not.
    pub fn unit(&self, units: &[Option<&str>]) -> Result<Option<String>, ExprError> {
        unit(&self.root, units).map(|u| match u {
            U::Known(s) => Some(s),
            U::Number | U::Unknown => None,
        })
    }
}

fn err(at: usize, message: impl Into<String>) -> ExprError {
    ExprError { at, message: message.into(), hint: None }
}

fn truth(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn eval(n: &Node, vars: &[f64]) -> f64 {
    match &n.kind {
        Kind::Num(x) => *x,
        Kind::Var(i) => vars.get(*i).copied().unwrap_or(f64::NAN),
        Kind::Neg(a) => -eval(a, vars),
        Kind::Bin(op, a, b) => {
            let (x, y) = (eval(a, vars), eval(b, vars));
            match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div => x / y,
                Op::Pow => x.powf(y),
                Op::Lt => truth(x < y),
                Op::Le => truth(x <= y),
                Op::Gt => truth(x > y),
                Op::Ge => truth(x >= y),
                Op::Eq => truth(x == y),
                Op::Ne => truth(x != y),
            }
        }
        Kind::Call(f, args) => {
            let arg = |i: usize| eval(&args[i], vars);
            match f {
                // NaN in, NaN out: `f64::min` would drop it and hide a bad value.
                Func::Min => args.iter().map(|a| eval(a, vars)).fold(f64::INFINITY, |m, x| {
                    if m.is_nan() || x.is_nan() {
                        f64::NAN
                    } else {
                        m.min(x)
                    }
                }),
                Func::Max => args.iter().map(|a| eval(a, vars)).fold(f64::NEG_INFINITY, |m, x| {
                    if m.is_nan() || x.is_nan() {
                        f64::NAN
                    } else {
                        m.max(x)
                    }
                }),
                Func::Abs => arg(0).abs(),
                Func::Sqrt => arg(0).sqrt(),
                Func::Exp => arg(0).exp(),
                Func::Ln => arg(0).ln(),
                Func::Log10 => arg(0).log10(),
                Func::Floor => arg(0).floor(),
                Func::Ceil => arg(0).ceil(),
                Func::Round => arg(0).round(),
                Func::Clamp => {
                    let (x, lo, hi) = (arg(0), arg(1), arg(2));
                    if x.is_nan() || lo.is_nan() || hi.is_nan() || lo > hi {
                        f64::NAN
                    } else {
                        x.clamp(lo, hi)
                    }
                }
                Func::If => {
                    if arg(0) != 0.0 {
                        arg(1)
                    } else {
                        arg(2)
                    }
                }
            }
        }
    }
}

/// What is known of a value's unit.
#[derive(Debug, Clone, PartialEq)]
enum U {
    /// A plain number: it takes the unit of what it meets.
    Number,
    Known(String),
    Unknown,
}

/// Two values that must share a unit: the unit they share.
fn same(a: U, b: U, at: usize, what: &str) -> Result<U, ExprError> {
    match (a, b) {
        (U::Known(x), U::Known(y)) if x != y => Err(err(at, format!("{what} `{x}` and `{y}`"))),
        (U::Known(x), _) | (_, U::Known(x)) => Ok(U::Known(x)),
        (U::Number, U::Number) => Ok(U::Number),
        (U::Unknown, _) | (_, U::Unknown) => Ok(U::Unknown),
    }
}

fn unit(n: &Node, units: &[Option<&str>]) -> Result<U, ExprError> {
    Ok(match &n.kind {
        Kind::Num(_) => U::Number,
        Kind::Var(i) => units.get(*i).copied().flatten().map_or(U::Unknown, |u| U::Known(u.to_string())),
        Kind::Neg(a) => unit(a, units)?,
        Kind::Bin(op, a, b) => {
            let (x, y) = (unit(a, units)?, unit(b, units)?);
            match op {
                Op::Add | Op::Sub => same(x, y, n.at, "adds or subtracts")?,
                Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                    same(x, y, n.at, "compares")?;
                    U::Number
                }
                // Even a number may convert (`/ 1000`: W to kW): only a
                // number times a number is known.
                Op::Mul | Op::Div => match (x, y) {
                    (U::Number, U::Number) => U::Number,
                    _ => U::Unknown,
                },
                Op::Pow => match x {
                    U::Number => U::Number,
                    _ => U::Unknown,
                },
            }
        }
        Kind::Call(f, args) => {
            let mut us = Vec::with_capacity(args.len());
            for a in args {
                us.push(unit(a, units)?);
            }
            match f {
                Func::Min | Func::Max | Func::Clamp => {
                    let mut acc = U::Number;
                    for (u, a) in us.into_iter().zip(args) {
                        acc = same(acc, u, a.at, "takes the min or max of")?;
                    }
                    acc
                }
                Func::If => {
                    let mut it = us.into_iter().skip(1);
                    let (t, e) = (it.next().unwrap_or(U::Unknown), it.next().unwrap_or(U::Unknown));
                    same(t, e, args[2].at, "chooses between")?
                }
                Func::Abs | Func::Floor | Func::Ceil | Func::Round => us.into_iter().next().unwrap_or(U::Unknown),
                Func::Sqrt | Func::Exp | Func::Ln | Func::Log10 => match us.first() {
                    Some(U::Number) => U::Number,
                    _ => U::Unknown,
                },
            }
        }
    })
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    names: Vec<String>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// The token at the current position, for a message.
    fn rest_token(&self) -> String {
        let rest = &self.src[self.pos..];
        let end = rest
            .char_indices()
            .find(|(i, c)| *i > 0 && (c.is_whitespace() || "()+-*/^,<>=!".contains(*c)))
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].chars().take(20).collect()
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.pos, format!("the expression nests deeper than {MAX_DEPTH}")));
        }
        let left = self.sum()?;
        self.skip_ws();
        let at = self.pos;
        let op = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find(|(s, _)| self.src[self.pos..].starts_with(s));
        let node = match op {
            Some((s, op)) => {
                self.pos += s.len();
                let right = self.sum()?;
                Node { at, kind: Kind::Bin(op, Box::new(left), Box::new(right)) }
            }
            None => {
                if self.src[self.pos..].starts_with('=') {
                    return Err(err(self.pos, "`=` is not an operator; compare with `==`"));
                }
                left
            }
        };
        self.depth -= 1;
        Ok(node)
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut left = self.product()?;
        loop {
            self.skip_ws();
            let at = self.pos;
            let op = match self.peek() {
                Some(b'+') => Op::Add,
                Some(b'-') => Op::Sub,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.product()?;
            left = Node { at, kind: Kind::Bin(op, Box::new(left), Box::new(right)) };
        }
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            self.skip_ws();
            let at = self.pos;
            let op = match self.peek() {
                Some(b'*') => Op::Mul,
                Some(b'/') => Op::Div,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Node { at, kind: Kind::Bin(op, Box::new(left), Box::new(right)) };
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        self.skip_ws();
        if self.peek() == Some(b'-') {
            let at = self.pos;
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(err(at, format!("the expression nests deeper than {MAX_DEPTH}")));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node { at, kind: Kind::Neg(Box::new(inner)) });
        }
        self.power()
    }

    fn power(&mut self) -> Result<Node, ExprError> {
        let base = self.atom()?;
        self.skip_ws();
        if self.peek() == Some(b'^') {
            let at = self.pos;
            self.pos += 1;
            let exp = self.unary()?;
            return Ok(Node { at, kind: Kind::Bin(Op::Pow, Box::new(base), Box::new(exp)) });
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None => Err(err(at, "the expression ends where a value was expected")),
            Some(b'(') => {
                self.pos += 1;
                let inner = self.expr()?;
                if !self.eat(")") {
                    return Err(err(self.pos, "expected `)`"));
                }
                Ok(inner)
            }
            Some(b) if b.is_ascii_digit() || b == b'.' => self.number(),
            Some(b'`') => {
                let src: &'a str = self.src;
                let end = src[at + 1..].find('`').ok_or_else(|| err(at, "unclosed `` ` `` around a channel name"))?;
                let name = &src[at + 1..at + 1 + end];
                if name.is_empty() {
                    return Err(err(at, "empty channel name"));
                }
                self.pos = at + end + 2;
                Ok(self.var(at, name))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let name = self.name();
                self.skip_ws();
                if self.peek() == Some(b'(') {
                    return self.call(at, name);
                }
                Ok(self.var(at, name))
            }
            Some(_) => Err(err(at, format!("unexpected `{}`", self.rest_token()))),
        }
    }

    fn number(&mut self) -> Result<Node, ExprError> {
        let at = self.pos;
        let b = self.src.as_bytes();
        let mut end = at;
        while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
            end += 1;
        }
        if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
            let mut e = end + 1;
            if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
                e += 1;
            }
            if e < b.len() && b[e].is_ascii_digit() {
                while e < b.len() && b[e].is_ascii_digit() {
                    e += 1;
                }
                end = e;
            }
        }
        let text = &self.src[at..end];
        self.pos = end;
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Node { at, kind: Kind::Num(x) }),
            _ => Err(err(at, format!("`{text}` is not a number"))),
        }
    }

    /// A bare name: letters, digits, `_`, and dots between segments.
    fn name(&mut self) -> &'a str {
        let src: &'a str = self.src;
        let b = src.as_bytes();
        let start = self.pos;
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut end = start;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        while end + 1 < b.len() && b[end] == b'.' && word(b[end + 1]) {
            end += 1;
            while end < b.len() && word(b[end]) {
                end += 1;
            }
        }
        self.pos = end;
        &src[start..end]
    }

    fn var(&mut self, at: usize, name: &str) -> Node {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        Node { at, kind: Kind::Var(i) }
    }

    fn call(&mut self, at: usize, name: &str) -> Result<Node, ExprError> {
        let Some(&(_, func)) = FUNCS.iter().find(|(n, _)| *n == name) else {
            let mut e = err(at, format!("no function `{name}`"));
            e.hint =
                closest(name, FUNCS.iter().map(|(n, _)| *n)).map(|n| format!("did you mean `{n}`?")).or_else(|| {
                    Some(format!("functions: {}", FUNCS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")))
                });
            return Err(e);
        };
        let name = name.to_string();
        self.eat("(");
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.expr()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(err(self.pos, "expected `,` or `)`"));
                }
            }
        }
        let (lo, hi) = func.arity();
        if args.len() < lo || args.len() > hi {
            let want = match (lo, hi) {
                (lo, usize::MAX) => format!("at least {lo} argument{}", if lo == 1 { "" } else { "s" }),
                (1, 1) => "one argument".to_string(),
                (lo, _) => format!("{lo} arguments"),
            };
            return Err(err(at, format!("`{name}` takes {want}, not {}", args.len())));
        }
        Ok(Node { at, kind: Kind::Call(func, args) })
    }
}

/// The candidate closest to `name` by edit distance, if close (< 3).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d < 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(src: &str, vars: &[f64]) -> f64 {
        Expr::parse(src).unwrap().eval(vars)
    }

    #[test]
    fn precedence_and_names() {
        let e = Expr::parse("pump.power / pump.flow * 2 + 1").unwrap();
        assert_eq!(e.names(), ["pump.power", "pump.flow"]);
        assert_eq!(e.eval(&[10.0, 4.0]), 6.0);
        assert_eq!(ev("-2^2", &[]), -4.0);
        assert_eq!(ev("2^3^2", &[]), 512.0);
        assert_eq!(ev("(1 + 2) * 3", &[]), 9.0);
        assert_eq!(ev("1 - 2 - 3", &[]), -4.0);
        assert_eq!(ev("max(a, b, 3) + min(a)", &[1.0, 2.0]), 4.0);
        assert_eq!(ev("clamp(a, 0, 10)", &[12.0]), 10.0);
        assert_eq!(ev("if(a > 1, 5, 6)", &[2.0]), 5.0);
        assert_eq!(ev("(a >= 2) == 1", &[2.0]), 1.0);
        assert_eq!(Expr::parse("a < b < c").unwrap_err().message, "unexpected `<`");
        assert_eq!(ev("`line-1.kw` * 1.5e3", &[2.0]), 3000.0);
        assert_eq!(ev("a.b.1 + a", &[1.0, 2.0]), 3.0);
        assert!(ev("a / b", &[1.0, 0.0]).is_infinite());
        assert!(ev("max(a, 1)", &[f64::NAN]).is_nan());
    }

    #[test]
    fn errors_say_where() {
        let e = |s: &str| Expr::parse(s).unwrap_err();
        assert_eq!(e("a + * b"), err(4, "unexpected `*`"));
        assert_eq!(e("(a + b"), err(6, "expected `)`"));
        assert_eq!(e("a +"), err(3, "the expression ends where a value was expected"));
        assert_eq!(e("a = b"), err(2, "`=` is not an operator; compare with `==`"));
        assert_eq!(e(""), err(0, "the expression is empty"));
        let m = e("mx(a, b)");
        assert_eq!((m.at, m.message.as_str(), m.hint.as_deref()), (0, "no function `mx`", Some("did you mean `max`?")));
        assert_eq!(e("clamp(a, 1)").message, "`clamp` takes 3 arguments, not 2");
        assert_eq!(e("a b").message, "unexpected `b`");
        assert!(e(&"(".repeat(100)).message.contains("nests deeper"));
        assert!(e(&"-".repeat(100)).message.contains("nests deeper"));
    }

    #[test]
    fn units_agree_or_say_where_not() {
        let u = |s: &str, units: &[Option<&str>]| Expr::parse(s).unwrap().unit(units);
        assert_eq!(u("a + b", &[Some("kW"), Some("kW")]), Ok(Some("kW".into())));
        assert_eq!(u("a + 1", &[Some("kW")]), Ok(Some("kW".into())));
        assert_eq!(u("a / 1000 + b", &[Some("W"), Some("kW")]), Ok(Some("kW".into())));
        assert_eq!(u("a + b", &[Some("kW"), None]), Ok(Some("kW".into())));
        assert_eq!(u("a / b", &[Some("kW"), Some("m3/h")]), Ok(None));
        assert_eq!(u("a + b", &[Some("kW"), Some("W")]), Err(err(2, "adds or subtracts `kW` and `W`")));
        assert_eq!(u("max(a, b)", &[Some("kW"), Some("W")]).unwrap_err().at, 7);
        assert_eq!(u("a > b", &[Some("kW"), Some("W")]).unwrap_err().message, "compares `kW` and `W`");
    }

    proptest! {
        /// Evaluation is deterministic and agrees with Rust's arithmetic.
        #[test]
        fn arithmetic_matches(a in -1e6f64..1e6, b in -1e6f64..1e6, c in 1e-3f64..1e3) {
            let e = Expr::parse("(a + b) * c - a / c").unwrap();
            prop_assert_eq!(e.eval(&[a, b, c]), (a + b) * c - a / c);
            prop_assert_eq!(e.eval(&[a, b, c]).to_bits(), e.eval(&[a, b, c]).to_bits());
        }

        /// Any text parses or fails with an offset inside it; never a panic.
        #[test]
        fn never_panics(s in "[-a-z0-9_.+*/^()<>=!, `]{0,40}") {
            match Expr::parse(&s) {
                Ok(e) => { let _ = e.eval(&vec![1.0; e.names().len()]); }
                Err(e) => prop_assert!(e.at <= s.len()),
            }
        }
    }
}
