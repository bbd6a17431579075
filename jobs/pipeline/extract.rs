//! The extract stage: every contract table through its query in `sql/queries/`, streamed into
//! polars frames, with the project's own assignment history added to the exposures.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use models::features::TABLES;
use models::{RunDate, SourceTables};
use polars::prelude::DataFrame;
use sqlx::Row;
use tracing::{info, info_span, instrument, warn, Instrument};

use crate::config::Settings;
use crate::state::db::{query_text, Db};

/// The extraction queries built into the binary, by table name.
const BUILTIN: &[(&str, &str)] = &[
    ("users", include_str!("../../sql/queries/users.sql")),
    (
        "suppressions",
        include_str!("../../sql/queries/suppressions.sql"),
    ),
    ("items", include_str!("../../sql/queries/items.sql")),
    ("purchases", include_str!("../../sql/queries/purchases.sql")),
    (
        "engagement_daily",
        include_str!("../../sql/queries/engagement_daily.sql"),
    ),
    ("wishlist", include_str!("../../sql/queries/wishlist.sql")),
    (
        "friendships",
        include_str!("../../sql/queries/friendships.sql"),
    ),
    (
        "campaign_exposures",
        include_str!("../../sql/queries/campaign_exposures.sql"),
    ),
];

/// The query of a contract table: the deployment's own (`source.queries_dir`), else the one
/// built in; and where it came from, for messages.
fn contract_query(settings: &Settings, table: &str) -> Result<(String, String)> {
    let builtin = BUILTIN
        .iter()
        .find(|(name, _)| *name == table)
        .map_or("", |(_, sql)| sql);
    query_text(settings.source.queries_dir.as_deref(), table, builtin)
}

/// Own assignments as exposures (run on the state database).
const ASSIGNMENT_EXPOSURES: &str = include_str!("../../sql/queries/assignment_exposures.sql");
/// Email addresses of consenting users (only for presets with an email column).
const CONTACT_EMAILS: &str = include_str!("../../sql/queries/contact_emails.sql");

/// Reads every contract table from the source database and holds it to the data contract as of
/// `date`. With `state` (and `models.own_exposures`), the exposures also hold the assignments
/// of past succeeded runs, so that each night's holdouts become training data.
///
/// The contract fails closed: anything that could let a user who must not be messaged into a
/// list (NULL suppression ids, NULL consent, NULL or duplicate user ids, no users) is an error
/// naming the query, the column and the rows; harmless faults (events after the run date,
/// negative money, unknown arms) are dropped and logged.
#[instrument(name = "extract", skip_all, fields(run_date = %date))]
pub async fn extract(
    db: &Db,
    state: Option<&Db>,
    settings: &Settings,
    date: RunDate,
) -> Result<SourceTables> {
    let mut frames = Vec::with_capacity(TABLES.len());
    let mut origins = Vec::with_capacity(TABLES.len());
    for spec in TABLES {
        let (sql, origin) = contract_query(settings, spec.name)?;
        let mut frame = db
            .fetch_frame(spec, &sql, &origin, settings.source.batch_rows)
            .instrument(info_span!("query", table = spec.name))
            .await?;
        info!(table = spec.name, rows = frame.height(), "extracted");
        if let (Some(state), "campaign_exposures", true) =
            (state, spec.name, settings.models.own_exposures)
        {
            let own = own_exposures(state, spec, settings, date).await?;
            info!(
                rows = own.height(),
                "own assignments added to the exposures"
            );
            frame.vstack_mut(&own)?;
        }
        frames.push((spec.name.to_string(), frame));
        origins.push((spec.name, origin));
    }
    let checked = SourceTables::from_named(frames)?.check_contract(date)?;
    for d in &checked.dropped {
        warn!(
            table = d.table,
            column = d.column,
            rows = d.rows,
            "dropped rows that break the data contract: {d}"
        );
    }
    if !checked.stops.is_empty() {
        let origin = |table: &str| {
            origins
                .iter()
                .find(|(t, _)| *t == table)
                .map_or(String::new(), |(_, o)| o.clone())
        };
        let each: Vec<String> = checked
            .stops
            .iter()
            .map(|b| format!("query {}: {b}", origin(b.table)))
            .collect();
        bail!(
            "the source breaks the data contract, so nobody is selected: {}",
            each.join("; ")
        );
    }
    Ok(checked.tables)
}

/// The project's own assignments as exposures, those of nights before `date` only. A night's
/// assignments are stamped with its cutoff (see [`super::record`]), so a re-run of a night
/// never sees its own earlier run, however early either ran.
async fn own_exposures(
    state: &Db,
    spec: &models::features::TableSpec,
    settings: &Settings,
    date: RunDate,
) -> Result<DataFrame> {
    use polars::prelude::{col, lit, IntoLazy};
    let (sql, origin) = query_text(
        settings.source.queries_dir.as_deref(),
        "assignment_exposures",
        ASSIGNMENT_EXPOSURES,
    )?;
    let all = state
        .fetch_frame(spec, &sql, &origin, settings.source.batch_rows)
        .instrument(info_span!("query", table = "assignment_exposures"))
        .await?;
    Ok(all
        .lazy()
        .filter(col("assigned_at").lt(lit(date.cutoff())))
        .collect()?)
}

/// Every `item_id` of the source's catalogue, through the same `items` query as the run, and
/// where it came from (for messages).
pub async fn item_ids(db: &Db, settings: &Settings) -> Result<(HashSet<i64>, String)> {
    let spec = TABLES
        .iter()
        .find(|t| t.name == "items")
        .context("the data contract has no items table")?;
    let (sql, origin) = contract_query(settings, "items")?;
    let frame = db
        .fetch_frame(spec, &sql, &origin, settings.source.batch_rows)
        .await?;
    let ids = frame
        .column("item_id")?
        .i64()?
        .into_no_null_iter()
        .collect();
    Ok((ids, origin))
}

/// The email address of every consenting user who has one, by user id.
pub async fn contact_emails(db: &Db, settings: &Settings) -> Result<HashMap<i64, String>> {
    let (sql, origin) = query_text(
        settings.source.queries_dir.as_deref(),
        "contact_emails",
        CONTACT_EMAILS,
    )?;
    let context = || format!("query {origin} failed on {}", db.display);
    let mut rows = sqlx::query(&sql).fetch(&db.pool);
    let mut emails = HashMap::new();
    while let Some(row) = rows.try_next().await.with_context(context)? {
        let user: i64 = row.try_get(0).with_context(context)?;
        let email: String = row.try_get(1).with_context(context)?;
        emails.insert(user, email);
    }
    info!(rows = emails.len(), "contact emails read");
    Ok(emails)
}
