//! The extract stage: every contract table through its query in `sql/queries/`, streamed into
//! polars frames.

use anyhow::Result;
use models::features::TABLES;
use models::SourceTables;
use tracing::{info, info_span, Instrument};

use crate::db::{query_text, Db};
use crate::settings::Settings;

/// The extraction queries built into the binary, by table name.
const BUILTIN: &[(&str, &str)] = &[
    ("users", include_str!("../sql/queries/users.sql")),
    (
        "suppressions",
        include_str!("../sql/queries/suppressions.sql"),
    ),
    ("items", include_str!("../sql/queries/items.sql")),
    ("purchases", include_str!("../sql/queries/purchases.sql")),
    (
        "engagement_daily",
        include_str!("../sql/queries/engagement_daily.sql"),
    ),
    ("wishlist", include_str!("../sql/queries/wishlist.sql")),
    (
        "friendships",
        include_str!("../sql/queries/friendships.sql"),
    ),
    (
        "campaign_exposures",
        include_str!("../sql/queries/campaign_exposures.sql"),
    ),
];

/// Reads every contract table from the source database.
pub async fn extract(db: &Db, settings: &Settings) -> Result<SourceTables> {
    let mut frames = Vec::with_capacity(TABLES.len());
    for spec in TABLES {
        let builtin = BUILTIN
            .iter()
            .find(|(name, _)| *name == spec.name)
            .map_or("", |(_, sql)| sql);
        let (sql, origin) = query_text(settings.queries_dir.as_deref(), spec.name, builtin)?;
        let frame = db
            .fetch_frame(spec, &sql, &origin, settings.batch_rows)
            .instrument(info_span!("query", table = spec.name))
            .await?;
        info!(table = spec.name, rows = frame.height(), "extracted");
        frames.push((spec.name.to_string(), frame));
    }
    Ok(SourceTables::from_named(frames)?)
}
