//! Unit tests of the layer unpacker on hand-made tar streams, including
//! hostile ones that try to write outside the layer directory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

/// Builds tar streams with raw, unvalidated names (tar::Builder refuses
/// `..`, which is exactly what we need to feed the unpacker).
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        RawTar(Vec::new())
    }

    fn push(&mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8], mode: u32) {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    fn file(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        self.push(tar::EntryType::Regular, name, "", data, mode);
        self
    }
    fn dir(mut self, name: &str, mode: u32) -> Self {
        self.push(tar::EntryType::Directory, name, "", b"", mode);
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        self.push(tar::EntryType::Symlink, name, target, b"", 0o777);
        self
    }
    fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.push(tar::EntryType::Link, name, target, b"", 0o644);
        self
    }
    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats>) {
    let outer = tempfile::tempdir().expect("tempdir");
    let dest = outer.path().join("layer");
    fs::create_dir(&dest).expect("mkdir");
    let r = unpack_layer(bytes, &dest, "sha256:test");
    (outer, r)
}

fn assert_unsafe(r: Result<UnpackStats>, what: &str) {
    match r {
        Err(ImageError::UnsafeLayer { reason, .. }) => {
            assert!(!reason.is_empty(), "{what}: empty reason")
        }
        other => panic!("{what}: expected UnsafeLayer, got {other:?}"),
    }
}

/// Nothing was created next to the layer directory.
fn assert_nothing_outside(outer: &Path) {
    let names: Vec<_> = fs::read_dir(outer)
        .expect("read outer")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("layer")],
        "escaped entries"
    );
}

#[test]
fn rejects_parent_dir_paths() {
    let tar = RawTar::new().file("../evil", b"x", 0o644).finish();
    let (outer, r) = unpack(&tar);
    assert_unsafe(r, "../evil");
    assert_nothing_outside(outer.path());

    let tar = RawTar::new().file("a/../../evil", b"x", 0o644).finish();
    let (outer, r) = unpack(&tar);
    assert_unsafe(r, "a/../../evil");
    assert_nothing_outside(outer.path());
}

#[test]
fn rejects_absolute_paths() {
    let tar = RawTar::new()
        .file("/tmp/stacyvm-evil", b"x", 0o644)
        .finish();
    let (_outer, r) = unpack(&tar);
    assert_unsafe(r, "absolute");
    assert!(!Path::new("/tmp/stacyvm-evil").exists());
}

#[test]
fn rejects_writing_through_a_symlink_parent() {
    let outer = tempfile::tempdir().expect("tempdir");
    let victim = outer.path().join("victim");
    fs::create_dir(&victim).expect("victim");
    let tar = RawTar::new()
        .symlink("link", victim.to_str().expect("utf8"))
        .file("link/pwned", b"x", 0o644)
        .finish();
    let dest = outer.path().join("layer");
    fs::create_dir(&dest).expect("mkdir");
    let r = unpack_layer(&tar[..], &dest, "sha256:test");
    assert_unsafe(r, "symlink parent");
    assert!(!victim.join("pwned").exists(), "wrote through symlink");

    // Relative variant: a symlink to `..` used as a directory.
    let tar = RawTar::new()
        .symlink("up", "..")
        .file("up/pwned", b"x", 0o644)
        .finish();
    let (outer, r) = unpack(&tar);
    assert_unsafe(r, "relative symlink parent");
    assert_nothing_outside(outer.path());
}

#[test]
fn rejects_hardlinks_outside_or_through_symlinks() {
    let tar = RawTar::new().hardlink("h", "../../etc/passwd").finish();
    let (_o, r) = unpack(&tar);
    assert_unsafe(r, "hardlink ..");

    let tar = RawTar::new().hardlink("h", "/etc/passwd").finish();
    let (_o, r) = unpack(&tar);
    assert_unsafe(r, "hardlink absolute");

    let tar = RawTar::new()
        .symlink("etc", "/etc")
        .hardlink("h", "etc/passwd")
        .finish();
    let (_o, r) = unpack(&tar);
    assert_unsafe(r, "hardlink through symlink");
}

#[test]
fn deferred_dir_modes_never_follow_a_later_symlink() {
    let outer = tempfile::tempdir().expect("tempdir");
    let victim = outer.path().join("victim");
    fs::create_dir_all(victim.join("b")).expect("victim");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::set_permissions(victim.join("b"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let v = victim.to_str().expect("utf8");
    // `d/` and `a/b/` get their modes at the end; by then `d` and `a` are
    // symlinks to the victim.
    let tar = RawTar::new()
        .dir("d/", 0o777)
        .dir("a/b/", 0o777)
        .symlink("d", v)
        .symlink("a", v)
        .finish();
    let dest = outer.path().join("layer");
    fs::create_dir(&dest).expect("mkdir");
    unpack_layer(&tar[..], &dest, "sha256:test").expect("unpack");
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode(&victim), 0o700);
    assert_eq!(mode(&victim.join("b")), 0o700);
    assert!(
        fs::symlink_metadata(dest.join("d"))
            .expect("d")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn symlink_is_replaced_not_followed_by_a_later_file() {
    let outer = tempfile::tempdir().expect("tempdir");
    let victim = outer.path().join("victim.txt");
    fs::write(&victim, "original").expect("victim");
    let tar = RawTar::new()
        .symlink("f", victim.to_str().expect("utf8"))
        .file("f", b"new", 0o644)
        .finish();
    let dest = outer.path().join("layer");
    fs::create_dir(&dest).expect("mkdir");
    unpack_layer(&tar[..], &dest, "sha256:test").expect("unpack");
    assert_eq!(fs::read_to_string(&victim).expect("read"), "original");
    assert_eq!(fs::read_to_string(dest.join("f")).expect("read"), "new");
}

#[test]
fn keeps_modes_links_and_contents() {
    let tar = RawTar::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file("bin/tool", b"#!/bin/sh\n", 0o4755)
        .symlink("bin/alias", "tool")
        .hardlink("bin/hard", "bin/tool")
        .dir("ro/", 0o555)
        .file("ro/inside", b"data", 0o600)
        .finish();
    let (outer, r) = unpack(&tar);
    let stats = r.expect("unpack");
    assert_eq!(stats.entries, 7);
    let l = outer.path().join("layer");
    let tool = fs::metadata(l.join("bin/tool")).expect("tool");
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_link(l.join("bin/alias")).expect("link"),
        Path::new("tool")
    );
    assert_eq!(
        fs::metadata(l.join("bin/hard")).expect("hard").ino(),
        tool.ino()
    );
    let ro = fs::metadata(l.join("ro")).expect("ro");
    assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
    assert_eq!(fs::read(l.join("ro/inside")).expect("inside"), b"data");
    if rustix::process::geteuid().is_root() {
        assert_eq!((tool.uid(), tool.gid()), (1234, 4321));
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: overlay whiteouts need root (trusted.* xattrs)");
        return;
    }
    let tar = RawTar::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.motd", b"", 0o644)
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .file("var/cache/kept", b"k", 0o644)
        .file(".wh.kept-here", b"", 0o644)
        .file("kept-here", b"same layer wins", 0o644)
        .finish();
    let (outer, r) = unpack(&tar);
    r.expect("unpack");
    let l = outer.path().join("layer");
    let motd = fs::symlink_metadata(l.join("etc/motd")).expect("whiteout");
    assert!(motd.file_type().is_char_device() && motd.rdev() == 0);
    assert!(!l.join("etc/.wh.motd").exists());
    let mut buf = [0u8; 4];
    let n = rustix::fs::lgetxattr(l.join("var/cache"), OVERLAY_OPAQUE_XATTR, &mut buf)
        .expect("opaque xattr");
    assert_eq!(&buf[..n], b"y");
    assert_eq!(fs::read(l.join("var/cache/kept")).expect("kept"), b"k");
    assert_eq!(
        fs::read(l.join("kept-here")).expect("kept-here"),
        b"same layer wins"
    );
}

#[test]
fn rejects_truncated_archives() {
    let mut tar = RawTar::new().file("big", &[7u8; 4096], 0o644).finish();
    tar.truncate(1024);
    let (_o, r) = unpack(&tar);
    assert!(r.is_err(), "truncated tar accepted");
}
