//! The port driver: the SCSI Port and Storport I/O models.
#![forbid(unsafe_code)]
