//! Calendar arithmetic for budgets and reports, in UTC and without a date library: the start of the
//! day or month containing an instant, `yyyy-mm-dd` names for day numbers, and parsing the instants
//! a user types (`2026-11-22`, `2026-11-22T10:00:00Z`, epoch milliseconds, or `24h` ago).

use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

/// How often a key's budget renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<BudgetPeriod> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Some(BudgetPeriod::Day),
            "month" | "monthly" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }

    /// The first millisecond (UTC) of the period that contains `at_ms`.
    pub fn start_of(self, at_ms: i64) -> i64 {
        let day = at_ms.div_euclid(DAY_MS);
        match self {
            BudgetPeriod::Day => day * DAY_MS,
            BudgetPeriod::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }
}

/// (year, month, day) for a day number since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day number since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `yyyy-mm-dd` for a day number since the epoch.
pub fn day_name(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `30m`, `24h`, `7d`, `90s` (a bare number is hours).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// An instant as a user writes it, in epoch milliseconds: a duration ago (`24h`), a date
/// (`2026-11-22`, midnight UTC), a UTC date-time (`2026-11-22T10:00:00Z`), or epoch milliseconds.
pub fn parse_instant(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return parse_date_time(s);
    }
    if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let ago = parse_duration(s)?;
    Some(now_ms - i64::try_from(ago.as_millis()).ok()?)
}

fn parse_date_time(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if s.as_bytes().get(7) != Some(&b'-') || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * DAY_MS;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let rest = rest.strip_suffix('Z').unwrap_or(rest);
    let mut hms = rest.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let min: i64 = hms.next().unwrap_or("0").parse().ok()?;
    let sec: i64 = hms.next().unwrap_or("0").split('.').next()?.parse().ok()?;
    if hms.next().is_some() || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    ms += ((h * 60 + min) * 60 + sec) * 1000;
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_780), "2026-11-23");
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        let at = parse_instant("2026-11-23T15:30:00Z", 0).unwrap();
        assert_eq!(BudgetPeriod::Day.start_of(at), 20_780 * DAY_MS);
        assert_eq!(
            BudgetPeriod::Month.start_of(at),
            days_from_civil(2026, 11, 1) * DAY_MS
        );
        assert_eq!(
            BudgetPeriod::Month.start_of(days_from_civil(2024, 3, 1) * DAY_MS - 1),
            days_from_civil(2024, 2, 1) * DAY_MS
        );
    }

    #[test]
    fn instants_as_users_write_them() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_instant("24h", now), Some(now - DAY_MS));
        assert_eq!(parse_instant("2d", now), Some(now - 2 * DAY_MS));
        assert_eq!(parse_instant("1970-01-02", now), Some(DAY_MS));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z", now), Some(1000));
        assert_eq!(parse_instant("1700000000000", now), Some(1_700_000_000_000));
        assert_eq!(parse_instant("yesterday", now), None);
        assert_eq!(parse_instant("2026-13-01", now), None);
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
    }
}
