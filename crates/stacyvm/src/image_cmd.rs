//! `stacyvm image pull|list|rm|import|gc`: the CLI over the native image
//! store, with a progress bar for pulls. Mounted by `main.rs` as a
//! subcommand; all the work is in `stacyvm_providers::native::image`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use stacyvm_providers::native::image::{ImageStore, PullProgress};

/// Manage the images of the native provider.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image (e.g. `alpine:latest`, `127.0.0.1:5000/team/tool:1`).
    Pull {
        reference: String,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List cached images.
    #[command(visible_alias = "ls")]
    List {
        /// Print the index records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove images and delete the layers nothing else uses.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Import a local image: an OCI layout directory (`DIR` or `DIR:REF`)
    /// or a rootfs tarball (plain, gzip or zstd).
    Import {
        /// OCI image layout directory, optionally `DIR:REF` to pick a manifest.
        #[arg(long, conflicts_with = "rootfs", required_unless_present = "rootfs")]
        oci: Option<PathBuf>,
        /// Root filesystem tarball.
        #[arg(long)]
        rootfs: Option<PathBuf>,
        /// Reference to store the image under, e.g. `myimg:tag`.
        #[arg(long)]
        name: String,
    },
    /// Delete layers and blobs no image or sandbox uses.
    Gc,
}

/// Runs one image command against `store`.
pub async fn run(cmd: ImageCommand, store: &ImageStore) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCommand::Pull { reference, quiet } => {
            let h = if quiet {
                store.pull(&reference, |_| {}).await
            } else {
                pull_with_bar(store, &reference).await
            }
            .with_context(|| format!("pulling {reference}"))?;
            writeln!(out, "{} {}", h.reference, h.digest)?;
        }
        ImageCommand::List { json } => {
            let images = store.list().await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &images)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<50} {:<19} {:>7} {:>10}  PULLED",
                    "REFERENCE", "DIGEST", "LAYERS", "SIZE"
                )?;
                for i in images {
                    let short = i.manifest_digest.get(..19).unwrap_or(&i.manifest_digest);
                    writeln!(
                        out,
                        "{:<50} {:<19} {:>7} {:>10}  {}",
                        i.reference,
                        short,
                        i.layers.len(),
                        HumanBytes(i.size).to_string(),
                        i.pulled_at.format("%Y-%m-%d %H:%M:%S")
                    )?;
                }
            }
        }
        ImageCommand::Rm { references } => {
            for r in references {
                let report = store
                    .remove(&r)
                    .await
                    .with_context(|| format!("removing {r}"))?;
                writeln!(out, "removed {r} ({} layers freed)", report.layers_removed)?;
            }
        }
        ImageCommand::Import { oci, rootfs, name } => {
            let h = match (oci, rootfs) {
                (Some(dir), _) => store
                    .import_oci_layout(&dir, &name)
                    .await
                    .with_context(|| format!("importing layout {}", dir.display()))?,
                (None, Some(tar)) => store
                    .import_rootfs_tar(&tar, &name)
                    .await
                    .with_context(|| format!("importing rootfs {}", tar.display()))?,
                (None, None) => anyhow::bail!("give --oci DIR or --rootfs TAR"),
            };
            writeln!(out, "{} {}", h.reference, h.digest)?;
        }
        ImageCommand::Gc => {
            let r = store.gc().await?;
            if r.skipped {
                writeln!(out, "a pull is running; nothing collected")?;
            } else {
                writeln!(
                    out,
                    "removed {} layers, {} blobs",
                    r.layers_removed, r.blobs_removed
                )?;
            }
        }
    }
    Ok(())
}

/// Pulls with a byte progress bar over all layers.
async fn pull_with_bar(
    store: &ImageStore,
    reference: &str,
) -> Result<
    stacyvm_providers::native::image::ImageHandle,
    stacyvm_providers::native::image::ImageError,
> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("resolving {reference}"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    // Per-layer downloaded bytes, so cumulative reports add up.
    let seen: Mutex<HashMap<String, u64>> = Mutex::default();
    let layers = Mutex::new((0usize, 0usize)); // (done, total)
    let progress = |p: PullProgress| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut layers = layers.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            PullProgress::Resolved {
                layers: n,
                total_bytes,
                ..
            } => {
                bar.set_length(total_bytes);
                layers.1 = n;
                bar.set_message(format!("pulling {reference}"));
            }
            PullProgress::LayerCached { digest, size } => {
                seen.insert(digest, size);
                bar.inc(size);
                layers.0 += 1;
            }
            PullProgress::Downloading {
                digest, downloaded, ..
            } => {
                let prev = seen.insert(digest, downloaded).unwrap_or(0);
                bar.inc(downloaded.saturating_sub(prev));
            }
            PullProgress::Unpacking { digest } => {
                let short = digest.get(7..19).unwrap_or(&digest);
                bar.set_message(format!("unpacking {short}"));
            }
            PullProgress::LayerDone { digest, size } => {
                let prev = seen.insert(digest, size).unwrap_or(0);
                bar.inc(size.saturating_sub(prev));
                layers.0 += 1;
                bar.set_message(format!("layers {}/{}", layers.0, layers.1));
            }
            PullProgress::Done { .. } => {}
        }
    };
    let result = store.pull(reference, progress).await;
    match &result {
        Ok(_) => bar.finish_and_clear(),
        Err(_) => bar.abandon_with_message(format!("failed {reference}")),
    }
    result
}
