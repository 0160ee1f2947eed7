//! Calendar periods shared by every analysis that buckets time (retention, revenue, scores):
//! days, ISO weeks (Monday first) and months, on local milliseconds (see [`crate::timezone`]).

use serde::{Deserialize, Serialize};

/// Milliseconds in a day (calendar days in local time; no leap seconds).
pub const DAY_MS: i64 = 86_400_000;

/// A calendar period: retention cohorts, revenue and score trends are bucketed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Week,
    Month,
}

impl Period {
    /// The period index of `ts` (ms since the epoch, shifted to local time).
    pub fn index(self, local_ms: i64) -> i64 {
        let day = local_ms.div_euclid(DAY_MS);
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: shift so weeks start on Monday
            Period::Week => (day + 3).div_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + (m as i64 - 1)
            }
        }
    }

    /// The first day of period `index`, as `YYYY-MM-DD`.
    pub fn label(self, index: i64) -> String {
        let day = match self {
            Period::Day => index,
            Period::Week => index * 7 - 3,
            Period::Month => {
                days_from_civil(index.div_euclid(12), (index.rem_euclid(12) + 1) as u32, 1)
            }
        };
        let (y, m, d) = civil_from_days(day);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = DAY_MS;

    #[test]
    fn calendar_periods() {
        // 2024-01-01 was a Monday
        let jan1 = days_from_civil(2024, 1, 1);
        assert_eq!(civil_from_days(jan1), (2024, 1, 1));
        assert_eq!(
            Period::Week.label(Period::Week.index(jan1 * D + 5 * D)),
            "2024-01-01"
        );
        assert_eq!(
            Period::Week.index(jan1 * D + 7 * D) - Period::Week.index(jan1 * D),
            1
        );
        assert_eq!(
            Period::Month.label(Period::Month.index((jan1 + 40) * D)),
            "2024-02-01"
        );
        assert_eq!(Period::Day.label(Period::Day.index(jan1 * D)), "2024-01-01");
        for day in [-800_000i64, -1, 0, 1, 59, 10_000, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
