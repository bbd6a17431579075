//! Campaign configs: the marketing team's whole interface.
//!
//! A campaign file (TOML, one per campaign) is parsed into [`CampaignFile`], which mirrors the
//! file and rejects unknown fields, then validated into [`Campaign`], which the rest of the
//! system uses and which cannot hold an invalid value. Validation reports every problem at once.

use serde::Deserialize;

use crate::{Result, SegmentError};

/// The campaign file format this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A campaign file as written.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    Drop,
    WeeklyDeal,
    NewBuyer,
    Seasonal,
}

/// The `[offer]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferFile {
    /// Discount in percent (0 to 90). 0 or absent means no discount.
    #[serde(default)]
    pub discount_pct: f64,
    /// Text placed in the export's `offer` column for the CRM template, e.g. `"20% off"`.
    pub label: Option<String>,
}

/// The `[drop]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFile {
    /// The dropped item (`items.item_id`); its game, publisher and category drive affinity.
    pub item_id: i64,
}

/// The `[weekly_deal]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyDealFile {
    /// Users whose share of discounted orders over the last year is above this (0 to 1) are
    /// left out: they are already waiting for deals. Default 0.6.
    pub max_discount_share: Option<f64>,
}

/// The `[seasonal]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonalFile {
    /// Only users whose predicted uplift is at least this are selected. Default 0.
    pub min_uplift: Option<f64>,
}

/// The `[export]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    /// File format: `csv_gzip` (default) or `csv`.
    pub format: Option<String>,
    /// Column preset: `generic` (`external_id, campaign_id, variant, offer, score, rank`).
    pub columns: Option<String>,
    /// Destination URI overriding the settings' `export.destination`, e.g. `file:///data/out`.
    pub destination: Option<String>,
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub kind: CampaignKind,
    pub priority: i32,
    pub holdout: f64,
    pub max_audience: usize,
    pub salt: String,
    pub offer: Offer,
    pub format: ExportFormat,
    pub destination: Option<String>,
}

/// The kind of a campaign, with the settings that only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignKind {
    /// A new item release: no discount; ranked by affinity to the item, then uplift.
    Drop { item_id: i64 },
    /// A discount: ranked by uplift, leaving out users already conditioned to wait for deals.
    WeeklyDeal { max_discount_share: f64 },
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
}

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    CsvGzip,
    Csv,
}

impl ExportFormat {
    /// File name extension of a part.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::CsvGzip => "csv.gz",
            ExportFormat::Csv => "csv",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::CsvGzip => "csv_gzip",
            ExportFormat::Csv => "csv",
        }
    }
}

/// Parses and validates one campaign file; `origin` (the path) prefixes every message.
pub fn parse(origin: &str, text: &str) -> Result<Campaign> {
    let file: CampaignFile = toml::from_str(text).map_err(|e| SegmentError::InvalidCampaign {
        origin: locate(origin, text, e.span()),
        problems: vec![e.message().to_string()],
    })?;
    file.validate(origin)
}

/// `origin:line:column` of a byte span's start (as TOML errors give them), or `origin` alone.
pub fn locate(origin: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    }
}

fn share(problems: &mut Vec<String>, field: &str, value: f64, max: f64) {
    if !(0.0..=max).contains(&value) {
        problems.push(format!("{field} must be between 0 and {max}, got {value}"));
    }
}

impl CampaignFile {
    /// Checks every field and returns the validated campaign, or all problems at once.
    pub fn validate(self, origin: &str) -> Result<Campaign> {
        let mut problems = Vec::new();
        if self.format_version != FORMAT_VERSION {
            problems.push(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        let id_ok = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            problems.push(format!(
                "id {:?} must be non-empty lowercase letters, digits and '-'",
                self.id
            ));
        }
        share(&mut problems, "holdout", self.holdout, 0.5);
        if self.max_audience == 0 {
            problems.push("max_audience must be at least 1".into());
        }
        share(
            &mut problems,
            "offer.discount_pct",
            self.offer.discount_pct,
            90.0,
        );

        let kind_name = self.kind;
        let mut sections = vec![
            ("drop", self.drop.is_some(), KindName::Drop),
            (
                "weekly_deal",
                self.weekly_deal.is_some(),
                KindName::WeeklyDeal,
            ),
            ("seasonal", self.seasonal.is_some(), KindName::Seasonal),
        ];
        sections.retain(|(_, present, kind)| *present && *kind != kind_name);
        for (section, _, _) in sections {
            problems.push(format!(
                "[{section}] does not apply to a {kind_name:?} campaign"
            ));
        }
        let kind = match kind_name {
            KindName::Drop => match &self.drop {
                Some(d) => CampaignKind::Drop { item_id: d.item_id },
                None => {
                    problems.push("a drop campaign needs [drop] item_id".into());
                    CampaignKind::Drop { item_id: 0 }
                }
            },
            KindName::WeeklyDeal => {
                let max = self
                    .weekly_deal
                    .as_ref()
                    .and_then(|w| w.max_discount_share)
                    .unwrap_or(0.6);
                share(&mut problems, "weekly_deal.max_discount_share", max, 1.0);
                if self.offer.discount_pct <= 0.0 {
                    problems.push("a weekly_deal needs offer.discount_pct above 0".into());
                }
                CampaignKind::WeeklyDeal {
                    max_discount_share: max,
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
                    problems.push(format!(
                        "seasonal.min_uplift must be between -1 and 1, got {min_uplift}"
                    ));
                }
                CampaignKind::Seasonal { min_uplift }
            }
        };
        if kind_name == KindName::Drop && self.offer.discount_pct > 0.0 {
            problems.push("a drop carries no discount: remove offer.discount_pct".into());
        }

        let format = match self.export.format.as_deref() {
            None | Some("csv_gzip") => ExportFormat::CsvGzip,
            Some("csv") => ExportFormat::Csv,
            Some(other) => {
                problems.push(format!(
                    "export.format {other:?} is not one of \"csv_gzip\", \"csv\""
                ));
                ExportFormat::CsvGzip
            }
        };
        match self.export.columns.as_deref() {
            None | Some("generic") => {}
            Some(other) => problems.push(format!(
                "export.columns {other:?} is not a known preset (\"generic\")"
            )),
        }
        if let Some(dest) = &self.export.destination {
            if !dest.starts_with("file://") {
                problems.push(format!("export.destination {dest:?} must be a file:// URI"));
            }
        }
        if !problems.is_empty() {
            return Err(SegmentError::InvalidCampaign {
                origin: origin.to_string(),
                problems,
            });
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
            priority: self.priority,
            holdout: self.holdout,
            max_audience: self.max_audience as usize,
            offer: Offer {
                discount_pct: self.offer.discount_pct,
                label,
            },
            format,
            destination: self.export.destination,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAL: &str = r#"
format_version = 1
id = "weekly-deal"
kind = "weekly_deal"
holdout = 0.1
max_audience = 1000
[offer]
discount_pct = 20
"#;

    #[test]
    fn valid_file_gets_defaults() {
        let c = parse("deal.toml", DEAL).unwrap();
        assert_eq!(c.salt, "weekly-deal");
        assert_eq!(c.offer.label, "20% off");
        assert_eq!(
            c.kind,
            CampaignKind::WeeklyDeal {
                max_discount_share: 0.6
            }
        );
        assert_eq!(c.format, ExportFormat::CsvGzip);
    }

    #[test]
    fn unknown_field_is_located() {
        let text = DEAL.replace("holdout = 0.1", "holdot = 0.1");
        let err = parse("deal.toml", &text).unwrap_err().to_string();
        assert!(err.starts_with("deal.toml:5:1: "), "{err}");
        assert!(err.contains("holdot"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = DEAL
            .replace("holdout = 0.1", "holdout = 1.5")
            .replace("discount_pct = 20", "discount_pct = -5");
        let err = parse("deal.toml", &text).unwrap_err().to_string();
        assert!(
            err.contains("holdout must be between 0 and 0.5, got 1.5"),
            "{err}"
        );
        assert!(
            err.contains("offer.discount_pct must be between 0 and 90"),
            "{err}"
        );
        assert!(err.contains("needs offer.discount_pct above 0"), "{err}");
    }
}
