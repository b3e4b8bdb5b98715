//! SCSI wire types: opcodes, CDB layouts, status, sense data, VPD and mode pages.
#![forbid(unsafe_code)]
