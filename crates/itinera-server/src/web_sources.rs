// What the web app is built from, and the hash of it that `web/dist/.source-hash` records. Shared
// by the build script (which rebuilds when they differ) and a test (which fails when what is
// embedded was not built from the sources in the tree). Included with `include!`.

/// Files and folders under `web/` whose content makes the build.
pub const SOURCE_INPUTS: &[&str] = &[
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
];

/// SHA-256 over every source file's relative path and bytes, in path order (hex).
pub fn source_hash(web: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if dir.is_file() {
            out.push(dir.to_path_buf());
            return;
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut files = Vec::new();
    for input in SOURCE_INPUTS {
        walk(&web.join(input), &mut files);
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(web).unwrap_or(&f).to_string_lossy().replace('\\', "/");
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(std::fs::read(&f).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
