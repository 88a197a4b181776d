//! A small fluent helper over assert_cmd, plus store and file helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("edgeguard")
}

/// `edgeguard ARGS…` run from the repository root, without colors.
pub fn eg<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(repo()).env("NO_COLOR", "1").env_remove("EDGEGUARD_LOG");
    Run { cmd, stdin: None, measure: false }
}

pub struct Run {
    pub cmd: Command,
    stdin: Option<Vec<u8>>,
    measure: bool,
}

/// Runs argv[1:] and reports its peak RSS. A child's peak RSS includes what
/// its parent held when it was spawned, so the measured process must be
/// spawned by a small process (this one), not by the test harness.
const RSS_WRAPPER: &str = "import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
sys.stderr.write('\\nEDGEGUARD_TEST_MAXRSS=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)";

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident memory of the process, in KiB.
    pub max_rss_kib: i64,
}

impl Run {
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Measure the peak RSS of edgeguard itself (see `RSS_WRAPPER`).
    pub fn measure_rss(mut self) -> Self {
        self.measure = true;
        self
    }

    pub fn cmd_env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs to the end. Uses wait4 so the peak RSS is this child's alone.
    pub fn run(mut self) -> Out {
        use std::io::{Read, Write};
        let started = Instant::now();
        if self.measure {
            let mut wrapped = Command::new(std::env::var("EDGEGUARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into()));
            wrapped.arg("-c").arg(RSS_WRAPPER).arg(self.cmd.get_program()).args(self.cmd.get_args());
            if let Some(dir) = self.cmd.get_current_dir() {
                wrapped.current_dir(dir);
            }
            for (k, v) in self.cmd.get_envs() {
                match v {
                    Some(v) => wrapped.env(k, v),
                    None => wrapped.env_remove(k),
                };
            }
            self.cmd = wrapped;
        }
        self.cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        #[allow(clippy::zombie_processes)] // reaped with wait4 below, for its rusage
        let mut child = self.cmd.spawn().expect("spawn edgeguard");
        let writer = self.stdin.take().map(|data| {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            })
        });
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let (code, rss) = wait4(child.id() as i32);
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
        let mut stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
        let mut max_rss_kib = rss;
        if self.measure {
            let at = stderr.rfind("\nEDGEGUARD_TEST_MAXRSS=").expect("the RSS wrapper reports");
            max_rss_kib = stderr[at + 24..].trim().parse().expect("a number");
            stderr.truncate(at);
        }
        Out { code, stdout, stderr, elapsed: started.elapsed(), max_rss_kib }
    }
}

/// Waits for one child; its exit code (128+signal when killed) and peak RSS.
pub fn wait4(pid: i32) -> (i32, i64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        assert_eq!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::Interrupted, "wait4 failed");
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    (code, usage.ru_maxrss)
}

impl Out {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            truncate(&self.stdout),
            truncate(&self.stderr)
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n--- stderr\n{}", truncate(&self.stderr));
        self
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}"))).collect()
    }
}

fn truncate(s: &str) -> &str {
    &s[..s.len().min(4000)]
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Stores the NDJSON `lines` into the store `db` the plain way
/// (`acquire pipelines/input-only.yaml --input - --store DB --store-input`),
/// as a user migrating or filling a store does; expects exit 0.
pub fn store_lines(db: &Path, lines: &str) {
    eg([
        "acquire".as_ref(),
        "pipelines/input-only.yaml".as_ref(),
        "--input".as_ref(),
        "-".as_ref(),
        "--store".as_ref(),
        db.as_os_str(),
        "--store-input".as_ref(),
        "-o".as_ref(),
        "/dev/null".as_ref(),
    ])
    .stdin(lines.to_string())
    .run()
    .code(0);
}

/// Runs one query against a store file (no edgeguard may hold it).
pub fn query_i64(db: &Path, sql: &str) -> i64 {
    let conn = duckdb::Connection::open(db).expect("open store");
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Runs one query that returns a string against a store file.
pub fn query_string(db: &Path, sql: &str) -> String {
    let conn = duckdb::Connection::open(db).expect("open store");
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Polls `ok` every 100 ms until it holds; fails the test naming `what`
/// after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
