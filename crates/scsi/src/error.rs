//! The one error type for parsing wire data.

use core::fmt;

/// Why a byte string could not be read as the structure asked for.
///
/// Parsing never panics: a buffer that is too short or a field with a value
/// the type cannot represent yields one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer holds fewer bytes than the structure needs.
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// A field holds a value this type does not define.
    BadValue {
        /// Name of the field, as the standard spells it.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { needed, available } => {
                write!(f, "truncated: need {needed} bytes, have {available}")
            }
            WireError::BadValue { field, value } => {
                write!(f, "unsupported value {value:#x} in {field}")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Result alias for wire parsing.
pub type Result<T> = core::result::Result<T, WireError>;

/// Fails with [`WireError::Truncated`] unless `buf` holds at least `needed` bytes.
pub(crate) fn need(buf: &[u8], needed: usize) -> Result<()> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}
