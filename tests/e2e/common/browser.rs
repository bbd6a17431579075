//! A page as a person sees it: rendered by headless Chromium (Debian's `chromium`, which
//! `scripts/test.sh` installs), as the DOM it built and as a screenshot.

use std::path::Path;
use std::process::Command;

/// The browser, or a panic saying how to get it.
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("no Chromium on this machine: scripts/test.sh installs Debian's chromium package");
}

/// Renders `page` (a local HTML file) headless with the network off: returns the DOM after
/// parsing and writes a full-page screenshot to `png`.
pub fn render(page: &Path, png: &Path, height: u32) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let run = |extra: &[String]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                // Nothing may come from the network: the page must stand alone.
                "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let dom = String::from_utf8(run(&["--dump-dom".into()])).unwrap();
    run(&[
        format!("--window-size=1000,{height}"),
        format!("--screenshot={}", png.display()),
    ]);
    let shot = std::fs::read(png).expect("chromium wrote the screenshot");
    assert!(
        shot.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        png.display()
    );
    dom
}
