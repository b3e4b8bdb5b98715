//! SPC/SBC device emulation over a block backend.
#![forbid(unsafe_code)]
