//! Timestamps on the wire: RFC 3339 strings or epoch milliseconds in, epoch
//! milliseconds in storage; durations like `5m`.

/// Parses an RFC 3339 timestamp (`2019-03-04T08:15:00Z`, optional fraction,
/// `Z` or `±HH:MM`) into milliseconds since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in = [31, 28 + leap as i64, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits, right-padded with zeros
        // (no allocation: this runs for every telemetry event).
        millis = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .zip([100, 10, 1])
            .map(|(c, scale)| {
                if c.is_ascii_digit() {
                    (c - b'0') as i64 * scale
                } else {
                    0
                }
            })
            .sum();
        rest = &frac[digits..];
    }
    // Bytes, not `str` slices: a multi-byte character in the offset must
    // not land a slice inside it (that panicked), and each of `HH` and `MM`
    // is exactly two digits (`str::parse` also took `+1` or `-5`).
    let offset_min = match *rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let two = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let (h, m) = (two(h1, h2), two(m1, m2));
            if h > 23 || m > 59 {
                return None;
            }
            (h * 60 + m) * if sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard
/// Hinnant's method).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2019-03-04T08:15:00.250Z`;
/// the fraction only when there is one).
pub fn format_rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if frac == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

/// Parses a duration: `250ms`, `30s`, `5m`, `1h`, `1d`, or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&ms| ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2019-03-04T08:15:00Z"),
            Some(1_551_687_300_000)
        );
        assert_eq!(
            parse_rfc3339("2019-03-04T08:15:00.5Z"),
            Some(1_551_687_300_500)
        );
        // Fractions: padded to milliseconds, truncated past them.
        assert_eq!(
            parse_rfc3339("2019-03-04T08:15:00.25Z"),
            Some(1_551_687_300_250)
        );
        assert_eq!(
            parse_rfc3339("2019-03-04T08:15:00.123456Z"),
            Some(1_551_687_300_123)
        );
        assert_eq!(
            parse_rfc3339("2019-03-04T08:15:00.007+00:00"),
            Some(1_551_687_300_007)
        );
        assert_eq!(
            parse_rfc3339("2019-03-04T03:15:00-05:00"),
            Some(1_551_687_300_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "2019-02-29T00:00:00Z",
            "2019-03-04 08:15",
            "2019-13-01T00:00:00Z",
            "2019-03-04T08:15:00",
            "x",
            "2019-03-04T08:15:00+25:00",
            "2019-03-04T08:15:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Found by `fuzz/` (telemetry_decode): a multi-byte character inside
    /// the offset panicked (a `str` slice inside it), and signs in place of
    /// offset digits were accepted (`--5:30` as -05:30).
    #[test]
    fn malformed_offsets_are_rejected_without_panicking() {
        for bad in [
            "2019-03-04T08:15:00+0\u{e9}00",
            "2019-03-04T08:15:00+\u{e9}:00",
            "2019-03-04T08:15:00--5:30",
            "2019-03-04T08:15:00+-1:00",
            "2019-03-04T08:15:00++1:00",
            "2019-03-04T08:15:00+01:-1",
            "2019-03-04T08:15:00+01:+1",
            "2019-03-04T08:15:00+01\u{e9}0",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            parse_rfc3339("2019-03-04T13:45:00+05:30"),
            Some(1_551_687_300_000)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("250"), Some(250));
        for bad in ["", "0s", "5w", "m", "-5s", "99999999999999999999d"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for ms in [
            0,
            1_551_687_300_000,
            1_551_687_300_250,
            -86_400_000,
            4_102_444_799_999,
        ] {
            let text = super::format_rfc3339(ms);
            assert_eq!(super::parse_rfc3339(&text), Some(ms), "{text}");
        }
        assert_eq!(
            super::format_rfc3339(1_551_687_300_000),
            "2019-03-04T08:15:00Z"
        );
    }
}
