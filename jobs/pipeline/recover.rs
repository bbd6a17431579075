//! Recovery of a claimed campaign-day whose earlier run stopped. A run writes `_SUCCESS`, then
//! (for a CRM that watches a prefix) delivers the parts there, then writes its ledger row. A
//! process that dies in between (or loses the state database there) leaves a complete export
//! whose row still says `running`; a delivery that fails leaves one whose row says `failed`
//! and keeps the export's URI.
//! Publishing the campaign-day again would give a CRM two lists, so the complete export is the
//! truth: its delivery is finished (the parts not yet in the watched prefix are copied there),
//! and its row is marked `succeeded` from its manifest. Unfinished runs without a complete
//! export are marked `aborted`.

use anyhow::{Context, Result};
use chrono::Utc;
use models::RunDate;
use segments::Campaign;
use tracing::{info, warn};

use super::publish::{self, run_folder, Manifest, MANIFEST, SUCCESS};
use crate::config::Settings;
use crate::state::db::Db;
use crate::state::ledger::{self, Finish, Status};
use crate::store::ObjectStore;

/// Settles the unfinished runs of a campaign-day whose lock the caller holds. Returns the URI
/// of the complete export it adopted, if any.
pub async fn settle(
    s: &Settings,
    state: &Db,
    campaign: &Campaign,
    date: RunDate,
) -> Result<Option<String>> {
    let unsettled = ledger::unsettled(state, &campaign.id, date).await?;
    if unsettled.is_empty() {
        return Ok(None);
    }
    let destination = campaign
        .destination
        .as_deref()
        .unwrap_or(&s.export.destination);
    let store = ObjectStore::open(destination, &s.store).await?;
    let day = date.to_string();
    let mut adopted = None;
    for run_id in &unsettled {
        let folder = run_folder(&campaign.id, &day, run_id);
        if adopted.is_some() || !store.exists(&format!("{folder}/{SUCCESS}")).await? {
            continue;
        }
        let key = format!("{folder}/{MANIFEST}");
        let manifest: Manifest = serde_json::from_slice(&store.get(&key).await?)
            .with_context(|| format!("invalid manifest {}", store.uri(&key)))?;
        let uri = store.uri(&folder);
        if let Some(to) = &campaign.deliver_to {
            let watched = ObjectStore::open(to, &s.store).await?;
            publish::deliver(&store, &watched, &folder, &manifest)
                .await
                .with_context(|| format!("cannot finish delivering the complete export {uri}"))?;
        }
        let finish = Finish {
            status: Status::Succeeded,
            finished_at: Utc::now().timestamp(),
            audience_size: Some(manifest.row_count),
            holdout_size: Some(manifest.holdout_count),
            model_versions: &serde_json::to_string(&manifest.model_versions)?,
            export_uri: Some(&uri),
            error: None,
        };
        ledger::finish(state, run_id, &campaign.id, &finish).await?;
        info!(campaign = %campaign.id, run_id = %run_id, uri = %uri, "adopted the complete export of a stopped run");
        publish::point_latest(&store, &folder).await;
        adopted = Some(uri);
    }
    let stale = ledger::abort_running(
        state,
        &campaign.id,
        date,
        "its process stopped before the run finished",
    )
    .await?;
    if stale > 0 {
        warn!(
            campaign = %campaign.id,
            runs = stale,
            "marked the unfinished runs of a stopped process aborted"
        );
    }
    Ok(adopted)
}
