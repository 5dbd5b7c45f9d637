//! The container image must build. No Docker engine runs here, so this reads
//! the `Dockerfile` instead: every file the crate compiles in from outside its
//! sources (`include_str!`, `include_bytes!`, `include!`, `sqlx::migrate!`)
//! must be brought into the builder stage by a `COPY` before the release
//! build, and must not be excluded by `.dockerignore`.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// One path a source file compiles in.
#[derive(Debug)]
struct Include {
    /// The source file, relative to the repository.
    file: String,
    /// The macro, e.g. `include_str!`.
    how: &'static str,
    /// What it reads, relative to the repository (`None`: not a plain string
    /// literal, so it cannot be checked).
    path: Option<String>,
}

const MACROS: [(&str, &str); 4] = [
    ("include_str!", "include_str!"),
    ("include_bytes!", "include_bytes!"),
    ("include!", "include!"),
    ("migrate!", "sqlx::migrate!"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Every include in the `.rs` files under `crate_dir/src`; `include_*!` paths
/// are relative to the file, `migrate!` paths to the crate's root.
fn includes_of_crate(crate_dir: &Path) -> Vec<Include> {
    let mut files = Vec::new();
    rust_files(&crate_dir.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let rel_file = file.strip_prefix(repo()).unwrap_or(&file);
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (needle, how) in MACROS {
                let mut rest = line;
                while let Some(at) = rest.find(needle) {
                    let after = &rest[at + needle.len()..];
                    rest = after;
                    // `include!` must not match inside `include_str!`, and
                    // only macro calls count.
                    let before = &line[..line.len() - after.len() - needle.len()];
                    if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let Some(args) = after.trim_start().strip_prefix('(') else {
                        continue;
                    };
                    let args = args.trim_start();
                    let literal = args
                        .strip_prefix('"')
                        .and_then(|s| s.split_once('"'))
                        .map(|(lit, _)| lit);
                    let literal = match (how, literal) {
                        ("sqlx::migrate!", None) if args.starts_with(')') => Some("migrations"),
                        (_, l) => l,
                    };
                    let base = if how == "sqlx::migrate!" {
                        crate_dir.to_path_buf()
                    } else {
                        file.parent().unwrap_or(crate_dir).to_path_buf()
                    };
                    let path = literal.and_then(|l| {
                        let abs = normalize(&base.join(l));
                        abs.strip_prefix(repo())
                            .ok()
                            .map(|p| p.to_string_lossy().into_owned())
                    });
                    found.push(Include {
                        file: rel_file.display().to_string(),
                        how,
                        path,
                    });
                }
            }
        }
    }
    found
}

/// A Dockerfile's logical lines: continuations joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The builder stage: from its `FROM` up to its last `cargo build`.
fn builder_stage(dockerfile: &str) -> Vec<String> {
    let all = instructions(dockerfile);
    let is_from = |i: &String| i.to_ascii_uppercase().starts_with("FROM ");
    let start = all
        .iter()
        .position(|i| is_from(i) && i.to_ascii_lowercase().contains(" as builder"))
        .or_else(|| all.iter().position(is_from))
        .expect("the Dockerfile has no FROM");
    let end = all[start + 1..]
        .iter()
        .position(is_from)
        .map_or(all.len(), |n| start + 1 + n);
    let stage = &all[start..end];
    let last_build = stage
        .iter()
        .rposition(|i| i.contains("cargo build"))
        .expect("the builder stage runs no cargo build");
    stage[..last_build].to_vec()
}

/// The sources of the stage's `COPY`/`ADD` lines from the build context
/// (not `--from` another stage), as written.
fn copied_sources(stage: &[String]) -> Vec<String> {
    let mut sources = Vec::new();
    for i in stage {
        let mut words = i.split_whitespace();
        let Some(op) = words.next() else { continue };
        if !op.eq_ignore_ascii_case("COPY") && !op.eq_ignore_ascii_case("ADD") {
            continue;
        }
        let args: Vec<&str> = words.collect();
        if args.iter().any(|a| a.starts_with("--from")) {
            continue;
        }
        let args: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with("--"))
            .map(|a| {
                a.trim_matches(|c| matches!(c, '[' | ']' | '"' | ','))
                    .to_string()
            })
            .filter(|a| !a.is_empty())
            .collect();
        if let Some((_dest, srcs)) = args.split_last() {
            sources.extend(srcs.iter().cloned());
        }
    }
    sources
}

/// Docker-style glob match of one path segment: `*`, `?` and `[...]`.
fn glob_segment(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_segment(&pattern[1..], name)
                || (!name.is_empty() && glob_segment(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_segment(&pattern[1..], &name[1..]),
        (Some(b'['), Some(&c)) => {
            let Some(close) = pattern.iter().position(|&b| b == b']') else {
                return false;
            };
            let set = &pattern[1..close];
            let (negate, set) = match set.first() {
                Some(b'^' | b'!') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut k = 0;
            while k < set.len() {
                if k + 2 < set.len() && set[k + 1] == b'-' {
                    hit |= set[k] <= c && c <= set[k + 2];
                    k += 3;
                } else {
                    hit |= set[k] == c;
                    k += 1;
                }
            }
            hit != negate && glob_segment(&pattern[close + 1..], &name[1..])
        }
        (Some(p), Some(n)) => p == n && glob_segment(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether `pattern` (segments split on `/`, `**` for any number of them)
/// matches `path` exactly.
fn glob_path(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|k| glob_path(rest, &path[k..])),
        Some((p, rest)) => path.split_first().is_some_and(|(n, path_rest)| {
            glob_segment(p.as_bytes(), n.as_bytes()) && glob_path(rest, path_rest)
        }),
    }
}

fn segments(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

/// Whether a COPY source brings `path` (relative to the repository) along.
fn copies(source: &str, path: &str) -> bool {
    let src = segments(source);
    let path = segments(path);
    src.is_empty() || (src.len() <= path.len() && glob_path(&src, &path[..src.len()]))
}

/// Whether `.dockerignore` leaves `path` (or a directory above it) out of the
/// build context; the last matching line decides, `!` lines take back.
fn ignored(dockerignore: &str, path: &str) -> bool {
    let path = segments(path);
    let mut out = false;
    for line in dockerignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keep, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pattern = segments(pattern);
        if (1..=path.len()).any(|k| glob_path(&pattern, &path[..k])) {
            out = !keep;
        }
    }
    out
}

/// Every include the image's build would miss, described for a person: one
/// line per directory and source file that reads it.
fn problems(dockerfile: &str, dockerignore: &str, includes: &[Include]) -> Vec<String> {
    let sources = copied_sources(&builder_stage(dockerfile));
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for inc in includes {
        let Some(path) = &inc.path else {
            out.push(format!(
                "{} uses {} with a path this test cannot read (not a plain string literal)",
                inc.file, inc.how
            ));
            continue;
        };
        let parts = segments(path);
        let top = parts.first().copied().unwrap_or_default();
        let shown = if parts.len() > 1 || repo().join(top).is_dir() {
            format!("{top}/")
        } else {
            top.to_string()
        };
        let why = if !sources.iter().any(|s| copies(s, path)) {
            format!(
                "the Dockerfile's builder stage copies no {shown} before its cargo build: add `COPY {top} ./{top}`"
            )
        } else if ignored(dockerignore, path) {
            format!(".dockerignore leaves {path} out of the build context")
        } else {
            continue;
        };
        let key = (top.to_string(), inc.file.clone(), why.clone());
        if !seen.contains(&key) {
            seen.push(key);
            out.push(format!(
                "{shown} is read by {} ({} \"{path}\"), but {why}",
                inc.file, inc.how
            ));
        }
    }
    out
}

/// The crates whose sources the image compiles: the engine, and the stress
/// harness only when one of the Dockerfile's builds names it.
fn image_includes(dockerfile: &str) -> Vec<Include> {
    let mut includes = includes_of_crate(repo());
    let builds_stress = instructions(dockerfile).iter().any(|i| {
        i.contains("cargo build")
            && [
                "--workspace",
                "--all ",
                "-p stress",
                "--package stress",
                "--bin stress",
            ]
            .iter()
            .any(|flag| i.contains(flag))
    });
    if builds_stress {
        includes.extend(includes_of_crate(&repo().join("stress")));
    }
    includes
}

fn read(name: &str) -> String {
    fs::read_to_string(repo().join(name)).unwrap_or_default()
}

#[test]
fn dockerfile_copies_everything_the_build_compiles_in() {
    let dockerfile = read("Dockerfile");
    assert!(
        !dockerfile.is_empty(),
        "no Dockerfile at the repository root"
    );
    let includes = image_includes(&dockerfile);
    assert!(
        includes.iter().any(|i| i.how == "sqlx::migrate!")
            && includes.iter().any(|i| i.how != "sqlx::migrate!"),
        "found no includes or no migrate! under src/: {includes:?}"
    );
    let problems = problems(&dockerfile, &read(".dockerignore"), &includes);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn dockerfile_check_names_a_missing_directory_and_its_reader() {
    let includes = [Include {
        file: "src/email/render.rs".into(),
        how: "include_str!",
        path: Some("templates/email/base.html".into()),
    }];
    let without = "FROM rust AS builder\nCOPY src ./src\nCOPY benche[s] ./benches/\nRUN cargo build --release\nFROM debian\nCOPY templates /x\n";
    let p = problems(without, "", &includes);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("templates/ is read by src/email/render.rs")
            && p[0].contains("COPY templates ./templates"),
        "{p:?}"
    );

    let with = without.replace("COPY src", "COPY templates ./templates\nCOPY src");
    assert!(problems(&with, "", &includes).is_empty());
    assert!(problems(&with.replace("templates ./", "templ* ./"), "", &includes).is_empty());
    let p = problems(&with, "target/\ntemplates/email\n", &includes);
    assert!(p[0].contains(".dockerignore"), "{p:?}");
    assert!(problems(&with, "templates\n!templates/email\n", &includes).is_empty());
}
