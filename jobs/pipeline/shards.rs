//! Shard outputs in the object store: what `targeting score-shard` writes for its shard of a
//! night (the rankings of every campaign, compact and cut to what arbitration can reach: the
//! funnel's counts, the eligible users' ids and the candidates' ranking values), and what `targeting run --from-shards N` gathers back, checked,
//! before it selects, publishes and records the night.
//!
//! A shard's output lives under `<export.destination>/_shards/dt=<date>/of=<N>/shard=<I>/`:
//! `rankings-<attempt>.parquet` (per campaign, a row for each candidate, in rank order, with its
//! ranking values, then a row for each eligible user, ascending, whose values are null) and then
//! `manifest.json`, which names that file and its SHA-256. The manifest is written last and in
//! one put, so a shard is complete exactly when its manifest is there and its file matches; a
//! retried shard job writes a new attempt's file and switches the manifest to it, atomically.

use std::collections::BTreeMap;
use std::io::Cursor;

use anyhow::{bail, Context, Result};
use models::training::Tallies;
use models::{RunDate, Shard};
use polars::prelude::*;
use polars_io::SerReader;
use rand::Rng;
use segments::campaign::MAX_DISCOUNT_LEVELS;
use segments::{Campaign, Candidate, FunnelStep, Ranking};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, instrument};

use super::select::Rankings;
use crate::config::Settings;
use crate::store::{hex, ObjectStore};

/// The version of the shard output's layout: 2 since rankings are cut and list the eligible
/// users apart, 3 since they carry each campaign's exploration sample (`explore` rows), 4
/// since the item each user wants (`item_id`), 5 since a gift's recipient
/// (`recipient_user_id`).
const FORMAT_VERSION: u32 = 5;

/// What a shard's manifest says of its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardManifest {
    pub format_version: u32,
    /// The night, `YYYY-MM-DD`.
    pub run_date: String,
    pub shard: u32,
    pub of: u32,
    /// Users of the shard.
    pub users: usize,
    /// The version of each model the shard was scored with, by name.
    pub models: BTreeMap<String, String>,
    /// Every campaign of the night as the shard ranked it.
    pub campaigns: Vec<ShardCampaign>,
    /// The shard's sampled users counted into each model's training profile, for drift
    /// monitoring (see [`models::drift`]); summed over the shards by the gathering run.
    #[serde(default)]
    pub drift: Tallies,
    /// The rankings file, next to the manifest.
    pub data: String,
    pub data_sha256: String,
    pub data_rows: usize,
    pub created_at: String,
}

/// One campaign as a shard ranked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardCampaign {
    pub id: String,
    /// SHA-256 of the campaign as this build read it: shards must rank the same definition.
    pub fingerprint: String,
    /// The funnel over the shard's users; empty when the campaign failed.
    pub funnel: Vec<FunnelStep>,
    /// Why the campaign could not be ranked, if it could not.
    pub error: Option<String>,
}

/// The store the shards' outputs go to: the export destination's.
pub async fn open(s: &Settings) -> Result<ObjectStore> {
    ObjectStore::open(&s.export.destination, &s.store)
        .await
        .with_context(|| {
            format!(
                "cannot open {} for the shards' outputs",
                s.export.destination
            )
        })
}

/// The fingerprint of a campaign's definition.
fn fingerprint(c: &Campaign) -> String {
    hex(&Sha256::digest(format!("{c:?}").as_bytes()))
}

/// The folder of a night's shard outputs for `of` shards, under the export root.
fn night_prefix(date: RunDate, of: u32) -> String {
    format!("_shards/dt={date}/of={of}/")
}

fn shard_prefix(date: RunDate, shard: Shard) -> String {
    format!(
        "{}shard={:04}/",
        night_prefix(date, shard.count()),
        shard.index()
    )
}

/// A shard's output, ready to write.
pub struct ShardOutput<'a> {
    pub date: RunDate,
    pub shard: Shard,
    pub users: usize,
    pub models: BTreeMap<String, String>,
    pub campaigns: &'a [Campaign],
    pub rankings: Rankings,
    pub tallies: Tallies,
}

/// Writes a shard's output: the rankings file of a new attempt, then the manifest that points
/// to it, then removes the files of earlier attempts. Returns the manifest's URI.
#[instrument(name = "write_shard", skip_all, fields(shard = %out.shard))]
pub async fn write(store: &ObjectStore, out: ShardOutput<'_>) -> Result<String> {
    let prefix = shard_prefix(out.date, out.shard);
    let mut by_id = out.rankings.into_merged();
    let mut campaigns = Vec::new();
    let (mut ids, mut users, mut key, mut uplift, mut p_control, mut value, mut cost) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut discount: Vec<Option<f64>> = vec![];
    let mut item: Vec<Option<i64>> = vec![];
    let mut recipient: Vec<Option<i64>> = vec![];
    // Each discount level's effect, for campaigns with levels (chosen after the merge).
    let mut effects: [Vec<Option<f64>>; MAX_DISCOUNT_LEVELS] = Default::default();
    let mut explore: Vec<bool> = vec![];
    for c in out.campaigns {
        let ranked = by_id
            .remove(&c.id)
            .unwrap_or_else(|| Err("not ranked".into()));
        let (funnel, error) = match ranked {
            Ok(r) => {
                let sampled = r.explore.iter().map(|x| (x, true));
                for (x, explored) in r.candidates.iter().map(|x| (x, false)).chain(sampled) {
                    ids.push(c.id.clone());
                    users.push(x.user_id);
                    key.push(Some(x.key));
                    uplift.push(Some(x.uplift));
                    p_control.push(Some(x.p_control));
                    value.push(Some(x.value));
                    cost.push(Some(x.discount_cost));
                    discount.push(Some(x.discount_pct));
                    item.push(x.item_id);
                    recipient.push(x.recipient_user_id);
                    for (column, e) in effects.iter_mut().zip(x.effects) {
                        column.push(Some(e));
                    }
                    explore.push(explored);
                }
                for &user in &r.eligible {
                    ids.push(c.id.clone());
                    users.push(user);
                    for v in [&mut key, &mut uplift, &mut p_control, &mut value, &mut cost] {
                        v.push(None);
                    }
                    discount.push(None);
                    item.push(None);
                    recipient.push(None);
                    for column in &mut effects {
                        column.push(None);
                    }
                    explore.push(false);
                }
                (r.funnel, None)
            }
            Err(e) => (vec![], Some(e)),
        };
        campaigns.push(ShardCampaign {
            id: c.id.clone(),
            fingerprint: fingerprint(c),
            funnel,
            error,
        });
    }
    let rows = users.len();
    let mut frame = df! {
        "campaign_id" => ids,
        "user_id" => users,
        "key" => key,
        "uplift" => uplift,
        "p_control" => p_control,
        "value" => value,
        "discount_cost" => cost,
        "discount_pct" => discount,
        "item_id" => item,
        "recipient_user_id" => recipient,
        "explore" => explore,
    }?;
    for (k, column) in effects.into_iter().enumerate() {
        frame.with_column(Column::new(effect_column(k).into(), column))?;
    }
    let mut bytes = Vec::new();
    polars_io::parquet::write::ParquetWriter::new(&mut bytes)
        .with_compression(polars_io::parquet::write::ParquetCompression::Snappy)
        .finish(&mut frame)
        .map_err(|e| anyhow::anyhow!("cannot encode the shard's rankings: {e}"))?;
    let attempt: u32 = rand::rng().random_range(0..0x100_0000);
    let data = format!("rankings-{attempt:06x}.parquet");
    store.put(&format!("{prefix}{data}"), &bytes).await?;
    let manifest = ShardManifest {
        format_version: FORMAT_VERSION,
        run_date: out.date.to_string(),
        shard: out.shard.index(),
        of: out.shard.count(),
        users: out.users,
        models: out.models,
        campaigns,
        drift: out.tallies,
        data: data.clone(),
        data_sha256: hex(&Sha256::digest(&bytes)),
        data_rows: rows,
        created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let key = format!("{prefix}manifest.json");
    store
        .put(&key, &serde_json::to_vec_pretty(&manifest)?)
        .await?;
    // Files of earlier attempts of this shard: the manifest no longer points to them.
    for stale in store.list(&prefix).await? {
        let name = stale.rsplit('/').next().unwrap_or_default();
        if name.starts_with("rankings-") && name != data {
            store.delete_prefix(&stale).await?;
        }
    }
    info!(rows, users = out.users, "shard written");
    Ok(store.uri(&key))
}

/// Every shard of a night, gathered and checked.
pub struct Gathered {
    pub rankings: Rankings,
    pub users: usize,
    /// Every shard's drift tallies, summed.
    pub tallies: Tallies,
    /// The models every shard was scored with.
    pub models: BTreeMap<String, String>,
}

/// Reads the output of every one of `of` shards of the night and checks it: each present and
/// complete, for this date and split, scored with the same models, and ranking the night's
/// campaigns as this run defines them. The first fault stops the gathering with one line
/// naming the shard.
#[instrument(name = "gather_shards", skip_all, fields(shards = of))]
pub async fn gather(
    store: &ObjectStore,
    date: RunDate,
    of: u32,
    campaigns: &[Campaign],
    mut rankings: Rankings,
) -> Result<Gathered> {
    let Some(first) = Shard::new(0, of) else {
        bail!(
            "--from-shards must be between 1 and {}",
            models::shard::MAX_SHARDS
        );
    };
    let night = night_prefix(date, of);
    for key in store.list(&night).await? {
        let folder = key[night.len()..].split('/').next().unwrap_or_default();
        let index = folder
            .strip_prefix("shard=")
            .and_then(|i| i.parse::<u32>().ok());
        if index.is_none_or(|i| i >= of) {
            bail!(
                "{} is not the output of a shard of {of}: a night split differently was written here",
                store.uri(&key)
            );
        }
    }
    let mut users = 0;
    let mut tallies = Tallies::default();
    let mut models: Option<BTreeMap<String, String>> = None;
    for shard in Shard::all(of) {
        let name = format!("shard {shard} for {date}");
        let prefix = shard_prefix(date, shard);
        let manifest_key = format!("{prefix}manifest.json");
        let Some(bytes) = store.get_opt(&manifest_key).await? else {
            bail!(
                "{name} is missing: no {} (did its job finish?)",
                store.uri(&manifest_key)
            );
        };
        let m: ShardManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{name}: {} is unreadable", store.uri(&manifest_key)))?;
        if m.format_version != FORMAT_VERSION {
            bail!(
                "{name}: {} has format_version {}, this build reads {FORMAT_VERSION}",
                store.uri(&manifest_key),
                m.format_version
            );
        }
        if (m.run_date.as_str(), m.shard, m.of) != (date.to_string().as_str(), shard.index(), of) {
            bail!(
                "{name}: {} holds shard {} of {} for {}",
                store.uri(&manifest_key),
                m.shard,
                m.of,
                m.run_date
            );
        }
        match &models {
            None => models = Some(m.models.clone()),
            Some(first_models) if *first_models != m.models => bail!(
                "{name} was scored with models {} but shard {first} with {}: score every shard again with the same models",
                versions(&m.models),
                versions(first_models)
            ),
            Some(_) => {}
        }
        check_campaigns(&name, &m, campaigns)?;
        let data_key = format!("{prefix}{}", m.data);
        let Some(data) = store.get_opt(&data_key).await? else {
            bail!("{name} is incomplete: no {}", store.uri(&data_key));
        };
        if hex(&Sha256::digest(&data)) != m.data_sha256 {
            bail!(
                "{name} is incomplete: {} does not match the SHA-256 of its manifest",
                store.uri(&data_key)
            );
        }
        let parts = read_rankings(&data, &m)
            .with_context(|| format!("{name}: {} is unreadable", store.uri(&data_key)))?;
        // `check_campaigns` found the shard's campaigns to be this run's, in this order.
        for (c, part) in campaigns.iter().zip(parts) {
            rankings.add(c, part);
        }
        users += m.users;
        tallies
            .merge(&m.drift)
            .with_context(|| format!("{name}: its drift tallies do not fit the first shard's"))?;
    }
    info!(users, "shards gathered");
    Ok(Gathered {
        rankings,
        users,
        tallies,
        models: models.unwrap_or_default(),
    })
}

fn versions(models: &BTreeMap<String, String>) -> String {
    let each: Vec<String> = models.iter().map(|(k, v)| format!("{k} {v}")).collect();
    each.join(", ")
}

/// Refuses a shard that ranked other campaigns, or other definitions of them, than this run's.
fn check_campaigns(name: &str, m: &ShardManifest, campaigns: &[Campaign]) -> Result<()> {
    let theirs: Vec<&str> = m.campaigns.iter().map(|c| c.id.as_str()).collect();
    let ours: Vec<&str> = campaigns.iter().map(|c| c.id.as_str()).collect();
    if theirs != ours {
        bail!(
            "{name} ranked the campaigns [{}] but this run's night has [{}]",
            theirs.join(", "),
            ours.join(", ")
        );
    }
    for (mine, c) in campaigns.iter().zip(&m.campaigns) {
        if fingerprint(mine) != c.fingerprint {
            bail!(
                "{name} ranked campaign {} as it was defined then, and its file has changed since",
                c.id
            );
        }
    }
    Ok(())
}

/// The rankings file's column of the `k`-th discount level's effect.
fn effect_column(k: usize) -> String {
    format!("effect_{k}")
}

/// The rankings of one shard's output, in the order of its manifest's campaigns.
fn read_rankings(data: &[u8], m: &ShardManifest) -> Result<Vec<Result<Ranking, String>>> {
    let frame = polars_io::parquet::read::ParquetReader::new(Cursor::new(data)).finish()?;
    if frame.height() != m.data_rows {
        bail!("{} rows, the manifest says {}", frame.height(), m.data_rows);
    }
    let ids = frame.column("campaign_id")?.str()?;
    let users = frame.column("user_id")?.i64()?;
    let f = |name: &str| -> Result<Vec<Option<f64>>> {
        Ok(frame.column(name)?.f64()?.iter().collect())
    };
    let (key, uplift, p_control, value, cost, discount) = (
        f("key")?,
        f("uplift")?,
        f("p_control")?,
        f("value")?,
        f("discount_cost")?,
        f("discount_pct")?,
    );
    let effects = (0..MAX_DISCOUNT_LEVELS)
        .map(|k| f(&effect_column(k)))
        .collect::<Result<Vec<_>>>()?;
    let item = frame.column("item_id")?.i64()?;
    let recipient = frame.column("recipient_user_id")?.i64()?;
    let explore = frame.column("explore")?.bool()?;
    /// One campaign's rows, by what they list.
    #[derive(Default)]
    struct Rows {
        candidates: Vec<Candidate>,
        eligible: Vec<i64>,
        explore: Vec<Candidate>,
    }
    let mut by_id: BTreeMap<&str, Rows> = BTreeMap::new();
    for i in 0..frame.height() {
        let (Some(id), Some(user_id)) = (ids.get(i), users.get(i)) else {
            bail!("row {i} has no campaign or user");
        };
        let rows = by_id.entry(id).or_default();
        // A row without a key lists an eligible user; one with a key, a candidate.
        let Some(key) = key[i] else {
            rows.eligible.push(user_id);
            continue;
        };
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let candidate = Candidate {
            user_id,
            key,
            uplift: nan(uplift[i]),
            p_control: nan(p_control[i]),
            value: nan(value[i]),
            discount_cost: nan(cost[i]),
            discount_pct: nan(discount[i]),
            effects: std::array::from_fn(|k| nan(effects[k][i])),
            item_id: item.get(i),
            recipient_user_id: recipient.get(i),
        };
        // An explore row is of the exploration sample; the others are in the campaign's order.
        if explore.get(i) == Some(true) {
            rows.explore.push(candidate);
        } else {
            rows.candidates.push(candidate);
        }
    }
    Ok(m.campaigns
        .iter()
        .map(|c| match &c.error {
            Some(e) => Err(e.clone()),
            None => {
                let rows = by_id.remove(c.id.as_str()).unwrap_or_default();
                Ok(Ranking {
                    funnel: c.funnel.clone(),
                    candidates: rows.candidates,
                    eligible: rows.eligible,
                    explore: rows.explore,
                })
            }
        })
        .collect())
}
