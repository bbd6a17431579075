//! The extract stage: every contract table through its query in `sql/queries/`, streamed into
//! polars frames, with the project's own assignment history added to the exposures. Training
//! reads every row; scoring reads a [`Slice`]: the run date's window of each table, and one
//! shard's users.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use models::features::{Breach, Extent, FriendSignals, SharedNeeds, Slicing, TableSpec, TABLES};
use models::{RunDate, Shard, SourceTables, DAY};
use polars::prelude::DataFrame;
use segments::{Campaign, CampaignKind};
use sqlx::Row;
use tracing::{info, info_span, instrument, warn, Instrument};

use crate::config::Settings;
use crate::state::db::{query_text, Db};
use crate::state::frames::{self, ChunkSink, Collect};

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
pub fn contract_query(settings: &Settings, table: &str) -> Result<(String, String)> {
    let builtin = BUILTIN
        .iter()
        .find(|(name, _)| *name == table)
        .map_or("", |(_, sql)| sql);
    query_text(settings.source.queries_dir.as_deref(), table, builtin)
}

/// A contract query as a subquery with a filter on its columns (see [`Slice`]).
const SLICE: &str = include_str!("../../sql/statements/slice.sql");
/// Counts a contract query's rows.
const COUNT: &str = include_str!("../../sql/statements/count_rows.sql");
/// The shard of a user id in SQL, as [`models::shard::shard_of`] computes it.
const SHARD_OF: &str = include_str!("../../sql/statements/shard_of.sql");
/// Whether a user id is a friend of a shard's users.
const FRIENDS_IN_SHARD: &str = include_str!("../../sql/statements/friends_in_shard.sql");

/// What of the source a run reads.
#[derive(Debug, Clone)]
pub enum Slice {
    /// Every row of every table: training on a source within its exposure cap.
    Everything,
    /// What training on a sample of the users reads (see [`training_tables`]): every row of the
    /// users of one shard, all their history, and the rows of other users their features read
    /// (their friends' orders, gifts sent to them).
    Sample {
        users: Shard,
        /// The contract's `friendships` query, which names the friends.
        friendships: String,
    },
    /// What scoring one shard of the night needs (see [`models::features::Slicing`]): no older
    /// event than a feature reads, of the shard's users only. What their features read of
    /// other users comes from [`Slice::Shared`], read once for all shards.
    Scoring { date: RunDate, shard: Shard },
    /// What the night's shards read of other users, once for all of them (see
    /// [`friend_signals`]): the rows of every user that other users' features read (recent
    /// orders, the dropped games' orders), and the tables without users. Nothing else.
    Shared {
        date: RunDate,
        /// The night's dropped games' items, and whether a gift campaign runs (then every
        /// user's consent and suppressions are shared too).
        needs: SharedNeeds,
    },
}

impl Slice {
    /// The users the slice holds, for the contract check.
    pub fn extent(&self) -> Extent {
        match self {
            Slice::Scoring { shard: part, .. } | Slice::Sample { users: part, .. }
                if part.count() > 1 =>
            {
                Extent::SomeUsers
            }
            Slice::Shared { .. } => Extent::SomeUsers,
            _ => Extent::AllUsers,
        }
    }

    /// Whether the slice reads anything of `spec`'s table (else it is empty).
    pub fn reads(&self, spec: &TableSpec) -> bool {
        let s = &spec.slicing;
        match self {
            Slice::Shared { needs, .. } => {
                s.users.is_empty()
                    || s.shared_days.is_some()
                    || !needs.items_of(s).is_empty()
                    || (s.shared_for_gifts && needs.gifts)
            }
            _ => true,
        }
    }

    /// The query of `spec`'s table restricted to the slice: `sql` itself when the slice keeps
    /// every row, else `sql` as a subquery with a filter on the contract's columns.
    pub fn query(&self, spec: &TableSpec, sql: &str) -> String {
        let s = &spec.slicing;
        let mut all = Vec::new();
        match self {
            Slice::Everything => {}
            Slice::Sample { users, friendships } => {
                if users.count() > 1 && !s.users.is_empty() {
                    let mut any = owned_by(s, *users);
                    if s.read_by_friends {
                        let friend = template(FRIENDS_IN_SHARD)
                            .replace("{column}", s.users[0])
                            .replace("{friendships}", friendships.trim().trim_end_matches(';'))
                            .replace("{shard_of}", &shard_sql("friends.user_id", users.count()))
                            .replace("{index}", &users.index().to_string());
                        any.push(friend);
                    }
                    all.push(format!("({})", any.join(" OR ")));
                }
            }
            Slice::Scoring { date, shard } => {
                all.extend(lookback(s, *date));
                if shard.count() > 1 && !s.users.is_empty() {
                    all.push(format!("({})", owned_by(s, *shard).join(" OR ")));
                }
            }
            Slice::Shared { date, needs } => {
                let items = needs.items_of(s);
                all.extend(lookback(s, *date));
                // A table the gifts read whole is not filtered by user.
                let whole = s.users.is_empty() || (s.shared_for_gifts && needs.gifts);
                if !whole {
                    let mut any = Vec::new();
                    if let (Some(time), Some(days)) = (s.time, s.shared_days) {
                        any.push(format!("{time} >= {}", date.cutoff() - days * DAY));
                    }
                    if !items.is_empty() {
                        let ids: Vec<String> = items.iter().map(i64::to_string).collect();
                        any.push(format!("item_id IN ({})", ids.join(", ")));
                    }
                    if any.is_empty() {
                        // Not read at all (see `reads`); a query still returns no row.
                        any.push("1 = 0".to_string());
                    }
                    all.push(format!("({})", any.join(" OR ")));
                }
            }
        }
        if all.is_empty() {
            return sql.to_string();
        }
        restricted(sql, &all.join(" AND "))
    }
}

/// `sql` as a subquery whose rows pass `filter`, a test of its columns (see
/// `sql/statements/slice.sql`): how a query written without parameters is read in part.
pub fn restricted(sql: &str, filter: &str) -> String {
    template(SLICE)
        .replace("{query}", sql.trim().trim_end_matches(';'))
        .replace("{filter}", filter)
}

/// The test that a row's event lies within the window the features read before the run date.
/// Events after the run date are read all the same: the contract check reports them (a clock
/// or a load gone wrong) before it drops them.
fn lookback(s: &Slicing, date: RunDate) -> Option<String> {
    let (time, days) = (s.time?, s.lookback_days?);
    Some(format!("{time} >= {}", date.cutoff() - days * DAY))
}

/// The tests that a row belongs to a user of `shard`, one per column naming users (any of them
/// suffices).
fn owned_by(s: &Slicing, shard: Shard) -> Vec<String> {
    s.users
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let of = shard_sql(column, shard.count());
            // A row without an owner goes to shard 0, where the contract sees it.
            if i == 0 {
                format!("COALESCE({of}, 0) = {}", shard.index())
            } else {
                format!("{of} = {}", shard.index())
            }
        })
        .collect()
}

/// The SQL expression of the shard of the id in `column` among `shards`.
fn shard_sql(column: &str, shards: u32) -> String {
    template(SHARD_OF)
        .replace("{column}", column)
        .replace("{shards}", &shards.to_string())
}

/// A statement template of `sql/statements/` without its comment lines (which name the
/// placeholders the caller fills in).
fn template(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    lines.join("\n").trim().to_string()
}

/// Own assignments as exposures (run on the state database).
const ASSIGNMENT_EXPOSURES: &str = include_str!("../../sql/queries/assignment_exposures.sql");
/// Email addresses of consenting users (only for presets with an email column).
const CONTACT_EMAILS: &str = include_str!("../../sql/queries/contact_emails.sql");

/// Reads every contract table from the source database — all of it, or the `slice` a shard's
/// scores need — and holds it to the data contract as of `date`. With `state` (and
/// `models.own_exposures`), the exposures also hold the assignments of past succeeded runs, so
/// that each night's holdouts become training data.
///
/// The contract fails closed: anything that could let a user who must not be messaged into a
/// list (NULL suppression ids, NULL consent, NULL or duplicate user ids, no users) is an error
/// naming the query, the column and the rows; harmless faults (events after the run date,
/// negative money, unknown arms) are dropped and logged.
#[instrument(name = "extract", skip_all, fields(run_date = %date, rows = tracing::field::Empty))]
pub async fn extract(
    db: &Db,
    state: Option<&Db>,
    settings: &Settings,
    date: RunDate,
    slice: &Slice,
) -> Result<SourceTables> {
    let reads = TABLES
        .iter()
        .map(|spec| table(db, state, settings, date, slice, spec));
    let frames = at_once(settings, reads).await?;
    let rows: usize = frames.iter().map(|(_, f)| f.height()).sum();
    tracing::Span::current().record("rows", rows);
    hold_to_contract(settings, frames, date, slice.extent())
}

/// One contract table of [`extract`], with the assignment history when it is the exposures.
async fn table(
    db: &Db,
    state: Option<&Db>,
    settings: &Settings,
    date: RunDate,
    slice: &Slice,
    spec: &'static TableSpec,
) -> Result<(String, DataFrame)> {
    if !slice.reads(spec) {
        return Ok((spec.name.to_string(), frames::empty(spec)?));
    }
    let mut frame = fetch_slice(db, settings, spec, slice, Collect::default())
        .instrument(info_span!("query", table = spec.name))
        .await?
        .0;
    tracing::debug!(table = spec.name, rows = frame.height(), "extracted");
    if let (Some(state), Some((sql, origin))) =
        (state, own_exposures_query(settings, spec, date, slice)?)
    {
        let own = state
            .fetch_frame(spec, &sql, &origin, settings.source.batch_rows)
            .instrument(info_span!("query", table = "assignment_exposures"))
            .await?;
        info!(
            rows = own.height(),
            "own assignments added to the exposures"
        );
        frame.vstack_mut(&own)?;
    }
    Ok((spec.name.to_string(), frame))
}

/// The reads of the contract's tables, as many at once as the run has threads (each query
/// decodes its rows on its own thread, so the largest table does not wait for the others),
/// started in the reads' order; the results in that order too.
///
/// A read starts as soon as any other ends: results kept in order as they came (`buffered`)
/// held a finished read's slot until every read before it had ended, which left a core idle
/// behind the longest table for a third of the extraction at 1M users.
pub async fn at_once<T>(
    settings: &Settings,
    reads: impl Iterator<Item = impl std::future::Future<Output = Result<T>>>,
) -> Result<Vec<T>> {
    let reads: Vec<_> = reads
        .enumerate()
        .map(|(i, read)| async move { read.await.map(|done| (i, done)) })
        .collect();
    let mut done: Vec<(usize, T)> = futures::stream::iter(reads)
        .buffer_unordered(settings.threads.max(1))
        .try_collect()
        .await?;
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, read)| read).collect())
}

/// Runs a contract table's query, restricted to `slice`, handing its rows to `sink`.
pub async fn fetch_slice<S: ChunkSink>(
    db: &Db,
    settings: &Settings,
    spec: &'static TableSpec,
    slice: &Slice,
    sink: S,
) -> Result<S> {
    let (sql, origin) = contract_query(settings, spec.name)?;
    let sql = slice.query(spec, &sql);
    db.fetch_chunks(spec, &sql, &origin, settings.source.batch_rows, sink)
        .await
}

/// What every user of the night shows the others' features ([`FriendSignals`]), from the
/// night's shared slice ([`Slice::Shared`]), read once for the shards of a night.
#[instrument(name = "friend_signals", skip_all, fields(run_date = %date))]
pub async fn friend_signals(
    db: &Db,
    settings: &Settings,
    date: RunDate,
    needs: &SharedNeeds,
) -> Result<FriendSignals> {
    let slice = Slice::Shared {
        date,
        needs: needs.clone(),
    };
    let reads = TABLES
        .iter()
        .map(|spec| table(db, None, settings, date, &slice, spec));
    let frames = at_once(settings, reads).await?;
    signals_of(settings, frames, date, needs)
}

/// [`FriendSignals`] from the tables of the night's shared slice, held to the contract: a
/// row the contract drops is no friend's order. The shards that own such rows report them, so
/// they are not reported here again.
pub fn signals_of(
    settings: &Settings,
    frames: Vec<(String, DataFrame)>,
    date: RunDate,
    needs: &SharedNeeds,
) -> Result<FriendSignals> {
    let checked = SourceTables::from_named(frames)?.check_contract(date, Extent::SomeUsers)?;
    if !checked.stops.is_empty() {
        return Err(breaks_contract(settings, &checked.stops));
    }
    let signals = FriendSignals::compute(&checked.tables, date.cutoff(), needs)?;
    info!(users = signals.users(), "friends' signals computed");
    Ok(signals)
}

/// Holds the extracted tables (all users', or one shard's: `extent`) to the data contract as of
/// `date`: harmless faults are dropped and logged, and what could let a user who must not be
/// messaged into a list stops the run.
pub fn hold_to_contract(
    settings: &Settings,
    frames: Vec<(String, DataFrame)>,
    date: RunDate,
    extent: Extent,
) -> Result<SourceTables> {
    let checked = SourceTables::from_named(frames)?.check_contract(date, extent)?;
    for d in &checked.dropped {
        warn!(
            table = d.table,
            column = d.column,
            rows = d.rows,
            "dropped rows that break the data contract: {d}"
        );
    }
    if !checked.stops.is_empty() {
        return Err(breaks_contract(settings, &checked.stops));
    }
    Ok(checked.tables)
}

/// The error of a source that breaks the data contract: every breach, with its query.
pub fn breaks_contract(settings: &Settings, stops: &[Breach]) -> anyhow::Error {
    let each: Vec<String> = stops
        .iter()
        .map(|b| {
            let origin = contract_query(settings, b.table).map_or(String::new(), |(_, o)| o);
            format!("query {origin}: {b}")
        })
        .collect();
    anyhow::anyhow!(
        "the source breaks the data contract, so nobody is selected: {}",
        each.join("; ")
    )
}

/// Counts the rows of the `users` query, for the number of shards a memory budget needs.
pub async fn count_users(db: &Db, settings: &Settings) -> Result<u64> {
    let (sql, origin) = contract_query(settings, "users")?;
    count_rows(db, &sql, &origin).await
}

/// Counts the rows of a query (from `origin`, for messages).
async fn count_rows(db: &Db, sql: &str, origin: &str) -> Result<u64> {
    let count = template(COUNT).replace("{query}", sql.trim().trim_end_matches(';'));
    let n: i64 = sqlx::query_scalar(&count)
        .fetch_one(&db.pool)
        .await
        .with_context(|| format!("query {origin} failed on {}", db.display))?;
    Ok(n.max(0) as u64)
}

/// The tables training reads, and which of the users they hold.
#[derive(Debug)]
pub struct TrainingTables {
    pub tables: SourceTables,
    /// Every user ([`Shard::WHOLE`]), or the sample of them that training reads when the
    /// exposures are more than `models.max_training_exposures`.
    pub sample: Shard,
}

/// The tables training as of `date` reads. Every row, when the source's exposures (with
/// `state`, and the assignment history's) are at most `models.max_training_exposures`; else a
/// sample of the users, the first of as many shards as bring them under the cap (the shards'
/// fixed hash of `user_id`, so the sample is the same on every run), with every row their
/// features read (see [`Slice::Sample`]). Training's time and memory then follow the cap, not
/// the source.
#[instrument(name = "training_tables", skip_all, fields(as_of = %date))]
pub async fn training_tables(
    db: &Db,
    state: Option<&Db>,
    settings: &Settings,
    date: RunDate,
) -> Result<TrainingTables> {
    let (sql, origin) = contract_query(settings, "campaign_exposures")?;
    let mut exposures = count_rows(db, &sql, &origin).await?;
    let spec = TABLES
        .iter()
        .find(|t| t.name == "campaign_exposures")
        .context("the data contract has no campaign_exposures table")?;
    if let (Some(state), Some((sql, origin))) = (
        state,
        own_exposures_query(settings, spec, date, &Slice::Everything)?,
    ) {
        exposures += count_rows(state, &sql, &origin).await?;
    }
    let cap = settings.models.max_training_exposures;
    let parts = exposures
        .div_ceil(cap)
        .clamp(1, u64::from(models::shard::MAX_SHARDS)) as u32;
    let sample = Shard::new(0, parts).context("the training sample")?;
    let slice = if parts == 1 {
        Slice::Everything
    } else {
        info!(exposures, cap, sample = %sample, "more exposures than models.max_training_exposures: training reads a sample of the users");
        Slice::Sample {
            users: sample,
            friendships: contract_query(settings, "friendships")?.0,
        }
    };
    let tables = extract(db, state, settings, date, &slice).await?;
    Ok(TrainingTables { tables, sample })
}

/// What of other users the night's campaigns read (see [`Slice::Shared`]): the items of the
/// dropped games, and with a gift campaign, who may receive a gift and who holds its items.
pub async fn shared_needs(
    db: &Db,
    settings: &Settings,
    campaigns: &[Campaign],
    date: RunDate,
) -> Result<SharedNeeds> {
    let gifts: Vec<&Campaign> = campaigns
        .iter()
        .filter(|c| c.kind == CampaignKind::Gift)
        .collect();
    let dropped: Vec<i64> = campaigns
        .iter()
        .filter_map(|c| match c.kind {
            CampaignKind::Drop { item_id } => Some(item_id),
            _ => None,
        })
        .collect();
    let mut needs = SharedNeeds {
        gifts: !gifts.is_empty(),
        ..SharedNeeds::default()
    };
    if dropped.is_empty() && gifts.iter().all(|c| c.items.is_none()) {
        return Ok(needs);
    }
    let (items, origin) = items(db, settings).await?;
    // Every item of the dropped games: a user's affinity to a drop counts friends owning its
    // game.
    let ids = items.column("item_id")?.i64()?;
    let games = items.column("game_id")?.i64()?;
    let dropped_games: HashSet<i64> = ids
        .iter()
        .zip(games.iter())
        .filter_map(|(i, g)| i.filter(|i| dropped.contains(i)).and(g))
        .collect();
    needs.drop_items = ids
        .iter()
        .zip(games.iter())
        .filter_map(|(i, g)| g.filter(|g| dropped_games.contains(g)).and(i))
        .collect();
    // A gift campaign's items, as its `[items]` names them: a gift's item is one its recipient
    // does not own.
    let catalogue = segments::items::Catalogue::new(&items, date.day())
        .with_context(|| format!("the items of query {origin}"))?;
    for c in gifts {
        if let Some(listed) = &c.items {
            needs.gift_items.extend(catalogue.resolve(&c.id, listed)?);
        }
    }
    Ok(needs)
}

/// The query of the project's own assignments as exposures (run on the state database), for
/// the exposures table when `models.own_exposures` is on, and where it came from: those of
/// nights before `date` only. A night's assignments are stamped with its cutoff (see
/// [`super::record`]), so a re-run of a night never sees its own earlier run, however early
/// either ran.
pub fn own_exposures_query(
    settings: &Settings,
    spec: &TableSpec,
    date: RunDate,
    slice: &Slice,
) -> Result<Option<(String, String)>> {
    if spec.name != "campaign_exposures" || !settings.models.own_exposures {
        return Ok(None);
    }
    let (sql, origin) = query_text(
        settings.source.queries_dir.as_deref(),
        "assignment_exposures",
        ASSIGNMENT_EXPOSURES,
    )?;
    let sliced = slice.query(spec, &sql);
    let earlier = template(SLICE)
        .replace("{query}", sliced.trim().trim_end_matches(';'))
        .replace("{filter}", &format!("assigned_at < {}", date.cutoff()));
    Ok(Some((earlier, origin)))
}

/// Every `item_id` of the source's catalogue, through the same `items` query as the run, and
/// where it came from (for messages).
pub async fn item_ids(db: &Db, settings: &Settings) -> Result<(HashSet<i64>, String)> {
    let (frame, origin) = items(db, settings).await?;
    let ids = frame
        .column("item_id")?
        .i64()?
        .into_no_null_iter()
        .collect();
    Ok((ids, origin))
}

/// How many rows the `friendships` query returns, and where the query came from: a gift
/// campaign has no one to suggest without any.
pub async fn friendship_rows(db: &Db, settings: &Settings) -> Result<(u64, String)> {
    let (sql, origin) = contract_query(settings, "friendships")?;
    Ok((count_rows(db, &sql, &origin).await?, origin))
}

/// The catalogue through the `items` query, and where the query came from.
async fn items(db: &Db, settings: &Settings) -> Result<(DataFrame, String)> {
    let spec = TABLES
        .iter()
        .find(|t| t.name == "items")
        .context("the data contract has no items table")?;
    let (sql, origin) = contract_query(settings, "items")?;
    let frame = db
        .fetch_frame(spec, &sql, &origin, settings.source.batch_rows)
        .await?;
    Ok((frame, origin))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard expression of the SQL, evaluated by SQLite, against the Rust function.
    #[test]
    fn the_sql_shard_of_a_user_is_the_rust_one() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let ids = [
            0i64,
            1,
            2,
            7,
            65_536,
            2_147_483_647,
            2_147_483_648,
            -1,
            -977,
            i64::MAX,
        ]
        .into_iter()
        .chain((0..2_000).map(|k| k * 7_919 + 13));
        for count in [1u32, 2, 7, 8, 4096] {
            for id in ids.clone() {
                let expr = shard_sql(&id.to_string(), count);
                let got: i64 = db
                    .query_row(&format!("SELECT {expr}"), [], |r| r.get(0))
                    .unwrap();
                assert_eq!(
                    got,
                    i64::from(models::shard::shard_of(id, count)),
                    "{id} of {count}"
                );
            }
        }
        let null: Option<i64> = db
            .query_row(&format!("SELECT {}", shard_sql("NULL", 8)), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(null, None);
    }

    /// A training sample holds every row its users' features and outcomes read: on a demo
    /// source, the sample's users and exposures are those of its shard, and their features as of
    /// each exposure and as of the run date, and their exposures' outcomes, are those every row
    /// gives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_training_sample_holds_every_row_its_users_features_read() {
        use models::features::{featurize, purchased_within};
        use models::CategoricalLevels;
        use polars::prelude::*;

        let path = std::env::temp_dir().join(format!("sample-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}", path.display());
        let db = Db::connect(&url, true).await.unwrap();
        let date: RunDate = "2026-11-20".parse().unwrap();
        let spec = crate::tools::demo::DemoSpec {
            users: 3_000,
            seed: 11,
            anchor: date.cutoff(),
        };
        crate::tools::demo::ensure(&db, spec).await.unwrap();
        let overrides = crate::config::Overrides {
            database_url: Some(url),
            ..Default::default()
        };
        let mut s = crate::config::load(None, &overrides).unwrap();
        let whole = extract(&db, None, &s, date, &Slice::Everything)
            .await
            .unwrap();
        let exposures = whole.campaign_exposures.height() as u64;
        s.models.max_training_exposures = exposures.div_ceil(4);
        let sampled = training_tables(&db, None, &s, date).await.unwrap();
        let sample = sampled.sample;
        assert_eq!(sample, Shard::new(0, 4).unwrap(), "{exposures} exposures");
        let part = sampled.tables;

        let ids = |f: &DataFrame| -> Vec<i64> {
            let mut v: Vec<i64> = f
                .column("user_id")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect();
            v.sort_unstable();
            v
        };
        let in_sample: Vec<i64> = ids(&whole.users)
            .into_iter()
            .filter(|&u| sample.holds(u))
            .collect();
        assert!(in_sample.len() > 500, "{} users sampled", in_sample.len());
        assert_eq!(ids(&part.users), in_sample);
        let mut own: Vec<i64> = ids(&whole.campaign_exposures)
            .into_iter()
            .filter(|&u| sample.holds(u))
            .collect();
        own.sort_unstable();
        assert_eq!(ids(&part.campaign_exposures), own);
        // Other users' orders are there, and fewer than all of them.
        let owners = |f: &DataFrame| {
            f.column("user_id")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .filter(|&u| !sample.holds(u))
                .count()
        };
        assert!(owners(&part.purchases) > 100, "{}", owners(&part.purchases));
        assert!(owners(&part.purchases) < owners(&whole.purchases));

        // The sample's exposures, and its users as of the run date.
        let cutoffs = part
            .campaign_exposures
            .clone()
            .lazy()
            .select([col("user_id"), col("assigned_at").alias("cutoff")])
            .collect()
            .unwrap()
            .vstack(
                &part
                    .users
                    .clone()
                    .lazy()
                    .select([
                        col("user_id"),
                        lit(date.cutoff()).cast(DataType::Int64).alias("cutoff"),
                    ])
                    .collect()
                    .unwrap(),
            )
            .unwrap()
            .lazy()
            .with_row_index("row_id", None)
            .with_column(col("row_id").cast(DataType::Int64))
            .collect()
            .unwrap();
        let levels = CategoricalLevels::from_users(&whole.users).unwrap();
        let names = models::features::feature_names();
        let matrix = |src: &SourceTables| -> Vec<u64> {
            let f = featurize(src, &cutoffs, &levels, 2).unwrap();
            f.matrix(&names)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let features = matrix(&part);
        assert_eq!(features.len(), cutoffs.height() * names.len());
        assert!(features == matrix(&whole), "the sample's features differ");
        let bought = purchased_within(&part, &cutoffs, 7).unwrap();
        assert!(bought.iter().any(|&b| b) && !bought.iter().all(|&b| b));
        assert_eq!(bought, purchased_within(&whole, &cutoffs, 7).unwrap());

        // Within the cap, training reads everything.
        s.models.max_training_exposures = exposures;
        let all = training_tables(&db, None, &s, date).await.unwrap();
        assert_eq!(all.sample, Shard::WHOLE);
        assert_eq!(all.tables.purchases.height(), whole.purchases.height());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_scoring_slice_filters_the_contract_columns() {
        let date: RunDate = "2026-11-20".parse().unwrap();
        let spec = |name: &str| TABLES.iter().find(|t| t.name == name).unwrap();
        let whole = Slice::Scoring {
            date,
            shard: Shard::WHOLE,
        };
        // Items are read whole; users of one shard are all users.
        assert_eq!(whole.query(spec("items"), "SELECT 1"), "SELECT 1");
        assert_eq!(whole.query(spec("users"), "SELECT 1"), "SELECT 1");
        let cutoff = date.cutoff();
        let engagement = whole.query(spec("engagement_daily"), "SELECT x FROM t;");
        assert!(
            engagement.contains("SELECT x FROM t\n) AS contract"),
            "{engagement}"
        );
        assert!(
            engagement.ends_with(&format!("WHERE day >= {}", cutoff - 366 * DAY)),
            "{engagement}"
        );
        let shard = Slice::Scoring {
            date,
            shard: Shard::new(2, 8).unwrap(),
        };
        let purchases = shard.query(spec("purchases"), "SELECT 1");
        assert!(
            purchases.contains("COALESCE((((((user_id % "),
            "{purchases}"
        );
        assert!(
            purchases.contains("% 8), 0) = 2 OR (((((recipient_user_id % "),
            "{purchases}"
        );
        assert!(purchases.ends_with("% 8) = 2)"), "{purchases}");
        // What the shards read of other users: recent orders and the dropped games' orders,
        // and the items; not the other tables.
        let shared = Slice::Shared {
            date,
            needs: SharedNeeds {
                drop_items: vec![5, 6],
                gifts: false,
                gift_items: vec![],
            },
        };
        let purchases = shared.query(spec("purchases"), "SELECT 1");
        assert!(
            purchases.ends_with(&format!(
                "WHERE (purchased_at >= {} OR item_id IN (5, 6))",
                cutoff - 31 * DAY
            )),
            "{purchases}"
        );
        assert!(shared.reads(spec("items")) && shared.reads(spec("purchases")));
        assert!(!shared.reads(spec("users")) && !shared.reads(spec("engagement_daily")));
        assert_eq!(
            Slice::Everything.query(spec("purchases"), "SELECT 1"),
            "SELECT 1"
        );
    }
}
