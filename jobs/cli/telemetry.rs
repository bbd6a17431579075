//! Tracing setup: human-readable logs on a terminal, JSON lines with `--log-format json`, both
//! on stderr so that stdout carries only the command's output.
//!
//! The human format is for a person watching a run: events, and one line when each stage of
//! the pipeline ends, with its wall time and its figures (`score: done in 2.31 s users=500001`)
//! — not a line for every span that closes. On a terminal a progress line under the log names
//! the stages running now, innermost last (`run › shard shard=1 of 2 › score users=500001`,
//! `train model=conversion_uplift › cv setting=2/4 › learner learner=t k=3/7`), with how long the
//! run has taken; log lines print above it. `-v` brings the span ends back (and debug events);
//! `-q` keeps warnings and errors only. The JSON format has a line for every span that closes
//! (`"message": "close"`) with its durations as numbers, `busy_secs` and `idle_secs`, which
//! `scripts/bench.sh` reads.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// How much the logs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Warnings and errors.
    Quiet,
    /// Events and one line per stage.
    Normal,
    /// Debug events and every span's close, with its timing.
    Verbose,
}

/// The spans that are stages of a run: the human format says when each ends. (Finer spans —
/// one query, one table's load — stay in the JSON format and `-v`.)
const STAGES: &[&str] = &[
    "run",
    "training_tables",
    "train",
    "extract",
    "spill",
    "score",
    "rank",
    "select",
    "publish",
    "record",
    "score_shard",
    "write_shard",
    "gather_shards",
    "outcomes",
    "report",
];

/// Spans that are not stages but say where a long stage is: the progress line shows them.
const PROGRESS_ONLY: &[&str] = &["cv", "learner"];

/// Installs the global subscriber. `RUST_LOG` overrides the level `verbosity` gives. The AWS
/// configuration loader warns whenever a source of the standard chain is absent (no instance
/// metadata outside EC2): errors only, by default.
pub fn init(format: LogFormat, verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => "warn",
        Verbosity::Normal => "info",
        Verbosity::Verbose => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,aws_config=error,aws_smithy_runtime=warn,hyper=warn,\
             tokio_cron_scheduler=warn"
        ))
    });
    let ansi = std::io::stderr().is_terminal();
    if ansi && format == LogFormat::Human && verbosity == Verbosity::Normal {
        progress_line();
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| AboveProgress)
        .with_ansi(ansi)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match (format, verbosity) {
        (LogFormat::Json, _) => registry
            .with(fmt.json().flatten_event(true))
            .with(StageLines { print: Ends::Json })
            .try_init(),
        (LogFormat::Human, Verbosity::Verbose) => registry
            .with(fmt.with_span_events(FmtSpan::CLOSE))
            .with(StageLines { print: Ends::None })
            .try_init(),
        (LogFormat::Human, Verbosity::Normal) => registry
            .with(fmt.event_format(Brief { ansi }))
            .with(StageLines {
                print: Ends::Stages,
            })
            .try_init(),
        (LogFormat::Human, Verbosity::Quiet) => registry
            .with(fmt.event_format(Brief { ansi }))
            .with(StageLines { print: Ends::None })
            .try_init(),
    };
}

/// The human format's events: time, level, the campaign or shard they are about (not the
/// whole chain of spans), the message and its fields.
struct Brief {
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Brief
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let level = *event.metadata().level();
        let (on, off) = match (self.ansi, level) {
            (true, tracing::Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, tracing::Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            _ => ("", ""),
        };
        write!(writer, "{now} {on}{level:>5}{off} ")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if span.name() == "campaign" || span.name() == "shard" {
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                        write!(writer, "[{fields}] ")?;
                    }
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// When a stage began, and its fields as text.
struct Opened {
    at: Instant,
    fields: String,
}

/// Fields as ` name=value` text.
struct FieldText<'a>(&'a mut String);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

/// A span running now: its id, name, start, and name with its fields.
struct Running {
    id: u64,
    name: &'static str,
    since: Instant,
    label: String,
}

/// The stages (and [`PROGRESS_ONLY`] spans) running now, innermost last: what the heartbeat
/// and the progress line name.
static RUNNING: std::sync::Mutex<Vec<Running>> = std::sync::Mutex::new(Vec::new());

/// The progress line, while a stage runs (see [`progress_line`]).
static PROGRESS: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Keeps the progress line on a terminal: a spinner with the stages running now, created when
/// the first starts and cleared when none runs (before a command prints its output).
fn progress_line() {
    std::thread::spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let (labels, since) = match RUNNING.lock() {
            Ok(r) => (
                r.iter().map(|s| s.label.clone()).collect::<Vec<_>>(),
                r.first().map(|s| s.since),
            ),
            Err(_) => return,
        };
        let Ok(mut line) = PROGRESS.lock() else {
            return;
        };
        if FINISHED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(since) = since else {
            if let Some(bar) = line.take() {
                bar.finish_and_clear();
            }
            continue;
        };
        let bar = line.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let secs = since.elapsed().as_secs();
        bar.set_message(format!(
            "{:>2}:{:02}  {}",
            secs / 60,
            secs % 60,
            labels.join(" › ")
        ));
    });
}

/// Whether the command has finished: the progress line is gone for good.
static FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears the progress line for good, before the process ends (else its last state stays on
/// the screen).
pub fn finish() {
    FINISHED.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Ok(mut line) = PROGRESS.lock() {
        if let Some(bar) = line.take() {
            bar.finish_and_clear();
        }
    }
}

/// Writes to stderr above the progress line, if there is one.
fn above_progress(write: impl FnOnce()) {
    match PROGRESS.lock() {
        Ok(line) => match line.as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        },
        Err(_) => write(),
    }
}

/// Prints a command's output on stdout, above the progress line when one is showing (on a
/// terminal both end up on the same screen).
pub fn print_out(text: impl std::fmt::Display) {
    use std::io::Write as _;
    above_progress(|| {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
    });
}

/// The log's writer: stderr, above the progress line.
struct AboveProgress;

impl std::io::Write for AboveProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut done = Ok(());
        above_progress(|| done = std::io::stderr().write_all(buf));
        done.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Keeps [`RUNNING`] and says, as `print` asks, when spans end.
struct StageLines {
    print: Ends,
}

/// Which span ends [`StageLines`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// None (the verbose human format has the fmt layer's own close lines).
    None,
    /// Each stage (see [`STAGES`]), for a person: its name, the campaign or shard it ran for,
    /// its wall time and its fields.
    Stages,
    /// Every span, as a JSON line: its name and fields, its parents', and the time it was
    /// entered (`busy_secs`) and not (`idle_secs`), as numbers.
    Json,
}

/// A span's time entered and not, so far (the JSON format's close lines).
struct Timing {
    busy: f64,
    idle: f64,
    last: Instant,
}

/// A span as the JSON format writes it: its name and fields (as the fmt layer recorded them).
fn json_span<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> serde_json::Value
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fields = span
        .extensions()
        .get::<FormattedFields<tracing_subscriber::fmt::format::JsonFields>>()
        .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok());
    let mut out = match fields {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("name".into(), span.name().into());
    serde_json::Value::Object(out)
}

/// While the process runs, when stderr is not a terminal: every `every`, a line naming the
/// innermost stage running and how long it has run, so that a long stage is not taken for a
/// hang. On a terminal a person sees the stage lines as they come.
pub fn heartbeat(every: std::time::Duration) {
    if std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let innermost = RUNNING.lock().ok().and_then(|r| {
                r.iter()
                    .rev()
                    .find(|s| STAGES.contains(&s.name))
                    .map(|s| (s.name, s.since))
            });
            if let Some((stage, since)) = innermost {
                tracing::info!(
                    stage,
                    running_secs = since.elapsed().as_secs(),
                    "still working"
                );
            }
        }
    });
}

impl<S> Layer<S> for StageLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if self.print == Ends::Json {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Timing {
                    busy: 0.0,
                    idle: 0.0,
                    last: Instant::now(),
                });
            }
        }
        let progress = STAGES.contains(&name) || PROGRESS_ONLY.contains(&name);
        if !progress && name != "campaign" && name != "shard" {
            return;
        }
        let mut fields = String::new();
        attrs.record(&mut FieldText(&mut fields));
        if progress {
            if let Ok(mut running) = RUNNING.lock() {
                running.push(Running {
                    id: id.into_u64(),
                    name,
                    since: Instant::now(),
                    label: format!("{name}{fields}"),
                });
            }
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened {
                at: Instant::now(),
                fields,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(opened) = span.extensions_mut().get_mut::<Opened>() {
                values.record(&mut FieldText(&mut opened.fields));
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(t) = span.extensions_mut().get_mut::<Timing>() {
                t.idle += t.last.elapsed().as_secs_f64();
                t.last = Instant::now();
            }
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(t) = span.extensions_mut().get_mut::<Timing>() {
                t.busy += t.last.elapsed().as_secs_f64();
                t.last = Instant::now();
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|s| s.id != id.into_u64());
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        if self.print == Ends::Json {
            let timing = span.extensions_mut().remove::<Timing>();
            if let Some(t) = timing {
                let idle = t.idle + t.last.elapsed().as_secs_f64();
                // Root first, as the fmt layer lists the spans of an event.
                let parents: Vec<serde_json::Value> = span
                    .scope()
                    .from_root()
                    .filter(|s| s.id() != span.id())
                    .map(|s| json_span(&s))
                    .collect();
                let line = serde_json::json!({
                    "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    "level": "INFO",
                    "message": "close",
                    "busy_secs": t.busy,
                    "idle_secs": idle,
                    "span": json_span(&span),
                    "spans": parents,
                });
                eprintln!("{line}");
            }
            return;
        }
        if self.print != Ends::Stages || !STAGES.contains(&span.name()) {
            return;
        }
        let Some(opened) = span.extensions_mut().remove::<Opened>() else {
            return;
        };
        // The campaign or shard the stage ran for, which its own fields do not say.
        let within: String = span
            .scope()
            .skip(1)
            .filter(|s| s.name() == "campaign" || s.name() == "shard")
            .filter_map(|s| s.extensions().get::<Opened>().map(|o| o.fields.clone()))
            .collect();
        let secs = opened.at.elapsed().as_secs_f64();
        let took = if secs < 10.0 {
            format!("{secs:.2} s")
        } else {
            format!("{secs:.0} s")
        };
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        above_progress(|| {
            eprintln!(
                "{now}  INFO {}: done in {took}{within}{}",
                span.name(),
                opened.fields
            );
        });
    }
}
