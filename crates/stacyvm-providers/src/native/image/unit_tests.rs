//! Unit tests of the pieces that need no registry: digests, compression,
//! layer commit, manifest parsing and platform choice, references, config.

use std::io::Write;

use super::config::{ImageConfig, RegistryCredential};
use super::digest::Digest;
use super::error::ImageError;
use super::layer::{TmpPath, commit_layer, unpack_blob};
use super::manifest::{Descriptor, Manifest, Parsed, PlatformSpec, select_platform};
use super::registry::parse_reference;

fn plain_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(5);
    h.set_cksum();
    b.append_data(&mut h, "etc/hello", &b"hello"[..])
        .expect("append");
    b.into_inner().expect("tar")
}

#[test]
fn digests_parse_strictly() {
    let hex = "a".repeat(64);
    assert_eq!(
        Digest::parse(&format!("sha256:{hex}")).expect("ok").hex(),
        hex
    );
    for bad in [
        format!("sha512:{hex}"),
        "sha256:abc".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:../{}", "a".repeat(61)),
    ] {
        assert!(Digest::parse(&bad).is_err(), "{bad} accepted");
    }
    let d = Digest::of(b"x");
    assert!(d.verify("x", b"x").is_ok());
    assert!(matches!(
        d.verify("x", b"y"),
        Err(ImageError::DigestMismatch { .. })
    ));
}

#[test]
fn unpacks_plain_gzip_and_zstd_to_the_same_diff_id() {
    let tar = plain_tar();
    let diff = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    for (name, blob) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, &blob).expect("write");
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).expect("mkdir");
        let u = unpack_blob(&path, Some(&Digest::of(&blob)), Some(&diff), &dest)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(u.diff_id, diff, "{name}");
        assert_eq!(u.blob_size, blob.len() as u64, "{name}");
        assert_eq!(
            std::fs::read(dest.join("etc/hello")).expect("read"),
            b"hello"
        );
    }
}

#[test]
fn unpack_refuses_wrong_digests() {
    let tar = plain_tar();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    std::fs::write(&path, &tar).expect("write");
    let wrong = Digest::of(b"something else");
    for (blob, diff) in [(Some(&wrong), None), (None, Some(&wrong))] {
        let dest = tempfile::tempdir().expect("dest");
        match unpack_blob(&path, blob, diff, dest.path()) {
            Err(ImageError::DigestMismatch { .. }) => {}
            other => panic!("expected digest mismatch, got {other:?}"),
        }
    }
}

#[test]
fn commit_layer_keeps_the_first_complete_copy() {
    let root = tempfile::tempdir().expect("tempdir");
    let layers = root.path().join("layers");
    let tmp = root.path().join("tmp");
    std::fs::create_dir_all(&layers).expect("layers");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let d = Digest::of(b"layer");
    for content in ["first", "second"] {
        let t = TmpPath::new(&tmp, "layer");
        std::fs::create_dir(t.path()).expect("mkdir");
        std::fs::write(t.path().join("f"), content).expect("write");
        let target = commit_layer(t.path(), &layers, &d).expect("commit");
        assert_eq!(
            std::fs::read_to_string(target.join("f")).expect("read"),
            "first"
        );
    }
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 0);
}

fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
    Descriptor {
        media_type: super::manifest::OCI_MANIFEST.into(),
        digest: format!("sha256:{}", format!("{n:x}").repeat(64)),
        size: 1,
        platform: Some(PlatformSpec {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(Into::into),
        }),
        annotations: None,
    }
}

#[test]
fn picks_our_platform_from_an_index() {
    let list = vec![
        entry("unknown", "unknown", None, 1),
        entry("linux", "arm", Some("v7"), 2),
        entry("linux", "arm64", Some("v8"), 3),
        entry("linux", "amd64", None, 4),
        entry("windows", "amd64", None, 5),
    ];
    let pick = |os, arch, v| select_platform(&list, os, arch, v).map(|d| d.digest.clone());
    assert_eq!(pick("linux", "amd64", None), Some(list[3].digest.clone()));
    assert_eq!(
        pick("linux", "arm64", Some("v8")),
        Some(list[2].digest.clone())
    );
    assert_eq!(pick("linux", "arm64", None), Some(list[2].digest.clone()));
    assert_eq!(pick("linux", "s390x", None), None);
}

#[test]
fn parses_manifests_and_refuses_schema1() {
    let index = br#"{"schemaVersion":2,"manifests":[]}"#;
    assert!(matches!(Manifest::parse("i", index), Ok(Parsed::Index(_))));
    let image =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
        "config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
    assert!(matches!(
        Manifest::parse("m", image),
        Ok(Parsed::Image { .. })
    ));
    let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
    assert!(Manifest::parse("v1", v1).is_err());
    let enc = br#"{"schemaVersion":2,"config":{"digest":"sha256:00"},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"sha256:00"}]}"#;
    assert!(Manifest::parse("enc", enc).is_err());
}

#[test]
fn short_names_resolve_to_docker_hub() {
    for (short, whole) in [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("team/tool:1", "docker.io/team/tool:1"),
        ("127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y:z"),
        ("localhost/x", "localhost/x:latest"),
    ] {
        assert_eq!(parse_reference(short).expect(short).whole(), whole);
    }
    assert!(matches!(
        parse_reference("no spaces allowed"),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn config_redacts_passwords_and_validates() {
    let mut cfg = ImageConfig::default();
    cfg.credentials.insert(
        "r.example".into(),
        RegistryCredential::new("u", "hunter2-secret"),
    );
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(shown.contains("<redacted>"));
    assert!(cfg.validate().is_ok());
    cfg.platform = "amd64".into();
    assert!(cfg.validate().unwrap_err().contains("images.platform"));
    let parsed: Result<ImageConfig, _> =
        serde_json::from_str(r#"{"insecure_registries":["127.0.0.1:5000"],"nope":1}"#);
    assert!(parsed.is_err(), "unknown keys must be refused");
}

#[test]
fn loopback_registries_are_recognised() {
    use super::registry::is_loopback;
    for r in [
        "127.0.0.1:5000",
        "127.1.2.3",
        "localhost",
        "LOCALHOST:5000",
        "[::1]:5000",
    ] {
        assert!(is_loopback(r), "{r}");
    }
    for r in [
        "docker.io",
        "10.0.0.1:5000",
        "localhost.example.com",
        "128.0.0.1:5000",
        "[::2]:1",
    ] {
        assert!(!is_loopback(r), "{r}");
    }
}
