//! `pond-adbc`: Pond's ADBC driver, in Rust, built as the C ABI library
//! `libadbc_driver_pond.so` that any ADBC driver manager (Python, R, Go,
//! C/C++, Java) loads by file name (entry points `AdbcDriverPondInit` and
//! `AdbcDriverInit`). It speaks Arrow Flight SQL to `pond serve`.
//!
//! It owns the client side only: options ([`client::DbConfig`]), one gRPC
//! channel and token per database object shared by its connections, one
//! server session per connection (`x-pond-session` header), streaming
//! results with bounded prefetch, cancellation (CancelFlightInfo), and the
//! ADBC metadata calls. It holds no server logic.
//!
//! Start with [`driver::PondDriver`] and its `Database`, `Connection` and
//! `Statement` types; the FFI export is `adbc_ffi::export_driver!` below
//! (panics are caught at the boundary there).

pub mod client;
pub mod driver;
pub mod error;
pub mod ipc;
pub mod metadata;
pub mod stream;

pub use driver::{PondConnection, PondDatabase, PondDriver, PondStatement};

adbc_ffi::export_driver!(AdbcDriverPondInit, driver::PondDriver);
