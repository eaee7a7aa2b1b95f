//! Turning the real-time clock's calendar reading into Unix time.

/// A reading of the CMOS real-time clock, already decoded from BCD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Full year, e.g. 2026.
    pub year: u32,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59 (60 tolerated).
    pub second: u32,
}

/// Decodes a BCD byte (`0x59` → 59).
pub const fn from_bcd(value: u8) -> u32 {
    (value as u32 & 0x0f) + (value as u32 >> 4) * 10
}

/// Seconds since 1970-01-01 00:00:00 UTC, or `None` for an impossible date.
pub fn unix_seconds(t: RtcTime) -> Option<u64> {
    if !(1970..=9999).contains(&t.year)
        || !(1..=12).contains(&t.month)
        || !(1..=31).contains(&t.day)
        || t.hour > 23
        || t.minute > 59
        || t.second > 60
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), in unsigned arithmetic.
    let (y, m) = if t.month <= 2 { (t.year - 1, t.month + 9) } else { (t.year, t.month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + t.day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::from(era) * 146_097 + u64::from(doe) - 719_468;
    Some(days * 86_400 + u64::from(t.hour) * 3600 + u64::from(t.minute) * 60 + u64::from(t.second))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> RtcTime {
        RtcTime { year, month, day, hour, minute, second }
    }

    #[test]
    fn known_dates() {
        assert_eq!(unix_seconds(t(1970, 1, 1, 0, 0, 0)), Some(0));
        assert_eq!(unix_seconds(t(2000, 3, 1, 0, 0, 0)), Some(951_868_800));
        assert_eq!(unix_seconds(t(2026, 11, 28, 7, 45, 0)), Some(1_795_851_900));
        assert_eq!(unix_seconds(t(2024, 2, 29, 23, 59, 59)), Some(1_709_251_199));
    }

    #[test]
    fn impossible_dates() {
        assert_eq!(unix_seconds(t(1969, 12, 31, 0, 0, 0)), None);
        assert_eq!(unix_seconds(t(2026, 13, 1, 0, 0, 0)), None);
        assert_eq!(unix_seconds(t(2026, 1, 0, 0, 0, 0)), None);
        assert_eq!(unix_seconds(t(2026, 1, 1, 24, 0, 0)), None);
    }

    #[test]
    fn bcd() {
        assert_eq!(from_bcd(0x59), 59);
        assert_eq!(from_bcd(0x00), 0);
        assert_eq!(from_bcd(0x12), 12);
    }
}
