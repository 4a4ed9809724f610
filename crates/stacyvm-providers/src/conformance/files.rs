//! File cases: the eight operations, binary content, a 10 MB file, modes,
//! and files shared between the file API and commands.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;

use super::{Harness, read_all, sh_ok, with_sandbox};
use crate::ProviderError;

/// Every byte value, NULs included, round-trips exactly.
pub async fn case_file_binary_content(h: &Harness) {
    with_sandbox(h, |id| async move {
        let mut content: Vec<u8> = (0..=255u8).collect();
        content.extend_from_slice(&[0, 0, 0, b'\n', b'\r', 0xff, 0]);
        content.extend((0..=255u8).rev());
        let p = &h.provider;
        p.files()
            .write(&id, "/bin-test/all.bin", Bytes::from(content.clone()), None)
            .await
            .unwrap();
        assert_eq!(
            read_all(h, &id, "/bin-test/all.bin").await.unwrap(),
            content,
            "[{}] binary content must round-trip",
            p.name()
        );
        p.files()
            .write(&id, "/bin-test/empty", Bytes::new(), None)
            .await
            .unwrap();
        assert!(
            read_all(h, &id, "/bin-test/empty")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            p.files().stat(&id, "/bin-test/all.bin").await.unwrap().size,
            content.len() as u64
        );
        // The command side sees the same bytes.
        let out = h
            .provider
            .exec(
                &id,
                &super::spec(
                    &["/bin/sh", "-c", "cat all.bin"],
                    "/bin-test",
                    Duration::from_secs(30),
                ),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, content, "[{}] cat of a binary file", p.name());
    })
    .await;
}

/// A 10 MB file is written and read back identical.
pub async fn case_file_large(h: &Harness) {
    with_sandbox(h, |id| async move {
        // Deterministic pseudo-random bytes (xorshift): incompressible and
        // every offset distinct enough to catch a misplaced chunk.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let content: Vec<u8> = (0..10 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let p = &h.provider;
        p.files()
            .write(&id, "/big/ten.bin", Bytes::from(content.clone()), None)
            .await
            .unwrap();
        let back = read_all(h, &id, "/big/ten.bin").await.unwrap();
        assert_eq!(back.len(), content.len(), "[{}] 10 MB length", p.name());
        assert!(back == content, "[{}] 10 MB content differs", p.name());
        assert_eq!(
            p.files().stat(&id, "/big/ten.bin").await.unwrap().size,
            10 * 1024 * 1024
        );
    })
    .await;
}

/// Writing creates parent directories; the mode defaults to 0644 and an
/// explicit mode is applied.
pub async fn case_file_write_creates_parents_and_mode(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        p.files()
            .write(&id, "/a/b/c/d.txt", Bytes::from_static(b"deep"), None)
            .await
            .unwrap();
        assert_eq!(read_all(h, &id, "/a/b/c/d.txt").await.unwrap(), b"deep");
        assert!(p.files().stat(&id, "/a/b/c").await.unwrap().is_dir);
        assert_eq!(
            p.files().stat(&id, "/a/b/c/d.txt").await.unwrap().mode,
            "0644"
        );

        p.files()
            .write(
                &id,
                "/a/run.sh",
                Bytes::from_static(b"#!/bin/sh\necho ran\n"),
                Some(0o755),
            )
            .await
            .unwrap();
        assert_eq!(p.files().stat(&id, "/a/run.sh").await.unwrap().mode, "0755");
        assert_eq!(sh_ok(h, &id, "/a", "./run.sh").await, "ran\n");

        // Overwriting replaces the content.
        p.files()
            .write(&id, "/a/b/c/d.txt", Bytes::from_static(b"new"), None)
            .await
            .unwrap();
        assert_eq!(read_all(h, &id, "/a/b/c/d.txt").await.unwrap(), b"new");
    })
    .await;
}

/// List gives names, absolute paths, sizes, kinds; stat describes one path.
pub async fn case_file_list_and_stat(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        let name = p.name();
        p.files()
            .write(&id, "/ls/one.txt", Bytes::from_static(b"1"), None)
            .await
            .unwrap();
        p.files()
            .write(&id, "/ls/sub/two.txt", Bytes::from_static(b"22"), None)
            .await
            .unwrap();
        sh_ok(h, &id, "/ls", "ln -s one.txt link").await;
        let mut list = p.files().list(&id, "/ls").await.unwrap();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["link", "one.txt", "sub"], "[{name}] list");
        assert_eq!(list[1].path, "/ls/one.txt");
        assert_eq!((list[1].size, list[1].is_dir), (1, false));
        assert!(list[2].is_dir && list[2].path == "/ls/sub");
        assert!(list[0].is_symlink, "[{name}] a symlink is described as one");

        let st = p.files().stat(&id, "/ls/sub/two.txt").await.unwrap();
        assert_eq!(
            (st.name.as_str(), st.path.as_str()),
            ("two.txt", "/ls/sub/two.txt")
        );
        assert_eq!((st.size, st.is_dir, st.mode.as_str()), (2, false, "0644"));
        let age = Utc::now() - st.mod_time;
        assert!(
            age.num_seconds().abs() < 600,
            "[{name}] mod_time {} is not recent",
            st.mod_time
        );
        assert!(p.files().stat(&id, "/ls").await.unwrap().is_dir);
        assert!(p.files().stat(&id, "/").await.unwrap().is_dir);
        assert!(matches!(
            p.files().stat(&id, "/ls/nope").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            read_all(h, &id, "/ls/nope").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            p.files().list(&id, "/nope").await,
            Err(ProviderError::NotFound(_))
        ));
    })
    .await;
}

/// Move renames a file into a new directory.
pub async fn case_file_move(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        p.files()
            .write(&id, "/mv/a.txt", Bytes::from_static(b"moving"), None)
            .await
            .unwrap();
        p.files()
            .rename(&id, "/mv/a.txt", "/mv/dest/b.txt")
            .await
            .unwrap();
        assert_eq!(read_all(h, &id, "/mv/dest/b.txt").await.unwrap(), b"moving");
        assert!(matches!(
            p.files().stat(&id, "/mv/a.txt").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            p.files().rename(&id, "/mv/nope", "/mv/x").await,
            Err(ProviderError::NotFound(_))
        ));
        // Directories move too.
        p.files().rename(&id, "/mv/dest", "/mv2").await.unwrap();
        assert_eq!(read_all(h, &id, "/mv2/b.txt").await.unwrap(), b"moving");
    })
    .await;
}

/// Chmod sets the permission bits, visible to commands too.
pub async fn case_file_chmod(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        p.files()
            .write(
                &id,
                "/cm/s.sh",
                Bytes::from_static(b"#!/bin/sh\necho ok\n"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            sh_ok(h, &id, "/cm", "test -x s.sh && echo x || echo no").await,
            "no\n"
        );
        p.files().chmod(&id, "/cm/s.sh", 0o750).await.unwrap();
        assert_eq!(p.files().stat(&id, "/cm/s.sh").await.unwrap().mode, "0750");
        assert_eq!(
            sh_ok(h, &id, "/cm", "test -x s.sh && echo x || echo no").await,
            "x\n"
        );
        p.files().chmod(&id, "/cm/s.sh", 0o600).await.unwrap();
        assert_eq!(p.files().stat(&id, "/cm/s.sh").await.unwrap().mode, "0600");
        assert!(matches!(
            p.files().chmod(&id, "/cm/nope", 0o600).await,
            Err(ProviderError::NotFound(_))
        ));
    })
    .await;
}

/// Delete removes files; a non-empty directory only when recursive.
pub async fn case_file_delete(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        let name = p.name();
        p.files()
            .write(&id, "/del/f.txt", Bytes::from_static(b"x"), None)
            .await
            .unwrap();
        p.files()
            .write(&id, "/del/d/g.txt", Bytes::from_static(b"y"), None)
            .await
            .unwrap();
        p.files().delete(&id, "/del/f.txt", false).await.unwrap();
        assert!(matches!(
            p.files().stat(&id, "/del/f.txt").await,
            Err(ProviderError::NotFound(_))
        ));
        match p.files().delete(&id, "/del/d", false).await {
            Err(ProviderError::InvalidInput(_)) => {}
            other => panic!("[{name}] non-recursive delete of a full dir: {other:?}"),
        }
        assert_eq!(read_all(h, &id, "/del/d/g.txt").await.unwrap(), b"y");
        p.files().delete(&id, "/del/d", true).await.unwrap();
        assert!(matches!(
            p.files().stat(&id, "/del/d").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            p.files().delete(&id, "/del/nope", false).await,
            Err(ProviderError::NotFound(_))
        ));
        assert_eq!(
            sh_ok(h, &id, "/del", "ls -A").await,
            "",
            "[{name}] left over"
        );
    })
    .await;
}

/// Glob supports `*` and `**` and returns sorted absolute paths.
pub async fn case_file_glob(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        for f in [
            "/g/a.py",
            "/g/x/b.py",
            "/g/x/y/c.py",
            "/g/x/readme.md",
            "/g/z.txt",
        ] {
            p.files()
                .write(&id, f, Bytes::from_static(b"#"), None)
                .await
                .unwrap();
        }
        assert_eq!(
            p.files().glob(&id, "/g/**/*.py").await.unwrap(),
            ["/g/a.py", "/g/x/b.py", "/g/x/y/c.py"],
            "[{}] ** glob",
            p.name()
        );
        assert_eq!(p.files().glob(&id, "/g/*.py").await.unwrap(), ["/g/a.py"]);
        assert_eq!(
            p.files().glob(&id, "/g/x/*").await.unwrap(),
            ["/g/x/b.py", "/g/x/readme.md", "/g/x/y"]
        );
        assert_eq!(p.files().glob(&id, "/g/?.txt").await.unwrap(), ["/g/z.txt"]);
        assert!(p.files().glob(&id, "/g/**/*.rs").await.unwrap().is_empty());
        assert!(p.files().glob(&id, "/nowhere/**").await.unwrap().is_empty());
    })
    .await;
}

/// Files written through the API are visible to commands and vice versa.
pub async fn case_file_exec_visibility(h: &Harness) {
    with_sandbox(h, |id| async move {
        let p = &h.provider;
        p.files()
            .write(
                &id,
                "/vis/from_api.txt",
                Bytes::from_static(b"hello from api"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            sh_ok(h, &id, "/vis", "cat from_api.txt").await,
            "hello from api"
        );
        sh_ok(
            h,
            &id,
            "/vis",
            "printf 'from exec\\n' > from_exec.txt; mkdir -p made/dir",
        )
        .await;
        assert_eq!(
            read_all(h, &id, "/vis/from_exec.txt").await.unwrap(),
            b"from exec\n"
        );
        assert!(p.files().stat(&id, "/vis/made/dir").await.unwrap().is_dir);
        let names: Vec<String> = p
            .files()
            .list(&id, "/vis")
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        for n in ["from_api.txt", "from_exec.txt", "made"] {
            assert!(
                names.iter().any(|x| x == n),
                "[{}] list lacks {n}: {names:?}",
                p.name()
            );
        }
    })
    .await;
}
