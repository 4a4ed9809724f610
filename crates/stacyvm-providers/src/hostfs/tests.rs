//! HostFs against a real temporary directory. Every escape case has a
//! sibling "host secret" outside the root that must stay unread and
//! untouched.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;

use super::*;

const SECRET: &[u8] = b"host secret\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    fs: HostFs,
    root: PathBuf,
    /// A directory beside the root holding `secret.txt`.
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        std::fs::set_permissions(
            outside.join("secret.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Fixture {
            fs: HostFs::new(root.clone()),
            root,
            outside,
            _tmp: tmp,
        }
    }

    fn secret(&self) -> PathBuf {
        self.outside.join("secret.txt")
    }

    /// The secret is unchanged and nothing new appeared beside it.
    fn assert_host_untouched(&self) {
        assert_eq!(std::fs::read(self.secret()).unwrap(), SECRET);
        let md = std::fs::symlink_metadata(self.secret()).unwrap();
        assert!(md.is_file());
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec!["secret.txt"],
            "new files appeared outside the root"
        );
    }

    fn link(&self, target: impl AsRef<std::path::Path>, name: &str) {
        symlink(target, self.root.join(name)).unwrap();
    }
}

fn assert_refused<T: std::fmt::Debug>(r: Result<T, ProviderError>, what: &str) {
    match r {
        Err(ProviderError::InvalidInput(_) | ProviderError::NotFound(_)) => {}
        other => panic!("{what}: expected InvalidInput/NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_and_reads_binary_content() {
    let f = Fixture::new();
    let all: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    f.fs.write("/app/deep/bin.dat", Bytes::from(all.clone()), None)
        .await
        .unwrap();
    assert_eq!(f.fs.read_to_vec("/app/deep/bin.dat").await.unwrap(), all);
    let md = std::fs::metadata(f.root.join("app/deep/bin.dat")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o644);

    // Chunks are at most READ_CHUNK bytes.
    let mut s = f.fs.read("/app/deep/bin.dat").await.unwrap();
    while let Some(c) = s.next().await {
        assert!(c.unwrap().len() <= READ_CHUNK);
    }

    f.fs.write(
        "/app/run.sh",
        Bytes::from_static(b"#!/bin/sh\n"),
        Some(0o755),
    )
    .await
    .unwrap();
    assert_eq!(f.fs.stat("/app/run.sh").await.unwrap().mode, "0755");
    // Overwrite replaces content and mode.
    f.fs.write("/app/run.sh", Bytes::from_static(b"x"), Some(0o600))
        .await
        .unwrap();
    let st = f.fs.stat("/app/run.sh").await.unwrap();
    assert_eq!((st.size, st.mode.as_str()), (1, "0600"));
    // No temporary files are left behind.
    let names: Vec<_> = f.fs.list("/app").await.unwrap();
    assert_eq!(
        names.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["deep", "run.sh"]
    );
    // An empty file is fine.
    f.fs.write("/empty", Bytes::new(), None).await.unwrap();
    assert!(f.fs.read_to_vec("/empty").await.unwrap().is_empty());
}

#[tokio::test]
async fn reports_missing_and_wrong_kinds() {
    let f = Fixture::new();
    f.fs.write("/d/file", Bytes::from_static(b"x"), None)
        .await
        .unwrap();
    assert!(matches!(
        f.fs.read("/nope").await,
        Err(ProviderError::NotFound(p)) if p == "/nope"
    ));
    assert!(matches!(
        f.fs.stat("/d/nope").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        f.fs.read("/d").await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        f.fs.write("/d", Bytes::new(), None).await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        f.fs.write("/d/file/below", Bytes::new(), None).await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        f.fs.list("/d/file").await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        HostFs::new(f.root.join("gone")).stat("/").await,
        Err(ProviderError::NotFound(_))
    ));
}

#[tokio::test]
async fn lists_stats_moves_chmods_deletes() {
    let f = Fixture::new();
    f.fs.write("/a/one.txt", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    f.fs.write("/a/sub/two.txt", Bytes::from_static(b"22"), None)
        .await
        .unwrap();
    f.link("one.txt", "a/link");

    let list = f.fs.list("/a").await.unwrap();
    let names: Vec<_> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["link", "one.txt", "sub"]);
    assert_eq!(list[0].path, "/a/link");
    assert!(list[0].is_symlink && !list[0].is_dir);
    assert!(list[2].is_dir);
    assert_eq!(list[1].size, 1);
    assert_eq!(list[1].mode, "0644");
    assert!(!f.fs.list("/").await.unwrap().is_empty());

    let st = f.fs.stat("/a/sub/two.txt").await.unwrap();
    assert_eq!(
        (st.name.as_str(), st.path.as_str(), st.size),
        ("two.txt", "/a/sub/two.txt", 2)
    );
    assert!(f.fs.stat("/").await.unwrap().is_dir);
    // A symlink inside the root may be read through.
    assert_eq!(f.fs.read_to_vec("/a/link").await.unwrap(), b"1");

    f.fs.rename("/a/one.txt", "/b/c/one.txt").await.unwrap();
    assert_eq!(f.fs.read_to_vec("/b/c/one.txt").await.unwrap(), b"1");
    assert!(matches!(
        f.fs.stat("/a/one.txt").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        f.fs.rename("/nope", "/x").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(f.fs.stat("/x").await.is_err());
    assert!(matches!(
        f.fs.rename("/", "/x").await,
        Err(ProviderError::InvalidInput(_))
    ));

    f.fs.chmod("/b/c/one.txt", 0o750).await.unwrap();
    assert_eq!(f.fs.stat("/b/c/one.txt").await.unwrap().mode, "0750");
    assert!(matches!(
        f.fs.chmod("/b/c/one.txt", 0o17777).await,
        Err(ProviderError::InvalidInput(_))
    ));

    assert!(matches!(
        f.fs.delete("/a", false).await,
        Err(ProviderError::InvalidInput(m)) if m.contains("not empty")
    ));
    f.fs.delete("/a/sub/two.txt", false).await.unwrap();
    f.fs.delete("/a/sub", false).await.unwrap();
    f.fs.delete("/b", true).await.unwrap();
    assert!(matches!(
        f.fs.stat("/b").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        f.fs.delete("/", true).await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        f.fs.delete("/nope", true).await,
        Err(ProviderError::NotFound(_))
    ));
    // Deleting a dangling link deletes the link.
    f.fs.delete("/a/link", false).await.unwrap();
    assert!(f.fs.list("/a").await.unwrap().is_empty());
}

#[tokio::test]
async fn globs_with_double_star() {
    let f = Fixture::new();
    for p in [
        "/app/main.py",
        "/app/x/y/z.py",
        "/app/x/readme.md",
        "/app/.hidden.py",
        "/lib/a.py",
    ] {
        f.fs.write(p, Bytes::from_static(b""), None).await.unwrap();
    }
    f.link(&f.outside, "app/out");
    std::fs::write(f.outside.join("evil.py"), b"").unwrap();

    assert_eq!(
        f.fs.glob("/app/**/*.py").await.unwrap(),
        ["/app/.hidden.py", "/app/main.py", "/app/x/y/z.py"]
    );
    assert_eq!(
        f.fs.glob("/app/*.py").await.unwrap(),
        ["/app/.hidden.py", "/app/main.py"]
    );
    assert_eq!(f.fs.glob("/*/a.py").await.unwrap(), ["/lib/a.py"]);
    assert_eq!(f.fs.glob("/app/main.py").await.unwrap(), ["/app/main.py"]);
    assert!(f.fs.glob("/nope/**").await.unwrap().is_empty());
    let all = f.fs.glob("/**").await.unwrap();
    assert!(all.contains(&"/app/out".to_string()), "{all:?}");
    assert!(all.iter().all(|p| !p.contains("evil")), "{all:?}");
    assert!(matches!(
        f.fs.glob("/../**").await,
        Err(ProviderError::InvalidInput(_))
    ));
    assert!(matches!(
        f.fs.glob("/a[").await,
        Err(ProviderError::InvalidInput(_))
    ));
    std::fs::remove_file(f.outside.join("evil.py")).unwrap();
    f.assert_host_untouched();
}

#[tokio::test]
async fn dot_dot_never_leaves_the_root() {
    let f = Fixture::new();
    for p in [
        "/../outside/secret.txt",
        "../outside/secret.txt",
        "/a/../../outside/secret.txt",
    ] {
        assert_refused(f.fs.read_to_vec(p).await, p);
        assert_refused(f.fs.stat(p).await, p);
        assert_refused(f.fs.write(p, Bytes::from_static(b"pwned"), None).await, p);
        assert_refused(f.fs.chmod(p, 0o777).await, p);
        assert_refused(f.fs.delete(p, true).await, p);
        assert_refused(f.fs.rename(p, "/stolen").await, p);
        assert_refused(f.fs.rename("/x", p).await, p);
        assert_refused(f.fs.list(p).await, p);
    }
    assert_refused(f.fs.read_to_vec("/a\0b").await, "nul");
    assert_refused(f.fs.read_to_vec("").await, "empty");
    f.assert_host_untouched();
}

/// Absolute and relative symlinks planted in the sandbox that point at the
/// host secret, at its directory and at /etc.
#[tokio::test]
async fn symlinks_pointing_out_are_never_followed() {
    let f = Fixture::new();
    f.link(f.secret(), "abs_file");
    f.link("../outside/secret.txt", "rel_file");
    f.link(&f.outside, "abs_dir");
    f.link("../outside", "rel_dir");
    f.link("/etc", "etc_dir");
    f.link("/etc/shadow", "shadow");
    std::fs::create_dir(f.root.join("sub")).unwrap();
    f.link("../../outside", "sub/up");

    for p in [
        "/abs_file",
        "/rel_file",
        "/abs_dir/secret.txt",
        "/rel_dir/secret.txt",
        "/sub/up/secret.txt",
        "/etc_dir/hostname",
        "/etc_dir/passwd",
        "/shadow",
    ] {
        assert_refused(f.fs.read_to_vec(p).await, p);
        assert_refused(f.fs.chmod(p, 0o777).await, p);
    }
    for p in [
        "/abs_dir/secret.txt",
        "/rel_dir/secret.txt",
        "/sub/up/secret.txt",
        "/etc_dir/passwd",
    ] {
        assert_refused(f.fs.stat(p).await, p);
        assert_refused(f.fs.write(p, Bytes::from_static(b"pwned"), None).await, p);
        assert_refused(f.fs.delete(p, true).await, p);
        assert_refused(f.fs.rename(p, "/stolen").await, p);
    }
    for p in [
        "/abs_dir/new.txt",
        "/rel_dir/new.txt",
        "/sub/up/new.txt",
        "/abs_dir/d/new.txt",
    ] {
        assert_refused(f.fs.write(p, Bytes::from_static(b"pwned"), None).await, p);
        assert_refused(f.fs.rename("/abs_file", p).await, p);
    }
    for p in ["/abs_dir", "/rel_dir", "/etc_dir", "/sub/up"] {
        assert_refused(f.fs.list(p).await, p);
    }
    assert!(f.fs.glob("/abs_dir/*").await.unwrap_or_default().is_empty());
    assert!(f.fs.glob("/etc_dir/*").await.unwrap_or_default().is_empty());

    // stat describes the link itself.
    let st = f.fs.stat("/shadow").await.unwrap();
    assert!(st.is_symlink && !st.is_dir);
    assert_eq!(st.size, "/etc/shadow".len() as u64);

    // Writing over a link to the secret replaces the link, not the secret.
    f.fs.write("/abs_file", Bytes::from_static(b"mine"), None)
        .await
        .unwrap();
    assert_eq!(f.fs.read_to_vec("/abs_file").await.unwrap(), b"mine");
    // Moving and deleting a link act on the link.
    f.fs.rename("/rel_file", "/moved").await.unwrap();
    assert!(f.fs.stat("/moved").await.unwrap().is_symlink);
    assert_refused(f.fs.read_to_vec("/moved").await, "moved link");
    f.fs.delete("/abs_dir", true).await.unwrap();
    f.fs.delete("/moved", false).await.unwrap();
    f.assert_host_untouched();
    assert!(std::fs::metadata("/etc/passwd").is_ok());
}

/// A sandbox process swapping a directory for a symlink to the host while
/// files are read must never get the host file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_directory_for_a_symlink_does_not_escape() {
    let f = Fixture::new();
    let race = f.root.join("race");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (race, outside, stop) = (race.clone(), f.outside.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::create_dir(&race);
                let _ = std::fs::write(race.join("secret.txt"), b"inside");
                let _ = std::fs::remove_dir_all(&race);
                let _ = symlink(&outside, &race);
                let _ = std::fs::remove_file(&race);
            }
        })
    };
    for _ in 0..2000 {
        if let Ok(bytes) = f.fs.read_to_vec("/race/secret.txt").await {
            // Inside content (possibly half-written, or our own write
            // below) is fine; the host's never.
            assert_ne!(bytes, SECRET);
        }
        let _ =
            f.fs.write("/race/secret.txt", Bytes::from_static(b"pwned"), None)
                .await;
        let _ = f.fs.chmod("/race/secret.txt", 0o777).await;
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    f.assert_host_untouched();
}

#[tokio::test]
async fn refuses_special_files() {
    let f = Fixture::new();
    let status = std::process::Command::new("mkfifo")
        .arg(f.root.join("fifo"))
        .status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        eprintln!("skipping: mkfifo unavailable");
        return;
    }
    // Must return at once rather than block on the FIFO.
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), f.fs.read("/fifo"))
        .await
        .expect("read of a fifo blocked");
    assert!(matches!(r, Err(ProviderError::InvalidInput(_))));
}
