//! CPU time and resident memory of a process, from Linux's `/proc`
//! (`None` elsewhere or when unreadable).

use std::time::Instant;

/// CPU time used by every thread of `pid` so far, ns.
///
/// Sums `/proc/PID/task/*/schedstat` (ns precision); falls back to the
/// tick counts of `/proc/PID/stat` (USER_HZ = 100 on Linux).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    schedstat_ns(pid).or_else(|| stat_ns(pid))
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

fn stat_ns(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces and ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// Resident set size of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A CPU-time reading of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    ns: u64,
}

impl CpuSample {
    /// Reads `pid` now.
    pub fn take(pid: u32) -> Option<CpuSample> {
        Some(CpuSample {
            ns: cpu_ns(pid)?,
            at: Instant::now(),
        })
    }

    /// CPU used between `self` and `later`, in percent of one core.
    pub fn percent_until(&self, later: &CpuSample) -> Option<f64> {
        let wall = later.at.checked_duration_since(self.at)?.as_nanos() as f64;
        (wall > 0.0).then(|| later.ns.saturating_sub(self.ns) as f64 * 100.0 / wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let pid = std::process::id();
        let a = CpuSample::take(pid).expect("cpu");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSample::take(pid).expect("cpu");
        assert!(a.percent_until(&b).is_some_and(|p| p >= 0.0));
        assert!(rss_kib(pid).is_some_and(|k| k > 0));
        assert!(stat_ns(pid).is_some());
    }
}
