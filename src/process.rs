//! What the benchmark examples read of their own process from `/proc/self`
//! (Linux; elsewhere these report nothing).

use std::time::Duration;

/// CPU time (user + system, all threads) this process has used, from
/// `/proc/self/stat`; zero where it cannot be read.
pub fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // After the command name (in parentheses, may hold spaces): the state,
            // then numeric fields; utime and stime are the line's 14th and 15th.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // Linux reports ticks of 1/100 s (USER_HZ) on every mainstream architecture.
    Duration::from_millis(ticks * 10)
}

/// A `kB` field of `/proc/self/status` such as `"VmRSS:"` or `"VmHWM:"`, in KiB.
pub fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
