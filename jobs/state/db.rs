//! Databases through sqlx: SQLite (the embedded default) and PostgreSQL, chosen by the URL
//! scheme. Connects with redacted errors, runs migrations, reads query results into polars
//! frames (through [`super::frames`]), and writes rows in multi-row statements.
//!
//! Every statement's text lives under `sql/`; this module only adds placeholders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use models::features::TableSpec;
use polars::prelude::*;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::ConnectOptions as _;
use sqlx::{AnyPool, Executor as _};

use super::frames;
use crate::redact::redact;

/// Statements run on every new SQLite connection.
const SQLITE_CONNECTION: &str = include_str!("../../sql/statements/sqlite_connection.sql");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool and what it is connected to.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// The URL with any password replaced, for messages.
    pub display: String,
    /// PostgreSQL's own pool, for what the generic driver cannot do (COPY). Connects on first
    /// use.
    pg: Option<sqlx::PgPool>,
    /// The SQLite file, which extraction reads through SQLite's own API.
    sqlite: Option<PathBuf>,
}

impl Db {
    /// Closes the pools, waiting for their connections: SQLite checkpoints its write-ahead log
    /// into the file and removes it when the last connection closes, so a finished job leaves a
    /// database that is its file alone (a copy of the file is a copy of the database).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }

    /// A connection of its own, outside the pools, for a session-scoped advisory lock: closing
    /// it (or the process dying) releases the lock. `None` when the database is not PostgreSQL.
    pub async fn dedicated_pg_connection(&self) -> Result<Option<sqlx::PgConnection>> {
        use sqlx::Connection as _;
        let Some(pg) = &self.pg else {
            return Ok(None);
        };
        let conn = sqlx::PgConnection::connect_with(&pg.connect_options())
            .await
            .with_context(|| format!("cannot connect to database {}", self.display))?;
        Ok(Some(conn))
    }
}

impl std::fmt::Debug for Db {
    // By hand: the pools' options hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .field("display", &self.display)
            .finish()
    }
}

impl Db {
    /// Connects to `url`. A SQLite file is created only when `create` is set, so that a typo in
    /// a production URL is an error rather than a new empty database.
    pub async fn connect(url: &str, create: bool) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let display = redact(url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = sqlite_path(&url);
            if !create && !path.exists() {
                bail!(
                    "database file {} does not exist ({display})",
                    path.display()
                );
            }
            if create {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create folder {}", dir.display()))?;
                }
                if !url.contains("mode=") {
                    url.push_str(if url.contains('?') {
                        "&mode=rwc"
                    } else {
                        "?mode=rwc"
                    });
                }
            }
        }
        // Statement logging would print whole statements into the job's logs: off.
        let pg = match backend {
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_lazy_with(
                        sqlx::postgres::PgConnectOptions::from_str(&url)
                            .with_context(|| format!("invalid database URL {display}"))?
                            .log_statements(log::LevelFilter::Off),
                    ),
            ),
            Backend::Sqlite => None,
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid database URL {display}"))?
            .log_statements(log::LevelFilter::Off)
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60));
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_CONNECTION).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to database {display}"))?;
        let sqlite = (backend == Backend::Sqlite).then(|| sqlite_path(&url));
        Ok(Db {
            pool,
            backend,
            display,
            pg,
            sqlite,
        })
    }

    /// Creates or updates the demo source schema (the contract tables and the demo's own).
    pub async fn migrate_source(&self) -> Result<()> {
        let mut m = sqlx::migrate!("sql/migrations/source");
        // Source and state migrations may share one database: each set ignores the other's.
        m.set_ignore_missing(true);
        m.run(&self.pool)
            .await
            .with_context(|| format!("cannot migrate the source schema in {}", self.display))
    }

    /// Creates or updates the project's own tables (run ledger, assignments).
    pub async fn migrate_state(&self) -> Result<()> {
        let mut m = sqlx::migrate!("sql/migrations/state");
        m.set_ignore_missing(true);
        m.run(&self.pool)
            .await
            .with_context(|| format!("cannot migrate the state tables in {}", self.display))
    }

    /// Runs `sql` and reads its rows into a frame, `batch_rows` rows per chunk, checking that
    /// it returns the columns of `spec` in order and values of their kinds (see
    /// [`super::frames`]). `origin` names the query in errors.
    pub async fn fetch_frame(
        &self,
        spec: &'static TableSpec,
        sql: &str,
        origin: &str,
        batch_rows: usize,
    ) -> Result<DataFrame> {
        let all = self
            .fetch_chunks(spec, sql, origin, batch_rows, frames::Collect::default())
            .await?;
        Ok(all.0)
    }

    /// Runs a query whose columns are those of `spec`, handing its rows to `sink` in chunks of
    /// `batch_rows` (see [`frames`]); returns the sink.
    pub async fn fetch_chunks<S: frames::ChunkSink>(
        &self,
        spec: &'static TableSpec,
        sql: &str,
        origin: &str,
        batch_rows: usize,
        sink: S,
    ) -> Result<S> {
        let q = frames::Query {
            spec,
            sql,
            origin,
            display: &self.display,
            batch_rows,
        };
        match (&self.pg, &self.sqlite) {
            (Some(pg), _) => frames::pg_chunks(pg, q, sink).await,
            (None, Some(path)) => frames::sqlite_chunks(path, q, sink).await,
            (None, None) => bail!("no reader for {}", self.display),
        }
    }

    /// Inserts rows with a multi-row statement: `insert_sql` is the statement up to `VALUES`,
    /// and each row binds `row.len()` values. Statements stay under both SQLite's and
    /// PostgreSQL's bind-parameter limits; all rows go in one transaction.
    pub async fn insert(&self, insert_sql: &str, rows: &[Vec<Value>]) -> Result<()> {
        let Some(width) = rows.first().map(Vec::len) else {
            return Ok(());
        };
        // SQLite resolves `$N` names by a linear search per parameter, so long statements cost
        // quadratic time there: it gets anonymous `?` placeholders and shorter statements.
        let (per_statement, numbered) = match self.backend {
            Backend::Sqlite => ((4_000 / width).max(1), false),
            Backend::Postgres => ((30_000 / width).max(1), true),
        };
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(per_statement) {
            let sql = values_statement(insert_sql, width, chunk.len(), numbered);
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for v in row {
                    q = match v {
                        Value::Int(i) => q.bind(*i),
                        Value::OptInt(i) => q.bind(*i),
                        Value::Float(f) => q.bind(*f),
                        Value::OptFloat(f) => q.bind(*f),
                        Value::Text(s) => q.bind(s.clone()),
                        Value::OptText(s) => q.bind(s.clone()),
                        Value::Bool(b) => q.bind(*b),
                    };
                }
            }
            q.execute(&mut *tx).await.with_context(|| {
                format!(
                    "insert failed on {}: {}",
                    self.display,
                    first_line(insert_sql)
                )
            })?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Db {
    /// Writes many rows: PostgreSQL's `COPY … FROM STDIN` (`copy_sql`, CSV) where the database
    /// is PostgreSQL, else one prepared single-row insert run for every row, in one transaction
    /// of a connection of its own ([`sqlite_bulk_insert`]). Either way all rows or none are
    /// written.
    pub async fn bulk_insert(
        &self,
        copy_sql: &str,
        insert_sql: &str,
        rows: Vec<Vec<Value>>,
    ) -> Result<()> {
        let Some(pg) = &self.pg else {
            let Some(path) = self.sqlite.clone() else {
                return self.insert(insert_sql, &rows).await;
            };
            let sql = values_statement(insert_sql, rows.first().map_or(0, Vec::len), 1, false);
            let context = format!(
                "insert failed on {}: {}",
                self.display,
                first_line(insert_sql)
            );
            return tokio::task::spawn_blocking(move || sqlite_bulk_insert(&path, &sql, &rows))
                .await?
                .context(context);
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut csv = csv::Writer::from_writer(Vec::new());
        for row in &rows {
            let fields = row.iter().map(|v| match v {
                Value::Int(i) => i.to_string(),
                Value::OptInt(i) => i.map(|i| i.to_string()).unwrap_or_default(),
                Value::Float(f) => f.to_string(),
                Value::OptFloat(f) => f.map(|f| f.to_string()).unwrap_or_default(),
                Value::Text(s) => s.clone(),
                Value::OptText(s) => s.clone().unwrap_or_default(),
                Value::Bool(b) => b.to_string(),
            });
            csv.write_record(fields)?;
        }
        let data = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let context = || format!("COPY failed on {}: {}", self.display, first_line(copy_sql));
        let mut conn = pg.acquire().await.with_context(context)?;
        let mut copy = conn.copy_in_raw(copy_sql).await.with_context(context)?;
        // Sent in chunks: the server acknowledges nothing until the end, and one huge
        // message would be held twice in memory.
        for chunk in data.chunks(1 << 20) {
            if let Err(e) = copy.send(chunk).await {
                let _ = copy.abort(format!("{e}")).await;
                return Err(e).with_context(context);
            }
        }
        copy.finish().await.with_context(context)?;
        Ok(())
    }
}

/// Runs the one-row insert `sql` for every row, prepared once, in one transaction of a new
/// connection (with the pool's pragmas). Through the `Any` driver every value of a multi-row
/// statement is boxed and re-bound; a prepared statement binds in place, which made recording
/// a night's assignments at 1M users several times faster.
fn sqlite_bulk_insert(path: &Path, sql: &str, rows: &[Vec<Value>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(SQLITE_CONNECTION)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare(sql)?;
        for row in rows {
            for (i, v) in row.iter().enumerate() {
                let at = i + 1;
                match v {
                    Value::Int(x) => insert.raw_bind_parameter(at, x)?,
                    Value::OptInt(x) => insert.raw_bind_parameter(at, x)?,
                    Value::Float(x) => insert.raw_bind_parameter(at, x)?,
                    Value::OptFloat(x) => insert.raw_bind_parameter(at, x)?,
                    Value::Text(x) => insert.raw_bind_parameter(at, x)?,
                    Value::OptText(x) => insert.raw_bind_parameter(at, x)?,
                    Value::Bool(x) => insert.raw_bind_parameter(at, x)?,
                }
            }
            insert.raw_execute()?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// One bound value of an inserted row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    OptFloat(Option<f64>),
    Text(String),
    OptText(Option<String>),
    Bool(bool),
}

fn first_line(sql: &str) -> &str {
    sql.lines()
        .find(|l| !l.trim_start().starts_with("--"))
        .unwrap_or(sql)
        .trim()
}

/// `insert_sql` followed by `rows` groups of `width` placeholders: numbered (`$1`) for
/// PostgreSQL, anonymous (`?`) for SQLite.
fn values_statement(insert_sql: &str, width: usize, rows: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(insert_sql.len() + rows * width * 7);
    sql.push_str(insert_sql.trim_end());
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for c in 0..width {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// The file path of a `sqlite:` URL (`sqlite://relative`, `sqlite:///absolute`, `sqlite:path`).
pub fn sqlite_path(url: &str) -> PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

/// Reads a query: from `dir` when the settings name one (a deployment's own SQL), else the copy
/// built into the binary.
pub fn query_text(dir: Option<&Path>, name: &str, builtin: &str) -> Result<(String, String)> {
    match dir {
        Some(dir) => {
            let path = dir.join(format!("{name}.sql"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read query {}", path.display()))?;
            Ok((text, path.display().to_string()))
        }
        None => Ok((builtin.to_string(), format!("sql/queries/{name}.sql"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_statement_numbers_placeholders() {
        assert_eq!(
            values_statement("INSERT INTO t (a, b) VALUES\n", 2, 2, true),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            values_statement("INSERT INTO t (a) VALUES", 1, 2, false),
            "INSERT INTO t (a) VALUES (?), (?)"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://demo/source.db"),
            PathBuf::from("demo/source.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(sqlite_path("sqlite:x.db"), PathBuf::from("x.db"));
    }
}
