//! Invariants from ARCHITECTURE.md that the compiler cannot check.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 10,
        "expected the source tree under {}",
        root.display()
    );
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}

#[test]
fn only_the_store_module_uses_redb() {
    let offenders: Vec<String> = src_files()
        .into_iter()
        .filter(|(rel, text)| !rel.starts_with("store/") && text.contains("redb::"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "redb used outside src/store: {offenders:?}"
    );
}

#[test]
fn every_source_file_opens_with_a_doc_line_saying_its_job() {
    let missing: Vec<String> = src_files()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn admin_services_have_no_http_dependency() {
    let offenders: Vec<String> = src_files()
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("admin/"))
        .filter(|(rel, _)| {
            !(rel == "admin/mod.rs" || rel == "admin/http.rs" || rel.ends_with("_http.rs"))
        })
        .filter(|(_, text)| text.contains("axum"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "admin service files importing axum: {offenders:?}"
    );
}
