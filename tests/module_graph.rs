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
    write(
        "lib.rs",
        "pub mod config;\npub mod apache;\npub mod daemon;\npub mod handler;\npub mod module;\n",
    );
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
    write("apache/mod.rs", "pub mod table;\npub struct Request;\n");
    // The Apache layer knows nothing of WSGI's config; daemons nothing of the handler or the
    // composition root; the composition root may use anything.
    write("apache/table.rs", "use crate::config::a::Other;\n");
    write("daemon/mod.rs", "pub mod worker;\npub mod spawn;\n");
    write("daemon/worker.rs", "use crate::handler::Thing;\n");
    write("daemon/spawn.rs", "fn f() { crate::module::start() }\n");
    write("handler/mod.rs", "pub struct Thing;\n");
    write(
        "module/mod.rs",
        "use crate::{apache, daemon, handler};\npub fn start() {}\n",
    );
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
    assert!(
        text.contains("layer breach: apache::table -> config"),
        "{text}"
    );
    assert!(
        text.contains("layer breach: daemon::worker -> handler"),
        "{text}"
    );
    assert!(
        text.contains("layer breach: daemon::spawn -> module"),
        "{text}"
    );
    assert!(!text.contains("layer breach: module"), "{text}");
}
