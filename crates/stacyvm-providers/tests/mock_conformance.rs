//! The provider conformance suite against the mock provider: one test per
//! case. Every case destroys its sandboxes, so one shared base directory
//! does not fill up.

use std::sync::Arc;

use stacyvm_providers::MockProvider;
use stacyvm_providers::conformance::Harness;

fn harness() -> Harness {
    let base = std::env::temp_dir().join("stacyvm-mock-conformance");
    Harness {
        provider: Arc::new(MockProvider::new(&base).expect("mock provider")),
        image: "busybox".into(),
        private: vec![base.display().to_string()],
    }
}

stacyvm_providers::conformance_tests!(harness());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes() {
    stacyvm_providers::conformance::run_all(&harness()).await;
}
