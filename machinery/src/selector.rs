//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! carry them and as `metav1.LabelSelector` spells them in objects.
//!
//! Grammar (apimachinery's `labels.Parse`):
//! `env=prod`, `env==prod`, `env!=prod`, `tier in (web,api)`,
//! `tier notin (db)`, `gpu` (exists), `!gpu` (does not exist), `n>3`, `n<3`,
//! joined by commas, all of which must hold. Field selectors
//! (`fields.ParseSelector`) only know `=`, `==` and `!=`, and escape `\,`,
//! `\=`, `\!` and `\\` inside values.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    /// Does a set of labels satisfy this requirement? As upstream, `!=` and
    /// `notin` hold when the key is absent.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => value.is_some_and(|v| self.values.iter().any(|w| w == v)),
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|w| w == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else { return false };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) => if self.op == Op::GreaterThan { v > b } else { v < b },
                    _ => false,
                }
            }
        }
    }
}

/// A label selector: all requirements must hold. The empty selector
/// matches everything. `Hash` lets the scheduler index pods by the
/// selectors of their affinity terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ParseError {}

impl Selector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object's optional labels (absent labels are no labels).
    pub fn matches_opt(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.matches(labels.unwrap_or(&EMPTY))
    }

    /// From `matchLabels` + `matchExpressions`, as `metav1.LabelSelectorAsSelector`.
    /// Note the asymmetry Kubernetes has: a nil selector matches nothing, an
    /// empty one everything; callers decide what `None` means.
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            requirements.push(Requirement { key: k.clone(), op: Op::Equals, values: vec![v.clone()] });
        }
        for e in ls.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(ParseError(format!("{other:?} is not a valid label selector operator"))),
            };
            match op {
                Op::In | Op::NotIn if values.is_empty() => {
                    return Err(ParseError("for 'in', 'notin' operators, values set can't be empty".into()))
                }
                Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                    return Err(ParseError("values set must be empty for exists and does not exist".into()))
                }
                _ => {}
            }
            requirements.push(Requirement { key: e.key.clone(), op, values });
        }
        Ok(Selector { requirements })
    }

    /// Parse the string form of a label selector.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        let mut p = LabelParser { s: input.as_bytes(), i: 0 };
        p.skip_ws();
        if p.at_end() {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.expect(b',')?;
        }
        Ok(Selector { requirements })
    }
}

struct LabelParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LabelParser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }
    fn error(&self, what: &str) -> ParseError {
        ParseError(format!(
            "unable to parse requirement: {what} at position {} in {:?}",
            self.i,
            String::from_utf8_lossy(self.s)
        ))
    }
    /// Keys and values: the characters a qualified name or label value may hold.
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn requirement(&mut self) -> Result<Requirement, ParseError> {
        self.skip_ws();
        if self.peek() == Some(b'!') {
            self.i += 1;
            let key = self.word();
            validate_key(&key).map_err(|e| self.error(&e))?;
            return Ok(Requirement { key, op: Op::DoesNotExist, values: vec![] });
        }
        let key = self.word();
        validate_key(&key).map_err(|e| self.error(&e))?;
        self.skip_ws();
        let rest = &self.s[self.i..];
        let (op, len) = if rest.starts_with(b"==") {
            (Op::Equals, 2)
        } else if rest.starts_with(b"!=") {
            (Op::NotEquals, 2)
        } else if rest.starts_with(b"=") {
            (Op::Equals, 1)
        } else if rest.starts_with(b">") {
            (Op::GreaterThan, 1)
        } else if rest.starts_with(b"<") {
            (Op::LessThan, 1)
        } else if starts_with_keyword(rest, b"notin") {
            (Op::NotIn, 5)
        } else if starts_with_keyword(rest, b"in") {
            (Op::In, 2)
        } else if rest.is_empty() || rest[0] == b',' {
            return Ok(Requirement { key, op: Op::Exists, values: vec![] });
        } else {
            return Err(self.error("found unexpected character, expected an operator"));
        };
        self.i += len;
        let values = match op {
            Op::In | Op::NotIn => {
                self.expect(b'(')?;
                let mut values = Vec::new();
                loop {
                    let v = self.word();
                    validate_value(&v).map_err(|e| self.error(&e))?;
                    values.push(v);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b')') => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err(self.error("expected ',' or ')'")),
                    }
                }
                values
            }
            Op::GreaterThan | Op::LessThan => {
                let v = self.word();
                if v.parse::<i64>().is_err() {
                    return Err(self.error(&format!("for 'Gt', 'Lt' operators, the value must be an integer, got {v:?}")));
                }
                vec![v]
            }
            _ => {
                let v = self.word();
                validate_value(&v).map_err(|e| self.error(&e))?;
                vec![v]
            }
        };
        Ok(Requirement { key, op, values })
    }
}

fn starts_with_keyword(rest: &[u8], kw: &[u8]) -> bool {
    rest.starts_with(kw)
        && rest.get(kw.len()).is_none_or(|c| c.is_ascii_whitespace() || *c == b'(')
}

fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key is empty".into());
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.is_empty() || name.len() > 63 {
        return Err(format!("invalid label key {key:?}: name part must be 1-63 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("invalid label key {key:?}: must start and end with an alphanumeric character"));
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err(format!("invalid label value {v:?}: must be no more than 63 characters"));
    }
    if !v.is_empty()
        && (!v.starts_with(|c: char| c.is_ascii_alphanumeric()) || !v.ends_with(|c: char| c.is_ascii_alphanumeric()))
    {
        return Err(format!("invalid label value {v:?}: must start and end with an alphanumeric character"));
    }
    Ok(())
}

/// A field selector: `metadata.name=web,status.phase!=Running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, value, equal?) — `=`/`==` when true, `!=` when false.
    pub terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut terms = Vec::new();
        for part in split_unescaped(input, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, eq) = split_field_term(&part)
                .ok_or_else(|| ParseError(format!("invalid selector: '{part}'; can't understand '{part}'")))?;
            terms.push((field.trim().to_string(), unescape(&value), eq));
        }
        Ok(FieldSelector { terms })
    }

    /// Evaluates the selector given a way to read a field's value. A field
    /// the getter does not know reads as the empty string, which is what
    /// upstream's field sets do for unset fields.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|(field, value, eq)| {
            let actual = get(field).unwrap_or_default();
            (actual == *value) == *eq
        })
    }

    /// The value required by an `=` term on `field`, if any — lets a
    /// server answer `metadata.name=x` with a point lookup.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|(f, _, eq)| f == field && *eq).map(|(_, v, _)| v.as_str())
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(f, _, _)| f.as_str())
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.last_mut().unwrap().push('\\');
            out.last_mut().unwrap().push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

fn split_field_term(term: &str) -> Option<(String, String, bool)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((term[..i].into(), term[i + 2..].into(), false))
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => return Some((term[..i].into(), term[i + 2..].into(), true)),
            b'=' => return Some((term[..i].into(), term[i + 1..].into(), true)),
            _ => i += 1,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Parse `selector`, then check it against each label set.
    fn check(selector: &str, cases: &[(&[(&str, &str)], bool)]) {
        let s = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        for (l, expected) in cases {
            assert_eq!(s.matches(&labels(l)), *expected, "{selector:?} against {l:?}");
        }
    }

    #[test]
    fn label_selectors() {
        check("", &[(&[], true), (&[("a", "b")], true)]);
        check("app=web", &[(&[("app", "web")], true), (&[("app", "db")], false), (&[], false)]);
        check("app==web", &[(&[("app", "web")], true)]);
        check("app!=web", &[(&[("app", "web")], false), (&[("app", "db")], true), (&[], true)]);
        check("tier in (web, api)", &[(&[("tier", "api")], true), (&[("tier", "db")], false), (&[], false)]);
        check("tier notin (db)", &[(&[("tier", "api")], true), (&[("tier", "db")], false), (&[], true)]);
        check("gpu", &[(&[("gpu", "")], true), (&[], false)]);
        check("!gpu", &[(&[("gpu", "x")], false), (&[], true)]);
        check("app=web,!canary", &[(&[("app", "web")], true), (&[("app", "web"), ("canary", "1")], false)]);
        check("n>3,n<10", &[(&[("n", "5")], true), (&[("n", "3")], false), (&[("n", "x")], false)]);
        check("example.com/role=db", &[(&[("example.com/role", "db")], true)]);
        check("app=", &[(&[("app", "")], true), (&[("app", "x")], false)]);
        // `in` as a prefix of a key is still a key.
        check("index=1", &[(&[("index", "1")], true)]);
    }

    #[test]
    fn bad_label_selectors() {
        for bad in ["app=web,", "tier in web", "tier in (web", "=x", "app=-bad", "n>x", "a b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn from_label_selector() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let ls = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement { key: "a".into(), operator: "In".into(), values: None }]),
            ..Default::default()
        };
        assert!(Selector::from_label_selector(&bad).is_err());
    }

    fn check_fields(selector: &str, fields: &[(&str, &str)], expected: bool) {
        let s = FieldSelector::parse(selector).unwrap();
        let get = |f: &str| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.to_string());
        assert_eq!(s.matches(get), expected, "{selector:?} against {fields:?}");
    }

    #[test]
    fn field_selectors() {
        check_fields("metadata.name=web", &[("metadata.name", "web")], true);
        check_fields("metadata.name==web", &[("metadata.name", "db")], false);
        check_fields("spec.nodeName=", &[], true);
        check_fields("spec.nodeName!=", &[("spec.nodeName", "n1")], true);
        check_fields("spec.nodeName!=", &[], false);
        check_fields("status.phase!=Running,spec.nodeName=n1", &[("status.phase", "Pending"), ("spec.nodeName", "n1")], true);
        check_fields(r"metadata.name=a\,b", &[("metadata.name", "a,b")], true);
        assert_eq!(FieldSelector::parse("metadata.name=x").unwrap().required_value("metadata.name"), Some("x"));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
