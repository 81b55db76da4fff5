//! The source's file-level dependency graph has no cycles and no use across a layer
//! boundary (build_support/module_graph.py; `make lint` runs it too), and the checker does
//! catch both when they are planted in a small tree.

mod common;

use std::process::{Command, Output};

fn check(src: &std::path::Path) -> Output {
    Command::new("/usr/bin/python3")
        .arg(common::repo_dir().join("build_support/module_graph.py"))
        .args(["--check", "--src"])
        .arg(src)
        .output()
        .expect("run build_support/module_graph.py")
}

#[test]
fn the_source_has_no_module_cycle_and_no_layer_breach() {
    let out = check(&common::repo_dir().join("src"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_planted_cycle_and_layer_breach_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let file = src.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    write("lib.rs", "pub mod config;\npub mod apache;\n");
    write("config/mod.rs", "pub mod a;\npub mod b;\n");
    // a -> b through a use tree, b -> a through super; neither edge is in a comment.
    write(
        "config/a.rs",
        "use super::{b::Thing, x};\npub struct Other;\n",
    );
    write(
        "config/b.rs",
        "// crate::apache is only named in a comment here\npub struct Thing;\n\
         fn f() -> super::a::Other { super::a::Other }\n",
    );
    write("config/c.rs", "use crate::apache::Request;\n");
    write("apache/mod.rs", "pub struct Request;\n");
    std::fs::write(
        src.join("config/mod.rs"),
        "pub mod a;\npub mod b;\npub mod c;\n",
    )
    .unwrap();
    let out = check(src);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("module cycle: config::a, config::b"),
        "{text}"
    );
    assert!(text.contains("layer breach: config::c -> apache"), "{text}");
    assert!(!text.contains("config::b -> apache"), "{text}");
}
