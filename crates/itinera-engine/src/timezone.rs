//! The project's time zone, for calendar periods (days, ISO weeks, months): a fixed offset from
//! UTC, or an IANA zone (`Europe/Berlin`) whose offset follows daylight saving time.

use crate::error::{EngineError, Result};
use chrono::{Offset, TimeZone};

/// How to turn UTC milliseconds into local milliseconds.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Fixed(i64),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `time_zone` (an IANA name) wins over `utc_offset_minutes`.
    pub fn new(time_zone: Option<&str>, utc_offset_minutes: i32) -> Result<Zone> {
        match time_zone {
            Some(name) => name.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
                EngineError::invalid(
                    "time_zone",
                    format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)"),
                )
            }),
            None => {
                if utc_offset_minutes.unsigned_abs() > 14 * 60 {
                    return Err(EngineError::invalid(
                        "utc_offset_minutes",
                        "a time zone is at most 14 hours from UTC",
                    ));
                }
                Ok(Zone::Fixed(utc_offset_minutes as i64 * 60_000))
            }
        }
    }

    /// The local wall-clock time of `utc_ms`, as milliseconds since the local epoch.
    pub fn local_ms(&self, utc_ms: i64) -> i64 {
        match self {
            Zone::Fixed(off) => utc_ms.saturating_add(*off),
            Zone::Named(tz) => match chrono::DateTime::from_timestamp_millis(utc_ms) {
                Some(t) => {
                    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
                    utc_ms.saturating_add(offset.local_minus_utc() as i64 * 1000)
                }
                None => utc_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daylight_saving_time_moves_the_offset() {
        let berlin = Zone::new(Some("Europe/Berlin"), 0).unwrap();
        let h = 3_600_000;
        // 2024-01-15 12:00 UTC is 13:00 in Berlin (CET); 2024-07-15 12:00 UTC is 14:00 (CEST)
        let jan = 1_705_320_000_000;
        let jul = 1_721_044_800_000;
        assert_eq!(berlin.local_ms(jan) - jan, h);
        assert_eq!(berlin.local_ms(jul) - jul, 2 * h);
        assert_eq!(Zone::new(None, -300).unwrap().local_ms(0), -5 * h);
        assert!(Zone::new(Some("Mars/Olympus"), 0).is_err());
        assert!(Zone::new(None, 15 * 60).is_err());
    }
}
