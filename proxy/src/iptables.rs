//! Talking to the kernel's packet filter through the iptables tools.
//!
//! Two operations only, as kube-proxy's `utiliptables` does for syncs:
//! - `iptables-restore --noflush`: apply a whole ruleset text in one go. With
//!   `--noflush`, only the chains the text declares are replaced; the rest of
//!   the table (other programs' rules) is kept. Each table between `*table`
//!   and `COMMIT` is one atomic transaction.
//! - `iptables-save -t <table>`: read what is there (to adopt chains left by
//!   a previous run and to check our jumps from the built-in chains).
//!
//! Commands run in the network namespace of the calling thread.
//!
//! Atomicity: each table is committed at its own `COMMIT` (both the nft and
//! the legacy build; seen here), so one restore of `*nat … COMMIT *filter …
//! COMMIT` that fails in filter has already applied nat. The failing table
//! is untouched, and nat is whole (its own complete new version); the
//! proxier then forces a full sync that reads the kernel back
//! (`iptables-save`) and rewrites both, which repairs the pair. Running
//! `iptables-restore --test` first would not close the gap: with the nft
//! build it only parses (a jump to a missing chain passes `--test` and fails
//! the real restore), and it doubles the parse time of a 10k-service
//! ruleset, the proxy's main cost.

use std::io::Write;
use std::process::{Command, Stdio};

/// A failed `iptables-restore`, with the input line it failed on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("iptables-restore failed{}: {stderr}", self.at())]
pub struct RestoreError {
    /// 1-based line number in the input, when iptables said which.
    pub line: Option<usize>,
    /// That line and its neighbours, for the log.
    pub context: Vec<String>,
    pub stderr: String,
}

impl RestoreError {
    /// ` at line N (`the line`)`, or nothing when iptables did not say.
    fn at(&self) -> String {
        let Some(n) = self.line else { return String::new() };
        // The context line marked `>` is line n: ">     8: -A ...".
        match self.context.iter().find(|c| c.starts_with('>')).and_then(|c| c.split_once(": ")) {
            Some((_, text)) => format!(" at line {n} (`{text}`)"),
            None => format!(" at line {n}"),
        }
    }
}

/// What the proxier needs from iptables. The real one runs the binaries;
/// unit tests of the sync state machine use a recording fake.
pub trait Iptables: Send + Sync {
    /// Apply `data` with `iptables-restore --noflush`.
    fn restore(&self, data: &str) -> Result<(), RestoreError>;
    /// `iptables-save -t <table>` output.
    fn save(&self, table: &str) -> anyhow::Result<String>;
}

/// Which kernel interface the iptables tools drive. iptables 1.8 ships two
/// builds of the same commands: `iptables-nft` (rules become nf_tables
/// objects; Debian's default) and `iptables-legacy` (the old x_tables blob,
/// replaced whole on every restore). kube-proxy itself just runs
/// `iptables-restore`; its container image picks the build with the
/// `iptables-wrapper` script, by looking at which one already holds rules.
/// The rules rkube writes are the same text for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Whatever `iptables-restore` on `$PATH` is (Debian's alternatives).
    #[default]
    System,
    Nft,
    Legacy,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "" | "system" => Ok(Backend::System),
            "nft" | "nf_tables" => Ok(Backend::Nft),
            "legacy" => Ok(Backend::Legacy),
            other => anyhow::bail!("unknown iptables backend {other:?}: want system, nft or legacy"),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::System => "system",
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

/// The iptables binaries of one backend.
#[derive(Debug, Clone)]
pub struct IptablesCmd {
    pub restore_bin: String,
    pub save_bin: String,
}

impl Default for IptablesCmd {
    fn default() -> Self {
        IptablesCmd::new(Backend::System)
    }
}

impl IptablesCmd {
    pub fn new(backend: Backend) -> Self {
        let infix = match backend {
            Backend::System => "",
            Backend::Nft => "-nft",
            Backend::Legacy => "-legacy",
        };
        IptablesCmd { restore_bin: format!("iptables{infix}-restore"), save_bin: format!("iptables{infix}-save") }
    }
}

impl Iptables for IptablesCmd {
    fn restore(&self, data: &str) -> Result<(), RestoreError> {
        restore_with(&self.restore_bin, data)
    }

    fn save(&self, table: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.save_bin).args(["-t", table]).output()?;
        if !out.status.success() {
            anyhow::bail!("{} -t {table}: {}", self.save_bin, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Run `<bin> --noflush` with `data` on stdin.
pub fn restore_with(bin: &str, data: &str) -> Result<(), RestoreError> {
    let spawn = Command::new(bin)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawn {
        Ok(c) => c,
        Err(e) => return Err(RestoreError { line: None, context: vec![], stderr: format!("running {bin}: {e}") }),
    };
    // Write from this thread; iptables-restore reads all input before it
    // writes anything, so there is no pipe deadlock with stderr.
    let write_result = child.stdin.take().map(|mut stdin| stdin.write_all(data.as_bytes()));
    let out = child.wait_with_output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Err(RestoreError { line: None, context: vec![], stderr: format!("waiting for {bin}: {e}") }),
    };
    if out.status.success() {
        if let Some(Err(e)) = write_result {
            return Err(RestoreError { line: None, context: vec![], stderr: format!("writing to {bin}: {e}") });
        }
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let line = failed_line(&stderr).map(|n| culprit_line(data, n, &stderr));
    let context = line.map(|l| extract_lines(data, l, 2)).unwrap_or_default();
    Err(RestoreError { line, context, stderr })
}

/// The line number iptables-restore reports. nf_tables backend:
/// `Error occurred at line: 8`; legacy: `iptables-restore: line 3 failed`.
pub fn failed_line(stderr: &str) -> Option<usize> {
    for l in stderr.lines() {
        if let Some(rest) = l.trim().strip_prefix("Error occurred at line: ") {
            if let Ok(n) = rest.trim().parse() {
                return Some(n);
            }
        }
        if let Some(idx) = l.find(": line ") {
            let rest = &l[idx + 7..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if rest[num.len()..].starts_with(" failed") {
                if let Ok(n) = num.parse() {
                    return Some(n);
                }
            }
        }
    }
    None
}

/// The nft build finds some errors only when the kernel sees the table's
/// batch, and then reports the table's `COMMIT` line. For the commonest of
/// them, a jump to a chain that does not exist (`Chain 'X' does not exist`),
/// point at the first rule of that table that jumps to X instead. Any other
/// report is kept as iptables gave it.
fn culprit_line(data: &str, n: usize, stderr: &str) -> usize {
    let lines: Vec<&str> = data.lines().collect();
    if lines.get(n.wrapping_sub(1)) != Some(&"COMMIT") {
        return n;
    }
    let Some(chain) = stderr.split("Chain '").nth(1).and_then(|r| r.split_once("' does not exist")).map(|(c, _)| c) else {
        return n;
    };
    let table_start = lines[..n - 1].iter().rposition(|l| l.starts_with('*')).unwrap_or(0);
    lines[table_start..n - 1]
        .iter()
        .position(|l| l.split(" -j ").nth(1).is_some_and(|t| t.split(' ').next() == Some(chain)))
        .map_or(n, |i| table_start + i + 1)
}

/// Lines `n - around ..= n + around` of `data` (1-based), numbered, the
/// failing one marked with `>`: what upstream's `ExtractLines` logs.
pub fn extract_lines(data: &str, n: usize, around: usize) -> Vec<String> {
    let lo = n.saturating_sub(around).max(1);
    data.lines()
        .enumerate()
        .skip(lo - 1)
        .take(n + around + 1 - lo)
        .map(|(i, l)| format!("{}{:>6}: {l}", if i + 1 == n { ">" } else { " " }, i + 1))
        .collect()
}

/// Chain names declared in `iptables-save` output (`:NAME POLICY [p:b]`).
pub fn saved_chains(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stderr: &str, expected: Option<usize>) {
        assert_eq!(failed_line(stderr), expected, "{stderr}");
    }

    #[test]
    fn failed_line_table() {
        check(
            "iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 8\nTry `iptables-restore -h' for more information.",
            Some(8),
        );
        check("iptables-restore: line 3 failed: No chain/target/match by that name.", Some(3));
        check("iptables-restore: line 3: something else", None);
        check("Another app is currently holding the xtables lock.", None);
    }

    #[test]
    fn nft_commit_errors_point_at_the_jump() {
        let data = "*nat\n:A - [0:0]\n-A A -j RETURN\nCOMMIT\n*filter\n:B - [0:0]\n-A B -m comment --comment x -j NOPE\n-A B -j ACCEPT\nCOMMIT\n";
        let nft = "iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 9";
        assert_eq!(culprit_line(data, 9, nft), 7);
        // Other commit-time errors, and errors on a rule line, stay as reported.
        assert_eq!(culprit_line(data, 9, "iptables-restore: something else"), 9);
        assert_eq!(culprit_line(data, 7, nft), 7);
        assert_eq!(culprit_line(data, 4, "Chain 'ZZZ' does not exist"), 4);
    }

    #[test]
    fn error_names_the_failing_line() {
        let data = "*nat\n:A - [0:0]\n-A A -j NOPE\nCOMMIT\n";
        let e = RestoreError { line: Some(3), context: extract_lines(data, 3, 1), stderr: "Chain 'NOPE' does not exist".into() };
        assert_eq!(e.to_string(), "iptables-restore failed at line 3 (`-A A -j NOPE`): Chain 'NOPE' does not exist");
        let e = RestoreError { line: None, context: vec![], stderr: "lock".into() };
        assert_eq!(e.to_string(), "iptables-restore failed: lock");
    }

    #[test]
    fn backends_name_their_binaries() {
        for (flag, restore, save) in [
            ("system", "iptables-restore", "iptables-save"),
            ("nft", "iptables-nft-restore", "iptables-nft-save"),
            ("legacy", "iptables-legacy-restore", "iptables-legacy-save"),
        ] {
            let b: Backend = flag.parse().unwrap();
            assert_eq!(b.to_string(), flag);
            let c = IptablesCmd::new(b);
            assert_eq!((c.restore_bin.as_str(), c.save_bin.as_str()), (restore, save));
        }
        assert!("ipvs".parse::<Backend>().is_err());
    }

    #[test]
    fn extract_and_chains() {
        let data = "*nat\n:A - [0:0]\n-A A -j B\n-A A -j C\nCOMMIT\n";
        assert_eq!(extract_lines(data, 3, 1), vec!["      2: :A - [0:0]", ">     3: -A A -j B", "      4: -A A -j C"]);
        assert_eq!(extract_lines(data, 1, 2), vec![">     1: *nat", "      2: :A - [0:0]", "      3: -A A -j B"]);
        let save = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n";
        assert_eq!(saved_chains(save), vec!["PREROUTING", "KUBE-SVC-X"]);
    }
}
