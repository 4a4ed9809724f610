//! Escape cases: `..` paths and symlinks planted by sandbox commands must
//! never let the file API read or modify a host file. A marker directory on
//! the host (where this test runs) holds a file that must stay unread and
//! untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Harness, mkdir, read_all, sh_ok, with_sandbox};
use crate::ProviderError;

const MARKER: &[u8] = b"host marker: must never be read through a sandbox\n";

/// A host directory holding `marker.txt` (mode 0600).
struct HostMarker {
    dir: tempfile::TempDir,
}

impl HostMarker {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stacyvm-conformance-marker-")
            .tempdir()
            .expect("host tempdir");
        std::fs::write(dir.path().join("marker.txt"), MARKER).unwrap();
        std::fs::set_permissions(
            dir.path().join("marker.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        HostMarker { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self) -> PathBuf {
        self.path().join("marker.txt")
    }

    /// The marker is unchanged and nothing else appeared beside it.
    fn assert_untouched(&self, name: &str) {
        assert_eq!(
            std::fs::read(self.file()).expect("marker still exists"),
            MARKER,
            "[{name}] host marker modified"
        );
        let md = std::fs::symlink_metadata(self.file()).unwrap();
        assert!(md.is_file(), "[{name}] host marker replaced");
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o600,
            "[{name}] host marker chmodded"
        );
        let entries: Vec<_> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            entries,
            ["marker.txt"],
            "[{name}] files appeared in the host marker dir"
        );
    }
}

/// The error an escape attempt must produce: 400 or 404, never the file.
fn refused<T: std::fmt::Debug>(name: &str, what: &str, r: Result<T, ProviderError>) {
    match r {
        Err(ProviderError::InvalidInput(_) | ProviderError::NotFound(_)) => {}
        other => panic!("[{name}] {what}: expected InvalidInput or NotFound, got {other:?}"),
    }
}

/// Paths with `..` climbing above `/` are refused by every operation.
pub async fn case_path_escape_dot_dot(h: &Harness) {
    let marker = HostMarker::new();
    let up = "/..".repeat(40);
    let host_file = format!("{up}{}", marker.file().display());
    let host_dir = format!("{up}{}", marker.path().display());
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        let name = p.name();
        p.files()
            .write(&id, "/inside.txt", Bytes::from_static(b"in"), None)
            .await
            .unwrap();
        for path in [
            host_file.as_str(),
            "/../../../../etc/passwd",
            "../etc/passwd",
            "/a/../../etc/hostname",
        ] {
            refused(name, &format!("read {path}"), read_all(h, &id, path).await);
            refused(
                name,
                &format!("stat {path}"),
                p.files().stat(&id, path).await,
            );
            refused(
                name,
                &format!("chmod {path}"),
                p.files().chmod(&id, path, 0o666).await,
            );
            refused(
                name,
                &format!("delete {path}"),
                p.files().delete(&id, path, true).await,
            );
            refused(
                name,
                &format!("move {path}"),
                p.files().rename(&id, path, "/stolen").await,
            );
        }
        for path in [format!("{host_dir}/pwned.txt"), host_file.clone()] {
            refused(
                name,
                &format!("write {path}"),
                p.files()
                    .write(&id, &path, Bytes::from_static(b"pwned"), None)
                    .await,
            );
            refused(
                name,
                &format!("move to {path}"),
                p.files().rename(&id, "/inside.txt", &path).await,
            );
        }
        refused(name, "list ..", p.files().list(&id, &host_dir).await);
        refused(
            name,
            "glob ..",
            p.files().glob(&id, &format!("{host_dir}/*")).await,
        );
        refused(name, "nul byte", read_all(h, &id, "/inside.txt\0/x").await);
        refused(name, "empty path", read_all(h, &id, "").await);
        marker.assert_untouched(name);
    })
    .await;
}

/// Symlinks planted by a sandbox command (absolute and relative, to a host
/// file, a host directory and `/etc`) are never followed to the host.
pub async fn case_symlink_escape(h: &Harness) {
    let marker = HostMarker::new();
    let marker_dir = marker.path().display().to_string();
    let rel_up = "../".repeat(40);
    let script = format!(
        "ln -s {marker_dir}/marker.txt hostfile && \
         ln -s {marker_dir} hostdir && \
         ln -s {rel_up}{rel} reldir && \
         ln -s {rel_up}{rel}/marker.txt relfile && \
         ln -s /etc etc_link && \
         ln -s /etc/shadow shadow && ls",
        rel = marker_dir.trim_start_matches('/'),
    );
    let host_hostname = std::fs::read("/etc/hostname").ok();
    let canary = format!("stacyvm-escape-{}", std::process::id());
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        let name = p.name();
        mkdir(h, &id, "/esc").await;
        sh_ok(h, &id, "/esc", &script).await;
        p.files()
            .write(&id, "/esc/victim.txt", Bytes::from_static(b"v"), None)
            .await
            .unwrap();

        for path in [
            "/esc/hostfile",
            "/esc/relfile",
            "/esc/hostdir/marker.txt",
            "/esc/reldir/marker.txt",
        ] {
            match read_all(h, &id, path).await {
                Ok(data) => {
                    assert_ne!(data, MARKER, "[{name}] read {path} returned the HOST file");
                    panic!(
                        "[{name}] read {path}: expected an error, got {} bytes",
                        data.len()
                    );
                }
                r => refused(name, &format!("read {path}"), r),
            }
            refused(
                name,
                &format!("chmod {path}"),
                p.files().chmod(&id, path, 0o666).await,
            );
        }
        for path in ["/esc/hostdir/marker.txt", "/esc/reldir/marker.txt"] {
            refused(
                name,
                &format!("stat {path}"),
                p.files().stat(&id, path).await,
            );
            refused(
                name,
                &format!("delete {path}"),
                p.files().delete(&id, path, false).await,
            );
            refused(
                name,
                &format!("move {path}"),
                p.files().rename(&id, path, "/stolen").await,
            );
        }
        for path in [
            "/esc/hostdir/pwned.txt",
            "/esc/reldir/pwned.txt",
            "/esc/hostdir/sub/pwned.txt",
        ] {
            refused(
                name,
                &format!("write {path}"),
                p.files()
                    .write(&id, path, Bytes::from_static(b"pwned"), None)
                    .await,
            );
            refused(
                name,
                &format!("move to {path}"),
                p.files().rename(&id, "/esc/victim.txt", path).await,
            );
        }
        for path in ["/esc/hostdir", "/esc/reldir"] {
            if let Ok(list) = p.files().list(&id, path).await {
                assert!(
                    list.iter().all(|f| f.name != "marker.txt"),
                    "[{name}] list {path} showed the host directory"
                );
            }
        }
        let globbed = p.files().glob(&id, "/esc/**").await.unwrap_or_default();
        assert!(
            globbed.iter().all(|g| !g.ends_with("marker.txt")),
            "[{name}] glob walked into the host: {globbed:?}"
        );

        // `/etc` through a link: a provider may resolve it inside the
        // sandbox (its own /etc) or refuse it, but never read the host's.
        match read_all(h, &id, "/esc/etc_link/hostname").await {
            Ok(data) => assert!(
                host_hostname.as_deref() != Some(data.as_slice()),
                "[{name}] read through /esc/etc_link returned the host's /etc/hostname"
            ),
            r => refused(name, "read /esc/etc_link/hostname", r),
        }
        let _ = p
            .files()
            .write(
                &id,
                &format!("/esc/etc_link/{canary}"),
                Bytes::from_static(b"pwned"),
                None,
            )
            .await;
        let host_canary = Path::new("/etc").join(&canary);
        let escaped = host_canary.exists();
        let _ = std::fs::remove_file(&host_canary);
        assert!(
            !escaped,
            "[{name}] a write through /esc/etc_link created {}",
            host_canary.display()
        );
        refused(
            name,
            "read /esc/shadow",
            read_all(h, &id, "/esc/shadow").await,
        );
        let st = p.files().stat(&id, "/esc/shadow").await.unwrap();
        assert!(
            st.is_symlink && !st.is_dir,
            "[{name}] stat must describe the link itself"
        );

        // Writing over the link to the host file replaces the link, or is
        // refused; the host file is untouched either way.
        let _ = p
            .files()
            .write(&id, "/esc/hostfile", Bytes::from_static(b"mine"), None)
            .await;
        // Deleting the links deletes the links.
        p.files().delete(&id, "/esc/hostdir", true).await.unwrap();
        p.files().delete(&id, "/esc/reldir", false).await.unwrap();
        marker.assert_untouched(name);
    })
    .await;
}
