//! The layer rule, kept true by a test: `lib.rs` lists the modules in layers (a comment line
//! starts the next one), and no module names a module of a layer below its own
//! (`crate::NAME`, in a `use` line or a path, outside comments and tests).
//!
//! Owns: reading the layers from `lib.rs` and the `crate::` names from a source file. Must
//! never: pass a tree where an import goes up a layer (the test below also checks that it
//! can fail).

use std::collections::BTreeMap;

/// Each module's layer (0 = the base), in the order `lib` (the text of `lib.rs`) lists them: a
/// `//` comment line after a `mod` line starts the next layer.
pub fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut layer = None::<usize>;
    let mut after_mod = false;
    for line in lib.lines().map(str::trim) {
        if line.starts_with("//") && !line.starts_with("//!") {
            if after_mod || layer.is_none() {
                layer = Some(layer.map_or(0, |l| l + 1));
            }
            after_mod = false;
        } else if let Some(name) = mod_name(line) {
            out.insert(name.to_string(), layer.unwrap_or(0));
            after_mod = true;
        }
    }
    out
}

/// `NAME` of a `[pub[(crate)]] mod NAME;` line.
fn mod_name(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    rest.strip_prefix("mod ")?.strip_suffix(';')
}

/// The first identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every module a source file names as `crate::NAME` (or `crate::{NAME, …}`), with its 1-based
/// line, outside comments and after the first `#[cfg(test)]` not at all.
pub fn crate_names(source: &str) -> Vec<(usize, String)> {
    let code: Vec<&str> = source
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect();
    let text = code.join("\n");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("crate::") {
        let start = at + found + "crate::".len();
        let line = text[..start].matches('\n').count() + 1;
        let rest = &text[start..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c, d::{e, f}}`: the first identifier of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            out.push((line, name.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((line, name.to_string()));
            }
        }
        at = start;
    }
    out
}

/// The imports in `files` (path relative to `src/`, text) that go up a layer, as
/// `PATH:LINE: MODULE (layer N) uses NAME (layer M)`.
pub fn violations(layers: &BTreeMap<String, usize>, files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let top = path.split('/').next().unwrap_or_default();
        let module = top.strip_suffix(".rs").unwrap_or(top);
        let Some(&own) = layers.get(module) else {
            continue;
        };
        for (line, name) in crate_names(text) {
            if let Some(&theirs) = layers.get(&name)
                && theirs > own
            {
                out.push(format!(
                    "src/{path}:{line}: {module} (layer {own}) uses {name} (layer {theirs})"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every `.rs` file under `dir`, relative to `root`, with its text.
    fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }

    #[test]
    fn no_module_imports_a_layer_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let layers = layers(&lib);
        for (module, layer) in [
            ("error", 0),
            ("forge", 1),
            ("gate", 2),
            ("sync", 3),
            ("agents", 4),
            ("commands", 5),
        ] {
            assert_eq!(layers.get(module), Some(&layer), "{module}: {layers:?}");
        }
        let mut files = Vec::new();
        sources(&src, &src, &mut files);
        assert!(files.len() > 100, "{} files", files.len());
        let found = violations(&layers, &files);
        assert!(
            found.is_empty(),
            "imports that go up a layer:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn an_import_that_goes_up_a_layer_is_found_in_every_form() {
        let lib = "// base\npub(crate) mod error;\nmod files;\n// data\n// (more words)\npub(crate) mod roster;\n// top\npub(crate) mod commands;\n";
        let layers = layers(lib);
        assert_eq!(layers["error"], 0);
        assert_eq!(layers["files"], 0);
        assert_eq!(layers["roster"], 1);
        assert_eq!(layers["commands"], 2);
        let files = vec![
            ("error.rs".to_string(), "use crate::files;\n// crate::commands in a comment\nuse crate::{files::x, roster::{a, b}};\n".to_string()),
            ("roster.rs".to_string(), "fn f() { crate::commands::run(); }\nuse crate::error::Error;\n#[cfg(test)]\nuse crate::commands;\n".to_string()),
            ("commands/mod.rs".to_string(), "use crate::{error, roster};\n".to_string()),
        ];
        assert_eq!(
            violations(&layers, &files),
            [
                "src/error.rs:3: error (layer 0) uses roster (layer 1)",
                "src/roster.rs:1: roster (layer 1) uses commands (layer 2)",
            ]
        );
    }
}
