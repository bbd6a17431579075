//! Loading campaign files from the campaigns folder. Parsing and validation are the `segments`
//! crate's; this module reads the files and reports every broken one at once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use models::{CategoricalLevels, FEATURES};
use segments::rules::{Catalog, Field, FieldKind};
use segments::Campaign;

/// The names eligibility rules may use: every feature of the catalogue, the models' scores, and
/// derived booleans and dates. With `levels` (the scoring model's), text values compile to the
/// model's codes; without, names and types are checked and values are not (validation).
pub fn catalog(levels: Option<&CategoricalLevels>) -> Catalog {
    let field = |name: &str, kind: FieldKind, column: &str, description: &str| Field {
        name: name.into(),
        kind,
        column: column.into(),
        description: description.into(),
    };
    let mut fields: Vec<Field> = FEATURES
        .iter()
        .map(|f| {
            let kind = if f.categorical {
                FieldKind::Text {
                    levels: levels
                        .map(|l| l.levels(f.name).to_vec())
                        .unwrap_or_default(),
                }
            } else if f.name == "has_email" {
                FieldKind::Bool
            } else {
                FieldKind::Number
            };
            field(f.name, kind, f.name, f.description)
        })
        .collect();
    fields.extend([
        field(
            "is_new_buyer",
            FieldKind::Bool,
            NEW_BUYER_COLUMN,
            "true when the user has never placed an order",
        ),
        field(
            "last_purchase_date",
            FieldKind::DaysBefore,
            "days_since_last_purchase",
            "date of the last order (missing when none)",
        ),
        field(
            "signup_date",
            FieldKind::DaysBefore,
            "tenure_days",
            "date the account was created",
        ),
        field(
            "uplift",
            FieldKind::Number,
            "uplift",
            "predicted purchase probability a message adds (conversion uplift model)",
        ),
        field(
            "p_control",
            FieldKind::Number,
            "p_control",
            "predicted purchase probability without a message (calibrated)",
        ),
        field(
            "discount_uplift",
            FieldKind::Number,
            "discount_uplift",
            "predicted purchase probability a discount offer adds",
        ),
        field(
            "discount_sensitivity",
            FieldKind::Number,
            "discount_sensitivity",
            "predicted probability that most of the next purchases are discounted (calibrated)",
        ),
    ]);
    Catalog {
        fields,
        lists: Vec::new(),
    }
}

/// `targeting campaigns fields`: the catalogue as a table for the marketing team.
pub fn fields_table() -> String {
    let mut out = String::new();
    for f in catalog(None).fields {
        let kind = match f.kind {
            FieldKind::Number => "number",
            FieldKind::Bool => "true/false",
            FieldKind::Text { .. } => "text",
            FieldKind::DaysBefore => "date",
        };
        out.push_str(&format!("{:<30} {:<10} {}\n", f.name, kind, f.description));
    }
    out
}

/// Column of the selection frame behind `is_new_buyer` (0/1).
pub const NEW_BUYER_COLUMN: &str = "is_new_buyer";

/// Every problem of every campaign file, each starting with `file:line:column:`. A rule's
/// problem spans lines (the rule and a caret under the fault), so this is the one error the
/// binary prints on several lines.
#[derive(Debug)]
pub struct CampaignProblems(pub Vec<String>);

impl std::fmt::Display for CampaignProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for CampaignProblems {}

/// A campaign file that does not validate: the campaign it would define (the `id` the file
/// gives, else the file's name) and its problems.
#[derive(Debug, Clone)]
pub struct BrokenFile {
    pub id: String,
    pub problems: Vec<String>,
}

/// Reads and validates every `*.toml` in `dir` (sorted by file name), or the given files,
/// reporting every problem of every file at once.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Campaign>> {
    let (campaigns, broken) = load_each(paths)?;
    if !broken.is_empty() {
        let problems = broken.into_iter().flat_map(|b| b.problems).collect();
        return Err(CampaignProblems(problems).into());
    }
    Ok(campaigns)
}

/// Like [`load`], but a broken file fails alone: the valid campaigns, and each broken file
/// with its problems (a missing folder, or one without campaign files, is still an error).
pub fn load_each(paths: &[PathBuf]) -> Result<(Vec<Campaign>, Vec<BrokenFile>)> {
    let catalog = catalog(None);
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            bail!(
                "campaigns folder or file {} does not exist (set targeting.campaigns_dir)",
                path.display()
            );
        }
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read campaigns folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        bail!("no campaign files (*.toml) in {}", join(paths));
    }
    let mut campaigns: Vec<Campaign> = Vec::new();
    let mut broken = Vec::new();
    for file in &files {
        match read_one(file, &catalog) {
            Ok(c) => match campaigns.iter().find(|o| o.id == c.id) {
                Some(_) => broken.push(BrokenFile {
                    problems: vec![format!(
                        "{}: id {:?} is already used by another campaign file",
                        file.display(),
                        c.id
                    )],
                    id: c.id,
                }),
                None => campaigns.push(c),
            },
            Err(e) => broken.push(BrokenFile {
                id: id_of(file),
                // One entry per problem, so that they are counted as such.
                problems: match e.downcast_ref::<segments::SegmentError>() {
                    Some(segments::SegmentError::InvalidCampaign { problems }) => problems.clone(),
                    _ => vec![format!("{e:#}")],
                },
            }),
        }
    }
    Ok((campaigns, broken))
}

/// The campaign id a broken file gives, if it can be read, else the file's name.
fn id_of(file: &Path) -> String {
    let stem = || {
        file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    };
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .and_then(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_string))
        .filter(|id| segments::campaign::valid_id(id))
        .unwrap_or_else(stem)
}

fn read_one(file: &Path, catalog: &Catalog) -> Result<Campaign> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read campaign file {}", file.display()))?;
    let origin = file.display().to_string();
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Located like every other problem: the first byte that is not UTF-8.
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            bail!(
                "{}: byte 0x{:02x} is not UTF-8: save the file as UTF-8 text",
                segments::campaign::locate(&origin, valid, Some(at..at)),
                bytes[at]
            );
        }
    };
    Ok(segments::campaign::parse(&origin, &text, catalog)?)
}

/// The night of `date`: every campaign due on it by its schedule (a campaign without one is
/// due every night), and the ones named in `also` whatever their schedule. They all take part
/// in arbitration.
pub fn night(campaigns: &[Campaign], date: models::RunDate, also: &[String]) -> Vec<Campaign> {
    campaigns
        .iter()
        .filter(|c| {
            also.contains(&c.id) || c.schedule.as_ref().is_none_or(|s| s.due_on(date.date()))
        })
        .cloned()
        .collect()
}

/// Checks that every id of `ids` names one of `campaigns`; an unknown id is an error naming
/// the known ones.
pub fn check_ids(campaigns: &[Campaign], ids: &[String]) -> Result<()> {
    for id in ids {
        if !campaigns.iter().any(|c| &c.id == id) {
            let known: Vec<&str> = campaigns.iter().map(|c| c.id.as_str()).collect();
            bail!("unknown campaign {id:?} (known: {})", known.join(", "));
        }
    }
    Ok(())
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
