//! iSCSI target front end (RFC 7143).
#![forbid(unsafe_code)]
