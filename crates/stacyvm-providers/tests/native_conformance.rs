//! The shared provider conformance suite against the native provider (real
//! crun, overlayfs and agent; needs root). One test per case.
#![cfg(feature = "native")]

mod native_support;

use std::sync::Arc;

use stacyvm_providers::conformance::Harness;

async fn harness() -> Option<Harness> {
    // One data dir for every case: each case destroys its own sandboxes.
    let dir = std::path::Path::new("/var/tmp/stacyvm-native-conformance");
    let provider = native_support::provider_at(dir, |_| {}).await?;
    let private = native_support::private_strings(&provider);
    Some(Harness {
        provider: Arc::new(provider),
        image: native_support::IMAGE.into(),
        private,
    })
}

stacyvm_providers::conformance_tests!(match harness().await {
    Some(h) => h,
    None => return,
});
