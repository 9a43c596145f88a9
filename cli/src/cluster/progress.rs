//! One line per step: a spinner while it runs (on a terminal), then a tick
//! or a cross and the time it took.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Runs `f` as the step `title`, showing its progress on stderr.
pub fn step<T>(title: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
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
    eprintln!("  {mark} {title} ({:.1}s)", start.elapsed().as_secs_f64());
    r
}
