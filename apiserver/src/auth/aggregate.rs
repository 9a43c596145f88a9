//! Several errors reported as one (k8s.io/apimachinery/pkg/util/errors:
//! `Aggregate`): how the authenticators' and RBAC's failures read in a 401
//! log line or a 403 message.

/// Several error messages as one, the way apimachinery's `utilerrors.Aggregate`
/// prints them: one message alone, or `[a, b]` (duplicates dropped).
pub fn aggregate_errors(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_matches_apimachinery() {
        assert_eq!(aggregate_errors(&[]), "");
        assert_eq!(aggregate_errors(&["a".into()]), "a");
        assert_eq!(aggregate_errors(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
