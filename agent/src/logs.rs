//! Container logs: the CRI log format, and `GET /containerLogs/<ns>/<pod>/<container>`.
//!
//! The runtime, not the kubelet, writes a container's output, to the file
//! named by `ContainerConfig.log_path` under the sandbox's log directory,
//! one line per chunk:
//!
//! ```text
//! 2024-01-01T00:00:00.123456789Z stdout F hello
//! ```
//!
//! (timestamp, stream, `F`ull or `P`artial, text). A line longer than the
//! runtime's buffer is split into `P` pieces ending with an `F` one. The
//! kubelet reads these files to answer `kubectl logs`: it joins partial
//! lines, optionally prefixes the timestamp (`timestamps=true`), keeps the
//! last `tailLines`, drops lines older than `sinceSeconds`/`sinceTime`, and
//! with `follow=true` keeps reading as the file grows until the container
//! stops.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// One parsed CRI log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: DateTime<Utc>,
    /// The RFC 3339 timestamp as written.
    pub time_text: String,
    pub stream: String,
    pub partial: bool,
    pub content: String,
}

/// Parses one line (without its newline). Malformed lines give `None`.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    let time = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let partial = tag.split(':').next() == Some("P");
    Some(LogLine { time, time_text: ts.to_string(), stream: stream.to_string(), partial, content: content.to_string() })
}

/// `kubectl logs` options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub previous: bool,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    /// From a query string (`follow=true&tailLines=10&sinceSeconds=5&timestamps=true&previous=true`).
    pub fn from_query(query: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let mut o = LogOptions::default();
        for (k, v) in query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))) {
            let v = percent_decode(v);
            let flag = || v.is_empty() || v == "true" || v == "1";
            match k {
                "follow" => o.follow = flag(),
                "timestamps" => o.timestamps = flag(),
                "previous" => o.previous = flag(),
                "tailLines" => o.tail_lines = Some(v.parse::<i64>().map_err(|_| format!("invalid tailLines {v:?}"))?.max(0) as usize),
                "limitBytes" => o.limit_bytes = Some(v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?),
                "sinceSeconds" => {
                    let s: i64 = v.parse().map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    o.since = Some(now - chrono::Duration::seconds(s));
                }
                "sinceTime" => o.since = Some(DateTime::parse_from_rfc3339(&v).map_err(|_| format!("invalid sinceTime {v:?}"))?.with_timezone(&Utc)),
                _ => {}
            }
        }
        Ok(o)
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Joins partial lines and renders the complete ones as `kubectl logs`
/// prints them. Keeps the unfinished partial content for the next call.
#[derive(Debug, Default)]
pub struct Renderer {
    pending: Option<(String, String)>, // (timestamp of first piece, content so far)
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
}

impl Renderer {
    /// Feeds one file line; returns the rendered output line (with `\n`) when complete.
    pub fn feed(&mut self, raw: &str) -> Option<String> {
        let l = parse_line(raw)?;
        if self.since.is_some_and(|s| l.time < s) {
            return None;
        }
        let (ts, mut content) = self.pending.take().unwrap_or((l.time_text.clone(), String::new()));
        content.push_str(&l.content);
        if l.partial {
            self.pending = Some((ts, content));
            return None;
        }
        Some(if self.timestamps { format!("{ts} {content}\n") } else { format!("{content}\n") })
    }
}

/// Renders a whole file's text with the options (no follow).
pub fn render(text: &str, o: &LogOptions) -> String {
    let mut r = Renderer { timestamps: o.timestamps, since: o.since, ..Default::default() };
    let mut lines: Vec<String> = text.lines().filter_map(|l| r.feed(l)).collect();
    if let Some(n) = o.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out = lines.concat();
    if let Some(limit) = o.limit_bytes {
        out.truncate(limit);
    }
    out
}

/// Streams a log file: first what is there (with tail/since), then, with
/// `follow`, whatever is appended until `still_running` says the container
/// stopped and the file is drained. Sends chunks into `tx`; ends when the
/// receiver goes away.
pub async fn stream_file(
    path: PathBuf,
    o: LogOptions,
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    still_running: impl Fn() -> futures::future::BoxFuture<'static, bool> + Send,
) -> std::io::Result<()> {
    let mut f = tokio::fs::File::open(&path).await?;
    let mut text = String::new();
    f.read_to_string(&mut text).await?;
    // Only complete lines now; an unfinished last line is re-read later.
    let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let first = render(&text[..complete], &o);
    if !first.is_empty() && tx.send(bytes::Bytes::from(first)).await.is_err() {
        return Ok(());
    }
    if !o.follow {
        return Ok(());
    }
    let mut pos = complete as u64;
    let mut r = Renderer { timestamps: o.timestamps, since: o.since, ..Default::default() };
    let mut carry = String::new();
    let mut idle = 0u32;
    loop {
        f.seek(SeekFrom::Start(pos)).await?;
        let mut chunk = Vec::new();
        f.read_to_end(&mut chunk).await?;
        if chunk.is_empty() {
            idle += 1;
            // Every second of silence, check the container is still running.
            if idle % 10 == 0 && !still_running().await {
                return Ok(());
            }
            if tx.is_closed() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        idle = 0;
        pos += chunk.len() as u64;
        carry.push_str(&String::from_utf8_lossy(&chunk));
        let mut out = String::new();
        while let Some(i) = carry.find('\n') {
            let line: String = carry.drain(..=i).collect();
            if let Some(s) = r.feed(line.trim_end_matches('\n')) {
                out.push_str(&s);
            }
        }
        if !out.is_empty() && tx.send(bytes::Bytes::from(out)).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, o: LogOptions, expected: &str) {
        assert_eq!(render(text, &o), expected, "{o:?}");
    }

    const FILE: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02Z stderr F two\n\
2024-01-01T00:00:03Z stdout P thr\n\
2024-01-01T00:00:03Z stdout P e\n\
2024-01-01T00:00:04Z stdout F e\n\
garbage\n\
2024-01-01T00:00:05Z stdout F \n";

    #[test]
    fn rendering() {
        check(FILE, LogOptions::default(), "one\ntwo\nthree\n\n");
        check(FILE, LogOptions { tail_lines: Some(2), ..Default::default() }, "three\n\n");
        check(FILE, LogOptions { tail_lines: Some(0), ..Default::default() }, "");
        check(
            FILE,
            LogOptions { timestamps: true, tail_lines: Some(3), ..Default::default() },
            "2024-01-01T00:00:02Z two\n2024-01-01T00:00:03Z three\n2024-01-01T00:00:05Z \n",
        );
        let since = DateTime::parse_from_rfc3339("2024-01-01T00:00:02Z").unwrap().with_timezone(&Utc);
        check(FILE, LogOptions { since: Some(since), ..Default::default() }, "two\nthree\n\n");
        check(FILE, LogOptions { limit_bytes: Some(5), ..Default::default() }, "one\nt");
    }

    #[test]
    fn parse() {
        let l = parse_line("2024-01-01T00:00:01.5Z stderr P a b").unwrap();
        assert_eq!((l.stream.as_str(), l.partial, l.content.as_str()), ("stderr", true, "a b"));
        assert!(parse_line("2024-01-01T00:00:01Z stdin F x").is_none());
        assert!(parse_line("nope stdout F x").is_none());
    }

    #[test]
    fn query() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:01:00Z").unwrap().with_timezone(&Utc);
        let o = LogOptions::from_query("follow=true&tailLines=5&sinceSeconds=30&timestamps=true&previous=false", now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some(now - chrono::Duration::seconds(30)));
        let o = LogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A00Z", now).unwrap();
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert!(LogOptions::from_query("tailLines=x", now).is_err());
    }
}
