//! Why a signature was rejected.

/// The reason a signature check failed. Messages name what was wrong, never the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header was absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// A header was present but could not be parsed.
    #[error("malformed header `{header}`: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The timestamp is outside the accepted window.
    #[error("timestamp outside the tolerance window ({skew_secs}s from now)")]
    TimestampOutOfTolerance {
        /// Signed difference between the timestamp and now, in seconds.
        skew_secs: i64,
    },
    /// No signature matched any configured secret.
    #[error("no signature matched")]
    NoMatch,
    /// A configured secret is unusable (for example bad base64 after `whsec_`).
    #[error("invalid secret: {0}")]
    InvalidSecret(&'static str),
    /// The request body does not match the body hash the sender signed (Twilio `bodySHA256`).
    #[error("body does not match the signed body hash")]
    BodyHashMismatch,
    /// The request cannot be checked under this scheme (for example an unparseable URL, or a body
    /// that the scheme's signature does not cover).
    #[error("request cannot be verified: {0}")]
    InvalidRequest(&'static str),
    /// A verifier configuration is unusable (for example an unknown template placeholder).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
