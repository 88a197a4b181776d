//! The parts of `/metrics` that are not the pipeline's counters: the
//! standard `process_*` metrics (from `/proc`), the store's file size and
//! free disk space (`statvfs`), the state of each source, and the latest
//! value and quality of each channel, up to `serve.metric_channels`.
//!
//! Everything is written in the Prometheus text format, with label values
//! escaped as it requires (`\\`, `\"`, `\n`).

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::tap::Latest;
use crate::model::record::Quality;

/// Appends one metric family: its `# HELP`, `# TYPE` and samples
/// (`(labels, value)`, labels already in braces or empty).
pub fn family<V: std::fmt::Display>(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, V)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A label value as the text format wants it.
pub fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float as the text format writes it (`NaN`, `+Inf`, `-Inf`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// `process_*`, as the Prometheus client libraries name them, read from
/// `/proc/self`. A figure that cannot be read is left out.
pub fn process(out: &mut String) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    if let (Some(utime), Some(stime), true) = (field(14), field(15), ticks > 0) {
        let cpu = vec![(String::new(), float((utime + stime) / ticks as f64))];
        family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", &cpu);
    }
    if let (Some(vsize), Some(rss)) = (field(23), field(24)) {
        let v = vec![(String::new(), float(vsize))];
        family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", &v);
        let r = vec![(String::new(), float(rss * page as f64))];
        family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", &r);
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()));
    if let (Some(start), Some(boot), true) = (field(22), boot, ticks > 0) {
        let t = vec![(String::new(), float(boot + start / ticks as f64))];
        family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            &t,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory being read holds one descriptor of its own.
        let n = dir.count().saturating_sub(1);
        family(out, "process_open_fds", "gauge", "Number of open file descriptors.", &[(String::new(), n)]);
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        let max = vec![(String::new(), limit.rlim_cur as f64)];
        family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", &max);
    }
}

/// The store file's size (with its write-ahead log) and the free space of
/// its file system, for an unprivileged process.
pub fn store(out: &mut String, path: &Path) {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    let bytes = vec![(String::new(), size(path) + size(Path::new(&wal)))];
    family(out, "edgeguard_store_file_bytes", "gauge", "Size of the store file and its write-ahead log.", &bytes);
    if let Some(free) = free_bytes(path) {
        let free = vec![(String::new(), free)];
        family(out, "edgeguard_store_disk_free_bytes", "gauge", "Free bytes of the store's file system.", &free);
    }
}

/// Bytes an unprivileged process may still write on the file system of
/// `path` (its folder when the file is not there yet).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = if path.exists() { path } else { path.parent().filter(|p| !p.as_os_str().is_empty())? };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a struct we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The latest value and quality of the first `cap` channels by name, and
/// how many were left out.
pub fn channels(out: &mut String, latest: &[Latest], cap: usize) {
    let shown = &latest[..latest.len().min(cap)];
    let _ = writeln!(
        out,
        "# HELP edgeguard_channel_value Latest value of the channel (NaN when it has none: a failed poll, a gap, text).\n\
         # TYPE edgeguard_channel_value gauge"
    );
    let mut labels = Vec::with_capacity(shown.len());
    for l in shown {
        let r = &l.reading;
        let label = format!("{{channel=\"{}\"}}", escape(&r.channel));
        let _ = writeln!(out, "edgeguard_channel_value{label} {}", float(r.value.unwrap_or(f64::NAN)));
        labels.push(label);
    }
    let _ = writeln!(
        out,
        "# HELP edgeguard_channel_quality Quality of the channel's latest reading: 0 good, 1 suspect, 2 bad.\n\
         # TYPE edgeguard_channel_quality gauge"
    );
    for (l, label) in shown.iter().zip(&labels) {
        let q = match l.reading.quality {
            Quality::Good => 0,
            Quality::Suspect => 1,
            Quality::Bad => 2,
        };
        let _ = writeln!(out, "edgeguard_channel_quality{label} {q}");
    }
    let left = vec![(String::new(), latest.len() - shown.len())];
    family(
        out,
        "edgeguard_channels_not_exported",
        "gauge",
        "Channels past serve.metric_channels, not exported as edgeguard_channel_value and _quality.",
        &left,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_floats_spelled_as_prometheus_does() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(
            (float(f64::NAN), float(f64::INFINITY), float(-f64::INFINITY)),
            ("NaN".into(), "+Inf".into(), "-Inf".into())
        );
        assert_eq!(float(1.5), "1.5");
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let mut out = String::new();
        process(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{out}"));
            let v: f64 = line[name.len()..].parse().unwrap();
            // A fresh test process may not have used a whole clock tick yet.
            assert!(v > 0.0 || (name.starts_with("process_cpu") && v == 0.0), "{line}");
        }
        let start: f64 =
            out.lines().find_map(|l| l.strip_prefix("process_start_time_seconds ")).unwrap().parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 30.0, "start {start}, now {now}");
    }

    #[test]
    fn free_bytes_of_a_missing_file_is_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("nope.duckdb")).is_some_and(|b| b > 0));
    }
}
