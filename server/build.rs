//! Rebuilds the server when a migration is added: `sqlx::migrate!` embeds the files of
//! `migrations/` at compile time but only watches the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
