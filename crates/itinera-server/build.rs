//! Builds the web app (`web/`, TypeScript) into `web/dist/`, which the binary embeds, whenever
//! its sources changed: a hash of the sources is kept in `web/dist/.source-hash`, so a build
//! with unchanged sources runs no npm at all. Fails with a message naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("src/web_sources.rs");

fn main() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    for input in SOURCE_INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        web.join("dist/.source-hash").display()
    );
    println!("cargo:rerun-if-env-changed=ITINERA_WEB_PREBUILT");
    let want = source_hash(&web);
    let stamp = web.join("dist/.source-hash");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return;
    }
    if std::env::var_os("ITINERA_WEB_PREBUILT").is_some() {
        panic!(
            "web/dist does not match the sources in web/ (hash {want}) and ITINERA_WEB_PREBUILT is set: \
             run `npm ci && npm run build` in web/ (the hash is written by this build script)"
        );
    }
    npm(
        &web,
        if web.join("node_modules/.package-lock.json").exists() {
            &["ci", "--prefer-offline", "--no-audit", "--no-fund"]
        } else {
            &["ci", "--no-audit", "--no-fund"]
        },
    );
    npm(&web, &["run", "build"]);
    std::fs::write(&stamp, &want).expect("write web/dist/.source-hash");
}

fn npm(web: &Path, args: &[&str]) {
    let status = Command::new("npm").args(args).current_dir(web).status().unwrap_or_else(|e| {
        panic!(
            "building the web app needs Node.js 20 and npm ({e}). Install them (Debian: `apt-get install nodejs npm`; \
             scripts/test.sh does this), then build again."
        )
    });
    if !status.success() {
        panic!(
            "`npm {}` failed in {} ({status}); see its output above",
            args.join(" "),
            web.display()
        );
    }
}
