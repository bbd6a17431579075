//! Campaign configs: the marketing team's whole interface.
//!
//! A campaign file (TOML, one per campaign) is parsed into [`CampaignFile`], which mirrors the
//! file and rejects unknown fields, then validated into [`Campaign`], which the rest of the
//! system uses and which cannot hold an invalid value. Validation reports every problem at once,
//! each with its `file:line:column`; unknown fields come with the closest known name as a hint.
//! The JSON Schema of the file ([`schema`]) is generated from these types, so editors validate
//! exactly what this module accepts.

use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::rules::{check, closest, Catalog, CheckedRule};
use crate::{Result, SegmentError};

/// The campaign file format this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A campaign file as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// Version of this file format; must be 1.
    pub format_version: u32,
    /// Stable identifier: lowercase letters, digits and `-`. Names the export folder and the
    /// ledger rows, so never reuse one for a different campaign.
    pub id: String,
    /// Human-readable name, shown in previews and reports.
    pub name: Option<String>,
    /// What the campaign is: `drop`, `weekly_deal`, `new_buyer` or `seasonal`.
    pub kind: KindName,
    /// When the campaign runs. Default: every night.
    pub schedule: Option<ScheduleFile>,
    /// Higher wins when several campaigns want the same user on the same night. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// Share of the selected audience held out as the campaign's control group, from 0 to 0.5
    /// (e.g. `0.1` for 10 %). Held-out users are never messaged; they measure the lift.
    pub holdout: f64,
    /// Largest number of users selected, holdout included.
    pub max_audience: u64,
    /// Salt of the holdout hash. Default: the campaign id. Change it only to reshuffle who is
    /// held out.
    pub salt: Option<String>,
    /// Who may receive the campaign: rules that must all hold, e.g.
    /// `"days_since_last_purchase >= 14"`, `"country in [\"US\", \"CA\"]"`,
    /// `"not is_new_buyer"`. Each rule is a step of the dry-run funnel. Names come from the
    /// feature catalogue (`targeting campaigns fields`); see the README for the language.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub eligibility: Vec<Spanned<String>>,
    /// What the message offers.
    #[serde(default)]
    pub offer: OfferFile,
    /// Settings of a `drop` campaign.
    pub drop: Option<DropFile>,
    /// Settings of a `weekly_deal` campaign.
    pub weekly_deal: Option<WeeklyDealFile>,
    /// Settings of a `seasonal` campaign.
    pub seasonal: Option<SeasonalFile>,
    /// Where and how the target list is published.
    #[serde(default)]
    pub export: ExportFile,
}

/// Campaign kinds as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    Drop,
    WeeklyDeal,
    NewBuyer,
    Seasonal,
}

/// The `[schedule]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Cron expression in the campaign's time zone: `minute hour day-of-month month
    /// day-of-week`, optionally with a leading seconds field. E.g. `"0 3 * * MON"` (Mondays at
    /// 03:00) or `"0 0 4 1 12 *"` (December 1st at 04:00:00).
    pub cron: String,
    /// IANA time zone of the expression, e.g. `"Europe/Berlin"`. Default `"UTC"`.
    pub timezone: Option<String>,
}

/// The `[offer]` table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferFile {
    /// Discount in percent (0 to 90). 0 or absent means no discount.
    #[serde(default)]
    pub discount_pct: f64,
    /// Text placed in the export's `offer` column for the CRM template, e.g. `"20% off"`.
    pub label: Option<String>,
    /// Profit on a purchase at full price, as a share of the price (0 to 1). Expected profit
    /// (for weekly deals and expected-value arbitration) is
    /// `uplift × (margin − discount) − P(buy anyway) × discount`. Default 0.3.
    pub margin: Option<f64>,
    /// Most the discount may cost tonight, in currency units: the expected discount given to
    /// the messaged users (those who would buy anyway and those the offer converts). Only with
    /// a discount. A weekly deal then takes users by expected profit per unit of cost. Default:
    /// no budget.
    pub budget: Option<f64>,
    /// Average list price of a purchase the offer applies to, in currency units; turns the
    /// expected discount into money for the budget. Default 30.
    pub average_price: Option<f64>,
}

/// The `[drop]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropFile {
    /// The dropped item (`items.item_id`); its game, publisher and category drive affinity.
    pub item_id: i64,
}

/// The `[weekly_deal]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyDealFile {
    /// Users whose share of discounted orders over the last year is above this (0 to 1) are
    /// left out: they are already waiting for deals. Default 0.6.
    pub max_discount_share: Option<f64>,
    /// Users whose predicted discount sensitivity (the probability that most of their next
    /// purchases are discounted) is above this (0 to 1) are left out. Default 0.5.
    pub max_sensitivity: Option<f64>,
}

/// The `[seasonal]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeasonalFile {
    /// Only users whose predicted uplift is at least this are selected. Default 0.
    pub min_uplift: Option<f64>,
}

/// The `[export]` table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    /// File format of the parts. Default `csv_gzip`.
    pub format: Option<ExportFormat>,
    /// Column preset, for the CRM that ingests the list. Default `generic`.
    pub columns: Option<ColumnPreset>,
    /// Also publish `holdout.csv.gz` (`external_id, campaign_id, variant`) with the holdout
    /// members, for a CRM's own suppression logs. They are never in the list itself.
    /// Default false.
    #[serde(default)]
    pub holdout_file: bool,
    /// Destination URI overriding the settings' `export.destination`: `file:///data/out`,
    /// `file://relative/out` or `s3://bucket/prefix`.
    pub destination: Option<String>,
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub kind: CampaignKind,
    /// When it runs; `None`: every night.
    pub schedule: Option<Schedule>,
    /// Eligibility rules, checked against the catalogue; all must hold.
    pub eligibility: Vec<CheckedRule>,
    pub priority: i32,
    pub holdout: f64,
    pub max_audience: usize,
    pub salt: String,
    pub offer: Offer,
    pub format: ExportFormat,
    pub columns: ColumnPreset,
    /// Publish the holdout members in a separate `holdout.csv.gz`.
    pub holdout_file: bool,
    pub destination: Option<String>,
}

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

/// The kind of a campaign, with the settings that only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignKind {
    /// A new item release: no discount; ranked by affinity to the item, then uplift.
    Drop { item_id: i64 },
    /// A discount: ranked by expected incremental profit (per unit of discount cost under a
    /// budget), leaving out users already conditioned to wait for deals.
    WeeklyDeal {
        max_discount_share: f64,
        max_sensitivity: f64,
    },
    /// Users with no purchase yet, ranked by uplift.
    NewBuyer,
    /// A broad promotion: everyone above an uplift floor.
    Seasonal { min_uplift: f64 },
}

impl CampaignKind {
    pub fn name(&self) -> &'static str {
        match self {
            CampaignKind::Drop { .. } => "drop",
            CampaignKind::WeeklyDeal { .. } => "weekly_deal",
            CampaignKind::NewBuyer => "new_buyer",
            CampaignKind::Seasonal { .. } => "seasonal",
        }
    }
}

/// What a message offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub discount_pct: f64,
    pub label: String,
    /// Profit on a purchase at full price, as a share of the price.
    pub margin: f64,
    /// Most the expected discount may cost a night, in currency units.
    pub budget: Option<f64>,
    /// Average list price of a purchase, in currency units.
    pub average_price: f64,
}

/// File formats of an export's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// CSV with a header row, gzip-compressed (`part-00000.csv.gz`).
    CsvGzip,
    /// CSV with a header row, uncompressed (`part-00000.csv`).
    Csv,
    /// Apache Parquet (`part-00000.parquet`), typed columns.
    Parquet,
    /// JSON lines: one object per row (`part-00000.jsonl`).
    Jsonl,
}

impl ExportFormat {
    /// File name extension of a part.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::CsvGzip => "csv.gz",
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Jsonl => "jsonl",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::CsvGzip => "csv_gzip",
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// Column presets: which columns an export has, named the way its CRM imports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnPreset {
    /// `external_id, campaign_id, variant, offer, score, rank`.
    Generic,
    /// Braze's user CSV import: `external_id` and custom attributes `targeting_campaign`,
    /// `targeting_variant`, `targeting_offer`, `targeting_score`, `targeting_rank`,
    /// `targeting_date`.
    Braze,
    /// Iterable's user import: `userId`, `email` (only of users who consented to marketing),
    /// and data fields `campaignId`, `offer`, `score`, `rank`.
    Iterable,
}

impl ColumnPreset {
    pub fn name(self) -> &'static str {
        match self {
            ColumnPreset::Generic => "generic",
            ColumnPreset::Braze => "braze",
            ColumnPreset::Iterable => "iterable",
        }
    }
}

/// The JSON Schema of a campaign file, generated from [`CampaignFile`].
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CampaignFile)).unwrap_or_default()
}

/// Problems found in one file, each with the byte range it is about (when known).
struct Problems<'a> {
    origin: &'a str,
    text: &'a str,
    list: Vec<(Option<Range<usize>>, String)>,
}

impl Problems<'_> {
    fn add(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.list.push((at, message.into()));
    }

    fn into_error(self) -> SegmentError {
        SegmentError::InvalidCampaign {
            problems: self
                .list
                .into_iter()
                .map(|(at, m)| format!("{}: {m}", locate(self.origin, self.text, at)))
                .collect(),
        }
    }
}

/// Parses and validates one campaign file against the rule catalogue; `origin` (the path)
/// prefixes every message. Reports unknown fields, wrong types and invalid values all at once.
pub fn parse(origin: &str, text: &str, catalog: &Catalog) -> Result<Campaign> {
    let mut problems = Problems {
        origin,
        text,
        list: Vec::new(),
    };
    let table = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            problems.add(e.span(), e.message().to_string());
            return Err(problems.into_error());
        }
    };
    let schema = schema();
    unknown_fields(&schema, &schema, table.get_ref(), "", &mut problems);
    // Unknown fields and wrong types are reported above, all of them and with hints; serde
    // (which stops at the first) speaks only about what the walk does not check.
    if !problems.list.is_empty() {
        return Err(problems.into_error());
    }
    let file: CampaignFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            problems.add(e.span(), e.message().trim().to_string());
            return Err(problems.into_error());
        }
    };
    if !problems.list.is_empty() {
        return Err(problems.into_error());
    }
    file.validate(table.get_ref(), catalog, problems)
}

/// `origin:line:column` of a byte range's start, or `origin` alone.
pub fn locate(origin: &str, text: &str, span: Option<Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.chars().count()
                - before
                    .rfind('\n')
                    .map_or(0, |p| before[..=p].chars().count())
                + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    }
}

/// The schema node `node` points to, following `$ref` and skipping the `null` branch of an
/// optional field.
fn resolve<'a>(root: &'a serde_json::Value, node: &'a serde_json::Value) -> &'a serde_json::Value {
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = node.get(key).and_then(|b| b.as_array()) {
            if let Some(b) = branches
                .iter()
                .map(|b| resolve(root, b))
                .find(|b| b.get("properties").is_some())
            {
                return b;
            }
        }
    }
    node
}

/// Reports every key of `table` that the schema `node` does not allow, with a hint.
fn unknown_fields(
    root: &serde_json::Value,
    node: &serde_json::Value,
    table: &DeTable<'_>,
    prefix: &str,
    problems: &mut Problems<'_>,
) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        match props.get(name) {
            Some(sub) => {
                wrong_type(root, sub, value, &format!("{prefix}{name}"), problems);
                if let DeValue::Table(t) = value.get_ref() {
                    unknown_fields(root, sub, t, &format!("{prefix}{name}."), problems);
                }
            }
            None => {
                let hint = closest(name, props.keys().map(String::as_str))
                    .map(|s| format!(", did you mean \"{s}\"?"))
                    .unwrap_or_else(|| {
                        let mut known: Vec<&str> = props.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        format!(" (known: {})", known.join(", "))
                    });
                problems.add(
                    Some(key.span()),
                    format!("unknown field \"{prefix}{name}\"{hint}"),
                );
            }
        }
    }
}

/// The JSON types a schema node accepts (through `$ref` and `anyOf`), and its allowed values
/// when it is an enumeration.
fn accepted<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut types, mut values) = (Vec::new(), Vec::new());
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return accepted(root, def);
        }
    }
    for key in ["anyOf", "oneOf"] {
        for b in node
            .get(key)
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            let (t, v) = accepted(root, b);
            types.extend(t);
            values.extend(v);
        }
    }
    match node.get("type") {
        Some(serde_json::Value::String(t)) => types.push(t.as_str()),
        Some(serde_json::Value::Array(ts)) => types.extend(ts.iter().filter_map(|t| t.as_str())),
        _ => {}
    }
    if let Some(e) = node.get("enum").and_then(|e| e.as_array()) {
        values.extend(e.iter().filter_map(|v| v.as_str()));
        types.push("string");
    }
    if let Some(c) = node.get("const").and_then(|c| c.as_str()) {
        values.push(c);
        types.push("string");
    }
    if node.get("properties").is_some() {
        types.push("object");
    }
    (types, values)
}

/// Reports a value whose TOML type the schema does not accept (every one, unlike serde, which
/// stops at the first), or an enumeration's unknown value, with a hint.
fn wrong_type(
    root: &serde_json::Value,
    node: &serde_json::Value,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    problems: &mut Problems<'_>,
) {
    let (types, values) = accepted(root, node);
    if types.is_empty() {
        return;
    }
    let found = match value.get_ref() {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "number",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "object",
    };
    let ok = types.contains(&found) || (found == "integer" && types.contains(&"number"));
    if !ok {
        let mut want: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        want.dedup();
        problems.add(
            Some(value.span()),
            format!("{path} must be {}, not {found}", want.join(" or ")),
        );
        return;
    }
    if let (DeValue::String(v), false) = (value.get_ref(), values.is_empty()) {
        if !values.contains(&v.as_ref()) {
            let hint = closest(v.as_ref(), values.iter().copied())
                .map(|s| format!(", did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!(" (one of {})", values.join(", ")));
            problems.add(
                Some(value.span()),
                format!("{path} {v:?} is not known{hint}"),
            );
        }
    }
    if let (DeValue::Array(items), Some(item)) = (value.get_ref(), node_items(root, node)) {
        for (i, v) in items.iter().enumerate() {
            wrong_type(root, item, v, &format!("{path}[{i}]"), problems);
        }
    }
}

/// The item schema of an array node.
fn node_items<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Option<&'a serde_json::Value> {
    let node = resolve(root, node);
    node.get("items")
}

/// The byte range of the value at a dotted `path` (e.g. `offer.discount_pct`), if present.
fn span_of(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == head)?;
    match (rest.is_empty(), value.get_ref()) {
        (true, _) => Some(value.span()),
        (false, DeValue::Table(t)) => span_of(t, rest),
        _ => None,
    }
}

fn share(problems: &mut Vec<(&'static str, String)>, field: &'static str, value: f64, max: f64) {
    if !(0.0..=max).contains(&value) {
        problems.push((
            field,
            format!("{field} must be between 0 and {max}, got {value}"),
        ));
    }
}

impl CampaignFile {
    /// Checks every field and returns the validated campaign, or all problems at once, each
    /// located in `table` (the file as parsed).
    fn validate(
        self,
        table: &DeTable<'_>,
        catalog: &Catalog,
        mut located: Problems<'_>,
    ) -> Result<Campaign> {
        // (field path, message): the path locates the message in the file.
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if self.format_version != FORMAT_VERSION {
            problems.push((
                "format_version",
                format!(
                    "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                    self.format_version
                ),
            ));
        }
        let id_ok = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            problems.push((
                "id",
                format!(
                    "id {:?} must be non-empty lowercase letters, digits and '-'",
                    self.id
                ),
            ));
        }
        share(&mut problems, "holdout", self.holdout, 0.5);
        if self.max_audience == 0 {
            problems.push(("max_audience", "max_audience must be at least 1".into()));
        }
        share(
            &mut problems,
            "offer.discount_pct",
            self.offer.discount_pct,
            90.0,
        );
        let margin = self.offer.margin.unwrap_or(0.3);
        share(&mut problems, "offer.margin", margin, 1.0);
        if let Some(b) = self.offer.budget {
            if !(b >= 0.0 && b.is_finite()) {
                problems.push((
                    "offer.budget",
                    format!("offer.budget must be a non-negative amount, got {b}"),
                ));
            } else if self.offer.discount_pct <= 0.0 {
                problems.push((
                    "offer.budget",
                    "offer.budget limits the cost of a discount: set offer.discount_pct".into(),
                ));
            }
        }
        let average_price = self.offer.average_price.unwrap_or(30.0);
        if !(average_price > 0.0 && average_price.is_finite()) {
            problems.push((
                "offer.average_price",
                format!("offer.average_price must be above 0, got {average_price}"),
            ));
        }

        let kind_name = self.kind;
        let sections = [
            ("drop", self.drop.is_some(), KindName::Drop),
            (
                "weekly_deal",
                self.weekly_deal.is_some(),
                KindName::WeeklyDeal,
            ),
            ("seasonal", self.seasonal.is_some(), KindName::Seasonal),
        ];
        for (section, present, kind) in sections {
            if present && kind != kind_name {
                problems.push((
                    section,
                    format!("[{section}] does not apply to a {kind_name:?} campaign"),
                ));
            }
        }
        let kind = match kind_name {
            KindName::Drop => match &self.drop {
                Some(d) => CampaignKind::Drop { item_id: d.item_id },
                None => {
                    problems.push(("kind", "a drop campaign needs [drop] item_id".into()));
                    CampaignKind::Drop { item_id: 0 }
                }
            },
            KindName::WeeklyDeal => {
                let w = self.weekly_deal.clone().unwrap_or(WeeklyDealFile {
                    max_discount_share: None,
                    max_sensitivity: None,
                });
                let max = w.max_discount_share.unwrap_or(0.6);
                share(&mut problems, "weekly_deal.max_discount_share", max, 1.0);
                let max_sensitivity = w.max_sensitivity.unwrap_or(0.5);
                share(
                    &mut problems,
                    "weekly_deal.max_sensitivity",
                    max_sensitivity,
                    1.0,
                );

                if self.offer.discount_pct <= 0.0 {
                    problems.push((
                        "offer.discount_pct",
                        "a weekly_deal needs offer.discount_pct above 0".into(),
                    ));
                }
                CampaignKind::WeeklyDeal {
                    max_discount_share: max,
                    max_sensitivity,
                }
            }
            KindName::NewBuyer => CampaignKind::NewBuyer,
            KindName::Seasonal => {
                let min_uplift = self
                    .seasonal
                    .as_ref()
                    .and_then(|s| s.min_uplift)
                    .unwrap_or(0.0);
                if !(-1.0..=1.0).contains(&min_uplift) {
                    problems.push((
                        "seasonal.min_uplift",
                        format!("seasonal.min_uplift must be between -1 and 1, got {min_uplift}"),
                    ));
                }
                CampaignKind::Seasonal { min_uplift }
            }
        };
        if kind_name == KindName::Drop && self.offer.discount_pct > 0.0 {
            problems.push((
                "offer.discount_pct",
                "a drop carries no discount: remove offer.discount_pct".into(),
            ));
        }

        if let Some(dest) = &self.export.destination {
            if !(dest.starts_with("file://") || dest.starts_with("s3://")) {
                problems.push((
                    "export.destination",
                    format!("export.destination {dest:?} must be a file:// or s3:// URI"),
                ));
            }
        }
        let schedule = match &self.schedule {
            None => None,
            Some(s) => match Schedule::parse(&s.cron, s.timezone.as_deref()) {
                Ok(s) => Some(s),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
        };
        for (path, message) in problems {
            located.add(span_of(table, path), message);
        }
        let mut eligibility = Vec::new();
        for (i, rule) in self.eligibility.iter().enumerate() {
            match check(rule.get_ref(), catalog) {
                Ok(r) => eligibility.push(r),
                Err(e) => located.add(Some(rule.span()), format!("eligibility[{i}]: {e}")),
            }
        }
        if !located.list.is_empty() {
            return Err(located.into_error());
        }
        let label = self.offer.label.unwrap_or_else(|| {
            if self.offer.discount_pct > 0.0 {
                format!("{}% off", self.offer.discount_pct)
            } else {
                String::new()
            }
        });
        Ok(Campaign {
            name: self.name.unwrap_or_else(|| self.id.clone()),
            salt: self.salt.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            kind,
            schedule,
            eligibility,
            priority: self.priority,
            holdout: self.holdout,
            max_audience: self.max_audience as usize,
            offer: Offer {
                discount_pct: self.offer.discount_pct,
                label,
                margin,
                budget: self.offer.budget,
                average_price,
            },
            format: self.export.format.unwrap_or(ExportFormat::CsvGzip),
            columns: self.export.columns.unwrap_or(ColumnPreset::Generic),
            holdout_file: self.export.holdout_file,
            destination: self.export.destination,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Field, FieldKind};

    #[test]
    fn schedules_fire_in_their_time_zone() {
        use chrono::TimeZone;
        let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        let utc = |y, m, d, h, min| chrono::Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
        assert_eq!(
            s.next_after(utc(2026, 11, 26, 1, 0)),
            Some(utc(2026, 11, 26, 2, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 11, 26, 2, 0)),
            Some(utc(2026, 11, 27, 2, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 7, 1, 0, 0)),
            Some(utc(2026, 7, 1, 1, 0))
        );
        let window = chrono::Duration::hours(24);
        assert_eq!(
            s.last_fired(utc(2026, 11, 26, 2, 0), window),
            Some(utc(2026, 11, 26, 2, 0))
        );
        assert_eq!(
            s.last_fired(utc(2026, 11, 26, 1, 59), window),
            Some(utc(2026, 11, 25, 2, 0))
        );
        assert_eq!(
            s.last_fired(utc(2026, 11, 26, 1, 59), chrono::Duration::hours(6)),
            None
        );
        // 23:30 UTC on the 25th is already the 26th in Berlin.
        let late = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap();
        assert_eq!(
            s.run_date(late),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
        );
        let every_2s = Schedule::parse("*/2 * * * * *", None).unwrap();
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 1).unwrap();
        assert_eq!(
            every_2s.next_after(t),
            Some(t + chrono::Duration::seconds(1))
        );
        // 02:30 Berlin does not exist on 29 March 2026: that night's firing is at 03:00, and
        // catch-up looks for the firing the daemon made.
        let skipped = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            skipped.last_fired(utc(2026, 3, 29, 12, 0), window),
            Some(utc(2026, 3, 29, 1, 0))
        );
        // A seventh field is not read as a year.
        assert_eq!(
            Schedule::parse("0 0 3 * * * 2027", None).unwrap_err().0,
            "schedule.cron"
        );
    }

    const DEAL: &str = r#"
format_version = 1
id = "weekly-deal"
kind = "weekly_deal"
holdout = 0.1
max_audience = 1000
eligibility = ["orders_total >= 1"]
[offer]
discount_pct = 20
"#;

    fn catalog() -> Catalog {
        Catalog {
            fields: vec![Field {
                name: "orders_total".into(),
                kind: FieldKind::Number,
                column: "orders_total".into(),
                description: String::new(),
            }],
        }
    }

    fn error(text: &str) -> String {
        parse("deal.toml", text, &catalog())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn valid_file_gets_defaults() {
        let c = parse("deal.toml", DEAL, &catalog()).unwrap();
        assert_eq!(c.salt, "weekly-deal");
        assert_eq!(c.offer.label, "20% off");
        assert_eq!(
            c.kind,
            CampaignKind::WeeklyDeal {
                max_discount_share: 0.6,
                max_sensitivity: 0.5,
            }
        );
        assert_eq!((c.offer.budget, c.offer.average_price), (None, 30.0));
        assert_eq!(c.offer.margin, 0.3);
        assert_eq!(c.format, ExportFormat::CsvGzip);
        assert_eq!(c.eligibility.len(), 1);
        assert_eq!(c.eligibility[0].text, "orders_total >= 1");
    }

    #[test]
    fn unknown_fields_are_located_with_a_hint() {
        let text = DEAL
            .replace("holdout = 0.1", "holdot = 0.1")
            .replace("discount_pct = 20", "discount_pct = 20\nlabl = \"x\"");
        assert_eq!(
            error(&text),
            "deal.toml:5:1: unknown field \"holdot\", did you mean \"holdout\"?\n\
             deal.toml:10:1: unknown field \"offer.labl\", did you mean \"label\"?"
        );
        let text = DEAL.replace("holdout = 0.1", "holdout = 0.1\ncolour = 3");
        let err = error(&text);
        assert!(
            err.starts_with("deal.toml:6:1: unknown field \"colour\" (known: drop, eligibility,"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_and_syntax_are_located() {
        let text = DEAL
            .replace("max_audience = 1000", "max_audience = \"lots\"")
            .replace("holdout = 0.1", "holdout = true")
            .replace("kind = \"weekly_deal\"", "kind = \"weekly-deal\"");
        // Every wrong type at once, and an unknown kind with a hint.
        assert_eq!(
            error(&text),
            "deal.toml:5:11: holdout must be number, not boolean\n\
             deal.toml:4:8: kind \"weekly-deal\" is not known, did you mean \"weekly_deal\"?\n\
             deal.toml:6:16: max_audience must be integer, not string"
        );
        let err = error(&DEAL.replace("max_audience = 1000", "max_audience = "));
        assert!(err.starts_with("deal.toml:6:"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_at_once_each_with_its_place() {
        let text = DEAL
            .replace("holdout = 0.1", "holdout = 1.5")
            .replace("discount_pct = 20", "discount_pct = -5")
            .replace("orders_total >= 1", "orders_totl >= 1");
        assert_eq!(
            error(&text),
            "deal.toml:5:11: holdout must be between 0 and 0.5, got 1.5\n\
             deal.toml:9:16: offer.discount_pct must be between 0 and 90, got -5\n\
             deal.toml:9:16: a weekly_deal needs offer.discount_pct above 0\n\
             deal.toml:7:16: eligibility[0]: unknown name \"orders_totl\", did you mean \"orders_total\"?\n    \
             orders_totl >= 1\n    ^^^^^^^^^^^"
        );
    }

    #[test]
    fn schedules_are_validated_and_know_their_days() {
        let with = |schedule: &str| DEAL.replace("[offer]", &format!("{schedule}\n[offer]"));
        let c = parse(
            "deal.toml",
            &with("[schedule]\ncron = \"30 23 * * MON\"\ntimezone = \"America/New_York\""),
            &catalog(),
        )
        .unwrap();
        let s = c.schedule.unwrap();
        let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        // 2026-11-23 is a Monday; 23:30 in New York is already Tuesday in UTC, but the day is
        // the campaign's own.
        assert!(s.due_on(day("2026-11-23")));
        assert!(!s.due_on(day("2026-11-24")));
        assert!(!s.due_on(day("2026-11-22")));
        // Six fields: seconds first.
        let c = parse(
            "deal.toml",
            &with("[schedule]\ncron = \"0 0 4 1 12 *\""),
            &catalog(),
        )
        .unwrap();
        assert!(c.schedule.as_ref().unwrap().due_on(day("2026-12-01")));
        assert!(!c.schedule.unwrap().due_on(day("2026-12-02")));

        let err = error(&with("[schedule]\ncron = \"0 25 * * *\""));
        assert!(
            err.starts_with("deal.toml:9:8: schedule.cron \"0 25 * * *\": "),
            "{err}"
        );
        let err = error(&with(
            "[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"",
        ));
        assert!(
            err.starts_with("deal.toml:10:12: schedule.timezone \"Mars/Olympus\" is not an IANA"),
            "{err}"
        );
    }

    #[test]
    fn the_schema_describes_every_field() {
        let s = schema();
        let props = s["properties"].as_object().unwrap();
        for key in [
            "format_version",
            "id",
            "kind",
            "holdout",
            "eligibility",
            "offer",
        ] {
            assert!(props.contains_key(key), "{key}");
        }
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
        assert!(props["holdout"]["description"]
            .as_str()
            .unwrap()
            .contains("Share of the selected audience"));
    }
}
