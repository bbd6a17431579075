//! Bad input: one clear line naming the file, field or URL (never a password), a non-zero exit,
//! and nothing published.

use std::path::Path;

use crate::common::*;

fn assert_one_line_error(out: &std::process::Output, must_contain: &[&str]) -> String {
    assert!(
        !out.status.success(),
        "expected failure, stderr: {}",
        stderr(out)
    );
    let err = stderr(out);
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{err}");
    for s in must_contain {
        assert!(last.contains(s), "{s:?} not in {last:?}");
    }
    last
}

fn no_success_marker(dir: &Path) -> bool {
    fn walk(d: &Path) -> bool {
        std::fs::read_dir(d).map_or(true, |rd| {
            rd.flatten().all(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    p.file_name().unwrap() != "_SUCCESS"
                }
            })
        })
    }
    walk(dir)
}

#[test]
fn missing_config_file() {
    let out = targeting(&["--config", "/nonexistent/targeting.toml", "run"]);
    assert_one_line_error(&out, &["/nonexistent/targeting.toml"]);
}

#[test]
fn invalid_config_file_is_located() {
    let world = TestEnv::sqlite("badconfig");
    let file = world.dir.join("targeting.toml");
    std::fs::write(&file, "[export]\ndestinaton = \"file:///tmp/x\"\n").unwrap();
    let out = targeting(&["--config", file.to_str().unwrap(), "run"]);
    assert_one_line_error(&out, &[&format!("{}:2:1", file.display()), "destinaton"]);
}

#[test]
fn unreachable_database_names_the_url_without_password() {
    let out = targeting(&[
        "run",
        "--database-url",
        "postgres://app:hunter2@127.0.0.1:1/shop",
    ]);
    let line = assert_one_line_error(&out, &["postgres://app:***@127.0.0.1:1/shop"]);
    assert!(!stderr(&out).contains("hunter2"), "{line}");
}

#[test]
fn unknown_campaign() {
    let world = TestEnv::sqlite("unknown");
    let out = world.demo("2000", &["--campaign", "no-such-campaign"]);
    assert_one_line_error(
        &out,
        &["unknown campaign \"no-such-campaign\"", "weekly-deal"],
    );
}

#[test]
fn unwritable_export_destination_publishes_nothing() {
    let world = TestEnv::sqlite("unwritable");
    // A regular file where the export folder should be: no folder can be created under it.
    let blocker = world.dir.join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let dest = format!("file://{}/exports", blocker.display());
    let out = world.demo("3000", &["--exports", &dest]);
    assert_one_line_error(&out, &["4 of 4 campaigns failed", &dest]);
    assert!(no_success_marker(&world.dir));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ledger = rt.block_on(ledger(&world.db));
    assert_eq!(ledger.len(), 4);
    assert!(
        ledger
            .iter()
            .all(|r| r.status == "failed" && r.error.is_some()),
        "{ledger:?}"
    );
}
