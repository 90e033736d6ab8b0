//! refinery's `embed_migrations!` reads the folder at compile time but does not tell cargo
//! about it, so a new migration file would not trigger a rebuild (refinery issue #309).
fn main() {
    println!("cargo:rerun-if-changed=migrations/shop");
}
