//! The date a run is for. Everything computed for it sees only what happened before its midnight
//! (UTC): that instant is its *cutoff*. One type carries the date from the command line to the
//! ledger, the schedules, the features and the exports, so it is formatted and converted in one
//! place only.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, Utc};

use crate::DAY;

/// A run date: `YYYY-MM-DD` when shown, its midnight UTC when compared with event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunDate(NaiveDate);

impl RunDate {
    pub fn new(date: NaiveDate) -> Self {
        RunDate(date)
    }

    /// Today in UTC.
    pub fn today() -> Self {
        RunDate(Utc::now().date_naive())
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// Midnight UTC of the date, as Unix seconds: the cutoff of everything computed for it.
    pub fn cutoff(self) -> i64 {
        self.0
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp()
    }

    /// Days since 1970-01-01: the day number selection counts caps and cooldowns in.
    pub fn day(self) -> i64 {
        self.cutoff().div_euclid(DAY)
    }

    /// The date `days` days after this one.
    pub fn days_after(self, days: i64) -> Self {
        RunDate(self.0 + chrono::Duration::days(days))
    }

    /// The date `days` days before this one.
    pub fn days_before(self, days: i64) -> Self {
        RunDate(self.0 - chrono::Duration::days(days))
    }
}

impl fmt::Display for RunDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.format("%Y-%m-%d").to_string())
    }
}

impl FromStr for RunDate {
    type Err = chrono::ParseError;

    /// `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map(RunDate)
    }
}

impl From<NaiveDate> for RunDate {
    fn from(date: NaiveDate) -> Self {
        RunDate(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_date_is_one_day_from_its_cutoff_on() {
        let d: RunDate = "2026-11-20".parse().unwrap();
        assert_eq!(d.to_string(), "2026-11-20");
        assert_eq!(d.cutoff(), 1_795_132_800);
        assert_eq!(d.day(), 20_777);
        assert_eq!(d.days_before(20).to_string(), "2026-10-31");
        assert!("2026-13-01".parse::<RunDate>().is_err());
        assert!("20261120".parse::<RunDate>().is_err());
    }
}
