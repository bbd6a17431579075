//! Campaign configs: the marketing team's whole interface.
//!
//! A campaign file (TOML, one per campaign) is parsed into [`CampaignFile`], which mirrors the
//! file and rejects unknown fields, then validated into [`Campaign`], which the rest of the
//! system uses and which cannot hold an invalid value. Validation reports every problem at once,
//! each with its `file:line:column`; unknown fields come with the closest known name as a hint.
//! The JSON Schema of the file ([`schema`]) is generated from these types, so editors validate
//! exactly what this module accepts.

mod problems;
mod schedule;
#[cfg(test)]
mod tests;

use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

pub use crate::items::CampaignItems;
use crate::items::MAX_ITEMS;
use crate::rules::{check, check_items, Catalog, CheckedRule, DEAL_ITEMS};
use crate::Result;
use problems::{place_of, unknown_fields, Problems};
pub use schedule::Schedule;

/// Profit on a full-price purchase, as a share of the price, of an offer that names none.
pub const DEFAULT_MARGIN: f64 = 0.3;
/// The most discount levels an offer may list.
pub const MAX_DISCOUNT_LEVELS: usize = 4;

/// The campaign file format this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// The longest campaign id: it names an export folder (a file name, at most 255 bytes, with
/// the run date and run id beside it in the path) and is part of object keys and lock keys.
pub const MAX_ID_LEN: usize = 64;

/// A campaign file as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// Version of this file format; must be 1.
    pub format_version: u32,
    /// Stable identifier: lowercase letters, digits and `-`, at most 64 characters. Names the
    /// export folder and the ledger rows, so never reuse one for a different campaign.
    pub id: String,
    /// Human-readable name, shown in previews and reports.
    pub name: Option<String>,
    /// What the campaign is: `drop`, `weekly_deal`, `new_buyer`, `seasonal` or `gift` (users
    /// likely to send a gift, each with the friend most likely to receive it).
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
    /// Share of the eligible users the model did not pick that are messaged anyway, chosen at
    /// random, from 0 to 0.2 (e.g. `0.02`). They get their own holdout (same share, its own
    /// salt), are marked `explore` in the export's variant column and in the assignments, and
    /// let `targeting report` compare the lift of the model's choice with the lift of a random
    /// choice: what the model is worth. They come on top of `max_audience` and the budget.
    /// Default 0: no exploration.
    #[serde(default)]
    pub explore: f64,
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
    /// The items the campaign is about: rules test them as `deal_items` (e.g.
    /// `"wishlist has item in deal_items"`), and the export's `item_id` column names, per user,
    /// the one of them to put in front of that user. Not for a drop (its item is `[drop]`).
    pub items: Option<ItemsFile>,
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
    Gift,
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
    /// Discount levels in percent the offer may give, ascending, e.g. `[10, 20, 30]` (at most
    /// 4, each from 1 to 90), instead of one `discount_pct`: each user gets the level — or no
    /// message at all — with the most expected incremental profit, so a user a small discount
    /// wins gets a small one, and a user who would buy anyway gets none. Under a `budget`, every
    /// user's level is chosen at one price of the budget, the one at which the levels chosen
    /// just fit it: the most profit the budget can buy. The export's `discount_pct` column says
    /// which level each user got. Only for a `weekly_deal`; every level must be one the
    /// discount model learned from past deals (`targeting validate` checks).
    pub discount_levels: Option<Vec<u32>>,
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

/// The `[items]` table: `ids` or `where`, not both.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsFile {
    /// The items by id (`items.item_id`), the one to show first when a user wants several
    /// equally, e.g. `[1201, 1202, 1305]` (at most 10,000). `targeting validate` checks that the
    /// source's catalogue has each.
    pub ids: Option<Vec<i64>>,
    /// Or every item of the catalogue that meets a condition, e.g.
    /// `'category == "rpg" and list_price >= 20'`. Names: `item`, `game_id`, `publisher_id`,
    /// `category`, `kind` ("1p" or "3p"), `list_price` (currency units), `release_date`.
    #[serde(rename = "where")]
    #[schemars(with = "Option<String>")]
    pub condition: Option<Spanned<String>>,
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
    /// File format of the parts: `csv_gzip`, `csv`, `parquet` or `jsonl`. Default `csv_gzip`,
    /// or `csv` for a preset whose CRM takes plain CSV only (`braze_ids`, `hubspot`, `sfmc`,
    /// which refuse the others) or does not read gzip (`braze`, which takes `csv` or `jsonl`,
    /// and `braze_cdi`, which takes `csv`, `jsonl` or `parquet`).
    pub format: Option<ExportFormat>,
    /// Column preset, for the CRM that ingests the list: `generic`, `braze`, `braze_ids`,
    /// `braze_cdi`, `iterable`, `hubspot` or `sfmc`. Default `generic`.
    pub columns: Option<ColumnPreset>,
    /// Also publish `holdout.csv.gz` (`external_id, campaign_id, variant`) with the holdout
    /// members, for a CRM's own suppression logs. They are never in the list itself.
    /// Default false.
    #[serde(default)]
    pub holdout_file: bool,
    /// Leave out of the list the messaged users without an email address, and count them in
    /// the manifest (`left_out_without_email`): for a CRM that keys users by email, where a row
    /// without one cannot be imported (`iterable` when the project identifies users by email;
    /// `hubspot` always does it). Only for a preset with an email column (`iterable`,
    /// `hubspot`, `sfmc`). Default false.
    #[serde(default)]
    pub require_email: bool,
    /// Destination URI overriding the settings' `export.destination`: `file:///data/out`,
    /// `file://relative/out` or `s3://bucket/prefix`.
    pub destination: Option<String>,
    /// The prefix a CRM watches for new files (`s3://bucket/prefix`, or a `file://` folder):
    /// once the export is complete (`_SUCCESS`), its parts are copied there, named
    /// `<campaign>-<date>-<run_id>-part-00000.<ext>`, and nothing else is (no manifest, marker
    /// or holdout file, which the CRM would ingest as data). It must not overlap any
    /// campaign's run folders, and must lie under `export.allowed_destinations`. Required by
    /// `braze_cdi`; any preset may use it.
    pub deliver_to: Option<String>,
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
    /// Share of the eligible users left unpicked that are messaged at random (see
    /// [`Campaign::explores`]).
    pub explore: f64,
    pub offer: Offer,
    pub format: ExportFormat,
    pub columns: ColumnPreset,
    /// Publish the holdout members in a separate `holdout.csv.gz`.
    pub holdout_file: bool,
    /// Leave out the messaged users without an email address (see [`ExportFile`]): asked for,
    /// or always for a CRM keyed by email.
    pub require_email: bool,
    pub destination: Option<String>,
    /// Where the parts are copied once complete, for a CRM that watches a prefix (see
    /// [`ExportFile::deliver_to`]).
    pub deliver_to: Option<String>,
    /// The items the campaign is about (`[items]`): each member gets the one they most likely
    /// want (see `segments::items::wanted`).
    pub items: Option<CampaignItems>,
}

impl Campaign {
    /// The salt of the exploration sample: the campaign's, suffixed, so that the sample does
    /// not follow the campaign's own holdout.
    pub fn explore_salt(&self) -> String {
        format!("{}:explore", self.salt)
    }

    /// Whether an eligible user is in the campaign's exploration sample (`salt` is
    /// [`Campaign::explore_salt`], computed once by the caller): the same users on every re-run
    /// and whatever the sharding.
    pub fn explores(&self, salt: &str, user_id: i64) -> bool {
        self.explore > 0.0 && crate::holdout::bucket(salt, user_id) < self.explore
    }

    /// The salt of the exploration's holdout: a third one, so that it depends on neither the
    /// sample nor the campaign's own holdout.
    pub fn explore_holdout_salt(&self) -> String {
        format!("{}:explore-holdout", self.salt)
    }

    /// The arm of an explored user: the campaign's holdout share under
    /// [`Campaign::explore_holdout_salt`].
    pub fn explore_arm(&self, user_id: i64) -> crate::Arm {
        crate::holdout::arm(&self.explore_holdout_salt(), self.holdout, user_id)
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
    /// A suggestion to send a friend a gift: users with a friend who may be named (consented,
    /// not suppressed), ranked by uplift, each with the friend the gift recipient model puts
    /// first (the export's `recipient_user_id`).
    Gift,
}

impl CampaignKind {
    pub fn name(&self) -> &'static str {
        match self {
            CampaignKind::Drop { .. } => "drop",
            CampaignKind::WeeklyDeal { .. } => "weekly_deal",
            CampaignKind::NewBuyer => "new_buyer",
            CampaignKind::Seasonal { .. } => "seasonal",
            CampaignKind::Gift => "gift",
        }
    }
}

/// What a message offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The one discount of every message, in percent (0 for none, and for an offer with
    /// levels).
    pub discount_pct: f64,
    /// The levels one of which each user gets, in percent, ascending (empty: one discount for
    /// everyone, `discount_pct`).
    pub discount_levels: Vec<u32>,
    pub label: String,
    /// Profit on a purchase at full price, as a share of the price.
    pub margin: f64,
    /// Most the expected discount may cost a night, in currency units.
    pub budget: Option<f64>,
    /// Average list price of a purchase, in currency units.
    pub average_price: f64,
}

impl Offer {
    /// Whether the offer gives a discount (one, or one of its levels).
    pub fn discounted(&self) -> bool {
        self.discount_pct > 0.0 || !self.discount_levels.is_empty()
    }
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
    /// `targeting_date`. Plain CSV, or JSON lines for an uploader through Braze's API.
    Braze,
    /// Iterable's user import: `userId`, `email` (only of users who consented to marketing),
    /// and data fields `campaignId`, `offer`, `score`, `rank`.
    Iterable,
    /// Braze's user CSV import of ids alone, `external_id`: no custom attribute, so no data
    /// point is spent (target the imported users as a segment). Plain CSV only.
    BrazeIds,
    /// HubSpot's contact import, keyed by email: `email` and the contact properties
    /// `targeting_campaign`, `targeting_offer`, `targeting_score`, `targeting_rank`. Users
    /// without an email address cannot be imported and are left out (the manifest counts
    /// them). Plain CSV only.
    Hubspot,
    /// A Salesforce Marketing Cloud data extension import: `SubscriberKey` (the user id),
    /// `EmailAddress`, `CampaignId`, `Offer`, `Score`, `Rank`. Plain CSV only.
    Sfmc,
    /// Braze Cloud Data Ingestion from S3: `EXTERNAL_ID` and `PAYLOAD`, a JSON object of the
    /// `braze` preset's custom attributes. CDI ingests every new file under the prefix it
    /// watches, so the parts are copied there (`deliver_to`, required) once the export is
    /// complete, and nothing else is. CSV, JSON lines or Parquet.
    BrazeCdi,
}

impl ColumnPreset {
    pub fn name(self) -> &'static str {
        match self {
            ColumnPreset::Generic => "generic",
            ColumnPreset::Braze => "braze",
            ColumnPreset::Iterable => "iterable",
            ColumnPreset::BrazeIds => "braze_ids",
            ColumnPreset::Hubspot => "hubspot",
            ColumnPreset::Sfmc => "sfmc",
            ColumnPreset::BrazeCdi => "braze_cdi",
        }
    }

    /// The format of a campaign with this preset that names none: plain CSV for a CRM that
    /// does not read gzip, else `csv_gzip`.
    pub fn default_format(self) -> ExportFormat {
        if self.plain_csv_only().is_some()
            || matches!(self, ColumnPreset::Braze | ColumnPreset::BrazeCdi)
        {
            ExportFormat::Csv
        } else {
            ExportFormat::CsvGzip
        }
    }

    /// Whether the CRM ingests every new file under a prefix it watches, so that the parts
    /// must be delivered there apart from the run folder (`deliver_to`).
    pub fn watches_a_prefix(self) -> bool {
        self == ColumnPreset::BrazeCdi
    }

    /// The CRM behind a preset whose import takes plain CSV files only, if it is one.
    pub fn plain_csv_only(self) -> Option<&'static str> {
        match self {
            ColumnPreset::BrazeIds => Some("Braze's CSV import"),
            ColumnPreset::Hubspot => Some("HubSpot's import"),
            ColumnPreset::Sfmc => Some("Salesforce Marketing Cloud's import"),
            ColumnPreset::Generic
            | ColumnPreset::Braze
            | ColumnPreset::Iterable
            | ColumnPreset::BrazeCdi => None,
        }
    }

    /// Whether the preset's CRM keys its records by email always, so that a user without one
    /// cannot be imported and is left out of the list whatever `require_email` says.
    pub fn keyed_by_email(self) -> bool {
        self == ColumnPreset::Hubspot
    }

    /// Whether the preset's files carry each user's email address.
    pub fn has_email(self) -> bool {
        matches!(
            self,
            ColumnPreset::Iterable | ColumnPreset::Hubspot | ColumnPreset::Sfmc
        )
    }

    /// Why the CRM behind the preset cannot ingest files of `format`, if it cannot.
    pub fn refuses(self, format: ExportFormat) -> Option<String> {
        match (self.plain_csv_only(), self, format) {
            (Some(crm), ..) if format != ExportFormat::Csv => Some(format!(
                "{crm} takes plain CSV: the {} preset needs format = \"csv\", not {:?}",
                self.name(),
                format.name()
            )),
            (_, ColumnPreset::Braze, ExportFormat::CsvGzip | ExportFormat::Parquet) => {
                Some(format!(
                    "Braze's CSV import takes plain CSV files: the braze preset needs format = \
                     \"csv\" (or \"jsonl\" for an uploader through Braze's /users/track API), \
                     not {:?}",
                    format.name()
                ))
            }
            (_, ColumnPreset::BrazeCdi, ExportFormat::CsvGzip) => Some(
                "Braze Cloud Data Ingestion reads CSV, JSON and Parquet files, not gzip: the \
                 braze_cdi preset needs format = \"csv\", \"jsonl\" or \"parquet\""
                    .into(),
            ),
            (_, ColumnPreset::Iterable, ExportFormat::Parquet) => Some(
                "Iterable imports lists from CSV (or JSON lines through its bulk API), not \
                 Parquet: the iterable preset needs format = \"csv\", \"csv_gzip\" or \"jsonl\""
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The JSON Schema of a campaign file, generated from [`CampaignFile`].
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CampaignFile)).unwrap_or_default()
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

/// Non-empty lowercase letters, digits and `-`.
fn valid_id_chars(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `id` can be a campaign's id: lowercase letters, digits and `-`, at most
/// [`MAX_ID_LEN`] long.
pub fn valid_id(id: &str) -> bool {
    valid_id_chars(id) && id.len() <= MAX_ID_LEN
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
        if !valid_id_chars(&self.id) {
            problems.push((
                "id",
                format!(
                    "id {:?} must be non-empty lowercase letters, digits and '-'",
                    self.id
                ),
            ));
        } else if self.id.len() > MAX_ID_LEN {
            problems.push((
                "id",
                format!(
                    "id is {} characters long: at most {MAX_ID_LEN}, as it names folders and \
                     object keys",
                    self.id.len()
                ),
            ));
        }
        share(&mut problems, "holdout", self.holdout, 0.5);
        share(&mut problems, "explore", self.explore, 0.2);
        if self.max_audience == 0 {
            problems.push(("max_audience", "max_audience must be at least 1".into()));
        }
        share(
            &mut problems,
            "offer.discount_pct",
            self.offer.discount_pct,
            90.0,
        );
        let margin = self.offer.margin.unwrap_or(DEFAULT_MARGIN);
        share(&mut problems, "offer.margin", margin, 1.0);
        if let Some(b) = self.offer.budget {
            if !(b >= 0.0 && b.is_finite()) {
                problems.push((
                    "offer.budget",
                    format!("offer.budget must be a non-negative amount, got {b}"),
                ));
            } else if self.offer.discount_pct <= 0.0 && self.offer.discount_levels.is_none() {
                problems.push((
                    "offer.budget",
                    "offer.budget limits the cost of a discount: set offer.discount_pct".into(),
                ));
            }
        }
        let discount_levels = self.offer.discount_levels.clone().unwrap_or_default();
        if let Some(levels) = &self.offer.discount_levels {
            let field = "offer.discount_levels";
            if self.kind != KindName::WeeklyDeal {
                problems.push((
                    field,
                    "only a weekly_deal chooses a discount level per user".into(),
                ));
            }
            if self.offer.discount_pct > 0.0 {
                problems.push((
                    field,
                    "set offer.discount_levels or offer.discount_pct, not both".into(),
                ));
            }
            if levels.is_empty() || levels.len() > MAX_DISCOUNT_LEVELS {
                problems.push((
                    field,
                    format!(
                        "offer.discount_levels needs 1 to {MAX_DISCOUNT_LEVELS} levels, got {}",
                        levels.len()
                    ),
                ));
            } else if let Some(bad) = levels.iter().find(|&&l| !(1..=90).contains(&l)) {
                problems.push((
                    field,
                    format!("offer.discount_levels are percentages from 1 to 90, got {bad}"),
                ));
            } else if levels.windows(2).any(|w| w[0] >= w[1]) {
                problems.push((
                    field,
                    format!(
                        "offer.discount_levels must be ascending without repeats, got {levels:?}"
                    ),
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

                if self.offer.discount_pct <= 0.0 && self.offer.discount_levels.is_none() {
                    problems.push((
                        "offer.discount_pct",
                        "a weekly_deal needs offer.discount_pct above 0 (or offer.discount_levels)"
                            .into(),
                    ));
                }
                CampaignKind::WeeklyDeal {
                    max_discount_share: max,
                    max_sensitivity,
                }
            }
            KindName::NewBuyer => CampaignKind::NewBuyer,
            KindName::Gift => CampaignKind::Gift,
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

        let columns = self.export.columns.unwrap_or(ColumnPreset::Generic);
        if let Some(why) = self.export.format.and_then(|f| columns.refuses(f)) {
            problems.push(("export.format", why));
        }
        if self.export.require_email && !columns.has_email() {
            problems.push((
                "export.require_email",
                format!(
                    "export.require_email leaves out users without an email, but the {} preset \
                     has no email column (iterable, hubspot and sfmc have one)",
                    columns.name()
                ),
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
        match &self.export.deliver_to {
            Some(to) if !(to.starts_with("file://") || to.starts_with("s3://")) => problems.push((
                "export.deliver_to",
                format!("export.deliver_to {to:?} must be a file:// or s3:// URI"),
            )),
            None if columns.watches_a_prefix() => problems.push((
                "export.columns",
                format!(
                    "the {} preset needs export.deliver_to: Braze Cloud Data Ingestion ingests \
                     every new file under the prefix it watches, so the parts are copied there \
                     once complete, apart from the manifest and markers",
                    columns.name()
                ),
            )),
            _ => {}
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
        let mut items = None;
        match &self.items {
            None => {}
            Some(_) if kind_name == KindName::Drop => problems.push((
                "items",
                "[items] does not apply to a drop: its item is [drop] item_id".into(),
            )),
            Some(ItemsFile {
                ids: Some(_),
                condition: Some(_),
            }) => problems.push((
                "items",
                "[items] lists ids or a where condition, not both".into(),
            )),
            Some(ItemsFile {
                ids: None,
                condition: None,
            }) => problems.push((
                "items",
                "[items] needs ids = [...] or where = \"...\"".into(),
            )),
            Some(ItemsFile { ids: Some(ids), .. }) => {
                let mut seen = std::collections::HashSet::new();
                if ids.is_empty() || ids.len() > MAX_ITEMS {
                    problems.push((
                        "items.ids",
                        format!(
                            "[items] ids needs 1 to {MAX_ITEMS} items, got {}",
                            ids.len()
                        ),
                    ));
                } else if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
                    problems.push(("items.ids", format!("[items] ids lists item {twice} twice")));
                } else {
                    items = Some(CampaignItems::Ids(ids.clone()));
                }
            }
            Some(ItemsFile {
                condition: Some(rule),
                ..
            }) => match check_items(rule.get_ref()) {
                Ok(c) => items = Some(CampaignItems::Where(c)),
                Err(e) => located.add(Some(rule.span()), format!("items.where: {e}")),
            },
        }
        for (path, message) in problems {
            located.add(place_of(table, path), message);
        }
        // A campaign's rules may test its own items.
        let with_items;
        let catalog = if self.items.is_some() {
            with_items = Catalog {
                lists: vec![DEAL_ITEMS.to_string()],
                ..catalog.clone()
            };
            &with_items
        } else {
            catalog
        };
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
            if let Some(top) = discount_levels.last() {
                format!("up to {top}% off")
            } else if self.offer.discount_pct > 0.0 {
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
            explore: self.explore,
            offer: Offer {
                discount_pct: self.offer.discount_pct,
                discount_levels,
                label,
                margin,
                budget: self.offer.budget,
                average_price,
            },
            format: self.export.format.unwrap_or(columns.default_format()),
            columns,
            holdout_file: self.export.holdout_file,
            require_email: self.export.require_email || columns.keyed_by_email(),
            destination: self.export.destination,
            deliver_to: self.export.deliver_to,
            items,
        })
    }
}
