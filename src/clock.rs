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

/// Seconds since the epoch for `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` (UTC);
/// `None` for anything else, or a date that does not exist.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = match b.len() {
        10 | 20 if b[4] == b'-' && b[7] == b'-' => (num(0..4)?, num(5..7)?, num(8..10)?),
        _ => return None,
    };
    let secs = if b.len() == 20 {
        if b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
        h * 3600 + mi * 60 + s
    } else {
        0
    };
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    (civil_from_days(days) == (y, m as u32, d as u32)).then_some(days * 86_400 + secs)
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

/// A number in [0, 1) from the operating system's random source, for jitter.
pub fn jitter_unit() -> f64 {
    use rand_core::RngCore;
    f64::from(rand_core::OsRng.next_u32()) / (f64::from(u32::MAX) + 1.0)
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

    #[test]
    fn dates_parse_back() {
        for secs in [0, 951_782_400, 1_795_739_855] {
            assert_eq!(parse(&rfc3339(secs)), Some(secs));
        }
        assert_eq!(parse("2026-11-27"), Some(1_795_737_600));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-11-27T24:00:00Z",
            "27.11.2026",
            "",
            "2026-11-27T00:00:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
