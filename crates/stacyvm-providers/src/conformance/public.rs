//! Errors with a public face: whatever a provider answers a client (error
//! messages, health, config summary) names sandboxes, sandbox paths and
//! config keys, never the host's paths, sockets, daemon addresses or the
//! runtime's command line ([`Harness::private`] lists the strings each
//! provider's test knows must not appear).

use std::time::Duration;

use bytes::Bytes;
use stacyvm_core::SandboxId;

use super::{Harness, QUICK, mkdir, sh_ok, spec, with_sandbox};
use crate::{ProviderError, SpawnSpec, StreamOptions};

impl Harness {
    /// Panics if `text`, shown to a client as `what`, holds a private
    /// host string.
    pub fn assert_public(&self, what: &str, text: &str) {
        for needle in self.private.iter().filter(|n| !n.is_empty()) {
            assert!(
                !text.contains(needle.as_str()),
                "[{}] {what} shows the host string {needle:?}: {text}",
                self.provider.name()
            );
        }
    }

    /// [`Harness::assert_public`] on an error's message, when there is one.
    pub fn assert_public_err<T>(&self, what: &str, r: &Result<T, ProviderError>) {
        if let Err(e) = r {
            self.assert_public(what, &e.to_string());
        }
    }
}

/// Provokes the errors a client can cause (unknown sandboxes, bad paths,
/// bad workdirs, a missing image, calls after destroy) and checks that
/// none of them, nor health or the config summary, shows a host string.
pub async fn case_errors_are_public(h: &Harness) {
    let p = &h.provider;
    let report = p.health().await;
    h.assert_public("health", report.error.as_deref().unwrap_or(""));
    h.assert_public("config summary", &p.config_summary().to_string());

    let unknown = SandboxId::generate();
    h.assert_public_err(
        "exec on an unknown id",
        &p.exec(&unknown, &spec(&["true"], "", QUICK)).await,
    );
    h.assert_public_err(
        "exec_stream on an unknown id",
        &p.exec_stream(
            &unknown,
            &spec(&["true"], "", QUICK),
            StreamOptions::default(),
        )
        .await
        .map(drop),
    );
    h.assert_public_err(
        "read on an unknown id",
        &p.files().read(&unknown, "/x").await.map(drop),
    );
    h.assert_public_err("logs on an unknown id", &p.logs(&unknown, 10).await);

    // A spawn whose image cannot be had: the error names the image, not
    // where the provider looked for it.
    let bad = SpawnSpec {
        id: SandboxId::generate(),
        image: "127.0.0.1:1/stacyvm/no-such-image:0".into(),
        memory_mb: 64,
        vcpus: 1,
        metadata: Default::default(),
        labels: Default::default(),
        network: None,
    };
    let spawned = tokio::time::timeout(Duration::from_secs(60), p.spawn(&bad)).await;
    if let Ok(r) = &spawned {
        h.assert_public_err("spawn of a missing image", r);
        if r.is_ok() {
            // The mock takes any image name.
            let _ = p.destroy(&bad.id).await;
        }
    }

    with_sandbox(h, |id| async move {
        mkdir(h, &id, "/pub/dir/sub").await;
        sh_ok(h, &id, "/pub", "echo x > file").await;
        let f = p.files();
        let checks = [
            (
                "exec in a file as workdir",
                p.exec(&id, &spec(&["true"], "/pub/file", QUICK))
                    .await
                    .map(drop),
            ),
            (
                "read of a missing file",
                f.read(&id, "/pub/missing").await.map(drop),
            ),
            (
                "read of a directory",
                f.read(&id, "/pub/dir").await.map(drop),
            ),
            (
                "write over a directory",
                f.write(&id, "/pub/dir", Bytes::new(), None).await,
            ),
            ("write to /", f.write(&id, "/", Bytes::new(), None).await),
            ("list of a file", f.list(&id, "/pub/file").await.map(drop)),
            (
                "stat of a missing file",
                f.stat(&id, "/pub/missing").await.map(drop),
            ),
            (
                "move of a missing file",
                f.rename(&id, "/pub/missing", "/pub/b").await,
            ),
            (
                "chmod with a bad mode",
                f.chmod(&id, "/pub/file", 0o177777).await,
            ),
            (
                "delete of a full directory",
                f.delete(&id, "/pub/dir", false).await,
            ),
            ("delete of /", f.delete(&id, "/", true).await),
            (
                "glob with a bad pattern",
                f.glob(&id, "/pub/[").await.map(drop),
            ),
        ];
        for (what, r) in &checks {
            h.assert_public_err(what, r);
        }
        let out = p
            .exec(&id, &spec(&["no-such-command-stacyvm"], "", QUICK))
            .await;
        h.assert_public_err("exec of a missing command", &out);
        if let Ok(out) = &out {
            h.assert_public(
                "the stderr of a missing command",
                &String::from_utf8_lossy(&out.stderr),
            );
        }
        h.assert_public_err("logs", &p.logs(&id, 100).await);
        if let Ok(lines) = p.logs(&id, 100).await {
            h.assert_public("logs", &lines.join("\n"));
        }
        p.destroy(&id).await.expect("destroy");
        h.assert_public_err(
            "exec after destroy",
            &p.exec(&id, &spec(&["true"], "", QUICK)).await,
        );
        h.assert_public_err(
            "read after destroy",
            &f.read(&id, "/pub/file").await.map(drop),
        );
        h.assert_public_err("logs after destroy", &p.logs(&id, 10).await);
    })
    .await;
}
