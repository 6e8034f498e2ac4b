//! The server crate's modules form layers: `src/lib.rs`'s doc lists them in dataflow order,
//! and a module's code may name only modules above it (comments aside). An import pointing down
//! the list is a circle in the making (issue 21 removed one of seven files).

use std::path::Path;

/// The `crate::<module>` names in `code` (`crate::a::..` and `crate::{a, b::..}`), comments
/// left out.
fn crate_refs(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for part in line.split("crate::").skip(1) {
            match part.strip_prefix('{') {
                Some(group) => {
                    let group = group.split('}').next().unwrap_or("");
                    out.extend(group.split(',').map(ident).filter(|n| !n.is_empty()));
                }
                None => out.push(ident(part)),
            }
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

#[test]
fn every_module_names_only_modules_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    // The order: each module's first "[`name`]" in the crate doc.
    let mut order: Vec<String> = Vec::new();
    for line in lib.lines().filter(|l| l.starts_with("//!")) {
        for part in line.split("[`").skip(1) {
            let name = part.split('`').next().unwrap_or("");
            if modules.contains(&name) && !order.iter().any(|m| m == name) {
                order.push(name.to_owned());
            }
        }
    }
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !order.iter().any(|o| o == *m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules the doc of src/lib.rs does not place: {missing:?}"
    );
    let mut wrong = Vec::new();
    for (i, module) in order.iter().enumerate() {
        // A module is a file, or a directory whose files are all its code.
        let file = src.join(format!("{module}.rs"));
        let code = if file.exists() {
            std::fs::read_to_string(file).unwrap()
        } else {
            let mut code = String::new();
            for f in std::fs::read_dir(src.join(module)).unwrap() {
                let path = f.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    code.push_str(&std::fs::read_to_string(path).unwrap());
                }
            }
            code
        };
        for name in crate_refs(&code) {
            match order.iter().position(|m| *m == name) {
                Some(j) if j < i => {}
                Some(_) => wrong.push(format!("{module} -> {name}")),
                None => {}
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that point down the layers of src/lib.rs (reorder lib.rs or move the code): {wrong:?}"
    );
}
