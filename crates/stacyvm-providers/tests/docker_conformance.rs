//! The shared provider conformance suite on the Docker provider, once with
//! runc and once with gVisor (runsc). Needs `scripts/ci/docker.sh`; skips
//! locally without `STACYVM_TEST_DOCKER=1`, fails in CI when docker is
//! missing.
#![cfg(all(feature = "docker", feature = "conformance"))]

mod docker_support;

use std::sync::Arc;

use stacyvm_providers::conformance::Harness;

async fn harness(runtime: &str) -> Option<Harness> {
    let p = docker_support::provider(runtime).await?;
    let private = docker_support::private_strings(&p);
    Some(Harness {
        provider: Arc::new(p),
        image: docker_support::IMAGE.into(),
        private,
    })
}

mod runc {
    stacyvm_providers::conformance_tests!(match super::harness("runc").await {
        Some(h) => h,
        None => return,
    });
}

mod runsc {
    stacyvm_providers::conformance_tests!(match super::harness("runsc").await {
        Some(h) => h,
        None => return,
    });
}
