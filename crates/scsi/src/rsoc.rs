//! REPORT SUPPORTED OPERATION CODES parameter data (SPC-4 6.35.2, 6.35.3).
//!
//! The device server describes each command with a [`SupportedCommand`]
//! (from its command table) and builds the all-commands or one-command
//! format with [`all_commands_data`] / [`one_command_data`].

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError, need};

/// REPORTING OPTIONS of the CDB.
pub mod reporting_options {
    /// 000b: all commands.
    pub const ALL: u8 = 0;
    /// 001b: one command, no service action (error if it has one).
    pub const ONE_NO_SERVICE_ACTION: u8 = 1;
    /// 010b: one command with service action (error if it has none).
    pub const ONE_WITH_SERVICE_ACTION: u8 = 2;
    /// 011b: one command, service action if it has one.
    pub const ONE_EITHER: u8 = 3;
}

/// SUPPORT values of the one-command format.
pub mod support {
    /// 000b: data about the command is not currently available.
    pub const NOT_AVAILABLE: u8 = 0;
    /// 001b: the command is not supported.
    pub const NOT_SUPPORTED: u8 = 1;
    /// 011b: supported in conformance with a SCSI standard.
    pub const STANDARD: u8 = 3;
    /// 101b: supported in a vendor-specific manner.
    pub const VENDOR: u8 = 5;
}

wire_struct! {
    /// Command descriptor of the all-commands format, 8 bytes.
    pub struct CommandDescriptor {
        /// OPERATION CODE.
        pub operation_code: u8,
        pub reserved: u8,
        /// SERVICE ACTION (valid when SERVACTV is set).
        pub service_action: U16,
        pub reserved4: u8,
        /// Bit 1 CTDP, bit 0 SERVACTV.
        pub flags: u8,
        /// CDB LENGTH.
        pub cdb_length: U16,
    }
}
const _: () = assert!(core::mem::size_of::<CommandDescriptor>() == 8);
flags!(CommandDescriptor {
    /// CTDP: a command timeouts descriptor follows.
    ctdp, set_ctdp, with_ctdp: flags, 0x02;
    /// SERVACTV: SERVICE ACTION is valid.
    servactv, set_servactv, with_servactv: flags, 0x01;
});

wire_struct! {
    /// Command timeouts descriptor, 12 bytes.
    pub struct CommandTimeoutsDescriptor {
        /// DESCRIPTOR LENGTH (0Ah).
        pub descriptor_length: U16,
        pub reserved: u8,
        /// COMMAND SPECIFIC.
        pub command_specific: u8,
        /// NOMINAL COMMAND PROCESSING TIMEOUT (s, 0 = not specified).
        pub nominal_command_processing_timeout: U32,
        /// RECOMMENDED COMMAND TIMEOUT (s, 0 = not specified).
        pub recommended_command_timeout: U32,
    }
}
const _: () = assert!(core::mem::size_of::<CommandTimeoutsDescriptor>() == 12);

impl CommandTimeoutsDescriptor {
    /// A descriptor with the two timeouts in seconds.
    pub fn new(nominal: u32, recommended: u32) -> Self {
        let mut s = Self::new_zeroed();
        s.descriptor_length.set(0x0A);
        s.nominal_command_processing_timeout.set(nominal);
        s.recommended_command_timeout.set(recommended);
        s
    }
}

/// What the device server reports about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedCommand<'a> {
    /// OPERATION CODE.
    pub opcode: u8,
    /// SERVICE ACTION, for multiplexed opcodes.
    pub service_action: Option<u16>,
    /// CDB USAGE DATA: the CDB length's worth of bytes, byte 0 = opcode,
    /// each other bit set if the device server looks at it.
    pub cdb_usage: &'a [u8],
    /// (nominal, recommended) timeouts in seconds.
    pub timeouts: CommandTimeoutsDescriptor,
}

/// All-commands parameter data (reporting options 000b); timeouts
/// descriptors are included when `rctd` is set. Commands beyond what a
/// 32-bit length holds are not listed.
pub fn all_commands_data(commands: &[SupportedCommand<'_>], rctd: bool) -> Vec<u8> {
    let per = 8 + if rctd { 12 } else { 0 };
    let mut v = Vec::with_capacity(4 + commands.len() * per);
    v.extend_from_slice(&[0; 4]);
    for c in commands {
        let mut d = CommandDescriptor::new_zeroed()
            .with_ctdp(rctd)
            .with_servactv(c.service_action.is_some());
        d.operation_code = c.opcode;
        d.service_action.set(c.service_action.unwrap_or(0));
        d.cdb_length.set(c.cdb_usage.len() as u16);
        v.extend_from_slice(d.as_bytes());
        if rctd {
            v.extend_from_slice(c.timeouts.as_bytes());
        }
    }
    let len = u32::try_from(v.len() - 4).unwrap_or(u32::MAX);
    v[..4].copy_from_slice(&len.to_be_bytes());
    v
}

/// One-command parameter data (reporting options 001b-011b): `support`
/// ([`support`]) and, when supported, the command's CDB usage data and
/// (with `rctd`) its timeouts descriptor.
pub fn one_command_data(
    support: u8,
    command: Option<&SupportedCommand<'_>>,
    rctd: bool,
) -> Vec<u8> {
    let usage = command.map_or(&[][..], |c| c.cdb_usage);
    let mut v = Vec::with_capacity(4 + usage.len() + 12);
    let ctdp = rctd && command.is_some();
    v.push(0);
    v.push((ctdp as u8) << 7 | (support & 7));
    v.extend_from_slice(&(usage.len() as u16).to_be_bytes());
    v.extend_from_slice(usage);
    if let (true, Some(c)) = (ctdp, command) {
        v.extend_from_slice(c.timeouts.as_bytes());
    }
    v
}

/// Iterator over the all-commands format: (descriptor, timeouts if CTDP).
/// Stops at the first incomplete entry.
#[derive(Debug, Clone)]
pub struct AllCommands<'a> {
    /// COMMAND DATA LENGTH as reported.
    pub command_data_length: u32,
    rest: &'a [u8],
}

impl<'a> AllCommands<'a> {
    /// Parses the 4-byte header.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        need(buf, 4)?;
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let n = (len as usize).min(buf.len() - 4);
        Ok(AllCommands {
            command_data_length: len,
            rest: &buf[4..4 + n],
        })
    }
}

impl Iterator for AllCommands<'_> {
    type Item = (CommandDescriptor, Option<CommandTimeoutsDescriptor>);
    fn next(&mut self) -> Option<Self::Item> {
        let Ok((d, rest)) = CommandDescriptor::read_from_prefix(self.rest) else {
            self.rest = &[];
            return None;
        };
        if !d.ctdp() {
            self.rest = rest;
            return Some((d, None));
        }
        let Ok((t, rest)) = CommandTimeoutsDescriptor::read_from_prefix(rest) else {
            self.rest = &[];
            return None;
        };
        self.rest = rest;
        Some((d, Some(t)))
    }
}

/// Parsed one-command format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneCommand<'a> {
    /// CTDP.
    pub ctdp: bool,
    /// SUPPORT ([`support`]).
    pub support: u8,
    /// CDB USAGE DATA.
    pub cdb_usage: &'a [u8],
    /// The timeouts descriptor when CTDP is set and it was transferred.
    pub timeouts: Option<CommandTimeoutsDescriptor>,
}

impl<'a> OneCommand<'a> {
    /// Parses the one-command format; fails if the CDB usage data is cut
    /// short.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        need(buf, 4)?;
        let ctdp = buf[1] & 0x80 != 0;
        let n = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        let cdb_usage = buf.get(4..4 + n).ok_or(WireError::Truncated {
            needed: 4 + n,
            available: buf.len(),
        })?;
        let timeouts = if ctdp {
            CommandTimeoutsDescriptor::read_from_prefix(&buf[4 + n..])
                .ok()
                .map(|(t, _)| t)
        } else {
            None
        };
        Ok(OneCommand {
            ctdp,
            support: buf[1] & 7,
            cdb_usage,
            timeouts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ10_USAGE: [u8; 10] = [0x28, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x07];
    const RC16_USAGE: [u8; 16] = [
        0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
    ];

    fn cmds() -> [SupportedCommand<'static>; 2] {
        [
            SupportedCommand {
                opcode: 0x28,
                service_action: None,
                cdb_usage: &READ10_USAGE,
                timeouts: CommandTimeoutsDescriptor::new(0, 30),
            },
            SupportedCommand {
                opcode: 0x9E,
                service_action: Some(0x10),
                cdb_usage: &RC16_USAGE,
                timeouts: CommandTimeoutsDescriptor::new(1, 10),
            },
        ]
    }

    #[test]
    fn all_commands_with_and_without_timeouts() {
        let d = all_commands_data(&cmds(), false);
        assert_eq!(d.len(), 4 + 16);
        assert_eq!(&d[..4], &[0, 0, 0, 16]);
        assert_eq!(&d[4..12], &[0x28, 0, 0, 0, 0, 0, 0, 10]);
        assert_eq!(&d[12..20], &[0x9E, 0, 0, 0x10, 0, 1, 0, 16]);
        let got: Vec<_> = AllCommands::parse(&d).unwrap().collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].0.servactv() && got[1].1.is_none());

        let d = all_commands_data(&cmds(), true);
        assert_eq!(d.len(), 4 + 40);
        assert_eq!(d[9], 0x02);
        assert_eq!(&d[12..16], &[0, 0x0A, 0, 0]);
        let got: Vec<_> = AllCommands::parse(&d).unwrap().collect();
        assert_eq!(got[1].1.unwrap().recommended_command_timeout.get(), 10);
        // Truncated in the middle of the second entry's timeouts.
        assert_eq!(AllCommands::parse(&d[..40]).unwrap().count(), 1);
        assert!(AllCommands::parse(&d[..3]).is_err());
    }

    #[test]
    fn one_command_formats() {
        let c = cmds();
        let d = one_command_data(support::STANDARD, Some(&c[0]), true);
        assert_eq!(&d[..4], &[0, 0x83, 0, 10]);
        assert_eq!(&d[4..14], &READ10_USAGE);
        assert_eq!(d.len(), 4 + 10 + 12);
        let p = OneCommand::parse(&d).unwrap();
        assert_eq!(p.support, support::STANDARD);
        assert_eq!(p.cdb_usage, &READ10_USAGE);
        assert_eq!(p.timeouts.unwrap().recommended_command_timeout.get(), 30);
        let n = one_command_data(support::NOT_SUPPORTED, None, true);
        assert_eq!(n, vec![0, 0x01, 0, 0]);
        assert!(OneCommand::parse(&d[..8]).is_err());
        assert!(OneCommand::parse(&n[..3]).is_err());
    }
}
