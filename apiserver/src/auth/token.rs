//! Static bearer tokens: `--token-auth-file`
//! (k8s.io/apiserver/pkg/authentication/token/tokenfile).
//!
//! The file is CSV, one user per record: `token,user,uid[,"group1,group2"]`
//! — at least three columns; a fourth, quoted because it holds commas,
//! lists groups. Records with an empty token are skipped; a repeated token
//! keeps the last record (kube-apiserver warns and does the same).
//!
//! A request presents a token as `Authorization: Bearer <token>`. As the
//! upstream bearer-token authenticator: a header that is not a Bearer header
//! at all is "no credential" (the request may still be anonymous), while a
//! Bearer header whose token is unknown is an authentication *failure* (401).

use std::collections::HashMap;
use std::fmt;

use super::UserInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFileError(pub String);

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenFileError {}

/// The parsed token file.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &std::path::Path) -> Result<Self, TokenFileError> {
        let content = std::fs::read_to_string(path)
            .map_err(|e| TokenFileError(format!("reading token file '{}': {e}", path.display())))?;
        Self::parse(&content, &path.display().to_string())
    }

    /// Parses the file's content; `path` only names it in errors.
    pub fn parse(content: &str, path: &str) -> Result<Self, TokenFileError> {
        let records = parse_csv(content).map_err(|e| TokenFileError(format!("token file '{path}': {e}")))?;
        let mut tokens = HashMap::new();
        for record in records {
            if record.len() < 3 {
                return Err(TokenFileError(format!(
                    "token file '{path}' must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                )));
            }
            if record[0].is_empty() {
                continue;
            }
            let groups = match record.get(3) {
                Some(g) => g.split(',').map(str::to_string).collect(),
                None => Vec::new(),
            };
            let user = UserInfo { name: record[1].clone(), uid: record[2].clone(), groups, ..Default::default() };
            tokens.insert(record[0].clone(), user);
        }
        Ok(TokenFile { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The user a token belongs to. (A HashMap lookup hashes the whole
    /// token, so the time taken does not depend on how much of a guess
    /// matches a real token's prefix.)
    pub fn authenticate(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// What an `Authorization` header amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAuth {
    /// No header, an empty one, another scheme (`Basic ...`), or `Bearer`
    /// with an empty token: no token credential. The request continues as
    /// if it presented nothing.
    NotPresented,
    /// A known token.
    User(UserInfo),
    /// A bearer token was presented but is not valid: 401. The string says
    /// why, for the log; clients only ever see "Unauthorized".
    Invalid(String),
}

/// Reads the bearer token from an `Authorization` header value.
/// `Ok(None)` when the header carries no bearer token (see [`TokenAuth::NotPresented`]).
pub fn bearer_token(header: &[u8]) -> Result<Option<&str>, String> {
    let Ok(text) = std::str::from_utf8(header) else {
        let looks_bearer = header.len() >= 7 && header[..7].eq_ignore_ascii_case(b"bearer ");
        return if looks_bearer {
            Err("invalid bearer token: Authorization header is not valid UTF-8".into())
        } else {
            Ok(None)
        };
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut parts = text.splitn(3, ' ');
    let scheme = parts.next().unwrap_or("");
    let Some(token) = parts.next() else { return Ok(None) };
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Ok(None);
    }
    if token.chars().any(|c| c.is_control()) {
        return Err("invalid bearer token: control characters in token".into());
    }
    Ok(Some(token))
}

/// Authenticates an `Authorization` header against the token file (if any).
pub fn authenticate_header(header: Option<&[u8]>, tokens: Option<&TokenFile>) -> TokenAuth {
    let Some(header) = header else { return TokenAuth::NotPresented };
    let token = match bearer_token(header) {
        Ok(Some(t)) => t,
        Ok(None) => return TokenAuth::NotPresented,
        Err(reason) => return TokenAuth::Invalid(reason),
    };
    match tokens.and_then(|t| t.authenticate(token)) {
        Some(user) => TokenAuth::User(user.clone()),
        None => TokenAuth::Invalid("invalid bearer token".into()),
    }
}

/// CSV as Go's `encoding/csv` reads it (RFC 4180): comma separated, fields
/// may be double-quoted (then they may hold commas, newlines and `""` for a
/// quote), blank lines are skipped, a quote inside an unquoted field is an
/// error.
fn parse_csv(input: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut chars = input.chars().peekable();
    let mut line = 1usize;
    loop {
        // Skip blank lines.
        while let Some(&c) = chars.peek() {
            if c == '\n' {
                line += 1;
                chars.next();
            } else if c == '\r' && {
                let mut look = chars.clone();
                look.next();
                look.peek() == Some(&'\n')
            } {
                chars.next();
            } else {
                break;
            }
        }
        if chars.peek().is_none() {
            return Ok(records);
        }
        let start_line = line;
        let mut record = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(format!("record on line {start_line}: extraneous or missing \" in quoted-field")),
                        Some('"') => {
                            if chars.peek() == Some(&'"') {
                                chars.next();
                                field.push('"');
                            } else {
                                break;
                            }
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(_) => return Err(format!("parse error on line {line}: extraneous or missing \" in quoted-field")),
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' || c == '\r' {
                        break;
                    }
                    if c == '"' {
                        return Err(format!("parse error on line {line}: bare \" in non-quoted-field"));
                    }
                    field.push(c);
                    chars.next();
                }
            }
            record.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(_) => unreachable!("field loops stop only at separators"),
            }
        }
        records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_file(content: &str, expected: Result<Vec<(&str, &str, &str, &[&str])>, &str>) {
        match (TokenFile::parse(content, "tokens.csv"), expected) {
            (Ok(file), Ok(want)) => {
                assert_eq!(file.len(), want.len(), "{content:?}");
                for (token, name, uid, groups) in want {
                    let u = file.authenticate(token).unwrap_or_else(|| panic!("token {token} missing"));
                    assert_eq!((u.name.as_str(), u.uid.as_str()), (name, uid));
                    assert_eq!(u.groups, groups.iter().map(|g| g.to_string()).collect::<Vec<_>>());
                }
            }
            (Err(e), Err(want)) => assert!(e.0.contains(want), "{content:?}: {e}"),
            (got, want) => panic!("{content:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn token_files() {
        check_file("abc,alice,1001\n", Ok(vec![("abc", "alice", "1001", &[])]));
        check_file(
            "abc,alice,1001,\"dev,ops\"\r\ndef,bob,1002,admins\n\n",
            Ok(vec![("abc", "alice", "1001", &["dev", "ops"]), ("def", "bob", "1002", &["admins"])]),
        );
        // Quoted fields may hold quotes and commas; extra columns are ignored.
        check_file(
            "\"t,1\",\"say \"\"hi\"\"\",7,g,extra\n",
            Ok(vec![("t,1", "say \"hi\"", "7", &["g"])]),
        );
        // Empty token: skipped. Duplicate token: the last record wins.
        check_file(",ghost,0\nabc,a,1\nabc,b,2", Ok(vec![("abc", "b", "2", &[])]));
        check_file("", Ok(vec![]));
        check_file("abc,alice\n", Err("must have at least 3 columns (token, user name, user uid), found 2"));
        check_file("abc,al\"ice,1\n", Err("bare \" in non-quoted-field"));
        check_file("\"abc,alice,1\n", Err("extraneous or missing \" in quoted-field"));
        check_file("\"abc\"x,alice,1\n", Err("extraneous or missing \" in quoted-field"));
    }

    fn check_header(header: Option<&[u8]>, expected: TokenAuth) {
        let tokens = TokenFile::parse("s3cret,alice,1001,dev\n", "t").unwrap();
        assert_eq!(authenticate_header(header, Some(&tokens)), expected, "{:?}", header.map(String::from_utf8_lossy));
    }

    #[test]
    fn bearer_headers() {
        let alice = UserInfo { name: "alice".into(), uid: "1001".into(), groups: vec!["dev".into()], ..Default::default() };
        let invalid = TokenAuth::Invalid("invalid bearer token".into());
        check_header(None, TokenAuth::NotPresented);
        check_header(Some(b""), TokenAuth::NotPresented);
        check_header(Some(b"   "), TokenAuth::NotPresented);
        check_header(Some(b"Bearer s3cret"), TokenAuth::User(alice.clone()));
        check_header(Some(b"bearer s3cret"), TokenAuth::User(alice.clone()));
        check_header(Some(b"  Bearer s3cret  "), TokenAuth::User(alice.clone()));
        // Upstream splits into at most three parts and uses the second.
        check_header(Some(b"Bearer s3cret extra"), TokenAuth::User(alice));
        check_header(Some(b"Bearer wrong"), invalid.clone());
        check_header(Some(b"Bearer"), TokenAuth::NotPresented);
        check_header(Some(b"Bearer  s3cret"), TokenAuth::NotPresented); // two spaces: empty token, as upstream
        check_header(Some(b"Basic YWxpY2U6cHc="), TokenAuth::NotPresented);
        check_header(Some(b"s3cret"), TokenAuth::NotPresented);
        check_header(Some(b"Bearer \xff\xfe"), TokenAuth::Invalid("invalid bearer token: Authorization header is not valid UTF-8".into()));
        check_header(Some(b"\xff\xfe garbage"), TokenAuth::NotPresented);
        check_header(Some(b"Bearer a\x01b"), TokenAuth::Invalid("invalid bearer token: control characters in token".into()));
        // No token file configured: any bearer token is invalid.
        assert_eq!(authenticate_header(Some(b"Bearer s3cret"), None), invalid);
    }

}
