//! CDB layouts (SPC-4 / SBC-3) as typed big-endian structs.
//!
//! Each command has a `#[repr(C)]` struct of bytes and big-endian integers
//! whose size is asserted at compile time. The structs implement
//! [`CdbLayout`]: [`CdbLayout::parse`] views a received CDB in place
//! (checking length, opcode and service action) and `as_bytes` (from
//! zerocopy's [`IntoBytes`]) gives the wire bytes of one that was built with
//! the `new` constructors and `with_*` builders. Bit fields have getters
//! named after the standard's field (`fua()`, `immed()`, `bytchk()`, ...),
//! `set_*` setters and consuming `with_*` builders.
//!
//! Multi-byte fields are `pub` and typed [`U16`]/[`U32`]/[`U64`]: read them
//! with `.get()`, write them with `.set()` or `::new()`.
//!
//! The generic [`Cdb`] view gives the CDB length from the group code, the
//! service action, and a decoded [`RwCommand`] for the READ/WRITE family.

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WireError};
use crate::opcode::{Opcode, maint_in, sai16};

/// Implemented by every CDB layout struct.
pub trait CdbLayout: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy {
    /// The operation code in byte 0.
    const OPCODE: Opcode;
    /// The service action in byte 1 bits 4:0, for multiplexed opcodes.
    const SERVICE_ACTION: Option<u8> = None;
    /// CDB length in bytes.
    const LEN: usize = core::mem::size_of::<Self>();

    /// Views the first [`Self::LEN`] bytes of `cdb` as this layout.
    ///
    /// Longer input is fine (CDB buffers are often padded to 16 or more
    /// bytes). Fails if `cdb` is short or its opcode or service action is
    /// not this command's.
    fn parse(cdb: &[u8]) -> Result<&Self> {
        let (s, _) = Self::ref_from_prefix(cdb).map_err(|_| WireError::Truncated {
            needed: Self::LEN,
            available: cdb.len(),
        })?;
        if cdb[0] != Self::OPCODE.0 {
            return Err(WireError::BadValue {
                field: "OPERATION CODE",
                value: cdb[0] as u64,
            });
        }
        if let Some(sa) = Self::SERVICE_ACTION
            && cdb[1] & 0x1F != sa
        {
            return Err(WireError::BadValue {
                field: "SERVICE ACTION",
                value: (cdb[1] & 0x1F) as u64,
            });
        }
        Ok(s)
    }

    /// Copying variant of [`CdbLayout::parse`].
    fn read(cdb: &[u8]) -> Result<Self> {
        Self::parse(cdb).copied()
    }

    /// The CONTROL byte (last byte of the CDB).
    fn control(&self) -> u8 {
        self.as_bytes()[Self::LEN - 1]
    }

    /// NACA bit of the CONTROL byte.
    fn naca(&self) -> bool {
        self.control() & 0x04 != 0
    }
}

macro_rules! layout {
    ($ty:ident, $len:expr, $op:ident $(, sa = $sa:expr)?) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $len);
        impl CdbLayout for $ty {
            const OPCODE: Opcode = Opcode::$op;
            $(const SERVICE_ACTION: Option<u8> = Some($sa);)?
        }
        impl $ty {
            /// A zeroed CDB with the opcode (and service action) filled in.
            pub fn zeroed() -> Self {
                let mut s = <Self as FromZeros>::new_zeroed();
                let b = s.as_mut_bytes();
                b[0] = Opcode::$op.0;
                $( b[1] = $sa; )?
                s
            }
        }
    };
}

// ---------------------------------------------------------------- SPC ----

wire_struct! {
    /// TEST UNIT READY (SPC-4 6.47).
    pub struct TestUnitReady {
        pub opcode: u8,
        pub reserved: [u8; 4],
        pub control: u8,
    }
}
layout!(TestUnitReady, 6, TEST_UNIT_READY);

impl TestUnitReady {
    /// A TEST UNIT READY CDB.
    pub fn new() -> Self {
        Self::zeroed()
    }
}

impl Default for TestUnitReady {
    fn default() -> Self {
        Self::new()
    }
}

wire_struct! {
    /// INQUIRY (SPC-4 6.6).
    pub struct Inquiry {
        pub opcode: u8,
        /// Bit 0 EVPD, bit 1 CMDDT (obsolete).
        pub flags: u8,
        pub page_code: u8,
        pub allocation_length: U16,
        pub control: u8,
    }
}
layout!(Inquiry, 6, INQUIRY);
flags!(Inquiry {
    /// EVPD: return the vital product data page in PAGE CODE.
    evpd, set_evpd, with_evpd: flags, 0x01;
    /// CMDDT (obsolete): must be zero.
    cmddt, set_cmddt, with_cmddt: flags, 0x02;
});

impl Inquiry {
    /// Standard INQUIRY data, `allocation_length` bytes.
    pub fn standard(allocation_length: u16) -> Self {
        let mut s = Self::zeroed();
        s.allocation_length.set(allocation_length);
        s
    }

    /// VPD page `page_code`, `allocation_length` bytes.
    pub fn vpd(page_code: u8, allocation_length: u16) -> Self {
        let mut s = Self::standard(allocation_length).with_evpd(true);
        s.page_code = page_code;
        s
    }
}

wire_struct! {
    /// REQUEST SENSE (SPC-4 6.39).
    pub struct RequestSense {
        pub opcode: u8,
        /// Bit 0 DESC.
        pub flags: u8,
        pub reserved: [u8; 2],
        pub allocation_length: u8,
        pub control: u8,
    }
}
layout!(RequestSense, 6, REQUEST_SENSE);
flags!(RequestSense {
    /// DESC: return descriptor format sense data.
    desc, set_desc, with_desc: flags, 0x01;
});

impl RequestSense {
    /// REQUEST SENSE for up to `allocation_length` bytes.
    pub fn new(allocation_length: u8) -> Self {
        let mut s = Self::zeroed();
        s.allocation_length = allocation_length;
        s
    }
}

wire_struct! {
    /// REPORT LUNS (SPC-4 6.33).
    pub struct ReportLuns {
        pub opcode: u8,
        pub reserved1: u8,
        /// SELECT REPORT; see [`crate::lun::select_report`].
        pub select_report: u8,
        pub reserved3: [u8; 3],
        pub allocation_length: U32,
        pub reserved10: u8,
        pub control: u8,
    }
}
layout!(ReportLuns, 12, REPORT_LUNS);

impl ReportLuns {
    /// REPORT LUNS with `select_report` for up to `allocation_length` bytes.
    pub fn new(select_report: u8, allocation_length: u32) -> Self {
        let mut s = Self::zeroed();
        s.select_report = select_report;
        s.allocation_length.set(allocation_length);
        s
    }
}

wire_struct! {
    /// MODE SENSE(6) (SPC-4 6.11).
    pub struct ModeSense6 {
        pub opcode: u8,
        /// Bit 3 DBD.
        pub flags: u8,
        /// Bits 7:6 PC, bits 5:0 PAGE CODE.
        pub page: u8,
        pub subpage_code: u8,
        pub allocation_length: u8,
        pub control: u8,
    }
}
layout!(ModeSense6, 6, MODE_SENSE_6);

wire_struct! {
    /// MODE SENSE(10) (SPC-4 6.12).
    pub struct ModeSense10 {
        pub opcode: u8,
        /// Bit 4 LLBAA, bit 3 DBD.
        pub flags: u8,
        /// Bits 7:6 PC, bits 5:0 PAGE CODE.
        pub page: u8,
        pub subpage_code: u8,
        pub reserved: [u8; 3],
        pub allocation_length: U16,
        pub control: u8,
    }
}
layout!(ModeSense10, 10, MODE_SENSE_10);

macro_rules! mode_sense_common {
    ($ty:ty) => {
        flags!($ty {
            /// DBD: disable block descriptors.
            dbd, set_dbd, with_dbd: flags, 0x08;
        });
        bits!($ty {
            /// PC: page control (see [`crate::mode::PageControl`]).
            pc, set_pc, with_pc: page, 6, 2;
            /// PAGE CODE.
            page_code, set_page_code, with_page_code: page, 0, 6;
        });
    };
}
mode_sense_common!(ModeSense6);
mode_sense_common!(ModeSense10);
flags!(ModeSense10 {
    /// LLBAA: long LBA block descriptors accepted.
    llbaa, set_llbaa, with_llbaa: flags, 0x10;
});

impl ModeSense6 {
    /// MODE SENSE(6) of `page_code`/`subpage_code` with page control `pc`.
    pub fn new(pc: u8, page_code: u8, subpage_code: u8, allocation_length: u8) -> Self {
        let mut s = Self::zeroed().with_pc(pc).with_page_code(page_code);
        s.subpage_code = subpage_code;
        s.allocation_length = allocation_length;
        s
    }
}

impl ModeSense10 {
    /// MODE SENSE(10) of `page_code`/`subpage_code` with page control `pc`.
    pub fn new(pc: u8, page_code: u8, subpage_code: u8, allocation_length: u16) -> Self {
        let mut s = Self::zeroed().with_pc(pc).with_page_code(page_code);
        s.subpage_code = subpage_code;
        s.allocation_length.set(allocation_length);
        s
    }
}

wire_struct! {
    /// MODE SELECT(6) (SPC-4 6.9).
    pub struct ModeSelect6 {
        pub opcode: u8,
        /// Bit 4 PF, bit 0 SP.
        pub flags: u8,
        pub reserved: [u8; 2],
        pub parameter_list_length: u8,
        pub control: u8,
    }
}
layout!(ModeSelect6, 6, MODE_SELECT_6);

wire_struct! {
    /// MODE SELECT(10) (SPC-4 6.10).
    pub struct ModeSelect10 {
        pub opcode: u8,
        /// Bit 4 PF, bit 0 SP.
        pub flags: u8,
        pub reserved: [u8; 5],
        pub parameter_list_length: U16,
        pub control: u8,
    }
}
layout!(ModeSelect10, 10, MODE_SELECT_10);

macro_rules! mode_select_common {
    ($ty:ty) => {
        flags!($ty {
            /// PF: the parameters are in page format.
            pf, set_pf, with_pf: flags, 0x10;
            /// SP: save the pages.
            sp, set_sp, with_sp: flags, 0x01;
        });
    };
}
mode_select_common!(ModeSelect6);
mode_select_common!(ModeSelect10);

impl ModeSelect6 {
    /// MODE SELECT(6) with PF set and `parameter_list_length` bytes of data.
    pub fn new(parameter_list_length: u8) -> Self {
        let mut s = Self::zeroed().with_pf(true);
        s.parameter_list_length = parameter_list_length;
        s
    }
}

impl ModeSelect10 {
    /// MODE SELECT(10) with PF set and `parameter_list_length` bytes of data.
    pub fn new(parameter_list_length: u16) -> Self {
        let mut s = Self::zeroed().with_pf(true);
        s.parameter_list_length.set(parameter_list_length);
        s
    }
}

wire_struct! {
    /// RESERVE(6) (SPC-2 7.21); the third-party fields are obsolete.
    pub struct Reserve6 {
        pub opcode: u8,
        pub obsolete: [u8; 4],
        pub control: u8,
    }
}
layout!(Reserve6, 6, RESERVE_6);

wire_struct! {
    /// RELEASE(6) (SPC-2 7.17).
    pub struct Release6 {
        pub opcode: u8,
        pub obsolete: [u8; 4],
        pub control: u8,
    }
}
layout!(Release6, 6, RELEASE_6);

wire_struct! {
    /// RESERVE(10) (SPC-2 7.22).
    pub struct Reserve10 {
        pub opcode: u8,
        /// Bit 4 3RDPTY, bit 1 LONGID.
        pub flags: u8,
        pub obsolete: u8,
        pub third_party_device_id: u8,
        pub reserved: [u8; 3],
        pub parameter_list_length: U16,
        pub control: u8,
    }
}
layout!(Reserve10, 10, RESERVE_10);

wire_struct! {
    /// RELEASE(10) (SPC-2 7.18).
    pub struct Release10 {
        pub opcode: u8,
        /// Bit 4 3RDPTY, bit 1 LONGID.
        pub flags: u8,
        pub obsolete: u8,
        pub third_party_device_id: u8,
        pub reserved: [u8; 3],
        pub parameter_list_length: U16,
        pub control: u8,
    }
}
layout!(Release10, 10, RELEASE_10);

macro_rules! reserve_common {
    ($ty:ty) => {
        flags!($ty {
            /// 3RDPTY: third-party reservation.
            third_party, set_third_party, with_third_party: flags, 0x10;
            /// LONGID: the third-party ID is in the parameter list.
            longid, set_longid, with_longid: flags, 0x02;
        });
        impl $ty {
            /// A plain (first-party) CDB.
            pub fn new() -> Self {
                Self::zeroed()
            }
        }
        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
reserve_common!(Reserve10);
reserve_common!(Release10);

impl Reserve6 {
    /// A RESERVE(6) CDB.
    pub fn new() -> Self {
        Self::zeroed()
    }
}

impl Default for Reserve6 {
    fn default() -> Self {
        Self::new()
    }
}

impl Release6 {
    /// A RELEASE(6) CDB.
    pub fn new() -> Self {
        Self::zeroed()
    }
}

impl Default for Release6 {
    fn default() -> Self {
        Self::new()
    }
}

wire_struct! {
    /// PERSISTENT RESERVE IN (SPC-4 6.15).
    pub struct PersistentReserveIn {
        pub opcode: u8,
        /// Bits 4:0 SERVICE ACTION ([`crate::opcode::PrInAction`]).
        pub service_action: u8,
        pub reserved: [u8; 5],
        pub allocation_length: U16,
        pub control: u8,
    }
}
layout!(PersistentReserveIn, 10, PERSISTENT_RESERVE_IN);

impl PersistentReserveIn {
    /// PERSISTENT RESERVE IN with `action` for up to `allocation_length` bytes.
    pub fn new(action: crate::opcode::PrInAction, allocation_length: u16) -> Self {
        let mut s = Self::zeroed();
        s.service_action = action as u8;
        s.allocation_length.set(allocation_length);
        s
    }

    /// The decoded service action, `None` if reserved.
    pub fn action(&self) -> Option<crate::opcode::PrInAction> {
        crate::opcode::PrInAction::from_u8(self.service_action & 0x1F)
    }
}

wire_struct! {
    /// PERSISTENT RESERVE OUT (SPC-4 6.16).
    pub struct PersistentReserveOut {
        pub opcode: u8,
        /// Bits 4:0 SERVICE ACTION ([`crate::opcode::PrOutAction`]).
        pub service_action: u8,
        /// Bits 7:4 SCOPE, bits 3:0 TYPE.
        pub scope_type: u8,
        pub reserved: [u8; 2],
        pub parameter_list_length: U32,
        pub control: u8,
    }
}
layout!(PersistentReserveOut, 10, PERSISTENT_RESERVE_OUT);
bits!(PersistentReserveOut {
    /// SCOPE (0 = LU_SCOPE; the others are obsolete or reserved).
    scope, set_scope, with_scope: scope_type, 4, 4;
    /// TYPE: the raw reservation type ([`crate::pr::ReservationType`]).
    pr_type, set_pr_type, with_pr_type: scope_type, 0, 4;
});

impl PersistentReserveOut {
    /// PERSISTENT RESERVE OUT with `action`, reservation type `pr_type`
    /// (0 when the action takes none) and a parameter list of
    /// `parameter_list_length` bytes (24 for the basic list).
    pub fn new(
        action: crate::opcode::PrOutAction,
        pr_type: u8,
        parameter_list_length: u32,
    ) -> Self {
        let mut s = Self::zeroed().with_pr_type(pr_type);
        s.service_action = action as u8;
        s.parameter_list_length.set(parameter_list_length);
        s
    }

    /// The decoded service action, `None` if reserved.
    pub fn action(&self) -> Option<crate::opcode::PrOutAction> {
        crate::opcode::PrOutAction::from_u8(self.service_action & 0x1F)
    }
}

wire_struct! {
    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    pub struct ReportSupportedOperationCodes {
        pub opcode: u8,
        pub service_action: u8,
        /// Bit 7 RCTD, bits 2:0 REPORTING OPTIONS.
        pub options: u8,
        pub requested_operation_code: u8,
        pub requested_service_action: U16,
        pub allocation_length: U32,
        pub reserved: u8,
        pub control: u8,
    }
}
layout!(
    ReportSupportedOperationCodes,
    12,
    MAINTENANCE_IN,
    sa = maint_in::REPORT_SUPPORTED_OPERATION_CODES
);
flags!(ReportSupportedOperationCodes {
    /// RCTD: return command timeouts descriptors.
    rctd, set_rctd, with_rctd: options, 0x80;
});
bits!(ReportSupportedOperationCodes {
    /// REPORTING OPTIONS (see [`crate::rsoc::reporting_options`]).
    reporting_options, set_reporting_options, with_reporting_options: options, 0, 3;
});

impl ReportSupportedOperationCodes {
    /// All commands (reporting options 000b).
    pub fn all(allocation_length: u32) -> Self {
        let mut s = Self::zeroed();
        s.allocation_length.set(allocation_length);
        s
    }

    /// One command: reporting options 001b without, 010b or 011b with a
    /// service action (`reporting_options` picks which).
    pub fn one(
        reporting_options: u8,
        operation_code: u8,
        service_action: u16,
        allocation_length: u32,
    ) -> Self {
        let mut s = Self::all(allocation_length).with_reporting_options(reporting_options);
        s.requested_operation_code = operation_code;
        s.requested_service_action.set(service_action);
        s
    }
}

wire_struct! {
    /// REPORT TARGET PORT GROUPS (SPC-4 6.36).
    pub struct ReportTargetPortGroups {
        pub opcode: u8,
        /// Bits 7:5 PARAMETER DATA FORMAT, bits 4:0 service action.
        pub service_action: u8,
        pub reserved: [u8; 4],
        pub allocation_length: U32,
        pub reserved10: u8,
        pub control: u8,
    }
}
layout!(
    ReportTargetPortGroups,
    12,
    MAINTENANCE_IN,
    sa = maint_in::REPORT_TARGET_PORT_GROUPS
);
bits!(ReportTargetPortGroups {
    /// PARAMETER DATA FORMAT (0 = length only, 1 = extended header).
    parameter_data_format, set_parameter_data_format, with_parameter_data_format: service_action, 5, 3;
});

impl ReportTargetPortGroups {
    /// REPORT TARGET PORT GROUPS for up to `allocation_length` bytes.
    pub fn new(allocation_length: u32) -> Self {
        let mut s = Self::zeroed();
        s.allocation_length.set(allocation_length);
        s
    }
}

// ---------------------------------------------------------------- SBC ----

wire_struct! {
    /// READ CAPACITY(10) (SBC-3 5.15).
    pub struct ReadCapacity10 {
        pub opcode: u8,
        pub reserved1: u8,
        /// Obsolete; zero.
        pub logical_block_address: U32,
        pub reserved6: [u8; 2],
        /// Bit 0 PMI (obsolete).
        pub flags: u8,
        pub control: u8,
    }
}
layout!(ReadCapacity10, 10, READ_CAPACITY_10);
flags!(ReadCapacity10 {
    /// PMI (obsolete): must be zero.
    pmi, set_pmi, with_pmi: flags, 0x01;
});

impl ReadCapacity10 {
    /// A READ CAPACITY(10) CDB.
    pub fn new() -> Self {
        Self::zeroed()
    }
}

impl Default for ReadCapacity10 {
    fn default() -> Self {
        Self::new()
    }
}

wire_struct! {
    /// READ CAPACITY(16) (SBC-3 5.16): SERVICE ACTION IN(16) / 0x10.
    pub struct ReadCapacity16 {
        pub opcode: u8,
        pub service_action: u8,
        /// Obsolete; zero.
        pub logical_block_address: U64,
        pub allocation_length: U32,
        /// Bit 0 PMI (obsolete).
        pub flags: u8,
        pub control: u8,
    }
}
layout!(
    ReadCapacity16,
    16,
    SERVICE_ACTION_IN_16,
    sa = sai16::READ_CAPACITY_16
);
flags!(ReadCapacity16 {
    /// PMI (obsolete): must be zero.
    pmi, set_pmi, with_pmi: flags, 0x01;
});

impl ReadCapacity16 {
    /// READ CAPACITY(16) for up to `allocation_length` bytes (32 is the full data).
    pub fn new(allocation_length: u32) -> Self {
        let mut s = Self::zeroed();
        s.allocation_length.set(allocation_length);
        s
    }
}

/// Defines READ(6) / WRITE(6): 21-bit LBA, 8-bit length (0 = 256).
macro_rules! sbc6 {
    ($(#[$m:meta])* $ty:ident, $op:ident) => {
        wire_struct! {
            $(#[$m])*
            pub struct $ty {
                pub opcode: u8,
                /// Bits 4:0 of byte 1 and bytes 2-3: the LBA (bits 7:5 of
                /// byte 1 are reserved).
                pub lba: [u8; 3],
                /// TRANSFER LENGTH (0 means 256 blocks).
                pub transfer_length: u8,
                pub control: u8,
            }
        }
        layout!($ty, 6, $op);

        impl $ty {
            /// The CDB for `blocks` (1..=256) blocks at `lba` (< 2^21);
            /// `None` if either is out of range.
            pub fn new(lba: u32, blocks: u32) -> Option<Self> {
                if lba > 0x1F_FFFF || blocks == 0 || blocks > 256 {
                    return None;
                }
                let b = lba.to_be_bytes();
                let mut s = Self::zeroed();
                s.lba = [b[1], b[2], b[3]];
                s.transfer_length = blocks as u8; // 256 wraps to 0, as the standard wants
                Some(s)
            }

            /// The 21-bit LOGICAL BLOCK ADDRESS.
            pub const fn logical_block_address(&self) -> u32 {
                u32::from_be_bytes([0, self.lba[0] & 0x1F, self.lba[1], self.lba[2]])
            }

            /// Number of blocks: TRANSFER LENGTH, with 0 meaning 256.
            pub const fn blocks(&self) -> u32 {
                if self.transfer_length == 0 {
                    256
                } else {
                    self.transfer_length as u32
                }
            }
        }
    };
}

sbc6!(
    /// READ(6) (SBC-3 5.8).
    Read6, READ_6
);
sbc6!(
    /// WRITE(6) (SBC-3 5.30).
    Write6, WRITE_6
);

/// Defines a 10-byte SBC command with LBA at 2..6, group at 6, length at 7..9.
macro_rules! sbc10 {
    ($(#[$m:meta])* $ty:ident, $op:ident, $len_name:ident) => {
        wire_struct! {
            $(#[$m])*
            pub struct $ty {
                pub opcode: u8,
                /// Protection field and flags, see the accessors.
                pub flags: u8,
                pub logical_block_address: U32,
                /// Bits 4:0 GROUP NUMBER.
                pub group: u8,
                pub $len_name: U16,
                pub control: u8,
            }
        }
        layout!($ty, 10, $op);
        impl $ty {
            /// The CDB with LBA and length set, everything else zero.
            pub fn new(lba: u32, length: u16) -> Self {
                let mut s = Self::zeroed();
                s.logical_block_address.set(lba);
                s.$len_name.set(length);
                s
            }
        }
        bits!($ty {
            /// GROUP NUMBER.
            group_number, set_group_number, with_group_number: group, 0, 5;
        });
    };
}

/// Defines a 12-byte SBC command with LBA at 2..6, length at 6..10, group at 10.
macro_rules! sbc12 {
    ($(#[$m:meta])* $ty:ident, $op:ident, $len_name:ident) => {
        wire_struct! {
            $(#[$m])*
            pub struct $ty {
                pub opcode: u8,
                /// Protection field and flags, see the accessors.
                pub flags: u8,
                pub logical_block_address: U32,
                pub $len_name: U32,
                /// Bits 4:0 GROUP NUMBER.
                pub group: u8,
                pub control: u8,
            }
        }
        layout!($ty, 12, $op);
        impl $ty {
            /// The CDB with LBA and length set, everything else zero.
            pub fn new(lba: u32, length: u32) -> Self {
                let mut s = Self::zeroed();
                s.logical_block_address.set(lba);
                s.$len_name.set(length);
                s
            }
        }
        bits!($ty {
            /// GROUP NUMBER.
            group_number, set_group_number, with_group_number: group, 0, 5;
        });
    };
}

/// Defines a 16-byte SBC command with LBA at 2..10, length at 10..14, group at 14.
macro_rules! sbc16 {
    ($(#[$m:meta])* $ty:ident, $op:ident, $len_name:ident) => {
        wire_struct! {
            $(#[$m])*
            pub struct $ty {
                pub opcode: u8,
                /// Protection field and flags, see the accessors.
                pub flags: u8,
                pub logical_block_address: U64,
                pub $len_name: U32,
                /// Bits 4:0 GROUP NUMBER.
                pub group: u8,
                pub control: u8,
            }
        }
        layout!($ty, 16, $op);
        impl $ty {
            /// The CDB with LBA and length set, everything else zero.
            pub fn new(lba: u64, length: u32) -> Self {
                let mut s = Self::zeroed();
                s.logical_block_address.set(lba);
                s.$len_name.set(length);
                s
            }
        }
        bits!($ty {
            /// GROUP NUMBER.
            group_number, set_group_number, with_group_number: group, 0, 5;
        });
    };
}

/// READ 10/12/16: RDPROTECT, DPO, FUA, RARC.
macro_rules! read_flags {
    ($($ty:ty),*) => { $(
        bits!($ty {
            /// RDPROTECT.
            rdprotect, set_rdprotect, with_rdprotect: flags, 5, 3;
        });
        flags!($ty {
            /// DPO: disable page out (cache retention hint).
            dpo, set_dpo, with_dpo: flags, 0x10;
            /// FUA: read from the medium, not the cache.
            fua, set_fua, with_fua: flags, 0x08;
            /// RARC: rebuild assist recovery control.
            rarc, set_rarc, with_rarc: flags, 0x04;
            /// FUA_NV (obsolete in SBC-4; libiscsi still sends it).
            fua_nv, set_fua_nv, with_fua_nv: flags, 0x02;
        });
    )* };
}

/// WRITE 10/12/16: WRPROTECT, DPO, FUA.
macro_rules! write_flags {
    ($($ty:ty),*) => { $(
        bits!($ty {
            /// WRPROTECT.
            wrprotect, set_wrprotect, with_wrprotect: flags, 5, 3;
        });
        flags!($ty {
            /// DPO: disable page out.
            dpo, set_dpo, with_dpo: flags, 0x10;
            /// FUA: complete only when the data is on stable storage.
            fua, set_fua, with_fua: flags, 0x08;
            /// FUA_NV (obsolete in SBC-4; libiscsi still sends it).
            fua_nv, set_fua_nv, with_fua_nv: flags, 0x02;
        });
    )* };
}

/// WRITE AND VERIFY 10/12/16: WRPROTECT, DPO, BYTCHK (1 bit).
macro_rules! write_verify_flags {
    ($($ty:ty),*) => { $(
        bits!($ty {
            /// WRPROTECT.
            wrprotect, set_wrprotect, with_wrprotect: flags, 5, 3;
        });
        flags!($ty {
            /// DPO: disable page out.
            dpo, set_dpo, with_dpo: flags, 0x10;
            /// BYTCHK: compare the written data byte by byte.
            bytchk, set_bytchk, with_bytchk: flags, 0x02;
        });
    )* };
}

/// VERIFY 10/12/16: VRPROTECT, DPO, BYTCHK (2 bits in SBC-3 r35 and later).
macro_rules! verify_flags {
    ($($ty:ty),*) => { $(
        bits!($ty {
            /// VRPROTECT.
            vrprotect, set_vrprotect, with_vrprotect: flags, 5, 3;
            /// BYTCHK: 00b medium check only, 01b compare data-out per
            /// block, 11b compare one block of data-out against each block.
            bytchk, set_bytchk, with_bytchk: flags, 1, 2;
        });
        flags!($ty {
            /// DPO: disable page out.
            dpo, set_dpo, with_dpo: flags, 0x10;
        });
    )* };
}

sbc10!(
    /// READ(10) (SBC-3 5.9).
    Read10, READ_10, transfer_length
);
sbc12!(
    /// READ(12) (SBC-3 5.10).
    Read12, READ_12, transfer_length
);
sbc16!(
    /// READ(16) (SBC-3 5.11).
    Read16, READ_16, transfer_length
);
read_flags!(Read10, Read12, Read16);

sbc10!(
    /// WRITE(10) (SBC-3 5.32).
    Write10, WRITE_10, transfer_length
);
sbc12!(
    /// WRITE(12) (SBC-3 5.33).
    Write12, WRITE_12, transfer_length
);
sbc16!(
    /// WRITE(16) (SBC-3 5.34).
    Write16, WRITE_16, transfer_length
);
write_flags!(Write10, Write12, Write16);

sbc10!(
    /// WRITE AND VERIFY(10) (SBC-3 5.35).
    WriteAndVerify10, WRITE_AND_VERIFY_10, transfer_length
);
sbc12!(
    /// WRITE AND VERIFY(12) (SBC-3 5.36).
    WriteAndVerify12, WRITE_AND_VERIFY_12, transfer_length
);
sbc16!(
    /// WRITE AND VERIFY(16) (SBC-3 5.37).
    WriteAndVerify16, WRITE_AND_VERIFY_16, transfer_length
);
write_verify_flags!(WriteAndVerify10, WriteAndVerify12, WriteAndVerify16);

sbc10!(
    /// VERIFY(10) (SBC-3 5.27).
    Verify10, VERIFY_10, verification_length
);
sbc12!(
    /// VERIFY(12) (SBC-3 5.28).
    Verify12, VERIFY_12, verification_length
);
sbc16!(
    /// VERIFY(16) (SBC-3 5.29).
    Verify16, VERIFY_16, verification_length
);
verify_flags!(Verify10, Verify12, Verify16);

sbc16!(
    /// ORWRITE(16) (SBC-3 5.7).
    OrWrite16, ORWRITE_16, transfer_length
);
bits!(OrWrite16 {
    /// ORPROTECT.
    orprotect, set_orprotect, with_orprotect: flags, 5, 3;
});
flags!(OrWrite16 {
    /// DPO: disable page out.
    dpo, set_dpo, with_dpo: flags, 0x10;
    /// FUA: complete only when the data is on stable storage.
    fua, set_fua, with_fua: flags, 0x08;
});

sbc10!(
    /// PRE-FETCH(10) (SBC-3 5.5).
    PreFetch10, PRE_FETCH_10, prefetch_length
);
sbc16!(
    /// PRE-FETCH(16) (SBC-3 5.6).
    PreFetch16, PRE_FETCH_16, prefetch_length
);
sbc10!(
    /// SYNCHRONIZE CACHE(10) (SBC-3 5.22); length 0 means "to the last LBA".
    SynchronizeCache10, SYNCHRONIZE_CACHE_10, number_of_logical_blocks
);
sbc16!(
    /// SYNCHRONIZE CACHE(16) (SBC-3 5.23).
    SynchronizeCache16, SYNCHRONIZE_CACHE_16, number_of_logical_blocks
);
macro_rules! immed_flag {
    ($($ty:ty),*) => { $(
        flags!($ty {
            /// IMMED: return status before the operation completes.
            immed, set_immed, with_immed: flags, 0x02;
        });
    )* };
}
immed_flag!(
    PreFetch10,
    PreFetch16,
    SynchronizeCache10,
    SynchronizeCache16
);
flags!(SynchronizeCache10 {
    /// SYNC_NV (obsolete).
    sync_nv, set_sync_nv, with_sync_nv: flags, 0x04;
});

sbc10!(
    /// WRITE SAME(10) (SBC-3 5.41).
    WriteSame10, WRITE_SAME_10, number_of_logical_blocks
);
sbc16!(
    /// WRITE SAME(16) (SBC-3 5.42).
    WriteSame16, WRITE_SAME_16, number_of_logical_blocks
);
macro_rules! write_same_flags {
    ($($ty:ty),*) => { $(
        bits!($ty {
            /// WRPROTECT.
            wrprotect, set_wrprotect, with_wrprotect: flags, 5, 3;
        });
        flags!($ty {
            /// ANCHOR: anchor instead of deallocate (with UNMAP).
            anchor, set_anchor, with_anchor: flags, 0x10;
            /// UNMAP: the device server may unmap the blocks.
            unmap, set_unmap, with_unmap: flags, 0x08;
            /// PBDATA (obsolete).
            pbdata, set_pbdata, with_pbdata: flags, 0x04;
            /// LBDATA (obsolete).
            lbdata, set_lbdata, with_lbdata: flags, 0x02;
        });
    )* };
}
write_same_flags!(WriteSame10, WriteSame16);
flags!(WriteSame16 {
    /// NDOB: no data-out buffer; the blocks are written with zeroes.
    ndob, set_ndob, with_ndob: flags, 0x01;
});

wire_struct! {
    /// UNMAP (SBC-3 5.25); the block descriptors are in the parameter list
    /// ([`crate::unmap`]).
    pub struct Unmap {
        pub opcode: u8,
        /// Bit 0 ANCHOR.
        pub flags: u8,
        pub reserved: [u8; 4],
        /// Bits 4:0 GROUP NUMBER.
        pub group: u8,
        pub parameter_list_length: U16,
        pub control: u8,
    }
}
layout!(Unmap, 10, UNMAP);
flags!(Unmap {
    /// ANCHOR: anchor the blocks instead of deallocating them.
    anchor, set_anchor, with_anchor: flags, 0x01;
});
bits!(Unmap {
    /// GROUP NUMBER.
    group_number, set_group_number, with_group_number: group, 0, 5;
});

impl Unmap {
    /// UNMAP with a parameter list of `parameter_list_length` bytes.
    pub fn new(parameter_list_length: u16) -> Self {
        let mut s = Self::zeroed();
        s.parameter_list_length.set(parameter_list_length);
        s
    }
}

wire_struct! {
    /// GET LBA STATUS (SBC-3 5.4): SERVICE ACTION IN(16) / 0x12.
    pub struct GetLbaStatus {
        pub opcode: u8,
        pub service_action: u8,
        pub starting_logical_block_address: U64,
        pub allocation_length: U32,
        /// Bits 1:0 REPORT TYPE (SBC-4).
        pub report_type: u8,
        pub control: u8,
    }
}
layout!(
    GetLbaStatus,
    16,
    SERVICE_ACTION_IN_16,
    sa = sai16::GET_LBA_STATUS
);

impl GetLbaStatus {
    /// GET LBA STATUS from `lba`, up to `allocation_length` bytes.
    pub fn new(lba: u64, allocation_length: u32) -> Self {
        let mut s = Self::zeroed();
        s.starting_logical_block_address.set(lba);
        s.allocation_length.set(allocation_length);
        s
    }
}

wire_struct! {
    /// COMPARE AND WRITE (SBC-3 5.2): data-out is 2 x NUMBER OF LOGICAL
    /// BLOCKS blocks, the verify data followed by the write data.
    pub struct CompareAndWrite {
        pub opcode: u8,
        /// Bits 7:5 WRPROTECT, bit 4 DPO, bit 3 FUA.
        pub flags: u8,
        pub logical_block_address: U64,
        pub reserved: [u8; 3],
        pub number_of_logical_blocks: u8,
        /// Bits 4:0 GROUP NUMBER.
        pub group: u8,
        pub control: u8,
    }
}
layout!(CompareAndWrite, 16, COMPARE_AND_WRITE);
write_flags!(CompareAndWrite);
bits!(CompareAndWrite {
    /// GROUP NUMBER.
    group_number, set_group_number, with_group_number: group, 0, 5;
});

impl CompareAndWrite {
    /// COMPARE AND WRITE of `blocks` blocks at `lba`.
    pub fn new(lba: u64, blocks: u8) -> Self {
        let mut s = Self::zeroed();
        s.logical_block_address.set(lba);
        s.number_of_logical_blocks = blocks;
        s
    }
}

wire_struct! {
    /// START STOP UNIT (SBC-3 5.20).
    pub struct StartStopUnit {
        pub opcode: u8,
        /// Bit 0 IMMED.
        pub flags: u8,
        pub reserved: u8,
        /// Bits 3:0 POWER CONDITION MODIFIER.
        pub power_condition_modifier: u8,
        /// Bits 7:4 POWER CONDITION, bit 2 NO_FLUSH, bit 1 LOEJ, bit 0 START.
        pub power: u8,
        pub control: u8,
    }
}
layout!(StartStopUnit, 6, START_STOP_UNIT);
flags!(StartStopUnit {
    /// IMMED: return status before the operation completes.
    immed, set_immed, with_immed: flags, 0x01;
    /// NO_FLUSH: do not flush the cache before stopping.
    no_flush, set_no_flush, with_no_flush: power, 0x04;
    /// LOEJ: load (START=1) or eject (START=0) the medium.
    loej, set_loej, with_loej: power, 0x02;
    /// START: make the unit ready (1) or stop it (0).
    start, set_start, with_start: power, 0x01;
});
bits!(StartStopUnit {
    /// POWER CONDITION (0 = START_VALID: process START and LOEJ).
    power_condition, set_power_condition, with_power_condition: power, 4, 4;
});

impl StartStopUnit {
    /// START STOP UNIT with START = `start`.
    pub fn new(start: bool) -> Self {
        Self::zeroed().with_start(start)
    }
}

wire_struct! {
    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.13).
    pub struct PreventAllowMediumRemoval {
        pub opcode: u8,
        pub reserved: [u8; 3],
        /// Bits 1:0 PREVENT.
        pub prevent: u8,
        pub control: u8,
    }
}
layout!(PreventAllowMediumRemoval, 6, PREVENT_ALLOW_MEDIUM_REMOVAL);
bits!(PreventAllowMediumRemoval {
    /// PREVENT: 00b allow, 01b prevent (other values obsolete/reserved for SBC).
    prevent_field, set_prevent_field, with_prevent_field: prevent, 0, 2;
});

impl PreventAllowMediumRemoval {
    /// PREVENT (true) or ALLOW (false) medium removal.
    pub fn new(prevent: bool) -> Self {
        Self::zeroed().with_prevent_field(prevent as u8)
    }
}

// ------------------------------------------------------------- generic ----

/// CDB length of the command starting `cdb`, or `None` if `cdb` is empty
/// or its group code is reserved or vendor specific.
///
/// Variable-length CDBs (0x7F) are `8 + ADDITIONAL CDB LENGTH` (byte 7) bytes.
pub fn cdb_len(cdb: &[u8]) -> Option<usize> {
    let op = Opcode(*cdb.first()?);
    if op == Opcode::VARIABLE_LENGTH {
        return cdb.get(7).map(|&n| 8 + n as usize);
    }
    op.cdb_len()
}

/// A received CDB whose length has been checked against its group code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cdb<'a> {
    bytes: &'a [u8],
}

impl<'a> Cdb<'a> {
    /// Checks that `bytes` holds the whole CDB its opcode implies and keeps
    /// exactly that many bytes. Fails on empty input, reserved or vendor
    /// group codes, and truncated CDBs.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        crate::error::need(bytes, 1)?;
        let len = cdb_len(bytes).ok_or(WireError::BadValue {
            field: "GROUP CODE",
            value: (bytes[0] >> 5) as u64,
        })?;
        crate::error::need(bytes, len)?;
        Ok(Cdb {
            bytes: &bytes[..len],
        })
    }

    /// The CDB bytes, exactly as long as the opcode says.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// OPERATION CODE.
    pub fn opcode(&self) -> Opcode {
        Opcode(self.bytes[0])
    }

    /// The service action for multiplexed opcodes (byte 1 bits 4:0, or
    /// bytes 8-9 of a variable-length CDB).
    pub fn service_action(&self) -> Option<u16> {
        let op = self.opcode();
        if op == Opcode::VARIABLE_LENGTH {
            let b = self.bytes.get(8..10)?;
            return Some(u16::from_be_bytes([b[0], b[1]]));
        }
        op.has_service_action()
            .then(|| (self.bytes[1] & 0x1F) as u16)
    }

    /// CONTROL (the last byte).
    pub fn control(&self) -> u8 {
        self.bytes[self.bytes.len() - 1]
    }

    /// Views this CDB as layout `T` (see [`CdbLayout::parse`]).
    pub fn layout<T: CdbLayout>(&self) -> Result<&'a T> {
        T::parse(self.bytes)
    }

    /// Decodes the READ/WRITE family, `None` for any other command.
    pub fn rw(&self) -> Option<RwCommand> {
        RwCommand::parse(self.bytes).ok()
    }
}

/// The operation of a command in the READ/WRITE family.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RwOp {
    /// READ 6/10/12/16.
    Read,
    /// WRITE 6/10/12/16.
    Write,
    /// WRITE AND VERIFY 10/12/16.
    WriteAndVerify,
    /// VERIFY 10/12/16 (length is the VERIFICATION LENGTH).
    Verify,
    /// ORWRITE(16).
    OrWrite,
}

/// A decoded READ/WRITE-family CDB, whatever its size.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct RwCommand {
    /// Which command.
    pub op: RwOp,
    /// Length of the CDB it came from (6, 10, 12 or 16).
    pub cdb_len: u8,
    /// LOGICAL BLOCK ADDRESS.
    pub lba: u64,
    /// Number of logical blocks (TRANSFER LENGTH or VERIFICATION LENGTH;
    /// a 6-byte CDB's 0 is already turned into 256).
    pub blocks: u32,
    /// FUA (READ, WRITE, ORWRITE; false otherwise).
    pub fua: bool,
    /// DPO (all but the 6-byte forms).
    pub dpo: bool,
    /// RDPROTECT / WRPROTECT / VRPROTECT / ORPROTECT (byte 1 bits 7:5).
    pub protect: u8,
    /// BYTCHK for VERIFY (2 bits) and WRITE AND VERIFY (1 bit); else 0.
    pub bytchk: u8,
    /// GROUP NUMBER.
    pub group_number: u8,
}

impl RwCommand {
    /// Decodes any READ/WRITE-family CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self> {
        crate::error::need(cdb, 1)?;
        let op = Opcode(cdb[0]);
        let (rw, len) = match op {
            Opcode::READ_6 => (RwOp::Read, 6),
            Opcode::WRITE_6 => (RwOp::Write, 6),
            Opcode::READ_10 => (RwOp::Read, 10),
            Opcode::WRITE_10 => (RwOp::Write, 10),
            Opcode::WRITE_AND_VERIFY_10 => (RwOp::WriteAndVerify, 10),
            Opcode::VERIFY_10 => (RwOp::Verify, 10),
            Opcode::READ_12 => (RwOp::Read, 12),
            Opcode::WRITE_12 => (RwOp::Write, 12),
            Opcode::WRITE_AND_VERIFY_12 => (RwOp::WriteAndVerify, 12),
            Opcode::VERIFY_12 => (RwOp::Verify, 12),
            Opcode::READ_16 => (RwOp::Read, 16),
            Opcode::WRITE_16 => (RwOp::Write, 16),
            Opcode::WRITE_AND_VERIFY_16 => (RwOp::WriteAndVerify, 16),
            Opcode::VERIFY_16 => (RwOp::Verify, 16),
            Opcode::ORWRITE_16 => (RwOp::OrWrite, 16),
            _ => {
                return Err(WireError::BadValue {
                    field: "OPERATION CODE",
                    value: op.0 as u64,
                });
            }
        };
        crate::error::need(cdb, len)?;
        if len == 6 {
            // READ(6) and WRITE(6) share one layout.
            let c = Read6::read_from_bytes(&cdb[..6]).map_err(|_| WireError::Truncated {
                needed: 6,
                available: cdb.len(),
            })?;
            return Ok(RwCommand {
                op: rw,
                cdb_len: 6,
                lba: c.logical_block_address() as u64,
                blocks: c.blocks(),
                fua: false,
                dpo: false,
                protect: 0,
                bytchk: 0,
                group_number: 0,
            });
        }
        let flags = cdb[1];
        let (lba, blocks, group) = match len {
            10 => (be(&cdb[2..6]), be(&cdb[7..9]) as u32, cdb[6]),
            12 => (be(&cdb[2..6]), be(&cdb[6..10]) as u32, cdb[10]),
            _ => (be(&cdb[2..10]), be(&cdb[10..14]) as u32, cdb[14]),
        };
        let (fua, bytchk) = match rw {
            RwOp::Read | RwOp::Write | RwOp::OrWrite => (flags & 0x08 != 0, 0),
            RwOp::WriteAndVerify => (false, (flags >> 1) & 1),
            RwOp::Verify => (false, (flags >> 1) & 3),
        };
        Ok(RwCommand {
            op: rw,
            cdb_len: len as u8,
            lba,
            blocks,
            fua,
            dpo: flags & 0x10 != 0,
            protect: flags >> 5,
            bytchk,
            group_number: group & 0x1F,
        })
    }

    /// Byte offset of the LOGICAL BLOCK ADDRESS field in the CDB, for a
    /// sense-key-specific field pointer (byte 1 for the 6-byte forms).
    pub const fn lba_field_offset(&self) -> u16 {
        if self.cdb_len == 6 { 1 } else { 2 }
    }

    /// Byte offset of the TRANSFER LENGTH / VERIFICATION LENGTH field in
    /// the CDB, for a sense-key-specific field pointer.
    pub const fn length_field_offset(&self) -> u16 {
        match self.cdb_len {
            6 => 4,
            10 => 7,
            12 => 6,
            _ => 10,
        }
    }

    /// Number of bytes the command transfers for blocks of `block_len`
    /// bytes (saturating): data-in for READ, data-out for the others;
    /// VERIFY transfers data only when BYTCHK is non-zero, and BYTCHK 11b
    /// sends a single block.
    pub const fn data_bytes(&self, block_len: u32) -> u64 {
        let blocks = match (self.op, self.bytchk) {
            (RwOp::Verify, 0) => 0,
            (RwOp::Verify, 3) => 1,
            _ => self.blocks as u64,
        };
        blocks.saturating_mul(block_len as u64)
    }

    /// A READ or WRITE in the smallest of the 10- and 16-byte forms that
    /// holds `lba` and `blocks` (the class driver's choice; the 6-byte form
    /// cannot carry FUA).
    pub fn read_write(write: bool, lba: u64, blocks: u32, fua: bool, dpo: bool) -> CdbBuf {
        if let (Ok(l), Ok(b)) = (u32::try_from(lba), u16::try_from(blocks)) {
            if write {
                CdbBuf::from_layout(&Write10::new(l, b).with_fua(fua).with_dpo(dpo))
            } else {
                CdbBuf::from_layout(&Read10::new(l, b).with_fua(fua).with_dpo(dpo))
            }
        } else if write {
            CdbBuf::from_layout(&Write16::new(lba, blocks).with_fua(fua).with_dpo(dpo))
        } else {
            CdbBuf::from_layout(&Read16::new(lba, blocks).with_fua(fua).with_dpo(dpo))
        }
    }
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Largest CDB [`CdbBuf`] holds (the port's SRB CDB size).
pub const MAX_CDB_LEN: usize = 16;

/// A built CDB of up to 16 bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CdbBuf {
    bytes: [u8; MAX_CDB_LEN],
    len: u8,
}

impl CdbBuf {
    /// Copies a layout struct.
    pub fn from_layout<T: CdbLayout>(cdb: &T) -> Self {
        const { assert!(T::LEN <= MAX_CDB_LEN) };
        let mut s = CdbBuf {
            bytes: [0; MAX_CDB_LEN],
            len: T::LEN as u8,
        };
        s.bytes[..T::LEN].copy_from_slice(cdb.as_bytes());
        s
    }

    /// Copies raw bytes; `None` if longer than 16.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() > MAX_CDB_LEN {
            return None;
        }
        let mut s = CdbBuf {
            bytes: [0; MAX_CDB_LEN],
            len: b.len() as u8,
        };
        s.bytes[..b.len()].copy_from_slice(b);
        Some(s)
    }

    /// The CDB bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl core::ops::Deref for CdbBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcode::{PrInAction, PrOutAction};

    #[test]
    fn read10_known_bytes_decode_to_lba_and_length() {
        // READ(10), DPO|FUA, LBA 0x12345678, group 3, 0x0100 blocks.
        let raw = [0x28, 0x18, 0x12, 0x34, 0x56, 0x78, 0x03, 0x01, 0x00, 0x00];
        let c = Read10::parse(&raw).unwrap();
        assert_eq!(c.logical_block_address.get(), 0x1234_5678);
        assert_eq!(c.transfer_length.get(), 256);
        assert!(c.fua() && c.dpo() && !c.rarc());
        assert_eq!(c.group_number(), 3);
        assert_eq!(c.rdprotect(), 0);
        let built = Read10::new(0x1234_5678, 256)
            .with_fua(true)
            .with_dpo(true)
            .with_group_number(3);
        assert_eq!(built.as_bytes(), &raw);
        let rw = RwCommand::parse(&raw).unwrap();
        assert_eq!(
            rw,
            RwCommand {
                op: RwOp::Read,
                cdb_len: 10,
                lba: 0x1234_5678,
                blocks: 256,
                fua: true,
                dpo: true,
                protect: 0,
                bytchk: 0,
                group_number: 3
            }
        );
    }

    #[test]
    fn rw_field_offsets_point_at_the_fields() {
        // (cdb, LBA offset, length offset, length width)
        let cases = [
            (Read6::new(0x1234, 9).unwrap().as_bytes().to_vec(), 1, 4, 1),
            (Read10::new(0x1234, 9).as_bytes().to_vec(), 2, 7, 2),
            (Read12::new(0x1234, 9).as_bytes().to_vec(), 2, 6, 4),
            (Read16::new(0x1234, 9).as_bytes().to_vec(), 2, 10, 4),
        ];
        for (raw, lba_at, len_at, width) in cases {
            let rw = RwCommand::parse(&raw).unwrap();
            assert_eq!(rw.lba_field_offset() as usize, lba_at);
            assert_eq!(rw.length_field_offset() as usize, len_at);
            assert_eq!(raw[len_at + width - 1], 9, "{raw:02x?}");
            // The LBA field ends right before the next field.
            let lba_end = if rw.cdb_len == 6 {
                4
            } else if rw.cdb_len == 16 {
                10
            } else {
                6
            };
            assert_eq!(&raw[lba_end - 2..lba_end], &[0x12, 0x34], "{raw:02x?}");
        }
        let v = RwCommand::parse(Verify10::new(0, 8).as_bytes()).unwrap();
        assert_eq!(v.data_bytes(512), 0);
        let v = RwCommand::parse(Verify10::new(0, 8).with_bytchk(3).as_bytes()).unwrap();
        assert_eq!(v.data_bytes(512), 512);
        let w = RwCommand::parse(Write16::new(0, u32::MAX).as_bytes()).unwrap();
        assert_eq!(w.data_bytes(4096), u32::MAX as u64 * 4096);
    }

    #[test]
    fn rw6_zero_length_means_256_blocks_and_lba_is_21_bits() {
        let raw = [0x08, 0xFF, 0xFF, 0xFF, 0x00, 0x00];
        let rw = RwCommand::parse(&raw).unwrap();
        assert_eq!(rw.lba, 0x1F_FFFF, "top 3 bits of byte 1 are reserved");
        assert_eq!(rw.blocks, 256);
        assert_eq!(
            Write6::new(5, 256).unwrap().as_bytes(),
            &[0x0A, 0, 0, 5, 0, 0]
        );
        assert!(Read6::new(1 << 21, 1).is_none());
        assert!(Read6::new(0, 257).is_none());
        assert!(Write6::new(0, 0).is_none());
        let r = Read6::parse(&[0x08, 0x01, 0x02, 0x03, 0, 0]).unwrap();
        assert_eq!((r.logical_block_address(), r.blocks()), (0x10203, 256));
    }

    #[test]
    fn rw16_and_12_decode() {
        let c = Write16::new(0x0102_0304_0506_0708, 0x0A0B_0C0D).with_fua(true);
        let b = c.as_bytes();
        assert_eq!(
            b,
            &[
                0x8A, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D, 0, 0
            ]
        );
        let rw = RwCommand::parse(b).unwrap();
        assert_eq!(
            (rw.op, rw.lba, rw.blocks, rw.fua),
            (RwOp::Write, 0x0102_0304_0506_0708, 0x0A0B_0C0D, true)
        );
        let v = Verify12::new(7, 9).with_bytchk(1);
        let rw = RwCommand::parse(v.as_bytes()).unwrap();
        assert_eq!(
            (rw.op, rw.lba, rw.blocks, rw.bytchk, rw.fua),
            (RwOp::Verify, 7, 9, 1, false)
        );
        let wv = WriteAndVerify16::new(1, 2).with_bytchk(true);
        assert_eq!(wv.flags, 0x02);
        assert_eq!(RwCommand::parse(wv.as_bytes()).unwrap().bytchk, 1);
        let o = OrWrite16::new(3, 4).with_orprotect(5);
        let rw = RwCommand::parse(o.as_bytes()).unwrap();
        assert_eq!((rw.op, rw.protect), (RwOp::OrWrite, 5));
    }

    #[test]
    fn read_write_builder_picks_10_or_16_bytes() {
        let c = RwCommand::read_write(true, 100, 8, true, false);
        assert_eq!(c.len(), 10);
        assert_eq!(c[0], 0x2A);
        assert_eq!(c[1], 0x08);
        let c = RwCommand::read_write(false, 1 << 32, 8, false, false);
        assert_eq!(c.len(), 16);
        assert_eq!(RwCommand::parse(&c).unwrap().lba, 1 << 32);
        let c = RwCommand::read_write(false, 0, 70_000, false, true);
        assert_eq!(c.len(), 16);
        let rw = RwCommand::parse(&c).unwrap();
        assert_eq!((rw.blocks, rw.dpo), (70_000, true));
    }

    #[test]
    fn short_cdbs_are_rejected_not_panicking() {
        let raw = Read16::new(1, 1);
        for n in 0..16 {
            assert!(Read16::parse(&raw.as_bytes()[..n]).is_err());
            assert!(RwCommand::parse(&raw.as_bytes()[..n]).is_err());
            assert!(Cdb::parse(&raw.as_bytes()[..n]).is_err());
        }
        assert!(Read6::parse(&[0x08, 0, 0]).is_err());
        assert!(Write6::parse(&[0x08, 0, 0, 0, 0, 0]).is_err());
        assert!(Cdb::parse(&[]).is_err());
        assert_eq!(
            Cdb::parse(&[0xC0; 16]),
            Err(WireError::BadValue {
                field: "GROUP CODE",
                value: 6
            })
        );
    }

    #[test]
    fn parse_checks_opcode_and_service_action() {
        let rc16 = ReadCapacity16::new(32);
        assert_eq!(rc16.as_bytes()[..2], [0x9E, 0x10]);
        assert!(ReadCapacity16::parse(rc16.as_bytes()).is_ok());
        assert!(GetLbaStatus::parse(rc16.as_bytes()).is_err());
        assert!(Write10::parse(Read10::new(0, 0).as_bytes()).is_err());
        // Padding after the CDB is allowed.
        let mut padded = [0u8; 16];
        padded[..10].copy_from_slice(Read10::new(9, 1).as_bytes());
        assert_eq!(
            Read10::parse(&padded).unwrap().logical_block_address.get(),
            9
        );
    }

    #[test]
    fn cdb_view_length_and_service_action() {
        let mut buf = [0u8; 32];
        let g = GetLbaStatus::new(10, 4096);
        buf[..16].copy_from_slice(g.as_bytes());
        let c = Cdb::parse(&buf).unwrap();
        assert_eq!(c.as_bytes().len(), 16);
        assert_eq!(c.opcode(), Opcode::SERVICE_ACTION_IN_16);
        assert_eq!(c.service_action(), Some(0x12));
        assert_eq!(
            c.layout::<GetLbaStatus>().unwrap().allocation_length.get(),
            4096
        );
        assert_eq!(c.rw(), None);
        let tur_cdb = TestUnitReady::new();
        let tur = Cdb::parse(tur_cdb.as_bytes()).unwrap();
        assert_eq!(tur.service_action(), None);
        assert_eq!(tur.as_bytes().len(), 6);
        // Variable length: 8 + additional length.
        let mut v = [0u8; 32];
        v[0] = 0x7F;
        v[7] = 0x18;
        v[8] = 0x00;
        v[9] = 0x09;
        let c = Cdb::parse(&v).unwrap();
        assert_eq!(c.as_bytes().len(), 32);
        assert_eq!(c.service_action(), Some(9));
        assert!(Cdb::parse(&v[..31]).is_err());
    }

    #[test]
    fn sizes_match_group_codes() {
        fn check<T: CdbLayout>() {
            assert_eq!(T::OPCODE.cdb_len(), Some(T::LEN), "{:?}", T::OPCODE);
            let z = T::new_zeroed();
            assert_eq!(z.as_bytes().len(), T::LEN);
        }
        check::<TestUnitReady>();
        check::<Read6>();
        check::<Write6>();
        check::<Inquiry>();
        check::<RequestSense>();
        check::<ReportLuns>();
        check::<ModeSense6>();
        check::<ModeSense10>();
        check::<ModeSelect6>();
        check::<ModeSelect10>();
        check::<Reserve6>();
        check::<Release6>();
        check::<Reserve10>();
        check::<Release10>();
        check::<PersistentReserveIn>();
        check::<PersistentReserveOut>();
        check::<ReportSupportedOperationCodes>();
        check::<ReportTargetPortGroups>();
        check::<ReadCapacity10>();
        check::<ReadCapacity16>();
        check::<Read10>();
        check::<Read12>();
        check::<Read16>();
        check::<Write10>();
        check::<Write12>();
        check::<Write16>();
        check::<WriteAndVerify10>();
        check::<WriteAndVerify12>();
        check::<WriteAndVerify16>();
        check::<Verify10>();
        check::<Verify12>();
        check::<Verify16>();
        check::<OrWrite16>();
        check::<PreFetch10>();
        check::<PreFetch16>();
        check::<SynchronizeCache10>();
        check::<SynchronizeCache16>();
        check::<WriteSame10>();
        check::<WriteSame16>();
        check::<Unmap>();
        check::<GetLbaStatus>();
        check::<CompareAndWrite>();
        check::<StartStopUnit>();
        check::<PreventAllowMediumRemoval>();
    }

    #[test]
    fn spc_builders_produce_known_bytes() {
        assert_eq!(
            Inquiry::vpd(0x83, 0x1000).as_bytes(),
            &[0x12, 1, 0x83, 0x10, 0, 0]
        );
        assert_eq!(Inquiry::standard(36).as_bytes(), &[0x12, 0, 0, 0, 36, 0]);
        assert_eq!(
            RequestSense::new(252).with_desc(true).as_bytes(),
            &[3, 1, 0, 0, 252, 0]
        );
        assert_eq!(
            ReportLuns::new(2, 0x1000).as_bytes(),
            &[0xA0, 0, 2, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
        );
        let ms = ModeSense10::new(2, 0x3F, 0xFF, 512)
            .with_dbd(true)
            .with_llbaa(true);
        assert_eq!(ms.as_bytes(), &[0x5A, 0x18, 0xBF, 0xFF, 0, 0, 0, 2, 0, 0]);
        assert_eq!((ms.pc(), ms.page_code()), (2, 0x3F));
        let ms6 = ModeSense6::parse(&[0x1A, 0x08, 0x4A, 0, 0xFF, 0]).unwrap();
        assert!(ms6.dbd());
        assert_eq!(
            (ms6.pc(), ms6.page_code(), ms6.allocation_length),
            (1, 0x0A, 255)
        );
        assert_eq!(
            ModeSelect6::new(28).with_sp(true).as_bytes(),
            &[0x15, 0x11, 0, 0, 28, 0]
        );
        assert_eq!(
            ModeSelect10::new(300).as_bytes(),
            &[0x55, 0x10, 0, 0, 0, 0, 0, 1, 44, 0]
        );
        let pri = PersistentReserveIn::new(PrInAction::ReadFullStatus, 8192);
        assert_eq!(pri.as_bytes(), &[0x5E, 3, 0, 0, 0, 0, 0, 0x20, 0, 0]);
        assert_eq!(pri.action(), Some(PrInAction::ReadFullStatus));
        let pro = PersistentReserveOut::new(PrOutAction::Reserve, 5, 24);
        assert_eq!(pro.as_bytes(), &[0x5F, 1, 5, 0, 0, 0, 0, 0, 24, 0]);
        assert_eq!(
            (pro.action(), pro.pr_type(), pro.scope()),
            (Some(PrOutAction::Reserve), 5, 0)
        );
        let rsoc = ReportSupportedOperationCodes::one(2, 0x9E, 0x10, 512).with_rctd(true);
        assert_eq!(
            rsoc.as_bytes(),
            &[0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(rsoc.reporting_options(), 2);
        let rtpg = ReportTargetPortGroups::new(256).with_parameter_data_format(1);
        assert_eq!(rtpg.as_bytes()[1], 0x2A);
        assert!(ReportTargetPortGroups::parse(rtpg.as_bytes()).is_ok());
        assert!(Reserve10::new().with_third_party(true).third_party());
        assert_eq!(Reserve6::new().as_bytes(), &[0x16, 0, 0, 0, 0, 0]);
        assert_eq!(Release6::new().as_bytes()[0], 0x17);
        assert_eq!(
            Release10::new().with_longid(true).as_bytes()[..2],
            [0x57, 0x02]
        );
    }

    #[test]
    fn sbc_flag_accessors_hit_the_right_bits() {
        let ws = WriteSame16::new(0, 8).with_unmap(true).with_ndob(true);
        assert_eq!(ws.flags, 0x09);
        assert!(ws.unmap() && ws.ndob() && !ws.anchor());
        let ws10 = WriteSame10::parse(&[0x41, 0x18, 0, 0, 0, 1, 0, 0, 4, 0]).unwrap();
        assert!(ws10.anchor() && ws10.unmap());
        assert_eq!(ws10.number_of_logical_blocks.get(), 4);
        assert_eq!(
            Unmap::new(24).with_anchor(true).as_bytes(),
            &[0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0]
        );
        let sc = SynchronizeCache10::new(0, 0).with_immed(true);
        assert_eq!(sc.flags, 0x02);
        assert!(PreFetch16::new(1, 1).with_immed(true).immed());
        let caw = CompareAndWrite::new(0x10, 1).with_fua(true);
        assert_eq!(
            caw.as_bytes(),
            &[0x89, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0]
        );
        let ssu = StartStopUnit::new(true).with_immed(true).with_loej(true);
        assert_eq!(ssu.as_bytes(), &[0x1B, 1, 0, 0, 0x03, 0]);
        let ssu = StartStopUnit::parse(&[0x1B, 0, 0, 0, 0x34, 0]).unwrap();
        assert_eq!(
            (ssu.power_condition(), ssu.no_flush(), ssu.start()),
            (3, true, false)
        );
        assert_eq!(
            PreventAllowMediumRemoval::new(true).as_bytes(),
            &[0x1E, 0, 0, 0, 1, 0]
        );
        let mut v = Verify16::new(0, 1).with_bytchk(3).with_vrprotect(7);
        assert_eq!(v.flags, 0xE6);
        v.set_bytchk(0);
        assert_eq!(v.flags, 0xE0);
        assert!(ReadCapacity10::new().with_pmi(true).pmi());
        let r = Read12::new(1, 2).with_rarc(true).with_rdprotect(0xFF);
        assert_eq!(r.flags, 0xE4, "excess bits of the setter value are dropped");
    }

    #[test]
    fn control_byte_and_naca() {
        let mut raw = [0u8; 10];
        raw.copy_from_slice(Read10::new(0, 1).as_bytes());
        raw[9] = 0x04;
        let c = Read10::parse(&raw).unwrap();
        assert_eq!(c.control(), 4);
        assert!(c.naca());
        assert_eq!(Cdb::parse(&raw).unwrap().control(), 4);
    }
}
