//! Engine and auth errors to gRPC status codes, in one place.

use pond_engine::{Error, ErrorKind};
use tonic::{Code, Status};

pub fn to_status(e: Error) -> Status {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, e.to_string())
}

pub fn auth_status(e: pond_auth::Error) -> Status {
    match e {
        pond_auth::Error::TooManyFailures(_) => Status::resource_exhausted(e.to_string()),
        pond_auth::Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

pub fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid Arrow data: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_grpc_unavailable_with_the_message() {
        let s = to_status(Error::Unavailable("install it with: pond extensions install ducklake".into()));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("pond extensions install ducklake"));
    }
}
