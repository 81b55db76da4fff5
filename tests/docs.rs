//! The user documentation is checked: `build_support/doc_check.py` (run by `make lint`)
//! passes on the tree and reports each kind of fault planted in a copy of it, and every Apache
//! block of docs/ marked `# complete` passes `apache2 -t` with the module, while a planted bad
//! one is reported with its file and line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ApacheConfig;

fn doc_check(root: &Path) -> Output {
    Command::new("/usr/bin/python3")
        .arg(common::repo_dir().join("build_support/doc_check.py"))
        .arg("--root")
        .arg(root)
        .output()
        .expect("run build_support/doc_check.py")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The files doc_check reads or links lead to: the tree without build output and git data.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".git", "target", "build"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = f(text.clone());
    assert_ne!(
        text,
        changed,
        "{}: the planted fault changed nothing",
        path.display()
    );
    std::fs::write(path, changed).unwrap();
}

#[test]
fn the_docs_check_passes_on_the_tree() {
    let out = doc_check(&common::repo_dir());
    assert!(out.status.success(), "{}", text_of(&out));
}

#[test]
fn planted_reference_and_link_faults_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    copy_tree(&common::repo_dir(), &root);
    let clean = doc_check(&root);
    assert!(clean.status.success(), "the copy: {}", text_of(&clean));

    // A directive the module registers loses its entry; an entry names one that does not
    // exist; a syntax line no longer matches the directive table.
    edit(&root.join("docs/configuration.md"), |t| {
        t.replace("### WSGIChunkedRequest\n", "### WSGINoSuchDirective\n")
            .replace(
                "- **Syntax:** `WSGIMapHEADToGET On|Off|Auto`",
                "- **Syntax:** `WSGIMapHEADToGET On|Off`",
            )
    });
    // A daemon option loses its entry.
    edit(&root.join("docs/daemon-options.md"), |t| {
        t.replace("### maximum-rss\n", "### maximum-memory\n")
    });
    // A dead link and a dead anchor.
    edit(&root.join("docs/README.md"), |t| {
        t + "\nSee [the missing page](missing-page.md) and [no such section](operations.md#no-such-section).\n"
    });
    let out = doc_check(&root);
    let text = text_of(&out);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "no entry (### WSGIChunkedRequest) for directive WSGIChunkedRequest",
        "entry for WSGINoSuchDirective, a directive the module does not register",
        "WSGIMapHEADToGET: Syntax is `WSGIMapHEADToGET On|Off`, the module says `WSGIMapHEADToGET On|Off|Auto`",
        "no entry (### maximum-rss) for WSGIDaemonProcess option maximum-rss=",
        "entry for maximum-memory=, a WSGIDaemonProcess option the module does not have",
        "docs/README.md:26: dead link missing-page.md: no file docs/missing-page.md",
        "dead anchor operations.md#no-such-section: docs/operations.md has no heading #no-such-section",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// A block of a Markdown file: a fence opened with ```apache whose first line is
/// `# complete`, with the line it starts on.
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

fn complete_blocks(docs: &Path) -> Vec<Block> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() == "```apache"
                && lines.get(i + 1).map(|l| l.trim()) == Some("# complete")
            {
                let start = i + 1;
                let mut j = start;
                while j < lines.len() && lines[j].trim() != "```" {
                    j += 1;
                }
                blocks.push(Block {
                    file: file.clone(),
                    line: start + 1,
                    text: lines[start..j].join("\n"),
                });
                i = j;
            }
            i += 1;
        }
    }
    blocks
}

/// Runs `apache2 -t` on each block, in its own test ServerRoot with the module loaded (the
/// block's own `LoadModule rwsgi_module` line dropped) and the docs' example paths
/// (/srv/webware, /srv/service.py) made inside it. Returns "file:line: output" per failure.
fn configtest_blocks(blocks: &[Block]) -> Vec<String> {
    let mut failures = Vec::new();
    for block in blocks {
        let config = ApacheConfig::new("docs");
        let srv = config.root().join("srv");
        for app in ["MyApp", "app1", "app2"] {
            let dir = srv.join("webware").join(app);
            std::fs::create_dir_all(dir.join("Static")).unwrap();
            std::fs::create_dir_all(dir.join("Scripts")).unwrap();
            std::fs::write(dir.join("Scripts/WSGIScript.py"), "application = None\n").unwrap();
        }
        std::fs::write(srv.join("service.py"), "pass\n").unwrap();
        let text = block
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with("LoadModule rwsgi_module"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("/srv/", &format!("{}/", srv.display()));
        let mut config = config.conf(&format!("{text}\n"));
        if text.contains("<Macro") {
            config = config.module("macro");
        }
        if text.contains("Require ip") {
            config = config.module("authz_host");
        }
        let (ok, out) = config.configtest();
        if !ok || !out.contains("Syntax OK") {
            failures.push(format!(
                "{}:{}: apache2 -t failed:\n{out}",
                block.file.display(),
                block.line
            ));
        }
    }
    failures
}

#[test]
fn complete_apache_blocks_in_docs_pass_configtest() {
    let blocks = complete_blocks(&common::repo_dir().join("docs"));
    assert!(
        blocks.len() >= 6,
        "expected the deployment guide's blocks, found {}",
        blocks.len()
    );
    let failures = configtest_blocks(&blocks);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_planted_bad_complete_block_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("page.md"),
        "# A page\n\n```apache\n# complete\nWSGIDaemonProcess good threads=2\n```\n\n\
         Not marked, so not checked:\n\n```apache\nWSGIDaemonProcess nope threads=lots\n```\n\n\
         ```apache\n# complete\nWSGIDaemonProcess bad threads=lots\nWSGIProcessGroup bad\n```\n",
    )
    .unwrap();
    let blocks = complete_blocks(&docs);
    assert_eq!(
        blocks.iter().map(|b| b.line).collect::<Vec<_>>(),
        [4, 15],
        "the two marked blocks"
    );
    let failures = configtest_blocks(&blocks);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("page.md:15: apache2 -t failed")
            && failures[0].contains("threads=lots"),
        "{}",
        failures[0]
    );
}
