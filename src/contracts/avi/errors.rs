//! The Avi contract's error envelope: which of the script's five exception classes to raise, and
//! a message that says what happened.
//!
//! A failed function answers a non-2xx status with
//! `{"error": {"exception", "code", "message", "function", "field"?}}`; the script raises
//! `exception(message)`. Messages are built from core errors, which never carry secrets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::contracts::ErrorBody;
use crate::contracts::status::status_of;
use crate::domain::IpamError;

/// The exception classes a custom IPAM script must define (and the only ones it raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AviException {
    /// Authentication fails.
    AuthenticationError,
    /// The given record does not exist.
    RecordNotFound,
    /// No free address in the given subnets/networks.
    NoFreeIp,
    /// The function or the requested change is not implemented.
    NotImplemented,
    /// Anything else.
    General,
}

/// The class names, as the script defines them and Avi's validator requires them.
pub const EXCEPTION_CLASSES: [&str; 5] = [
    "CustomIpamAuthenticationErrorException",
    "CustomIpamRecordNotFoundException",
    "CustomIpamNoFreeIpException",
    "CustomIpamNotImplementedException",
    "CustomIpamGeneralException",
];

impl AviException {
    pub fn class_name(self) -> &'static str {
        match self {
            AviException::AuthenticationError => EXCEPTION_CLASSES[0],
            AviException::RecordNotFound => EXCEPTION_CLASSES[1],
            AviException::NoFreeIp => EXCEPTION_CLASSES[2],
            AviException::NotImplemented => EXCEPTION_CLASSES[3],
            AviException::General => EXCEPTION_CLASSES[4],
        }
    }

    /// The class for a core error. A missing *record* is decided by the handlers (a missing
    /// network or subnet is bad input, so General).
    pub fn for_error(e: &IpamError) -> Self {
        match e {
            IpamError::Unauthorized(_) => AviException::AuthenticationError,
            IpamError::Exhausted(_) => AviException::NoFreeIp,
            IpamError::Unsupported(_) => AviException::NotImplemented,
            _ => AviException::General,
        }
    }
}

#[derive(Debug)]
pub struct AviError {
    pub function: &'static str,
    pub exception: AviException,
    /// Boxed: keeps `Result<_, AviError>` small.
    pub error: Box<IpamError>,
    /// What was being done, e.g. `record 'vsvip-1': IPv6 address`; prefixed to the message.
    pub context: Option<String>,
    /// What happened next, e.g. the rollback; appended to the message.
    pub note: Option<String>,
}

impl AviError {
    pub fn new(function: &'static str, exception: AviException, error: IpamError) -> Self {
        AviError {
            function,
            exception,
            error: Box::new(error),
            context: None,
            note: None,
        }
    }

    /// The class follows from the core error.
    pub fn from_core(function: &'static str, error: IpamError) -> Self {
        Self::new(function, AviException::for_error(&error), error)
    }

    pub fn record_not_found(function: &'static str, id: &str) -> Self {
        Self::new(
            function,
            AviException::RecordNotFound,
            IpamError::NotFound(format!(
                "record '{id}' does not exist (no address is held for it)"
            )),
        )
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn message(&self) -> String {
        crate::contracts::failure_message(
            self.function,
            self.context.as_deref(),
            &self.error,
            self.note.as_deref(),
        )
    }

    pub fn status(&self) -> StatusCode {
        match self.exception {
            AviException::RecordNotFound => StatusCode::NOT_FOUND,
            _ => status_of(&self.error),
        }
    }
}

impl IntoResponse for AviError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.message();
        let class = self.exception.class_name();
        if status.is_server_error() {
            tracing::warn!(function = self.function, exception = class, error = %message, "Avi function failed");
        } else {
            tracing::info!(function = self.function, exception = class, error = %message, "Avi function refused");
        }
        let mut body = ErrorBody::of(&self.error, message);
        body.error.exception = Some(class.to_owned());
        body.error.function = Some(self.function.to_owned());
        body.into_response(status)
    }
}

/// Attaches the function name to core errors: `.map_err(core("CreateIpamRecord"))`.
pub fn core(function: &'static str) -> impl Fn(IpamError) -> AviError {
    move |e| AviError::from_core(function, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_the_five_classes() {
        let cases = [
            (IpamError::Unauthorized("x".into()), EXCEPTION_CLASSES[0]),
            (IpamError::Exhausted("x".into()), EXCEPTION_CLASSES[2]),
            (IpamError::Unsupported("x".into()), EXCEPTION_CLASSES[3]),
            (IpamError::NotFound("network".into()), EXCEPTION_CLASSES[4]),
            (
                IpamError::Unavailable {
                    backend: "ipam".into(),
                    detail: "refused".into(),
                },
                EXCEPTION_CLASSES[4],
            ),
        ];
        for (e, class) in cases {
            assert_eq!(AviException::for_error(&e).class_name(), class, "{e}");
        }
        let nf = AviError::record_not_found("GetIpamRecord", "vs-1");
        assert_eq!(nf.exception.class_name(), EXCEPTION_CLASSES[1]);
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        assert!(
            nf.message().starts_with("GetIpamRecord: "),
            "{}",
            nf.message()
        );
    }

    #[test]
    fn an_unreadable_backend_answer_is_a_general_502() {
        let e = AviError::from_core(
            "CreateIpamRecord",
            IpamError::Undecodable {
                backend: "grid".into(),
                detail: "the grid answered 200 with something that is not JSON".into(),
            },
        );
        assert_eq!(e.exception.class_name(), EXCEPTION_CLASSES[4]);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.error.code(), "upstream");
        assert_eq!(
            e.message(),
            "CreateIpamRecord: backend grid answered with something the gateway cannot read: \
             the grid answered 200 with something that is not JSON"
        );
    }
}
