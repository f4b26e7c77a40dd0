//! ARM template expressions (`"[format('{0}/{1}', parameters('site'), 'main')]"`): a parser
//! and an evaluator of the functions that decide what runs locally. What only a deployment knows
//! (`reference()`, `listKeys()`, another resource's `resourceId()`, ...) is an [`Unknown`], never a
//! made-up value.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Why an expression has no local value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// Only a deployment knows it: says what (`reference('db').properties...`) and how to
    /// supply it.
    Unknown { what: String, supply: String },
    /// The expression is wrong (syntax, arguments, an undefined parameter or variable).
    Invalid(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::Unknown { what, .. } => write!(f, "{what} is known only to a deployment"),
            EvalError::Invalid(m) => f.write_str(m),
        }
    }
}

type R<T> = Result<T, EvalError>;

fn invalid<T>(m: impl Into<String>) -> R<T> {
    Err(EvalError::Invalid(m.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Num(i64),
    Call(String, Vec<Expr>),
    /// `x.name`
    Member(Box<Expr>, String),
    /// `x[i]`
    Index(Box<Expr>, Box<Expr>),
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> R<Expr> {
        self.ws();
        let mut e = match self.s.get(self.at) {
            Some(b'\'') => self.string()?,
            Some(c) if c.is_ascii_digit() || *c == b'-' => self.number()?,
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let name = self.ident();
                if self.eat(b'(') {
                    let mut args = Vec::new();
                    if !self.eat(b')') {
                        loop {
                            args.push(self.expr()?);
                            if self.eat(b')') {
                                break;
                            }
                            if !self.eat(b',') {
                                return invalid(format!("expected ',' or ')' in the arguments of {name}()"));
                            }
                        }
                    }
                    Expr::Call(name, args)
                } else {
                    match name.to_ascii_lowercase().as_str() {
                        "true" | "false" | "null" => Expr::Call(name, Vec::new()),
                        _ => return invalid(format!("{name} is not a function call (missing parentheses?)")),
                    }
                }
            }
            Some(c) => return invalid(format!("unexpected '{}'", *c as char)),
            None => return invalid("the expression ends too soon"),
        };
        loop {
            if self.eat(b'.') {
                self.ws();
                let name = self.ident();
                if name.is_empty() {
                    return invalid("expected a property name after '.'");
                }
                e = Expr::Member(Box::new(e), name);
            } else if self.eat(b'[') {
                let i = self.expr()?;
                if !self.eat(b']') {
                    return invalid("expected ']'");
                }
                e = Expr::Index(Box::new(e), Box::new(i));
            } else {
                return Ok(e);
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.at;
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    fn string(&mut self) -> R<Expr> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.at) {
                None => return invalid("a string is not closed (')"),
                Some(b'\'') if self.s.get(self.at + 1) == Some(&b'\'') => {
                    out.push(b'\'');
                    self.at += 2;
                }
                Some(b'\'') => {
                    self.at += 1;
                    return Ok(Expr::Str(String::from_utf8_lossy(&out).into_owned()));
                }
                Some(c) => {
                    out.push(*c);
                    self.at += 1;
                }
            }
        }
    }

    fn number(&mut self) -> R<Expr> {
        let start = self.at;
        self.at += 1;
        while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        text.parse().map(Expr::Num).or_else(|_| invalid(format!("{text} is not a number")))
    }
}

fn parse(text: &str) -> R<Expr> {
    let mut p = Parser { s: text.as_bytes(), at: 0 };
    let e = p.expr()?;
    p.ws();
    if p.at != p.s.len() {
        return invalid(format!("unexpected text after the expression: {}", &text[p.at..]));
    }
    Ok(e)
}

/// The template's parameters and variables, with values given for the deployment.
pub(crate) struct Scope<'a> {
    /// `parameters` of the template: declarations with `type` and `defaultValue`.
    pub params: Option<&'a Value>,
    /// `variables` of the template, evaluated on first use.
    pub vars: Option<&'a Value>,
    /// Values given for this deployment (`--parameters FILE`, `--parameter NAME=VALUE`).
    pub given: &'a BTreeMap<String, Value>,
    /// Variables being evaluated, to report a cycle instead of recursing forever.
    pub evaluating: std::cell::RefCell<Vec<String>>,
    pub cache: std::cell::RefCell<BTreeMap<String, R<Value>>>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(params: Option<&'a Value>, vars: Option<&'a Value>, given: &'a BTreeMap<String, Value>) -> Self {
        Self { params, vars, given, evaluating: Default::default(), cache: Default::default() }
    }

    /// A string that may be an expression: `[...]` is evaluated, `[[...` is the literal `[...`.
    pub(crate) fn string(&self, s: &str) -> R<Value> {
        if let Some(rest) = s.strip_prefix("[[") {
            return Ok(Value::String(format!("[{rest}")));
        }
        match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Some(inner) => self.eval(&parse(inner)?),
            None => Ok(Value::String(s.to_owned())),
        }
    }

    /// Every string of `v` evaluated, recursively.
    pub(crate) fn value(&self, v: &Value) -> R<Value> {
        match v {
            Value::String(s) => self.string(s),
            Value::Array(a) => a.iter().map(|x| self.value(x)).collect::<R<Vec<_>>>().map(Value::Array),
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.value(x)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn parameter(&self, name: &str) -> R<Value> {
        let decl = self.params.and_then(|p| get_ci(p, name));
        let given = self.given.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let Some(decl) = decl else {
            return invalid(format!("the template declares no parameter '{name}'"));
        };
        let kind = get_ci(decl, "type").and_then(Value::as_str).unwrap_or("string").to_ascii_lowercase();
        match (given, get_ci(decl, "defaultValue")) {
            (Some(v), _) => coerce(v, &kind, name),
            (None, Some(default)) => self.value(default),
            (None, None) => Err(EvalError::Unknown {
                what: format!("parameter '{name}' (no defaultValue)"),
                supply: format!("--parameter {name}=VALUE, or a parameters file (--parameters FILE)"),
            }),
        }
    }

    fn variable(&self, name: &str) -> R<Value> {
        if let Some(v) = self.cache.borrow().get(name) {
            return v.clone();
        }
        if self.evaluating.borrow().iter().any(|n| n == name) {
            return invalid(format!("variable '{name}' refers to itself"));
        }
        let Some(raw) = self.vars.and_then(|v| get_ci(v, name)) else {
            return invalid(format!("the template declares no variable '{name}'"));
        };
        self.evaluating.borrow_mut().push(name.to_owned());
        let v = self.value(raw);
        self.evaluating.borrow_mut().pop();
        self.cache.borrow_mut().insert(name.to_owned(), v.clone());
        v
    }

    fn eval(&self, e: &Expr) -> R<Value> {
        match e {
            Expr::Str(s) => Ok(Value::String(s.clone())),
            Expr::Num(n) => Ok(json!(n)),
            Expr::Member(x, name) => {
                let v = self.eval(x)?;
                get_ci(&v, name).cloned().map_or_else(|| invalid(format!("no property '{name}' in {}", short(&v))), Ok)
            }
            Expr::Index(x, i) => {
                let (v, i) = (self.eval(x)?, self.eval(i)?);
                let found = match (&v, &i) {
                    (Value::Array(a), Value::Number(n)) => n.as_u64().and_then(|n| a.get(n as usize)).cloned(),
                    (Value::Object(_), Value::String(k)) => get_ci(&v, k).cloned(),
                    _ => None,
                };
                found.map_or_else(|| invalid(format!("{} has no [{}]", short(&v), short(&i))), Ok)
            }
            Expr::Call(name, args) => self.call(name, args),
        }
    }

    fn call(&self, name: &str, args: &[Expr]) -> R<Value> {
        let lower = name.to_ascii_lowercase();
        // Lazy ones first: `if` evaluates only the branch it takes.
        if lower == "if" {
            let [c, a, b] = args else { return invalid("if() takes 3 arguments") };
            return if truthy(&self.eval(c)?, "if")? { self.eval(a) } else { self.eval(b) };
        }
        if lower == "coalesce" {
            for a in args {
                let v = self.eval(a)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            return Ok(Value::Null);
        }
        if UNKNOWABLE.iter().any(|u| lower == *u || (*u == "list" && lower.starts_with("list"))) {
            // Said as written: the outermost call a deployment answers, with its arguments.
            let shown: Vec<String> = args.iter().map(source).collect();
            return Err(EvalError::Unknown {
                what: format!("{name}({})", shown.join(", ")),
                supply:
                    "give the value itself: --setting NAME=VALUE for an app setting, or a parameter (--parameter NAME=VALUE) in its place"
                        .into(),
            });
        }
        let v: Vec<Value> = args.iter().map(|a| self.eval(a)).collect::<R<_>>()?;
        let s = |i: usize| -> R<String> {
            match v.get(i) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => invalid(format!("{name}() expects a string, got {}", short(other))),
                None => invalid(format!("{name}() needs more arguments")),
            }
        };
        let n = |count: usize| -> R<()> {
            if v.len() == count {
                Ok(())
            } else {
                invalid(format!("{name}() takes {count} argument(s), got {}", v.len()))
            }
        };
        Ok(match lower.as_str() {
            "parameters" => {
                n(1)?;
                self.parameter(&s(0)?)?
            }
            "variables" => {
                n(1)?;
                self.variable(&s(0)?)?
            }
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            "concat" if v.iter().all(Value::is_array) => {
                Value::Array(v.into_iter().flat_map(|a| a.as_array().cloned().unwrap_or_default()).collect())
            }
            "concat" => Value::String(v.iter().map(text).collect()),
            "format" => Value::String(format(&s(0)?, &v[1..])?),
            "equals" => {
                n(2)?;
                Value::Bool(loose_eq(&v[0], &v[1]))
            }
            "not" => {
                n(1)?;
                Value::Bool(!truthy(&v[0], name)?)
            }
            "and" => Value::Bool(v.iter().map(|x| truthy(x, name)).collect::<R<Vec<bool>>>()?.into_iter().all(|b| b)),
            "or" => Value::Bool(v.iter().map(|x| truthy(x, name)).collect::<R<Vec<bool>>>()?.into_iter().any(|b| b)),
            "tolower" => Value::String(s(0)?.to_lowercase()),
            "toupper" => Value::String(s(0)?.to_uppercase()),
            "trim" => Value::String(s(0)?.trim().to_owned()),
            "replace" => Value::String(s(0)?.replace(&s(1)?, &s(2)?)),
            "string" => {
                n(1)?;
                Value::String(text(&v[0]))
            }
            "int" => {
                n(1)?;
                match &v[0] {
                    Value::Number(x) => json!(x.as_i64().unwrap_or(0)),
                    Value::String(t) => json!(t.trim().parse::<i64>().or_else(|_| invalid(format!("int('{t}'): not an integer")))?),
                    other => return invalid(format!("int() of {}", short(other))),
                }
            }
            "bool" => {
                n(1)?;
                match &v[0] {
                    Value::Bool(b) => Value::Bool(*b),
                    Value::String(t) if t.eq_ignore_ascii_case("true") => Value::Bool(true),
                    Value::String(t) if t.eq_ignore_ascii_case("false") => Value::Bool(false),
                    Value::Number(x) => Value::Bool(x.as_i64() != Some(0)),
                    other => return invalid(format!("bool() of {}", short(other))),
                }
            }
            "empty" => {
                n(1)?;
                Value::Bool(match &v[0] {
                    Value::Null => true,
                    Value::String(t) => t.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(m) => m.is_empty(),
                    _ => false,
                })
            }
            "length" => {
                n(1)?;
                json!(match &v[0] {
                    Value::String(t) => t.chars().count(),
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    other => return invalid(format!("length() of {}", short(other))),
                })
            }
            "contains" => {
                n(2)?;
                Value::Bool(match (&v[0], &v[1]) {
                    (Value::String(t), x) => t.to_lowercase().contains(&text(x).to_lowercase()),
                    (Value::Array(a), x) => a.iter().any(|y| loose_eq(y, x)),
                    (Value::Object(_), Value::String(k)) => get_ci(&v[0], k).is_some(),
                    _ => false,
                })
            }
            "startswith" => Value::Bool(s(0)?.to_lowercase().starts_with(&s(1)?.to_lowercase())),
            "endswith" => Value::Bool(s(0)?.to_lowercase().ends_with(&s(1)?.to_lowercase())),
            "split" => Value::Array(s(0)?.split(s(1)?.as_str()).map(|x| Value::String(x.to_owned())).collect()),
            "first" | "last" => {
                n(1)?;
                let pick = |it: &mut dyn DoubleEndedIterator<Item = Value>| if lower == "first" { it.next() } else { it.next_back() };
                match &v[0] {
                    Value::Array(a) => pick(&mut a.clone().into_iter()).unwrap_or(Value::Null),
                    Value::String(t) => {
                        pick(&mut t.chars().map(|c| Value::String(c.to_string())).collect::<Vec<_>>().into_iter()).unwrap_or(Value::Null)
                    }
                    other => return invalid(format!("{name}() of {}", short(other))),
                }
            }
            "createarray" => Value::Array(v),
            "createobject" => {
                let mut m = Map::new();
                for pair in v.chunks(2) {
                    match pair {
                        [Value::String(k), x] => {
                            m.insert(k.clone(), x.clone());
                        }
                        _ => return invalid("createObject() takes key, value pairs with string keys"),
                    }
                }
                Value::Object(m)
            }
            "union" => {
                let mut m = Map::new();
                for x in &v {
                    if let Value::Object(o) = x {
                        m.extend(o.clone());
                    }
                }
                Value::Object(m)
            }
            "json" => serde_json::from_str(&s(0)?).or_else(|e| invalid(format!("json(): {e}")))?,
            "add" | "sub" | "mul" | "div" | "mod" => {
                n(2)?;
                let (a, b) = (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0));
                json!(match lower.as_str() {
                    "add" => a + b,
                    "sub" => a - b,
                    "mul" => a * b,
                    _ if b == 0 => return invalid(format!("{name}() by zero")),
                    "div" => a / b,
                    _ => a % b,
                })
            }
            "uniquestring" => Value::String(unique_string(&v.iter().map(text).collect::<Vec<_>>())),
            // Objects of the deployment with a sensible value on one machine.
            "resourcegroup" => json!({
                "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local",
                "name": "local", "location": "local", "type": "Microsoft.Resources/resourceGroups", "properties": {}
            }),
            "subscription" => json!({
                "id": "/subscriptions/00000000-0000-0000-0000-000000000000",
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
                "tenantId": "00000000-0000-0000-0000-000000000000", "displayName": "local"
            }),
            "deployment" => json!({"name": "local", "properties": {"templateLink": {}}}),
            "environment" => json!({"name": "local", "suffixes": {"storage": "core.windows.net"}}),
            _ => return invalid(format!("{name}() is not a template function sitecar evaluates")),
        })
    }
}

/// An expression as it would be written.
fn source(e: &Expr) -> String {
    match e {
        Expr::Str(s) => format!("'{}'", s.replace('\'', "''")),
        Expr::Num(n) => n.to_string(),
        Expr::Call(name, args) => format!("{name}({})", args.iter().map(source).collect::<Vec<_>>().join(", ")),
        Expr::Member(x, name) => format!("{}.{name}", source(x)),
        Expr::Index(x, i) => format!("{}[{}]", source(x), source(i)),
    }
}

/// Functions whose value only a deployment has (`list` stands for every `list*`).
const UNKNOWABLE: [&str; 11] = [
    "reference",
    "list",
    "resourceid",
    "subscriptionresourceid",
    "tenantresourceid",
    "extensionresourceid",
    "managementgroupresourceid",
    "newguid",
    "utcnow",
    "pickzones",
    "providers",
];

pub(crate) fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// A value given as text (`--parameter port=8080`) takes the parameter's declared type.
fn coerce(v: &Value, kind: &str, name: &str) -> R<Value> {
    let Value::String(t) = v else { return Ok(v.clone()) };
    Ok(match kind {
        "int" => json!(t.trim().parse::<i64>().or_else(|_| invalid(format!("parameter '{name}' is an int; \"{t}\" is not")))?),
        "bool" => match t.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return invalid(format!("parameter '{name}' is a bool; \"{t}\" is not")),
        },
        "object" | "array" | "secureobject" => serde_json::from_str(t).or_else(|e| invalid(format!("parameter '{name}' is JSON: {e}")))?,
        _ => v.clone(),
    })
}

fn truthy(v: &Value, f: &str) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(t) if t.eq_ignore_ascii_case("false") => Ok(false),
        other => invalid(format!("{f}() expects a boolean, got {}", short(other))),
    }
}

/// `equals`: values of the same type and content (strings exactly, case included).
fn loose_eq(a: &Value, b: &Value) -> bool {
    a == b
}

/// A value as text, the way `concat` and `string()` write it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    let t = match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if t.len() > 60 {
        format!("{}...", &t[..t.char_indices().nth(57).map_or(t.len(), |(i, _)| i)])
    } else {
        t
    }
}

/// .NET composite formatting as `format()` does it: `{0}`, `{1:N0}` (the format part ignored),
/// `{{` and `}}` for braces.
fn format(fmt: &str, args: &[Value]) -> R<String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut spec = String::new();
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                    spec.push(d);
                }
                let index = spec.split([':', ',']).next().unwrap_or("").trim();
                let i: usize = index.parse().or_else(|_| invalid(format!("format(): bad placeholder {{{spec}}}")))?;
                let arg = args.get(i).map_or_else(|| invalid(format!("format(): no argument {i} for {{{spec}}}")), Ok)?;
                out.push_str(&text(arg));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A deterministic 13-character lowercase id from the arguments, as `uniqueString` gives one.
/// Not the value Azure computes: the same inputs give the same local value, which is what a
/// name built from it needs here.
fn unique_string(parts: &[String]) -> String {
    // FNV-1a over the parts (separated), then base32 with Azure's alphabet of lowercase letters and
    // digits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.join("-").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..13).map(|i| ALPHABET[((h >> ((i * 5) % 60)) & 31) as usize] as char).collect()
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
