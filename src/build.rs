// `sqlx::migrate!` embeds `migrations/` at compile time; without this, adding
// a migration would not rebuild the binary that applies them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
