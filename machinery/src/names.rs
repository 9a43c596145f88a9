//! Names made from a prefix and a random suffix (upstream
//! `apiserver/pkg/storage/names.SimpleNameGenerator`): what the apiserver
//! does for `metadata.generateName`, and what a client does when it needs to
//! know a new object's name before the create returns.

/// Upstream's alphabet: no vowels (no words) and no look-alikes (0/o, 1/l).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Upstream's suffix length.
const SUFFIX_LEN: usize = 5;
/// Upstream's `maxNameLength`: a generated name fits in a DNS label, so the
/// prefix is cut to leave room for the suffix.
const MAX_NAME_LEN: usize = 63;

/// Five random characters from the name alphabet.
pub fn random_suffix() -> String {
    (0..SUFFIX_LEN).map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char).collect()
}

/// `base` (cut so the result fits in a name) followed by a random suffix.
pub fn generate_name(base: &str) -> String {
    let keep = base.len().min(MAX_NAME_LEN - SUFFIX_LEN);
    // Names are ASCII; cut on a char boundary anyway rather than panic.
    let mut cut = keep;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], random_suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_uses_the_alphabet_and_prefix_is_kept_or_cut() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|b| ALPHABET.contains(&b)), "{n}");
        let long = "a".repeat(300);
        assert_eq!(generate_name(&long).len(), MAX_NAME_LEN);
    }
}
