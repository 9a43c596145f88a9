//! Process supervision for daemons that outlive `rkube up`.
//!
//! Each component is started in a new session (`setsid`, as a daemon is),
//! with stdin from /dev/null and stdout+stderr appended to
//! `<state>/logs/<component>.log`; its pid goes to `<state>/run/<component>.pid`.
//! A pid alone can be reused by another program after ours exits, so
//! "running" means: the pid exists *and* its command line still names the
//! binary we started (kept next to the pid as `<component>.cmd`).
//! Processes in a node run through `nsenter --net=/run/netns/<node> …`, which enters
//! the namespace and then execs the program, so the pid is the program's.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The line `start` writes to a component's log before each start.
pub const START_MARK: &str = "==> rkube: starting";

/// The part of a log written since the component's last start.
pub fn since_last_start(log: &str) -> &str {
    log.rfind(START_MARK).map(|i| &log[i..]).unwrap_or(log)
}

pub struct Supervisor {
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Supervisor {
    pub fn new(run_dir: PathBuf, log_dir: PathBuf) -> Self {
        Supervisor { run_dir, log_dir }
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.pid"))
    }
    fn cmd_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.cmd"))
    }
    /// The whole command line (netns, program, args) as JSON, so a
    /// component can be started again exactly as it was ([`Self::restart`]).
    fn args_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.args"))
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `program args…` (inside `netns` if given) as a daemon.
    pub fn start(&self, name: &str, netns: Option<&str>, program: &Path, args: &[String]) -> anyhow::Result<u32> {
        std::fs::create_dir_all(&self.run_dir)?;
        std::fs::create_dir_all(&self.log_dir)?;
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_file(name))?;
        // Where this run's lines begin (the log is appended across restarts).
        {
            use std::io::Write;
            writeln!(log, "{START_MARK} {name}: {} {}", program.display(), args.join(" "))?;
        }
        let mut cmd = match netns {
            Some(ns) => {
                // nsenter, not `ip netns exec`: the latter also makes a new
                // mount namespace with a fresh /sys, which hides the cgroup
                // mounts runc needs. nsenter enters only the network
                // namespace and then execs the program (same pid).
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // A new session: no controlling terminal, not killed with the shell
        // that ran `rkube up`. `setsid` must run in the child between fork
        // and exec, which only `pre_exec` offers (std has no safe setsid;
        // `process_group` makes a group, not a session); setsid is
        // async-signal-safe, as pre_exec requires.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}: {} {}", program.display(), args.join(" ")))?;
        let pid = child.id();
        // Not waited for: the daemon outlives us and init reaps it. Forget the
        // handle so nothing here kills it.
        std::mem::forget(child);
        std::fs::write(self.pid_file(name), format!("{pid}\n"))?;
        std::fs::write(self.cmd_file(name), program.to_string_lossy().as_bytes())?;
        let line = serde_json::json!({"netns": netns, "program": program, "args": args});
        std::fs::write(self.args_file(name), serde_json::to_vec(&line)?)?;
        Ok(pid)
    }

    /// Starts a component again with the command line it was last started
    /// with (what a kubelet does for a static pod that died). It must not be running.
    pub fn restart(&self, name: &str) -> anyhow::Result<u32> {
        anyhow::ensure!(self.pid(name).is_none(), "{name} is running");
        let line: serde_json::Value = serde_json::from_slice(&std::fs::read(self.args_file(name)).with_context(|| format!("{name} was never started here"))?)?;
        let program = PathBuf::from(line["program"].as_str().context("program")?);
        let args: Vec<String> = line["args"].as_array().context("args")?.iter().filter_map(|a| a.as_str().map(str::to_string)).collect();
        self.start(name, line["netns"].as_str(), &program, &args)
    }

    /// The pid, if the component is running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(name)).ok()?.trim().parse().ok()?;
        let program = std::fs::read_to_string(self.cmd_file(name)).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // A zombie (exited, not yet reaped) is not running.
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next()).flatten();
        if state == Some('Z') {
            return None;
        }
        // nsenter replaced itself by the program: argv[0] is the program.
        cmdline.split(|b| *b == 0).next().filter(|a0| *a0 == program.as_bytes()).map(|_| pid)
    }

    /// SIGTERM, `grace` to exit, then SIGKILL. Removes the pid file.
    pub fn stop(&self, name: &str, grace: Duration) -> bool {
        let was_running = if let Some(pid) = self.pid(name) {
            stop_pid(pid, grace);
            true
        } else {
            false
        };
        let _ = std::fs::remove_file(self.pid_file(name));
        let _ = std::fs::remove_file(self.cmd_file(name));
        let _ = std::fs::remove_file(self.args_file(name));
        was_running
    }
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

pub fn stop_pid(pid: u32, grace: Duration) {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(p, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes having `arg` as one of their arguments (containerd's shims
/// carry `-address <socket>`; they daemonise and outlive containerd).
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_track_stop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Supervisor::new(dir.path().join("run"), dir.path().join("logs"));
        let pid = s.start("sleeper", None, Path::new("/bin/sleep"), &["30".into()]).unwrap();
        assert_eq!(s.pid("sleeper"), Some(pid));
        // In its own session.
        assert_eq!(nix::unistd::getsid(Some(Pid::from_raw(pid as i32))).unwrap().as_raw() as u32, pid);
        // Killed (as a crash), then started again with the same command line.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
        assert_eq!(s.pid("sleeper"), None);
        let pid = s.restart("sleeper").unwrap();
        assert_eq!(s.pid("sleeper"), Some(pid));
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(), "/bin/sleep\030\0");
        assert!(s.restart("sleeper").is_err(), "running: no second copy");
        assert!(s.stop("sleeper", Duration::from_secs(2)));
        // Our own child: reap it so it is not left a zombie in the test process.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
        assert_eq!(s.pid("sleeper"), None);
        assert!(!s.stop("sleeper", Duration::from_secs(1)));
        assert_eq!(s.pid("never-started"), None);
    }
}
