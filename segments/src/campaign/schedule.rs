//! Campaign schedules: a cron expression (optional seconds) in an IANA time zone, and the
//! firing times and run dates it gives, correct across DST changes.

/// A validated schedule: a cron expression and its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: String,
    pub timezone: chrono_tz::Tz,
}

/// The one cron dialect of campaign files and settings: five fields or six with seconds first,
/// no year field (croner would otherwise read a seventh field as a year).
fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
}

impl Schedule {
    /// Parses a cron expression (optional seconds field) and an IANA time zone (default UTC);
    /// the error names the field at fault.
    pub fn parse(
        cron: &str,
        timezone: Option<&str>,
    ) -> std::result::Result<Self, (&'static str, String)> {
        let timezone = match timezone {
            None => chrono_tz::Tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                (
                    "schedule.timezone",
                    format!("schedule.timezone {name:?} is not an IANA time zone (e.g. \"Europe/Berlin\")"),
                )
            })?,
        };
        parser().parse(cron).map_err(|e| {
            (
                "schedule.cron",
                format!(
                    "schedule.cron {cron:?}: {e} (fields: [second] minute hour \
                         day-of-month month day-of-week)"
                ),
            )
        })?;
        Ok(Schedule {
            cron: cron.to_string(),
            timezone,
        })
    }

    /// The parsed expression (validated when the campaign was).
    pub fn expression(&self) -> Option<croner::Cron> {
        parser().parse(&self.cron).ok()
    }

    /// The first time the schedule fires strictly after `t`.
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron = self.expression()?;
        cron.find_next_occurrence(&t.with_timezone(&self.timezone), false)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    }

    /// The last time the schedule fired at or before `t`, looking back at most `window`.
    pub fn last_fired(
        &self,
        t: chrono::DateTime<chrono::Utc>,
        window: chrono::Duration,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // Walk forward from the start of the window rather than use croner's backward search:
        // in a skipped DST hour the two disagree (01:59:59 against 03:00 local), and the daemon
        // fires on the forward one. A window holds few firings (a seconds-level test schedule
        // is capped).
        let mut at = t - window - chrono::Duration::seconds(1);
        let mut last = None;
        for _ in 0..100_000 {
            match self.next_after(at) {
                Some(next) if next <= t => {
                    last = Some(next);
                    at = next;
                }
                _ => break,
            }
        }
        last
    }

    /// The run date of a firing at `t`: its date in the schedule's time zone.
    pub fn run_date(&self, t: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        t.with_timezone(&self.timezone).date_naive()
    }

    /// Whether the schedule fires during `date` in its time zone.
    pub fn due_on(&self, date: chrono::NaiveDate) -> bool {
        use chrono::TimeZone;
        let Some(cron) = self.expression() else {
            return false;
        };
        let midnight = |d: chrono::NaiveDate| {
            self.timezone
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                .earliest()
        };
        let (Some(start), Some(end)) = (midnight(date), date.succ_opt().and_then(midnight)) else {
            return false;
        };
        cron.find_next_occurrence(&start, true)
            .is_ok_and(|next| next < end)
    }
}
