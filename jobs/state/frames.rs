//! Query results into polars frames: the extraction stage's hot path. Each backend's rows are
//! decoded straight into typed column buffers, checked against the data contract's column kinds
//! as they are read:
//!
//! - SQLite through its C API (rusqlite), on a blocking thread, each value read as the type
//!   SQLite stored it;
//! - PostgreSQL with `COPY (query) TO STDOUT` in text format, parsed as it streams.
//!
//! The generic sqlx driver, which these replace on this path, built a dynamically typed row of
//! owned values for every row and was several times slower. sqlx stays the database layer for
//! everything else (state, migrations, the demo's writes).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use models::features::{ColumnKind, TableSpec};
use polars::prelude::*;
use sqlx::{Column as _, Executor as _};

/// Where the chunks of a query's rows go, `batch_rows` rows at a time, as frames with the
/// columns of the table's spec.
pub trait ChunkSink: Send + 'static {
    fn push(&mut self, chunk: DataFrame) -> Result<()>;
}

/// The chunks stacked into one frame.
#[derive(Debug, Default)]
pub struct Collect(pub DataFrame);

impl ChunkSink for Collect {
    fn push(&mut self, chunk: DataFrame) -> Result<()> {
        if self.0.width() == 0 {
            self.0 = chunk;
        } else if chunk.height() > 0 {
            self.0.vstack_mut_owned(chunk)?;
        }
        Ok(())
    }
}

/// A frame without rows with the columns of `spec`, typed as a query's would be.
pub fn empty(spec: &TableSpec) -> Result<DataFrame> {
    Ok(Columns::new(spec, 1, Collect::default()).finish()?.0)
}

/// A query whose rows have the columns of a table of the data contract.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub spec: &'static TableSpec,
    pub sql: &'a str,
    /// Where the query came from (a file), for errors.
    pub origin: &'a str,
    /// The database it runs on (redacted), for errors.
    pub display: &'a str,
    /// Rows per chunk handed to the sink.
    pub batch_rows: usize,
}

impl Query<'_> {
    fn failed(&self) -> String {
        format!("query {} failed on {}", self.origin, self.display)
    }
}

/// Runs `q` on the SQLite file at `path` (read-only), handing its rows to `sink` in chunks;
/// returns the sink.
pub async fn sqlite_chunks<S: ChunkSink>(path: &Path, q: Query<'_>, sink: S) -> Result<S> {
    let (path, sql, failed, spec, batch_rows) = (
        path.to_path_buf(),
        q.sql.to_string(),
        q.failed(),
        q.spec,
        q.batch_rows,
    );
    tokio::task::spawn_blocking(move || {
        read_sqlite(&path, spec, &sql, batch_rows, sink).context(failed)
    })
    .await
    .context("the SQLite reader stopped")?
}

fn read_sqlite<S: ChunkSink>(
    path: &Path,
    spec: &TableSpec,
    sql: &str,
    batch_rows: usize,
    sink: S,
) -> Result<S> {
    use rusqlite::types::ValueRef;
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A writer (the demo, another run recording its assignments) may hold the lock a moment.
    conn.busy_timeout(Duration::from_secs(30))?;
    let mut stmt = conn.prepare(sql)?;
    check_names(spec, &stmt.column_names())?;
    let mut rows = stmt.query([])?;
    let mut columns = Columns::new(spec, batch_rows, sink);
    while let Some(row) = rows.next()? {
        for (i, buffer) in columns.buffers.iter_mut().enumerate() {
            let value = row.get_ref(i)?;
            match (buffer, value) {
                (buffer, ValueRef::Null) => buffer.push_null(),
                (Buffer::Int(v), ValueRef::Integer(x)) => v.push(Some(x)),
                (Buffer::Float(v), ValueRef::Real(x)) => v.push(Some(x)),
                // SQLite stores a whole number in a REAL column as an integer when it can.
                (Buffer::Float(v), ValueRef::Integer(x)) => v.push(Some(x as f64)),
                (Buffer::Text(v), ValueRef::Text(x)) => {
                    v.push(Some(String::from_utf8_lossy(x).into_owned()))
                }
                _ => bail!(
                    "column {} must hold {} values, got {}",
                    spec.columns[i].0,
                    kind_name(spec.columns[i].1),
                    value.data_type().to_string().to_lowercase()
                ),
            }
        }
        columns.row_done()?;
    }
    columns.finish()
}

/// Runs `q` on PostgreSQL with `COPY (sql) TO STDOUT`, handing its rows to `sink` in chunks;
/// returns the sink. The query's columns are checked first (from the statement's
/// description), so a wrong query fails before any row is read.
pub async fn pg_chunks<S: ChunkSink>(pool: &sqlx::PgPool, q: Query<'_>, sink: S) -> Result<S> {
    let (spec, sql, batch_rows) = (q.spec, q.sql, q.batch_rows);
    let failed = || q.failed();
    let mut conn = pool.acquire().await.with_context(failed)?;
    let described = (&mut *conn).describe(sql).await.with_context(failed)?;
    let names: Vec<&str> = described.columns().iter().map(|c| c.name()).collect();
    check_names(spec, &names).with_context(failed)?;
    // The query as written, in parentheses on lines of their own (a trailing `-- comment`
    // stays a comment), without the `;` COPY does not take.
    let body = sql.trim_end().trim_end_matches(';');
    let copy = format!("COPY (\n{body}\n) TO STDOUT");
    let mut stream = conn.copy_out_raw(&copy).await.with_context(failed)?;
    let mut columns = Columns::new(spec, batch_rows, sink);
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.try_next().await.with_context(failed)? {
        carry.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = memchr(b'\n', &carry[start..]) {
            columns
                .push_text_row(&carry[start..start + end])
                .with_context(failed)?;
            start += end + 1;
        }
        carry.drain(..start);
    }
    if !carry.is_empty() {
        columns.push_text_row(&carry).with_context(failed)?;
    }
    columns.finish().with_context(failed)
}

fn memchr(byte: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == byte)
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Int => "integer",
        ColumnKind::Float => "number",
        ColumnKind::Text => "text",
    }
}

/// Checks that a query returns the columns of `spec`, in order.
fn check_names<S: AsRef<str>>(spec: &TableSpec, got: &[S]) -> Result<()> {
    let got: Vec<&str> = got.iter().map(AsRef::as_ref).collect();
    let want: Vec<&str> = spec.columns.iter().map(|(n, _)| *n).collect();
    if got != want {
        bail!(
            "the query must return the columns {} but returns {}",
            want.join(", "),
            got.join(", ")
        );
    }
    Ok(())
}

enum Buffer {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Buffer {
    fn push_null(&mut self) {
        match self {
            Buffer::Int(v) => v.push(None),
            Buffer::Float(v) => v.push(None),
            Buffer::Text(v) => v.push(None),
        }
    }
}

/// Typed column buffers, handed to the sink as a frame chunk every `batch_rows` rows.
struct Columns<'a, S> {
    spec: &'a TableSpec,
    buffers: Vec<Buffer>,
    rows: usize,
    batch_rows: usize,
    sink: S,
    /// Whether a chunk went to the sink yet: an empty result still gives it one (empty, with
    /// the columns).
    pushed: bool,
}

impl<'a, S: ChunkSink> Columns<'a, S> {
    fn new(spec: &'a TableSpec, batch_rows: usize, sink: S) -> Self {
        let buffers = spec
            .columns
            .iter()
            .map(|(_, kind)| match kind {
                ColumnKind::Int => Buffer::Int(Vec::new()),
                ColumnKind::Float => Buffer::Float(Vec::new()),
                ColumnKind::Text => Buffer::Text(Vec::new()),
            })
            .collect();
        Columns {
            spec,
            buffers,
            rows: 0,
            batch_rows: batch_rows.max(1),
            sink,
            pushed: false,
        }
    }

    /// A row of PostgreSQL's text COPY format: tab-separated, `\N` for NULL, text escaped
    /// with backslashes.
    fn push_text_row(&mut self, line: &[u8]) -> Result<()> {
        let mut fields = line.split(|&b| b == b'\t');
        for (i, buffer) in self.buffers.iter_mut().enumerate() {
            let name = self.spec.columns[i].0;
            let field = fields
                .next()
                .with_context(|| format!("a row ends before column {name}"))?;
            let null = field == b"\\N";
            let bad = || {
                format!(
                    "column {name} must hold {} values, got {:?}",
                    kind_name(self.spec.columns[i].1),
                    String::from_utf8_lossy(field)
                )
            };
            match buffer {
                Buffer::Int(v) => v.push(number(field, null).with_context(bad)?),
                Buffer::Float(v) => v.push(number(field, null).with_context(bad)?),
                Buffer::Text(v) => v.push((!null).then(|| unescape(field))),
            }
        }
        if fields.next().is_some() {
            bail!("a row has more columns than {}", self.spec.columns.len());
        }
        self.row_done()
    }

    fn row_done(&mut self) -> Result<()> {
        self.rows += 1;
        if self.rows >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// The buffered rows handed to the sink as a chunk; the buffers are left empty.
    fn flush(&mut self) -> Result<()> {
        let columns: Vec<Column> = self
            .buffers
            .iter_mut()
            .zip(self.spec.columns)
            .map(|(buf, (name, _))| {
                let name: PlSmallStr = (*name).into();
                match buf {
                    Buffer::Int(v) => Column::new(name, std::mem::take(v)),
                    Buffer::Float(v) => Column::new(name, std::mem::take(v)),
                    Buffer::Text(v) => Column::new(name, std::mem::take(v)),
                }
            })
            .collect();
        let part = DataFrame::new_infer_height(columns)?;
        if part.height() > 0 || !self.pushed {
            self.sink.push(part)?;
            self.pushed = true;
        }
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<S> {
        if self.rows > 0 || !self.pushed {
            self.flush()?;
        }
        Ok(self.sink)
    }
}

/// A number as PostgreSQL prints it (`Some(None)` for NULL), or `None` when it is not one.
fn number<T: std::str::FromStr>(field: &[u8], null: bool) -> Option<Option<T>> {
    if null {
        return Some(None);
    }
    std::str::from_utf8(field).ok()?.parse().ok().map(Some)
}

/// A text field of the COPY text format, unescaped: `\t`, `\n`, `\\` and the other backslash
/// sequences PostgreSQL writes.
fn unescape(field: &[u8]) -> String {
    if !field.contains(&b'\\') {
        return String::from_utf8_lossy(field).into_owned();
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] != b'\\' || i + 1 == field.len() {
            out.push(field[i]);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                // Up to three octal digits.
                let mut value = u32::from(next - b'0');
                let mut taken = 0;
                while taken < 2 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    taken += 1;
                }
                out.push(value as u8);
            }
            b'x' => {
                let hex: String = field[i..]
                    .iter()
                    .take(2)
                    .take_while(|b| b.is_ascii_hexdigit())
                    .map(|&b| b as char)
                    .collect();
                i += hex.len();
                out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'x'));
            }
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: TableSpec = TableSpec {
        name: "t",
        columns: &[
            ("id", ColumnKind::Int),
            ("price", ColumnKind::Float),
            ("title", ColumnKind::Text),
        ],
        slicing: models::features::Slicing::WHOLE,
    };

    #[test]
    fn copy_text_rows_are_typed_with_nulls_and_escapes() {
        let mut c = Columns::new(&SPEC, 2, Collect::default());
        c.push_text_row(b"1\t2.5\tplain").unwrap();
        c.push_text_row(b"\\N\t\\N\t\\N").unwrap();
        c.push_text_row(b"3\tNaN\ttab\\there\\nand \\\\N, \\101")
            .unwrap();
        let f = c.finish().unwrap().0;
        assert_eq!(f.height(), 3);
        let ids = f.column("id").unwrap().i64().unwrap();
        let ids: Vec<Option<i64>> = (0..3).map(|i| ids.get(i)).collect();
        assert_eq!(ids, [Some(1), None, Some(3)]);
        let titles = f.column("title").unwrap().str().unwrap();
        let titles: Vec<Option<&str>> = (0..3).map(|i| titles.get(i)).collect();
        assert_eq!(titles, [Some("plain"), None, Some("tab\there\nand \\N, A")]);
        let prices = f.column("price").unwrap().f64().unwrap();
        assert!(prices.get(2).unwrap().is_nan());
    }

    #[test]
    fn sqlite_values_are_read_as_stored() {
        let path = std::env::temp_dir().join(format!("frames-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER, price REAL, title TEXT);
             INSERT INTO t VALUES (1, 2.5, 'a'), (NULL, 3, NULL), (3, NULL, 'é');",
        )
        .unwrap();
        let sql = "SELECT id, price, title FROM t";
        let f = read_sqlite(&path, &SPEC, sql, 2, Collect::default())
            .unwrap()
            .0;
        let prices = f.column("price").unwrap().f64().unwrap();
        let prices: Vec<Option<f64>> = (0..3).map(|i| prices.get(i)).collect();
        assert_eq!(prices, [Some(2.5), Some(3.0), None]);
        let sql = "SELECT title, price, title FROM t";
        let e = read_sqlite(&path, &SPEC, sql, 10, Collect::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the query must return the columns id, price, title but returns title, price, title"
        );
        let sql = "SELECT title AS id, price, title FROM t";
        let e = read_sqlite(&path, &SPEC, sql, 10, Collect::default());
        assert_eq!(
            e.unwrap_err().to_string(),
            "column id must hold integer values, got text"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_its_column() {
        let mut c = Columns::new(&SPEC, 10, Collect::default());
        let e = c.push_text_row(b"1.5\t2\tx").unwrap_err();
        assert_eq!(
            e.to_string(),
            "column id must hold integer values, got \"1.5\""
        );
        let e = c.push_text_row(b"1\t2").unwrap_err();
        assert_eq!(e.to_string(), "a row ends before column title");
        let e = check_names(&SPEC, &["id", "title", "price"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the query must return the columns id, price, title but returns id, title, price"
        );
    }
}
