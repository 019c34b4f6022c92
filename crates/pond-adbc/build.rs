//! Marks the shared library as never unloaded (`-z nodelete`): the driver
//! keeps a runtime with worker threads, and some driver managers (Rust's)
//! `dlclose` drivers they no longer use, which would pull code out from under
//! those threads. With nodelete, load/unload cycles reuse the one copy.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
}
