//! Marks the extension as never unloaded (`-z nodelete`): pond-catalog's I/O
//! runtime keeps worker threads in this library, and a `dlclose` must never
//! take the code from under them.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
}
