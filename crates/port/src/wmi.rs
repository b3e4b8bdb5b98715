//! The WMI provider of a miniport (the seed's SCSI Port WMI library, `scsiwmi.h`).
//!
//! A miniport that sets `PortConfiguration::wmi_data_provider` receives `SrbFunction::Wmi`
//! requests in `start_io`; it hands them to [`dispatch`] with its [`WmiProvider`], which checks
//! the GUID and instance, calls the matching routine and sets `SrbStatus` and
//! `DataTransferLength` (the return size) — `ScsiPortWmiDispatchFunction` +
//! `ScsiPortWmiPostProcess` in one call. The miniport then completes the request as usual.
//!
//! The port's side — merging the port's own statistics blocks ([`blocks`]) with the
//! miniport's, routing each operation, counting consumers for enable/disable and delivering
//! events to subscribers — is the `wmi_*` API of [`crate::Adapter`] (module `port_wmi`).

pub mod blocks;
mod port_wmi;

pub(crate) use port_wmi::PortWmi;
pub use port_wmi::{
    WMI_MAX_BUFFER, WMI_WAIT, WmiBlock, WmiConsumer, WmiError, WmiEventSink, WmiSource,
};

use crate::srb::{Srb, SrbStatus};

/// WMI minor codes carried in [`WmiRequest::sub_function`](crate::WmiRequest::sub_function).
pub mod sub_function {
    /// IRP_MN_QUERY_ALL_DATA.
    pub const QUERY_ALL_DATA: u8 = 0x00;
    /// IRP_MN_QUERY_SINGLE_INSTANCE.
    pub const QUERY_SINGLE_INSTANCE: u8 = 0x01;
    /// IRP_MN_CHANGE_SINGLE_INSTANCE.
    pub const CHANGE_SINGLE_INSTANCE: u8 = 0x02;
    /// IRP_MN_CHANGE_SINGLE_ITEM.
    pub const CHANGE_SINGLE_ITEM: u8 = 0x03;
    /// IRP_MN_ENABLE_EVENTS.
    pub const ENABLE_EVENTS: u8 = 0x04;
    /// IRP_MN_DISABLE_EVENTS.
    pub const DISABLE_EVENTS: u8 = 0x05;
    /// IRP_MN_ENABLE_COLLECTION.
    pub const ENABLE_COLLECTION: u8 = 0x06;
    /// IRP_MN_DISABLE_COLLECTION.
    pub const DISABLE_COLLECTION: u8 = 0x07;
    /// IRP_MN_REGINFO.
    pub const REGINFO: u8 = 0x08;
    /// IRP_MN_EXECUTE_METHOD.
    pub const EXECUTE_METHOD: u8 = 0x09;
}

/// WMIREG_FLAG_EXPENSIVE: the port sends enable/disable collection on first open/last close.
pub const WMIREG_FLAG_EXPENSIVE: u32 = 0x0000_0001;
/// WMIREG_FLAG_EVENT_ONLY_GUID: the block only fires events and cannot be queried.
pub const WMIREG_FLAG_EVENT_ONLY_GUID: u32 = 0x0000_0040;
/// WMIREG_FLAG_REMOVE_GUID: unregister the block.
pub const WMIREG_FLAG_REMOVE_GUID: u32 = 0x0001_0000;

/// Bytes per entry of the REGINFO answer: GUID (16), instance count (u32 LE), flags (u32 LE).
pub const REGINFO_ENTRY_SIZE: usize = 24;

/// `SCSIWMIGUIDREGINFO`: one data block the provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WmiGuidRegInfo {
    /// The block's GUID.
    pub guid: [u8; 16],
    /// Number of instances.
    pub instance_count: u32,
    /// `WMIREG_FLAG_*`.
    pub flags: u32,
}

/// `SCSIWMI_ENABLE_DISABLE_CONTROL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WmiControl {
    /// ScsiWmiEventControl: events of the block.
    Event,
    /// ScsiWmiDataBlockControl: collection of an expensive block.
    DataBlock,
}

/// The answer of a routine that returns data: an SRB status and the bytes used (or, with
/// DATA_OVERRUN, the bytes needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WmiResult {
    /// SRB_STATUS_SUCCESS, DATA_OVERRUN (buffer too small: `size` is the size needed), ERROR...
    pub status: SrbStatus,
    /// Bytes written, or bytes needed.
    pub size: u32,
}

impl WmiResult {
    /// Success with `size` bytes written.
    pub fn ok(size: u32) -> Self {
        Self {
            status: SrbStatus::SUCCESS,
            size,
        }
    }
    /// Buffer too small: `needed` bytes are required.
    pub fn too_small(needed: u32) -> Self {
        Self {
            status: SrbStatus::DATA_OVERRUN,
            size: needed,
        }
    }
    /// A status with no data (SUCCESS for a set that worked, ERROR, ...).
    pub fn status_only(status: SrbStatus) -> Self {
        Self { status, size: 0 }
    }
}

/// The six `HwScsiWmi*` routines. `query_reg_info` and `query_data_block` are required; the rest
/// default to the library's answers for a missing callback (ERROR for set/execute, SUCCESS for
/// function control). All run under the adapter's interrupt lock, from `start_io`.
pub trait WmiProvider {
    /// `QueryWmiRegInfo`: the blocks this provider offers.
    fn query_reg_info(&mut self) -> &[WmiGuidRegInfo];

    /// `QueryWmiDataBlock`: write `instance_count` instances starting at `instance_index` into
    /// `buffer`; answer DATA_OVERRUN with the size needed if it is too small.
    fn query_data_block(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        instance_count: u32,
        buffer: &mut [u8],
    ) -> WmiResult;

    /// `SetWmiDataBlock`: replace one instance. Read-only blocks answer ERROR.
    fn set_data_block(&mut self, guid_index: usize, instance_index: u32, data: &[u8]) -> SrbStatus {
        let _ = (guid_index, instance_index, data);
        SrbStatus::ERROR
    }

    /// `SetWmiDataItem`: change one item of one instance.
    fn set_data_item(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        item_id: u32,
        data: &[u8],
    ) -> SrbStatus {
        let _ = (guid_index, instance_index, item_id, data);
        SrbStatus::ERROR
    }

    /// `ExecuteWmiMethod`: `buffer[..in_size]` is the input (`WmiRequest::in_size`, at most
    /// the buffer); write the output into `buffer` (its length is the output size allowed).
    /// Check the buffer is large enough *before* acting (the caller may retry with a larger one).
    fn execute_method(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        method_id: u32,
        in_size: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        let _ = (guid_index, instance_index, method_id, in_size, buffer);
        WmiResult::status_only(SrbStatus::ERROR)
    }

    /// `WmiFunctionControl`: enable or disable events or collection of a block.
    fn function_control(
        &mut self,
        guid_index: usize,
        control: WmiControl,
        enable: bool,
    ) -> SrbStatus {
        let _ = (guid_index, control, enable);
        SrbStatus::SUCCESS
    }
}

/// `ScsiPortWmiDispatchFunction` + `ScsiPortWmiPostProcess`: runs the WMI request in `srb`
/// against `provider` and sets `srb.srb_status` and `srb.data_transfer_length` (the return size,
/// or the size needed with DATA_OVERRUN). The caller completes the request.
pub fn dispatch(provider: &mut dyn WmiProvider, srb: &mut Srb) {
    let w = srb.wmi;
    let capacity = (srb.data_transfer_length as usize).min(srb.data.len());
    let result = if w.sub_function == sub_function::REGINFO {
        let info = provider.query_reg_info();
        let needed = info.len() * REGINFO_ENTRY_SIZE;
        if needed > capacity {
            WmiResult::too_small(needed as u32)
        } else {
            for (i, g) in info.iter().enumerate() {
                let e = &mut srb.data[i * REGINFO_ENTRY_SIZE..(i + 1) * REGINFO_ENTRY_SIZE];
                e[..16].copy_from_slice(&g.guid);
                e[16..20].copy_from_slice(&g.instance_count.to_le_bytes());
                e[20..24].copy_from_slice(&g.flags.to_le_bytes());
            }
            WmiResult::ok(needed as u32)
        }
    } else {
        let found = provider
            .query_reg_info()
            .iter()
            .enumerate()
            .find(|(_, g)| g.guid == w.guid)
            .map(|(i, g)| (i, *g));
        match found {
            None => WmiResult::status_only(SrbStatus::ERROR),
            Some((index, reg)) => {
                let buf = &mut srb.data[..capacity];
                let instance_ok = w.instance_index < reg.instance_count;
                match w.sub_function {
                    sub_function::QUERY_ALL_DATA
                        if reg.flags & WMIREG_FLAG_EVENT_ONLY_GUID == 0 =>
                    {
                        provider.query_data_block(index, 0, reg.instance_count, buf)
                    }
                    sub_function::QUERY_SINGLE_INSTANCE
                        if instance_ok && reg.flags & WMIREG_FLAG_EVENT_ONLY_GUID == 0 =>
                    {
                        provider.query_data_block(index, w.instance_index, 1, buf)
                    }
                    sub_function::CHANGE_SINGLE_INSTANCE if instance_ok => WmiResult::status_only(
                        provider.set_data_block(index, w.instance_index, buf),
                    ),
                    sub_function::CHANGE_SINGLE_ITEM if instance_ok => WmiResult::status_only(
                        provider.set_data_item(index, w.instance_index, w.item_id, buf),
                    ),
                    sub_function::EXECUTE_METHOD if instance_ok => provider.execute_method(
                        index,
                        w.instance_index,
                        w.item_id,
                        w.in_size.min(capacity as u32),
                        buf,
                    ),
                    sub_function::ENABLE_EVENTS => WmiResult::status_only(
                        provider.function_control(index, WmiControl::Event, true),
                    ),
                    sub_function::DISABLE_EVENTS => WmiResult::status_only(
                        provider.function_control(index, WmiControl::Event, false),
                    ),
                    sub_function::ENABLE_COLLECTION => WmiResult::status_only(
                        provider.function_control(index, WmiControl::DataBlock, true),
                    ),
                    sub_function::DISABLE_COLLECTION => WmiResult::status_only(
                        provider.function_control(index, WmiControl::DataBlock, false),
                    ),
                    _ => WmiResult::status_only(SrbStatus::ERROR),
                }
            }
        }
    };
    srb.srb_status = result.status;
    srb.data_transfer_length = result.size;
}
