//! Property tests of the file-path resolver: `SandboxPath` normalises any
//! string into a path beneath the root or refuses it, and `HostFs` run
//! through random sequences of the eight file operations on paths built
//! from escape attempts (`..`, symlinks to the parent, to an absolute host
//! path, through nested directories, in loops) never reads, writes,
//! creates, renames, chmods or deletes anything outside the sandbox root,
//! and never names a host path in a result or an error.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path};

use bytes::Bytes;
use proptest::prelude::*;
use stacyvm_providers::hostfs::{HostFs, SandboxPath};

const CANARY: &[u8] = b"CANARY: outside the sandbox";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = SandboxPath::parse(&s);
    }

    /// Accepted paths are normalised and beneath the root; exactly the
    /// paths whose `..` never climb above the root (and that have no NUL
    /// and are not empty or over-long) are accepted.
    #[test]
    fn parse_normalises_or_refuses(parts in prop::collection::vec(
        prop::sample::select(vec!["a", "b", "..", ".", "", "c d", "é", "\u{0}", "...", ".x"]),
        0..10,
    ), lead in any::<bool>()) {
        let s = format!("{}{}", if lead { "/" } else { "" }, parts.join("/"));
        let mut depth = 0i32;
        let mut climbs = false;
        for p in s.split('/') {
            match p {
                "" | "." => {}
                ".." => { depth -= 1; climbs |= depth < 0; }
                _ => depth += 1,
            }
        }
        let refused = s.is_empty() || s.contains('\0') || climbs;
        match SandboxPath::parse(&s) {
            Err(_) => prop_assert!(refused, "{:?} refused", s),
            Ok(p) => {
                prop_assert!(!refused, "{:?} accepted as {}", s, p);
                prop_assert!(p.abs().starts_with('/'));
                prop_assert!(p.rel().components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert_eq!(p.rel().components().count() as i32, depth);
                let rel = p.rel().to_str().unwrap();
                prop_assert_eq!(p.abs(), format!("/{rel}"));
                prop_assert_eq!(p.is_root(), rel.is_empty());
                // Normalising again changes nothing.
                prop_assert_eq!(SandboxPath::parse(p.abs()).unwrap(), p.clone());
            }
        }
    }
}

/// The pieces operation paths are made of: names that exist, escape links
/// and the lexical tricks.
const PIECES: &[&str] = &[
    "a", "d", "x", "secret", "up", "abs", "abs_file", "rel", "rel_file", "deep", "loop", "self",
    "inner", ".", "..",
];

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(PIECES), 1..5),
        any::<bool>(),
    )
        .prop_map(|(parts, lead)| format!("{}{}", if lead { "/" } else { "" }, parts.join("/")))
}

#[derive(Debug, Clone)]
enum Op {
    Write(String, Vec<u8>),
    Read(String),
    Stat(String),
    List(String),
    Rename(String, String),
    Chmod(String, u32),
    Delete(String, bool),
    Mkdir(String),
    Glob(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(p, c)| Op::Write(p, c)),
        path().prop_map(Op::Read),
        path().prop_map(Op::Stat),
        path().prop_map(Op::List),
        (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        // Owner bits stay, so a non-root test run can still clean up.
        (path(), 0u32..0o10000).prop_map(|(p, m)| Op::Chmod(p, m | 0o700)),
        (path(), any::<bool>()).prop_map(|(p, r)| Op::Delete(p, r)),
        path().prop_map(Op::Mkdir),
        (path(), prop::sample::select(vec!["*", "**", "?", "**/*"]))
            .prop_map(|(p, g)| Op::Glob(format!("{p}/{g}"))),
    ]
}

/// Everything under `dir` (not following links), except `skip`.
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p == skip {
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        let what = if md.is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            snapshot(&p, skip, out);
            format!("dir {:o}", md.mode())
        } else {
            format!("file {:o} {:?}", md.mode(), std::fs::read(&p).unwrap())
        };
        out.insert(p.display().to_string(), what);
    }
}

/// A sandbox root with escape links, beside an `outside` directory that
/// holds the canary.
fn layout(base: &Path) -> std::path::PathBuf {
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), CANARY).unwrap();
    std::fs::write(outside.join("dir/secret"), CANARY).unwrap();
    std::fs::create_dir_all(root.join("d/a")).unwrap();
    std::fs::write(root.join("a"), b"inside").unwrap();
    std::fs::write(root.join("d/x"), b"inside too").unwrap();
    symlink("..", root.join("up")).unwrap();
    symlink(&outside, root.join("abs")).unwrap();
    symlink(outside.join("secret"), root.join("abs_file")).unwrap();
    symlink("../outside", root.join("rel")).unwrap();
    symlink("../outside/secret", root.join("rel_file")).unwrap();
    symlink("../../outside", root.join("d/deep")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    symlink(".", root.join("self")).unwrap();
    symlink("d", root.join("inner")).unwrap();
    root
}

fn check_no_host_path(text: &str, base: &str) -> Result<(), TestCaseError> {
    prop_assert!(!text.contains(base), "host path in {:?}", text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn file_operations_stay_beneath_the_root(ops in prop::collection::vec(op(), 1..12)) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = layout(&base);
        let base_str = base.display().to_string();
        let mut before = BTreeMap::new();
        snapshot(&base, &root, &mut before);
        let fs = HostFs::new(root.clone());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for op in &ops {
                let err = match op {
                    Op::Write(p, c) => fs.write(p, Bytes::from(c.clone()), None).await.err(),
                    Op::Read(p) => match fs.read_to_vec(p).await {
                        Ok(data) => {
                            prop_assert_ne!(&data[..], CANARY, "{:?} read the canary", op);
                            None
                        }
                        Err(e) => Some(e),
                    },
                    Op::Stat(p) => match fs.stat(p).await {
                        Ok(info) => {
                            check_no_host_path(&format!("{info:?}"), &base_str)?;
                            None
                        }
                        Err(e) => Some(e),
                    },
                    Op::List(p) => match fs.list(p).await {
                        Ok(list) => {
                            check_no_host_path(&format!("{list:?}"), &base_str)?;
                            // `outside` holds `secret` and `dir`; so does no
                            // directory of the sandbox.
                            let names: Vec<_> = list.iter().map(|i| i.name.as_str()).collect();
                            prop_assert!(
                                !(names.contains(&"secret") && names.contains(&"dir")),
                                "{:?} listed the outside directory: {:?}", op, names
                            );
                            None
                        }
                        Err(e) => Some(e),
                    },
                    Op::Rename(a, b) => fs.rename(a, b).await.err(),
                    Op::Chmod(p, m) => fs.chmod(p, *m).await.err(),
                    Op::Delete(p, r) => fs.delete(p, *r).await.err(),
                    Op::Mkdir(p) => fs.create_dir_all(p).await.err(),
                    Op::Glob(g) => match fs.glob(g).await {
                        Ok(paths) => {
                            for p in &paths {
                                prop_assert!(p.starts_with('/'), "{:?}", p);
                                check_no_host_path(p, &base_str)?;
                            }
                            None
                        }
                        Err(e) => Some(e),
                    },
                };
                if let Some(e) = err {
                    check_no_host_path(&e.to_string(), &base_str)?;
                }
            }
            Ok(())
        })?;
        let mut after = BTreeMap::new();
        snapshot(&base, &root, &mut after);
        prop_assert_eq!(before, after, "something outside the root changed after {:?}", ops);
        // Whatever the operations did to modes, the root stays removable.
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
    }
}
