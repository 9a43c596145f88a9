//! One line per step: a spinner while it runs (on a terminal), then a tick
//! or a cross and the time it took.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Runs `f` as the step `title`, showing its progress on stderr.
pub fn step<T>(title: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let tty = std::io::stderr().is_terminal();
    step_to(&mut std::io::stderr(), tty, title, f)
}

/// [`step`] writing its final line to `out` (tests read it back); the
/// spinner, on a terminal only, draws on stderr.
fn step_to<T>(out: &mut impl Write, tty: bool, title: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let spinner = tty.then(|| {
        let (done, title) = (done.clone(), title.to_string());
        std::thread::spawn(move || {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                eprint!("\r  {} {title} ({:.0?})\x1b[K", FRAMES[i % FRAMES.len()], start.elapsed());
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let r = f();
    done.store(true, Ordering::Relaxed);
    if let Some(h) = spinner {
        let _ = h.join();
        eprint!("\r\x1b[K");
    }
    let mark = if r.is_ok() { "✓" } else { "✗" };
    let _ = writeln!(out, "  {mark} {title} ({:.1}s)", start.elapsed().as_secs_f64());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(line: &str) -> f64 {
        line.trim_end().rsplit_once('(').and_then(|(_, t)| t.strip_suffix("s)")).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no time in {line:?}"))
    }

    #[test]
    fn a_line_per_step_with_its_time() {
        let mut out = Vec::new();
        let v = step_to(&mut out, false, "slow step", || {
            std::thread::sleep(Duration::from_millis(350));
            Ok(7)
        })
        .unwrap();
        assert_eq!(v, 7);
        let e = step_to(&mut out, false, "failing step", || -> anyhow::Result<()> { anyhow::bail!("boom") }).unwrap_err();
        assert_eq!(e.to_string(), "boom");
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("  ✓ slow step ("), "{text}");
        // The time is the step's own: 0.35 s, printed with one decimal.
        let t = seconds(lines[0]);
        assert!((0.3..1.5).contains(&t), "{text}");
        assert!(lines[1].starts_with("  ✗ failing step ("), "{text}");
        assert!(seconds(lines[1]) < 0.3, "{text}");
    }
}
