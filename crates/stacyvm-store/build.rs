//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! migration files at compile time but cannot tell Cargo about new files.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
