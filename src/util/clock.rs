//! Calendar arithmetic for the two date formats mixtasyd prints (status and mail headers).

use std::time::SystemTime;

/// A UTC time split into calendar fields.
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// Splits a time into UTC calendar fields (H. Hinnant's civil-from-days, proleptic Gregorian).
pub fn civil(t: SystemTime) -> Civil {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for people.
pub fn utc(t: SystemTime) -> String {
    let c = civil(t);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// `YYYY-MM-DD`, the UTC day (`status`'s today).
pub fn date(t: SystemTime) -> String {
    let c = civil(t);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

/// English day names by `Civil::weekday`, as mail and Echolot's lists write them.
pub const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// English month names by `Civil::month` - 1.
pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// RFC 5322 date-time in UTC, for a Date: header.
pub fn rfc5322(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{}, {} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_392_000);
        assert_eq!(utc(t), "2026-11-23 00:00:00 UTC");
        assert_eq!(date(t - Duration::from_secs(1)), "2026-11-22");
        assert_eq!(rfc5322(t), "Mon, 23 Nov 2026 00:00:00 +0000");
        assert_eq!(rfc5322(SystemTime::UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}
