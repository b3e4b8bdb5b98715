//! Every parser in the crate gets random and mutated input; none may panic.
//! Deterministic (fixed-seed xorshift), bounded to a few thousand cases.

use scsi::cdb::*;
use scsi::{alua, capacity, inquiry, lun, mode, pr, rsoc, sense, unmap, vpd};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() % (max as u64 + 1)) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn parse_everything(b: &[u8]) {
    let _ = Cdb::parse(b).map(|c| (c.service_action(), c.control(), c.rw()));
    let _ = cdb_len(b);
    let _ = RwCommand::parse(b);
    let _ = Read6::parse(b).map(|r| (r.logical_block_address(), r.blocks()));
    let _ = Write6::parse(b);
    let _ = Read10::parse(b);
    let _ = Read16::parse(b);
    let _ = WriteSame16::parse(b);
    let _ = ReadCapacity16::parse(b);
    let _ = GetLbaStatus::parse(b);
    let _ = PersistentReserveOut::parse(b).map(|p| p.action());
    let _ = ReportSupportedOperationCodes::parse(b);
    let _ = sense::Sense::parse(b).map(|s| s.to_string());
    let _ = inquiry::StandardInquiry::parse(b).map(|i| (i.vendor(), i.product()));
    let _ = vpd::parse_page(b);
    let _ = vpd::parse_supported_pages(b);
    let _ = vpd::parse_unit_serial_number(b);
    if let Ok(ds) = vpd::Designations::parse(b) {
        ds.for_each(|x| {
            let _ = (x.id16(), x.name_string());
        });
    }
    let _ = vpd::BlockLimits::parse(b);
    let _ = vpd::BlockDeviceCharacteristics::parse(b);
    let _ = vpd::LogicalBlockProvisioning::parse(b);
    let _ = capacity::ReadCapacity10Data::parse(b);
    let _ = capacity::ReadCapacity16Data::parse(b);
    for l in [
        mode::ModeParameterList::parse6(b),
        mode::ModeParameterList::parse10(b),
    ]
    .into_iter()
    .flatten()
    {
        let _ = mode::ModePages::new(l.pages).count();
    }
    let _ = mode::ModePages::new(b).count();
    let _ = mode::CachingPage::parse(b);
    let _ = mode::ControlPage::parse(b);
    if let Ok(d) = lun::ReportLunsData::parse(b) {
        d.luns.iter().for_each(|l| {
            let _ = (l.to_index(), l.to_string());
        });
    }
    let _ = lun::Lun::parse(b);
    let _ = unmap::UnmapParameterList::parse(b);
    let _ = unmap::LbaStatusData::parse(b);
    let _ = pr::ReadKeys::parse(b);
    let _ = pr::ReadReservation::parse(b);
    let _ = pr::ReportCapabilities::parse(b);
    let _ = pr::FullStatus::parse(b).map(|f| f.count());
    if let Ok(p) = pr::PrOutParameters::parse(b)
        && let Some(t) = p.transport_ids
    {
        let _ = pr::TransportIds::new(t).count();
    }
    pr::TransportIds::new(b).flatten().for_each(|t| {
        let _ = (t.iscsi_name(), t.iscsi_isid());
    });
    let _ = rsoc::AllCommands::parse(b).map(|a| a.count());
    let _ = rsoc::OneCommand::parse(b);
    let _ = alua::TargetPortGroups::parse(b, false);
    let _ = alua::TargetPortGroups::parse(b, true);
}

#[test]
fn random_bytes_never_panic_any_parser() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        let b = rng.bytes(96);
        parse_everything(&b);
    }
}

#[test]
fn mutated_valid_data_never_panics_any_parser() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let seeds: Vec<Vec<u8>> = vec![
        Read10::new(1, 2).as_bytes().to_vec(),
        Write16::new(1, 2).as_bytes().to_vec(),
        sense::Sense::invalid_field_in_cdb(2, Some(1))
            .with_information(5)
            .encode_descriptor()
            .to_vec(),
        sense::Sense::miscompare(9).encode_fixed().to_vec(),
        vpd::device_identification(0, &[vpd::Designation::naa(&vpd::naa6(1, 2, 3))]).unwrap(),
        lun::report_luns_data(&[lun::Lun::ZERO]),
        pr::read_full_status_data(
            1,
            &[pr::FullStatusEntry {
                reservation_key: 1,
                all_tg_pt: false,
                holder_of: None,
                relative_target_port_identifier: 1,
                transport_id: &pr::iscsi_transport_id("iqn.x", Some([1; 6])),
            }],
        ),
        mode::ModeData::default()
            .encode10(false, &[], mode::CachingPage::zeroed().as_bytes())
            .unwrap(),
        unmap::unmap_parameter_list(&[unmap::UnmapBlockDescriptor::new(1, 1)]).unwrap(),
    ];
    for _ in 0..4000 {
        let mut b = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        for _ in 0..(rng.next() % 4) {
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] = rng.next() as u8;
        }
        let cut = (rng.next() % (b.len() as u64 + 1)) as usize;
        parse_everything(&b);
        parse_everything(&b[..cut]);
    }
}

#[test]
fn random_sense_round_trips_in_descriptor_format() {
    use scsi::{Asc, Sense, SenseKey, SenseKeySpecific};
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..2000 {
        let key = SenseKey::from_nibble(rng.next() as u8);
        let mut s = Sense::new(key, Asc::new(rng.next() as u8, rng.next() as u8));
        if rng.next() & 1 == 1 {
            s = s.with_information(rng.next());
        }
        if rng.next() & 1 == 1 {
            s = s.with_command_specific(rng.next());
        }
        if rng.next() & 1 == 1 {
            // Encode arbitrary bytes, then let the key decide what they mean.
            let raw = [rng.next() as u8 | 0x80, rng.next() as u8, rng.next() as u8];
            s.sense_key_specific = SenseKeySpecific::from_bytes(key, raw);
        }
        s.deferred = rng.next() & 1 == 1;
        s.ili = rng.next() & 1 == 1;
        let enc = s.encode_descriptor();
        assert_eq!(Sense::parse(&enc).unwrap(), s, "{enc:?}");
        // Fixed format keeps key, ASC/ASCQ and the sense key specific bytes.
        let fixed = Sense::parse(&s.encode_fixed()).unwrap();
        assert_eq!(
            (fixed.key, fixed.asc, fixed.deferred),
            (s.key, s.asc, s.deferred)
        );
        assert_eq!(fixed.sense_key_specific, s.sense_key_specific);
    }
}
