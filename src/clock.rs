//! Wall-clock timestamps as text (RFC 3339, UTC), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now. Debug builds add `FLEETKEY_CLOCK_SKEW` seconds (tests use it
/// to let hours pass: a machine that has been silent for a while); release builds ignore it.
pub fn now_unix() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now.saturating_add(skew())
}

/// The test-only skew (see [`now_unix`]).
fn skew() -> i64 {
    if !cfg!(debug_assertions) {
        return 0;
    }
    std::env::var("FLEETKEY_CLOCK_SKEW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// `YYYY-MM-DD` for `secs` since the epoch.
pub fn date(secs: i64) -> String {
    rfc3339(secs)[..10].to_string()
}

/// A compact timestamp for file names: `YYYYMMDDTHHMMSSZ`.
pub fn compact(secs: i64) -> String {
    rfc3339(secs).replace(['-', ':'], "")
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_739_855), "2026-11-27T00:37:35Z");
        assert_eq!(date(1_795_739_855), "2026-11-27");
        assert_eq!(compact(1_795_739_855), "20261127T003735Z");
    }
}
