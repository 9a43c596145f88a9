//! `rkube logs <component>`: one component's log from the state directory.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::cluster::spec::Spec;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// etcd, apiserver, controller, scheduler, node<N>-containerd, node<N>-agent, node<N>-proxy.
    pub component: String,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let Some(spec) = Spec::load(&state_dir)? else { bail!("no cluster in {}", state_dir.display()) };
    let components = spec.components();
    if !components.contains(&o.component) {
        bail!("unknown component {:?}; one of: {}", o.component, components.join(", "));
    }
    let path = spec.log(&o.component);
    let text = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = std::io::stdout().lock();
    match o.tail {
        Some(n) => {
            let s = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = s.lines().collect();
            for l in &lines[lines.len().saturating_sub(n)..] {
                writeln!(out, "{l}")?;
            }
        }
        None => out.write_all(&text)?,
    }
    out.flush()?;
    if o.follow {
        let mut f = std::fs::File::open(&path)?;
        let mut pos = text.len() as u64;
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let len = f.metadata()?.len();
            if len < pos {
                pos = 0; // truncated
            }
            if len > pos {
                f.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                pos += buf.len() as u64;
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
