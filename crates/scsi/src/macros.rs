//! Helper macros for wire structs: derives, bit-field accessors.
//!
//! `wire_struct!` adds the zerocopy derives every layout needs; `flags!`
//! generates `x()`, `set_x()` and `with_x()` for single bits; `bits!` does
//! the same for multi-bit fields inside one byte.

/// Boolean bit fields: `getter, setter, builder: byte_field, mask`.
macro_rules! flags {
    ($ty:ty { $( $(#[$m:meta])* $get:ident, $set:ident, $with:ident : $field:ident, $mask:expr; )* }) => {
        impl $ty { $(
            $(#[$m])*
            pub const fn $get(&self) -> bool { self.$field & $mask != 0 }
            #[doc = concat!("Sets `", stringify!($get), "`.")]
            pub fn $set(&mut self, v: bool) {
                if v { self.$field |= $mask } else { self.$field &= !$mask }
            }
            #[doc = concat!("Builder form of `", stringify!($set), "`.")]
            pub fn $with(mut self, v: bool) -> Self { self.$set(v); self }
        )* }
    };
}

/// Multi-bit fields within a byte: `getter, setter, builder: byte_field, shift, width`.
macro_rules! bits {
    ($ty:ty { $( $(#[$m:meta])* $get:ident, $set:ident, $with:ident : $field:ident, $shift:expr, $width:expr; )* }) => {
        impl $ty { $(
            $(#[$m])*
            pub const fn $get(&self) -> u8 { (self.$field >> $shift) & ((1u16 << $width) - 1) as u8 }
            #[doc = concat!("Sets `", stringify!($get), "`; excess high bits of `v` are dropped.")]
            pub fn $set(&mut self, v: u8) {
                let mask = (((1u16 << $width) - 1) as u8) << $shift;
                self.$field = (self.$field & !mask) | ((v << $shift) & mask);
            }
            #[doc = concat!("Builder form of `", stringify!($set), "`.")]
            pub fn $with(mut self, v: u8) -> Self { self.$set(v); self }
        )* }
    };
}

/// Derives shared by all layouts, plus an inherent `as_bytes`.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(C)]
        pub struct $name { $($body)* }

        impl $name {
            /// The wire bytes (zerocopy's `IntoBytes::as_bytes`, callable
            /// without importing the trait).
            pub fn as_bytes(&self) -> &[u8] {
                zerocopy::IntoBytes::as_bytes(self)
            }
        }
    };
}
