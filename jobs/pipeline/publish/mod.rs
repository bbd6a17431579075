//! The publish stage: a campaign's treatment list as files a CRM tool can ingest, in the object
//! store (a local folder or S3).
//!
//! Layout `<destination>/<campaign_id>/dt=<YYYY-MM-DD>/run=<run_id>/`: the parts first, then
//! the optional `holdout.csv.gz`, then `manifest.json` (row count and SHA-256 per part), then
//! `_SUCCESS` — the only signal a reader may trust. Then `dt=<YYYY-MM-DD>/latest` names the
//! day's last complete run (`run=<run_id>`): a re-run for a date (`--force`) leaves two complete
//! folders, and the pointer says which one to import. Each object appears whole or not at all
//! (see [`crate::store`]); a failed export is deleted before `_SUCCESS` could ever exist, and
//! when even that fails (the store is gone) the folder without `_SUCCESS` is superseded by the
//! next run's. Holdout members are never in a list.
//!
//! A CRM that ingests every new object under a prefix it watches (Braze Cloud Data Ingestion)
//! must see neither the manifest nor the markers: the run folder stays where it is, and after
//! `_SUCCESS` [`deliver`] copies the parts alone into that prefix (`deliver_to`).
//!
//! Parts are cut at a row and a byte limit (CRM imports cap both). The same audience, run date
//! and model versions give byte-identical parts: scores are printed at fixed precision, gzip
//! carries no timestamp, and nothing else varies.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use polars::prelude::*;
use segments::{Arm, Audience, Campaign, CampaignKind, ColumnPreset, ExportFormat, Member};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::PartLimits;
use crate::store::{ObjectStore, ObjectWriter};

/// The completion marker, written last.
pub const SUCCESS: &str = "_SUCCESS";
/// The manifest, written after every part.
pub const MANIFEST: &str = "manifest.json";
/// The optional list of holdout members.
pub const HOLDOUT_FILE: &str = "holdout.csv.gz";

/// One written file, as listed in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartInfo {
    pub path: String,
    pub rows: usize,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`: what a reader needs to verify the export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub campaign_id: String,
    pub campaign_kind: String,
    pub run_id: String,
    pub run_date: String,
    pub format: String,
    /// The column preset (`generic`, `braze`, `iterable`).
    pub preset: String,
    /// What the `score` column means for this campaign's kind (see
    /// `segments::select::score_meaning`).
    #[serde(default)]
    pub score_meaning: String,
    /// Messaged users left out because the preset's CRM keys its records by email and they
    /// have none (`hubspot`).
    #[serde(default)]
    pub left_out_without_email: usize,
    pub columns: Vec<String>,
    /// The fields of the `PAYLOAD` column's JSON objects (`braze_cdi`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload_fields: Vec<String>,
    /// The prefix a CRM watches, where the parts are copied once complete (`deliver_to`); see
    /// [`deliver`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    pub model_versions: BTreeMap<String, String>,
    pub parts: Vec<PartInfo>,
    /// Rows of the parts: the treatment arm, explored users included.
    pub row_count: usize,
    pub holdout_count: usize,
    /// Of `row_count`, the users messaged at random (the campaign's `explore` share, variant
    /// `explore`); of `holdout_count`, their holdout (variant `explore_holdout`).
    #[serde(default)]
    pub explore_count: usize,
    #[serde(default)]
    pub explore_holdout_count: usize,
    /// `holdout.csv.gz`, when the campaign asks for it.
    pub holdout_file: Option<PartInfo>,
    pub created_at: String,
}

/// An export whose parts and manifest are written but which is not yet complete.
#[derive(Debug)]
pub struct Staged {
    /// The run folder, relative to the destination.
    pub prefix: String,
    pub uri: String,
    pub manifest: Manifest,
}

/// What to publish.
#[derive(Debug)]
pub struct ExportRequest<'a> {
    pub campaign: &'a Campaign,
    pub audience: &'a Audience,
    pub run_id: &'a str,
    pub run_date: &'a str,
    pub model_versions: &'a BTreeMap<String, String>,
    pub created_at: &'a str,
    pub limits: PartLimits,
    /// Email addresses of consenting users, for presets with an email column.
    pub emails: Option<&'a HashMap<i64, String>>,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datum {
    ExternalId,
    CampaignId,
    Variant,
    Offer,
    Score,
    Rank,
    RunDate,
    Email,
    /// The discount level the user was offered (offers with `discount_levels`).
    DiscountPct,
    /// The item of the campaign put in front of the user (campaigns with `[items]`).
    ItemId,
    /// The friend suggested as the gift's recipient (gift campaigns).
    RecipientId,
    /// A JSON object of the `braze` preset's attributes, as one string (`braze_cdi`).
    Payload,
}

/// The columns of a preset, in file order, with their names.
fn columns(preset: ColumnPreset) -> &'static [(&'static str, Datum)] {
    use Datum::*;
    match preset {
        ColumnPreset::Generic => &[
            ("external_id", ExternalId),
            ("campaign_id", CampaignId),
            ("variant", Variant),
            ("offer", Offer),
            ("score", Score),
            ("rank", Rank),
        ],
        ColumnPreset::Braze => &[
            ("external_id", ExternalId),
            ("targeting_campaign", CampaignId),
            ("targeting_variant", Variant),
            ("targeting_offer", Offer),
            ("targeting_score", Score),
            ("targeting_rank", Rank),
            ("targeting_date", RunDate),
        ],
        ColumnPreset::Iterable => &[
            ("userId", ExternalId),
            ("email", Email),
            ("campaignId", CampaignId),
            ("offer", Offer),
            ("score", Score),
            ("rank", Rank),
        ],
        ColumnPreset::BrazeIds => &[("external_id", ExternalId)],
        ColumnPreset::Hubspot => &[
            ("email", Email),
            ("targeting_campaign", CampaignId),
            ("targeting_offer", Offer),
            ("targeting_score", Score),
            ("targeting_rank", Rank),
        ],
        ColumnPreset::Sfmc => &[
            ("SubscriberKey", ExternalId),
            ("EmailAddress", Email),
            ("CampaignId", CampaignId),
            ("Offer", Offer),
            ("Score", Score),
            ("Rank", Rank),
        ],
        ColumnPreset::BrazeCdi => &[("EXTERNAL_ID", ExternalId), ("PAYLOAD", Payload)],
    }
}

/// A campaign's columns: its preset's, then, for an offer with discount levels, the level each
/// user got, for a gift campaign, the friend suggested, and for a campaign with `[items]`, the
/// item each user is shown, named in the preset's style.
fn campaign_columns(c: &Campaign) -> Vec<(&'static str, Datum)> {
    preset_columns(c, c.columns)
}

/// The fields of a `braze_cdi` payload: the columns the campaign would have under `braze`,
/// the user's id aside (it is the row's `EXTERNAL_ID`). None for a preset without a payload.
fn payload_fields(c: &Campaign) -> Vec<(&'static str, Datum)> {
    if !columns(c.columns).iter().any(|(_, d)| *d == Datum::Payload) {
        return Vec::new();
    }
    let mut fields = preset_columns(c, ColumnPreset::Braze);
    fields.retain(|(_, d)| *d != Datum::ExternalId);
    fields
}

/// [`campaign_columns`] under `preset`.
fn preset_columns(c: &Campaign, preset: ColumnPreset) -> Vec<(&'static str, Datum)> {
    let mut cols = columns(preset).to_vec();
    if !c.offer.discount_levels.is_empty() {
        cols.extend(
            styled(
                preset,
                [
                    "discount_pct",
                    "targeting_discount_pct",
                    "discountPct",
                    "DiscountPct",
                ],
            )
            .map(|n| (n, Datum::DiscountPct)),
        );
    }
    if c.kind == CampaignKind::Gift {
        cols.extend(
            styled(
                preset,
                [
                    "recipient_user_id",
                    "targeting_recipient_user_id",
                    "recipientUserId",
                    "RecipientUserId",
                ],
            )
            .map(|n| (n, Datum::RecipientId)),
        );
    }
    if c.items.is_some() {
        cols.extend(
            styled(preset, ["item_id", "targeting_item_id", "itemId", "ItemId"])
                .map(|n| (n, Datum::ItemId)),
        );
    }
    cols
}

/// A column's name in a preset's style, from its spellings `[generic, braze and hubspot
/// (attributes named targeting_…), iterable (camelCase), sfmc (PascalCase)]`; none for
/// `braze_ids`, which stays ids alone (an attribute would cost a data point per user), and for
/// `braze_cdi`, whose attributes are in its payload (see [`payload_fields`]).
fn styled(preset: ColumnPreset, names: [&'static str; 4]) -> Option<&'static str> {
    match preset {
        ColumnPreset::Generic => Some(names[0]),
        ColumnPreset::Braze | ColumnPreset::Hubspot => Some(names[1]),
        ColumnPreset::Iterable => Some(names[2]),
        ColumnPreset::Sfmc => Some(names[3]),
        ColumnPreset::BrazeIds | ColumnPreset::BrazeCdi => None,
    }
}

/// Whether a preset needs the users' email addresses.
pub fn needs_emails(preset: ColumnPreset) -> bool {
    columns(preset).iter().any(|(_, f)| *f == Datum::Email)
}

/// One cell, before encoding.
enum Cell<'a> {
    Text(&'a str),
    /// Text made for the row (a payload).
    Owned(String),
    Id(i64),
    Int(i64),
    Float(f64),
    Null,
}

/// A member's cell of `field`; `payload` is the campaign's [`payload_fields`] (computed once per
/// export, not per row), for the `PAYLOAD` column.
fn cell<'a>(
    req: &'a ExportRequest,
    m: &Member,
    field: Datum,
    payload: &[(&'static str, Datum)],
) -> Cell<'a> {
    match field {
        Datum::ExternalId => Cell::Id(m.user_id),
        Datum::CampaignId => Cell::Text(&req.campaign.id),
        Datum::Variant => Cell::Text(variant(m)),
        Datum::Offer => Cell::Text(&req.campaign.offer.label),
        Datum::Score => Cell::Float(m.score),
        Datum::Rank => Cell::Int(m.rank as i64),
        Datum::RunDate => Cell::Text(req.run_date),
        Datum::DiscountPct => Cell::Int(m.discount_pct.round() as i64),
        Datum::ItemId => m.item_id.map_or(Cell::Null, Cell::Id),
        Datum::RecipientId => m.recipient_user_id.map_or(Cell::Null, Cell::Id),
        Datum::Payload => {
            let cells: Vec<(&str, Cell)> = payload
                .iter()
                .map(|(n, f)| (*n, cell(req, m, *f, &[])))
                .collect();
            let mut object = Vec::new();
            // A JSON object of plain values cannot fail to encode.
            let _ = encode_row(ExportFormat::Jsonl, &cells, &mut object);
            object.pop(); // the line's end
            Cell::Owned(String::from_utf8(object).unwrap_or_default())
        }
        Datum::Email => req
            .emails
            .and_then(|e| e.get(&m.user_id))
            .map_or(Cell::Null, |e| Cell::Text(e)),
    }
}

/// The export's name for a member's arm: `treatment` and `holdout` for the model's choice,
/// `explore` and `explore_holdout` for the users chosen at random.
fn variant(m: &Member) -> &'static str {
    match (m.explore, m.arm) {
        (false, arm) => arm.as_str(),
        (true, Arm::Treatment) => "explore",
        (true, Arm::Holdout) => "explore_holdout",
    }
}

/// Appends one row in the plain (uncompressed) encoding of `format`: a CSV line, or a JSON
/// object on one line. Parquet parts are cut by their CSV size.
fn encode_row(format: ExportFormat, cells: &[(&str, Cell)], out: &mut Vec<u8>) -> Result<()> {
    if format == ExportFormat::Jsonl {
        out.push(b'{');
        for (i, (name, c)) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name)?;
            out.push(b':');
            match c {
                Cell::Text(s) => serde_json::to_writer(&mut *out, s)?,
                Cell::Owned(s) => serde_json::to_writer(&mut *out, s)?,
                // Identifiers are strings to a CRM, whatever they look like.
                Cell::Id(v) => write!(out, "\"{v}\"")?,
                Cell::Int(v) => write!(out, "{v}")?,
                Cell::Float(v) if v.is_finite() => write!(out, "{v:.6}")?,
                Cell::Float(_) | Cell::Null => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"}\n");
        return Ok(());
    }
    // A small buffer: this runs once per row (the default 8 KB would be zeroed every time).
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(256)
        .from_writer(&mut *out);
    let mut number = String::new();
    for (_, c) in cells {
        number.clear();
        match c {
            Cell::Text(s) => {
                w.write_field(s)?;
                continue;
            }
            Cell::Owned(s) => {
                w.write_field(s)?;
                continue;
            }
            Cell::Id(v) | Cell::Int(v) => write!(number, "{v}")?,
            // Fixed precision: the same scores give byte-identical files.
            Cell::Float(v) => write!(number, "{v:.6}")?,
            Cell::Null => {}
        }
        w.write_field(&number)?;
    }
    w.write_record(None::<&[u8]>)?;
    w.flush()?;
    Ok(())
}

fn header(format: ExportFormat, cols: &[(&str, Datum)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if matches!(format, ExportFormat::Csv | ExportFormat::CsvGzip) {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(cols.iter().map(|(n, _)| *n))?;
        w.flush()?;
    }
    Ok(out)
}

/// Rows are handed to the store in chunks of about this size, so a part is never held whole
/// (except a Parquet part, which is written in one piece).
const FLUSH_BYTES: usize = 1 << 20;

/// A part being written.
struct Part<'a> {
    name: String,
    writer: ObjectWriter,
    encoder: Encoder,
    /// Members of a Parquet part, written at the end.
    members: Vec<&'a Member>,
    rows: usize,
    plain_bytes: usize,
}

enum Encoder {
    Plain(Vec<u8>),
    Gzip(Box<GzEncoder<Vec<u8>>>),
    Parquet,
}

impl Encoder {
    fn new(format: ExportFormat) -> Encoder {
        match format {
            ExportFormat::CsvGzip => {
                Encoder::Gzip(Box::new(GzEncoder::new(Vec::new(), Compression::default())))
            }
            ExportFormat::Csv | ExportFormat::Jsonl => Encoder::Plain(Vec::new()),
            ExportFormat::Parquet => Encoder::Parquet,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(b) => b.extend_from_slice(bytes),
            Encoder::Gzip(g) => g.write_all(bytes)?,
            Encoder::Parquet => {}
        }
        Ok(())
    }

    /// Encoded bytes ready to hand on, once there are at least `min` of them.
    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        let buf = match self {
            Encoder::Plain(b) => b,
            Encoder::Gzip(g) => g.get_mut(),
            Encoder::Parquet => return None,
        };
        (buf.len() >= min.max(1)).then(|| std::mem::take(buf))
    }
}

/// A run's folder under the destination: `<campaign>/dt=<date>/run=<run_id>`.
pub fn run_folder(campaign_id: &str, run_date: &str, run_id: &str) -> String {
    format!("{campaign_id}/dt={run_date}/run={run_id}")
}

/// Writes the parts, the holdout file and the manifest of an export (not `_SUCCESS`). On
/// error whatever was written of the run folder is deleted.
#[tracing::instrument(name = "publish", skip_all)]
pub async fn stage(store: &ObjectStore, req: &ExportRequest<'_>) -> Result<Staged> {
    let prefix = run_folder(&req.campaign.id, req.run_date, req.run_id);
    let uri = store.uri(&prefix);
    match write_export(store, req, &prefix).await {
        Ok(manifest) => Ok(Staged {
            prefix,
            uri,
            manifest,
        }),
        Err(e) => {
            remove(store, &prefix, &uri).await;
            Err(e.context(format!("cannot publish {uri}")))
        }
    }
}

async fn write_export(
    store: &ObjectStore,
    req: &ExportRequest<'_>,
    prefix: &str,
) -> Result<Manifest> {
    let c = req.campaign;
    let cols = campaign_columns(c);
    let payload = payload_fields(c);
    let header = header(c.format, &cols)?;
    let mut treated: Vec<&Member> = req
        .audience
        .members
        .iter()
        .filter(|m| m.arm == Arm::Treatment)
        .collect();
    let before = treated.len();
    if c.require_email {
        treated.retain(|m| req.emails.is_some_and(|e| e.contains_key(&m.user_id)));
    }
    let without_email = before - treated.len();
    let mut parts = Vec::new();
    let mut current: Option<Part> = None;
    // Rows are encoded plain (a JSON line, else a CSV line) to size the parts.
    let plain = if c.format == ExportFormat::Jsonl {
        ExportFormat::Jsonl
    } else {
        ExportFormat::Csv
    };
    let mut line = Vec::new();
    let mut cells = Vec::with_capacity(cols.len());
    for m in &treated {
        line.clear();
        cells.clear();
        cells.extend(cols.iter().map(|(n, f)| (*n, cell(req, m, *f, &payload))));
        encode_row(plain, &cells, &mut line)?;
        let full = current.as_ref().is_some_and(|p| {
            p.rows >= req.limits.max_rows || p.plain_bytes + line.len() > req.limits.max_bytes
        });
        if full {
            if let Some(p) = current.take() {
                parts.push(finish_part(p, req).await?);
            }
        }
        let part = match &mut current {
            Some(p) => p,
            None => {
                let name = format!("part-{:05}.{}", parts.len(), c.format.extension());
                let writer = store.writer(&format!("{prefix}/{name}")).await?;
                let mut encoder = Encoder::new(c.format);
                encoder.push(&header)?;
                current.insert(Part {
                    name,
                    writer,
                    encoder,
                    members: Vec::new(),
                    rows: 0,
                    plain_bytes: header.len(),
                })
            }
        };
        part.encoder.push(&line)?;
        if c.format == ExportFormat::Parquet {
            part.members.push(m);
        }
        part.rows += 1;
        part.plain_bytes += line.len();
        if let Some(chunk) = part.encoder.take(FLUSH_BYTES) {
            part.writer.write(&chunk).await?;
        }
    }
    if let Some(p) = current.take() {
        parts.push(finish_part(p, req).await?);
    }

    let holdout: Vec<&Member> = req
        .audience
        .members
        .iter()
        .filter(|m| m.arm == Arm::Holdout)
        .collect();
    let holdout_file = if c.holdout_file {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        let mut csv = csv::Writer::from_writer(&mut gz);
        csv.write_record(["external_id", "campaign_id", "variant"])?;
        for m in &holdout {
            csv.write_record([m.user_id.to_string().as_str(), &c.id, variant(m)])?;
        }
        csv.flush()?;
        drop(csv);
        let bytes = gz.finish()?;
        let written = store
            .put(&format!("{prefix}/{HOLDOUT_FILE}"), &bytes)
            .await?;
        Some(PartInfo {
            path: HOLDOUT_FILE.into(),
            rows: holdout.len(),
            bytes: written.bytes,
            sha256: written.sha256,
        })
    } else {
        None
    };

    let manifest = Manifest {
        campaign_id: c.id.clone(),
        campaign_kind: c.kind.name().into(),
        run_id: req.run_id.into(),
        run_date: req.run_date.into(),
        format: c.format.name().into(),
        preset: c.columns.name().into(),
        score_meaning: segments::select::score_meaning(c).into(),
        left_out_without_email: without_email,
        columns: cols.iter().map(|(n, _)| n.to_string()).collect(),
        payload_fields: payload.iter().map(|(n, _)| n.to_string()).collect(),
        delivered_to: c.deliver_to.clone(),
        model_versions: req.model_versions.clone(),
        row_count: treated.len(),
        holdout_count: holdout.len(),
        explore_count: req.audience.explored(Arm::Treatment),
        explore_holdout_count: req.audience.explored(Arm::Holdout),
        holdout_file,
        parts,
        created_at: req.created_at.into(),
    };
    store
        .put(
            &format!("{prefix}/{MANIFEST}"),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )
        .await?;
    Ok(manifest)
}

/// Encodes what is left of a part, and makes it visible.
async fn finish_part(mut p: Part<'_>, req: &ExportRequest<'_>) -> Result<PartInfo> {
    let tail = match std::mem::replace(&mut p.encoder, Encoder::Parquet) {
        Encoder::Plain(b) => Ok(b),
        Encoder::Gzip(g) => g.finish().map_err(anyhow::Error::from),
        Encoder::Parquet => parquet_part(req, &p.members),
    };
    let tail = match tail {
        Ok(t) => t,
        Err(e) => {
            p.writer.abort().await;
            return Err(e);
        }
    };
    p.writer.write(&tail).await?;
    let written = p.writer.finish().await?;
    info!(
        part = %p.name,
        rows = p.rows,
        bytes = written.bytes,
        upload_parts = written.upload_parts,
        "part written"
    );
    Ok(PartInfo {
        path: p.name,
        rows: p.rows,
        bytes: written.bytes,
        sha256: written.sha256,
    })
}

/// A Parquet file of the members: text columns as strings, `score` as a double, `rank` as a
/// 64-bit integer; Snappy, which every Parquet reader supports.
fn parquet_part(req: &ExportRequest, members: &[&Member]) -> Result<Vec<u8>> {
    let payload = payload_fields(req.campaign);
    let mut cols = Vec::new();
    for (name, field) in campaign_columns(req.campaign) {
        let name = PlSmallStr::from_str(name);
        let column = match field {
            Datum::Score => Column::new(name, members.iter().map(|m| m.score).collect::<Vec<_>>()),
            Datum::DiscountPct => Column::new(
                name,
                members
                    .iter()
                    .map(|m| m.discount_pct.round() as i64)
                    .collect::<Vec<_>>(),
            ),
            Datum::Rank => Column::new(
                name,
                members.iter().map(|m| m.rank as i64).collect::<Vec<_>>(),
            ),
            f => Column::new(
                name,
                members
                    .iter()
                    .map(|m| match cell(req, m, f, &payload) {
                        Cell::Text(s) => Some(s.to_string()),
                        Cell::Owned(s) => Some(s),
                        Cell::Id(v) | Cell::Int(v) => Some(v.to_string()),
                        Cell::Float(v) => Some(format!("{v:.6}")),
                        Cell::Null => None,
                    })
                    .collect::<Vec<_>>(),
            ),
        };
        cols.push(column);
    }
    let mut frame = DataFrame::new(members.len(), cols)?;
    let mut out = Vec::new();
    polars_io::parquet::write::ParquetWriter::new(&mut out)
        .with_compression(polars_io::parquet::write::ParquetCompression::Snappy)
        .finish(&mut frame)?;
    Ok(out)
}

/// Marks a staged export complete by writing `_SUCCESS`.
pub async fn commit(store: &ObjectStore, staged: &Staged) -> Result<()> {
    store
        .put(&format!("{}/{SUCCESS}", staged.prefix), b"")
        .await
        .with_context(|| format!("cannot complete export {}", staged.uri))?;
    Ok(())
}

/// The pointer, in a day's folder, to its last complete run.
pub const LATEST: &str = "latest";

/// Points the day's `latest` at a complete run folder (`prefix`, as [`run_folder`] gives it).
/// Called once `_SUCCESS` is written; a failure leaves the export complete, and the pointer
/// naming an earlier run, which is logged here.
pub async fn point_latest(store: &ObjectStore, prefix: &str) {
    let Some((day, run)) = prefix.rsplit_once('/') else {
        return;
    };
    let key = format!("{day}/{LATEST}");
    if let Err(e) = store.put(&key, format!("{run}\n").as_bytes()).await {
        warn!(
            uri = %store.uri(&key),
            error = %format!("{e:#}"),
            "cannot point the day's latest at this run: it may still name an earlier run"
        );
    }
}

/// The marker, in a run folder, that its parts are in the prefix its CRM watches: written by
/// [`deliver`] once the last of them is.
pub const DELIVERED: &str = "_DELIVERED";

/// Why a campaign failed after its export was complete: the delivery of its parts to the
/// prefix its CRM watches did not finish. Its ledger row keeps the export's URI, which tells
/// the next run for the date to adopt the export and deliver the rest (`pipeline::recover`).
#[derive(Debug)]
pub struct Undelivered {
    /// The complete export's run folder.
    pub uri: String,
    pub run_date: String,
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the export {} is complete but not delivered: the next run for {} delivers it",
            self.uri, self.run_date
        )
    }
}

/// A part's name in the prefix a CRM watches: flat (a watched prefix may not look into
/// folders) and unique to the run, since the CRM ingests every new object there.
pub fn delivered_name(m: &Manifest, part: &str) -> String {
    format!("{}-{}-{}-{part}", m.campaign_id, m.run_date, m.run_id)
}

/// Copies the parts of a complete export (run folder `prefix`) into the prefix a CRM watches,
/// then writes `_DELIVERED` in the run folder. Called after `_SUCCESS`, so the CRM only ever
/// sees whole lists, and never the manifest, markers or holdout file, which it would ingest as
/// data. A part already there (an earlier attempt's) is not written again: each new object is
/// an import, so one written twice would be imported twice. Safe to call again after a
/// failure; returns how many parts it copied.
#[tracing::instrument(name = "deliver", skip_all, fields(parts = manifest.parts.len()))]
pub async fn deliver(
    store: &ObjectStore,
    watched: &ObjectStore,
    prefix: &str,
    manifest: &Manifest,
) -> Result<usize> {
    let marker = format!("{prefix}/{DELIVERED}");
    if store.exists(&marker).await? {
        return Ok(0);
    }
    let mut copied = 0;
    let mut names = Vec::with_capacity(manifest.parts.len());
    for (i, part) in manifest.parts.iter().enumerate() {
        let name = delivered_name(manifest, &part.path);
        let done = async {
            if !watched.exists(&name).await? {
                store
                    .copy_to(&format!("{prefix}/{}", part.path), watched, &name)
                    .await?;
                copied += 1;
            }
            anyhow::Ok(())
        }
        .await;
        done.with_context(|| {
            format!(
                "cannot deliver {} to {} ({i} of {} parts are there)",
                part.path,
                watched.uri(&name),
                manifest.parts.len()
            )
        })?;
        names.push(watched.uri(&name));
    }
    store
        .put(&marker, serde_json::to_string_pretty(&names)?.as_bytes())
        .await?;
    info!(
        parts = manifest.parts.len(),
        copied,
        to = %watched.uri(""),
        "delivered to the watched prefix"
    );
    Ok(copied)
}

/// Removes a staged export that must not be published.
pub async fn discard(store: &ObjectStore, staged: &Staged) {
    remove(store, &staged.prefix, &staged.uri).await;
}

/// Deletes a run folder; when that fails too, the folder has no `_SUCCESS` and the next run
/// supersedes it.
async fn remove(store: &ObjectStore, prefix: &str, uri: &str) {
    if let Err(e) = store.delete_prefix(prefix).await {
        warn!(uri, error = %e, "cannot remove an incomplete export; it has no _SUCCESS");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_encode_per_format() {
        let cells = [
            ("external_id", Cell::Id(42)),
            ("offer", Cell::Text("20% off, \"today\"")),
            ("score", Cell::Float(0.1234567)),
            ("rank", Cell::Int(3)),
            ("email", Cell::Null),
        ];
        let mut csv = Vec::new();
        encode_row(ExportFormat::Csv, &cells, &mut csv).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "42,\"20% off, \"\"today\"\"\",0.123457,3,\n"
        );
        let mut json = Vec::new();
        encode_row(ExportFormat::Jsonl, &cells, &mut json).unwrap();
        let text = String::from_utf8(json).unwrap();
        assert_eq!(
            text,
            "{\"external_id\":\"42\",\"offer\":\"20% off, \\\"today\\\"\",\"score\":0.123457,\"rank\":3,\"email\":null}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["offer"], "20% off, \"today\"");
    }

    fn campaign(dir: &std::path::Path, export: &str) -> Campaign {
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            format!(
                "format_version = 1\nid = \"c\"\nkind = \"new_buyer\"\nholdout = 0.1\n\
                 max_audience = 100\n[offer]\nlabel = \"hi, there\"\n[export]\n{export}\n"
            ),
        )
        .unwrap();
        crate::config::campaigns::load(&[path]).unwrap().remove(0)
    }

    fn audience(n: usize) -> Audience {
        Audience {
            campaign_id: "c".into(),
            funnel: vec![],
            overlap: vec![],
            members: (0..n)
                .map(|i| Member {
                    user_id: 1000 + i as i64,
                    rank: i + 1,
                    arm: if i % 5 == 4 {
                        Arm::Holdout
                    } else {
                        Arm::Treatment
                    },
                    score: 1.0 / (i as f64 + 3.0),
                    uplift: 0.0,
                    p_control: 0.0,
                    expected_value: 0.0,
                    discount_cost: 0.0,
                    discount_pct: 0.0,
                    item_id: None,
                    recipient_user_id: None,
                    explore: false,
                })
                .collect(),
        }
    }

    async fn staged(
        dir: &std::path::Path,
        c: &Campaign,
        a: &Audience,
        limits: PartLimits,
    ) -> (ObjectStore, Staged) {
        staged_with(dir, c, a, limits, None).await
    }

    /// [`staged`] with the users' email addresses.
    async fn staged_with(
        dir: &std::path::Path,
        c: &Campaign,
        a: &Audience,
        limits: PartLimits,
        emails: Option<&HashMap<i64, String>>,
    ) -> (ObjectStore, Staged) {
        let store = ObjectStore::open(
            &format!("file://{}", dir.display()),
            &crate::store::StoreOptions::default(),
        )
        .await
        .unwrap();
        let versions = BTreeMap::from([("m".to_string(), "v1".to_string())]);
        let req = ExportRequest {
            campaign: c,
            audience: a,
            run_id: "r1",
            run_date: "2026-11-20",
            model_versions: &versions,
            created_at: "2026-11-20T00:00:00Z",
            limits,
            emails,
        };
        let staged = stage(&store, &req).await.unwrap();
        (store, staged)
    }

    #[tokio::test]
    async fn parts_are_cut_at_rows_and_bytes_and_repeat_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("publish-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = audience(50); // 40 treated, 10 held out
        let c = campaign(&dir, "format = \"csv\"\nholdout_file = true");
        let limits = PartLimits {
            max_rows: 15,
            max_bytes: 1 << 20,
        };
        let (store, s) = staged(&dir.join("out"), &c, &a, limits).await;
        let rows: Vec<usize> = s.manifest.parts.iter().map(|p| p.rows).collect();
        assert_eq!(rows, [15, 15, 10]);
        assert_eq!(s.manifest.row_count, 40);
        assert_eq!(s.manifest.holdout_count, 10);
        let first = store
            .get(&format!("{}/part-00000.csv", s.prefix))
            .await
            .unwrap();
        let text = String::from_utf8(first).unwrap();
        assert!(text.starts_with("external_id,campaign_id,variant,offer,score,rank\n1000,c,treatment,\"hi, there\",0.333333,1\n"), "{text}");
        let holdout = s.manifest.holdout_file.as_ref().unwrap();
        assert_eq!(holdout.rows, 10);
        // Not complete until committed.
        let keys = store.list(&s.prefix).await.unwrap();
        assert!(!keys.iter().any(|k| k.ends_with(SUCCESS)), "{keys:?}");
        commit(&store, &s).await.unwrap();
        assert!(store
            .list(&s.prefix)
            .await
            .unwrap()
            .iter()
            .any(|k| k.ends_with(SUCCESS)));

        // A byte limit: each CSV row of this audience is 40 or 41 bytes and the header 49, so
        // 200 bytes hold the header and three rows.
        let (_, s) = staged(
            &dir.join("bytes"),
            &c,
            &a,
            PartLimits {
                max_rows: 100,
                max_bytes: 200,
            },
        )
        .await;
        assert!(
            s.manifest.parts.iter().all(|p| p.bytes <= 200),
            "{:?}",
            s.manifest.parts
        );
        let rows: Vec<usize> = s.manifest.parts.iter().map(|p| p.rows).collect();
        assert_eq!(rows, [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1]);

        // Every format repeats byte for byte.
        for format in ["csv_gzip", "parquet", "jsonl"] {
            let c = campaign(&dir, &format!("format = \"{format}\""));
            let (_, x) = staged(&dir.join(format!("{format}-1")), &c, &a, limits).await;
            let (_, y) = staged(&dir.join(format!("{format}-2")), &c, &a, limits).await;
            let hashes = |s: &Staged| {
                s.manifest
                    .parts
                    .iter()
                    .map(|p| p.sha256.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(hashes(&x), hashes(&y), "{format}");
            assert_eq!(x.manifest.parts.len(), 3, "{format}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn presets_name_their_columns() {
        let names = |p| columns(p).iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(
            names(ColumnPreset::Generic),
            [
                "external_id",
                "campaign_id",
                "variant",
                "offer",
                "score",
                "rank"
            ]
        );
        assert_eq!(names(ColumnPreset::Braze)[0], "external_id");
        assert_eq!(names(ColumnPreset::Iterable)[..2], ["userId", "email"]);
        assert!(needs_emails(ColumnPreset::Iterable));
        assert!(!needs_emails(ColumnPreset::Braze));
        assert_eq!(names(ColumnPreset::BrazeIds), ["external_id"]);
        assert_eq!(names(ColumnPreset::Hubspot)[0], "email");
        assert_eq!(
            names(ColumnPreset::Sfmc)[..2],
            ["SubscriberKey", "EmailAddress"]
        );
        assert!(needs_emails(ColumnPreset::Hubspot) && needs_emails(ColumnPreset::Sfmc));
        assert!(!needs_emails(ColumnPreset::BrazeIds));
        // What validation says of a preset's email column is what its columns hold.
        for p in [
            ColumnPreset::Generic,
            ColumnPreset::Braze,
            ColumnPreset::BrazeIds,
            ColumnPreset::Iterable,
            ColumnPreset::Hubspot,
            ColumnPreset::Sfmc,
            ColumnPreset::BrazeCdi,
        ] {
            assert_eq!(needs_emails(p), p.has_email(), "{p:?}");
        }
    }

    /// `braze_cdi`: each row is the user's id and a JSON object of the `braze` attributes; the
    /// parts reach the watched prefix once complete, each once, and nothing else does.
    #[tokio::test]
    async fn braze_cdi_payloads_reach_the_watched_prefix_once() {
        let dir = std::env::temp_dir().join(format!("publish-cdi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = audience(10); // 8 treated
        let watched_uri = format!("file://{}", dir.join("watched").display());
        let c = campaign(
            &dir,
            &format!("columns = \"braze_cdi\"\ndeliver_to = \"{watched_uri}\""),
        );
        let limits = PartLimits {
            max_rows: 3,
            max_bytes: 1 << 20,
        };
        let (store, s) = staged(&dir.join("out"), &c, &a, limits).await;
        assert_eq!(s.manifest.columns, ["EXTERNAL_ID", "PAYLOAD"]);
        assert_eq!(
            s.manifest.payload_fields,
            [
                "targeting_campaign",
                "targeting_variant",
                "targeting_offer",
                "targeting_score",
                "targeting_rank",
                "targeting_date"
            ]
        );
        let first = store
            .get(&format!("{}/part-00000.csv", s.prefix))
            .await
            .unwrap();
        let mut rows = csv::Reader::from_reader(first.as_slice());
        assert_eq!(
            rows.headers().unwrap().iter().collect::<Vec<_>>(),
            ["EXTERNAL_ID", "PAYLOAD"]
        );
        let row = rows.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "1000");
        let payload: serde_json::Value = serde_json::from_str(&row[1]).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "targeting_campaign": "c",
                "targeting_variant": "treatment",
                "targeting_offer": "hi, there",
                "targeting_score": 0.333333,
                "targeting_rank": 1,
                "targeting_date": "2026-11-20",
            })
        );

        // Nothing reaches the watched prefix before `_SUCCESS`; then the parts alone, each
        // under a name of its run.
        let watched = ObjectStore::open(&watched_uri, &crate::store::StoreOptions::default())
            .await
            .unwrap();
        assert!(watched.list("").await.unwrap().is_empty());
        commit(&store, &s).await.unwrap();
        assert_eq!(
            deliver(&store, &watched, &s.prefix, &s.manifest)
                .await
                .unwrap(),
            3
        );
        let names: Vec<String> = (0..3)
            .map(|i| format!("c-2026-11-20-r1-part-{i:05}.csv"))
            .collect();
        assert_eq!(watched.list("").await.unwrap(), names);
        for (i, name) in names.iter().enumerate() {
            let part = format!("{}/part-{i:05}.csv", s.prefix);
            assert_eq!(
                watched.get(name).await.unwrap(),
                store.get(&part).await.unwrap()
            );
        }
        assert!(store
            .exists(&format!("{}/{DELIVERED}", s.prefix))
            .await
            .unwrap());
        // Delivered: a second call copies nothing.
        assert_eq!(
            deliver(&store, &watched, &s.prefix, &s.manifest)
                .await
                .unwrap(),
            0
        );
        // A delivery cut off after its first part: the rest is copied, the first is not
        // written again (it would be imported twice).
        std::fs::remove_file(dir.join("out").join(&s.prefix).join(DELIVERED)).unwrap();
        for name in &names[1..] {
            std::fs::remove_file(dir.join("watched").join(name)).unwrap();
        }
        assert_eq!(
            deliver(&store, &watched, &s.prefix, &s.manifest)
                .await
                .unwrap(),
            2
        );
        assert_eq!(watched.list("").await.unwrap(), names);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// HubSpot keys contacts by email: a messaged user without one is left out, and counted;
    /// so does Iterable when the campaign asks (`require_email`).
    #[tokio::test]
    async fn an_email_keyed_crm_gets_only_users_with_an_email() {
        let dir = std::env::temp_dir().join(format!("publish-hubspot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = audience(10); // users 1000..1009; 1004 and 1009 held out
        let c = campaign(&dir, "columns = \"hubspot\"");
        assert_eq!(c.format, ExportFormat::Csv, "plain CSV by default");
        let emails: HashMap<i64, String> = [1000, 1001, 1003]
            .into_iter()
            .map(|u| (u, format!("u{u}@example.com")))
            .collect();
        let limits = PartLimits {
            max_rows: 100,
            max_bytes: 1 << 20,
        };
        let (store, s) = staged_with(&dir.join("out"), &c, &a, limits, Some(&emails)).await;
        assert_eq!(s.manifest.row_count, 3);
        assert_eq!(s.manifest.left_out_without_email, 5);
        let part = store
            .get(&format!("{}/part-00000.csv", s.prefix))
            .await
            .unwrap();
        let text = String::from_utf8(part).unwrap();
        assert!(
            text.starts_with(
                "email,targeting_campaign,targeting_offer,targeting_score,targeting_rank\n\
                 u1000@example.com,c,"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
        // Iterable keys users by id or email: its list keeps users without an email (an empty
        // cell) unless the campaign asks to leave them out.
        for (require, rows, left_out) in [(false, 8, 0), (true, 3, 5)] {
            let c = campaign(
                &dir,
                &format!("columns = \"iterable\"\nformat = \"csv\"\nrequire_email = {require}"),
            );
            let out = dir.join(format!("out-{require}"));
            let (_, s) = staged_with(&out, &c, &a, limits, Some(&emails)).await;
            assert_eq!(
                (s.manifest.row_count, s.manifest.left_out_without_email),
                (rows, left_out),
                "require_email = {require}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
