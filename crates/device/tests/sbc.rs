//! Golden tests for the SBC commands.

mod common;

use common::*;
use device::backend::{BackendOp, BlockBackend, InjectedFault};
use device::{IoOp, Prepared, Residual, ScsiRequest, ScsiStatus};
use scsi::{Asc, SenseKey};

#[test]
fn read_capacity_10_and_16_are_exact() {
    let t = lu512();
    let (c, d) = run(&t.lu, I1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8);
    assert_eq!(c.status, ScsiStatus::Good);
    assert_eq!(d, [0, 0, 0x7F, 0xFF, 0, 0, 0x02, 0x00]);
    invalid_cdb(&t.lu, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], 2, 7);
    good(&t.lu, I1, &[0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], &[], 8); // PMI = 1
    let rc16 = |alloc: u32| cdb16(0x9e, 0x10, 0, alloc);
    let (c, d) = run(&t.lu, I1, &rc16(32), &[], 32);
    let mut want = vec![
        0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0, 0, 0x02, 0x00, 0, 0, 0xC0, 0,
    ];
    want.resize(32, 0);
    assert_eq!(
        (c.status, d.clone(), c.residual),
        (ScsiStatus::Good, want.clone(), Residual::None)
    );
    let (c, d) = run(&t.lu, I1, &rc16(12), &[], 32);
    assert_eq!((&d[..], c.residual), (&want[..12], Residual::Underflow(20)));
    let (c, d) = run(&t.lu, I1, &rc16(0), &[], 0);
    assert_eq!((c.status, d.len()), (ScsiStatus::Good, 0));
    let t4 = lu4k();
    let d = good(&t4.lu, I1, &rc16(32), &[], 32);
    assert_eq!(&d[..12], &[0, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0, 0, 0x10, 0x00]);
}

#[test]
fn read_write_all_sizes_round_trip_with_flags() {
    for t in [lu512(), lu4k()] {
        let bs = t.lu.block_size() as usize;
        let data = pattern(9, 2, bs);
        // WRITE(6) / READ(6)
        good(&t.lu, I1, &[0x0a, 0, 0, 9, 2, 0], &data, 0);
        assert_eq!(good(&t.lu, I1, &[0x08, 0, 0, 9, 2, 0], &[], 2 * bs), data);
        let data = pattern(20, 3, bs);
        // WRITE(10) with DPO+FUA+FUA_NV / READ(10) with DPO+FUA
        good(&t.lu, I1, &cdb10(0x2a, 0x1a, 20, 3), &data, 0);
        assert_eq!(
            good(&t.lu, I1, &cdb10(0x28, 0x18, 20, 3), &[], 3 * bs),
            data
        );
        let data = pattern(30, 1, bs);
        good(&t.lu, I1, &cdb12(0xaa, 0x08, 30, 1), &data, 0);
        assert_eq!(good(&t.lu, I1, &cdb12(0xa8, 0x10, 30, 1), &[], bs), data);
        let data = pattern(40, 4, bs);
        good(&t.lu, I1, &cdb16(0x8a, 0x08, 40, 4), &data, 0);
        assert_eq!(
            good(&t.lu, I1, &cdb16(0x88, 0x02, 40, 4), &[], 4 * bs),
            data
        );
        assert_eq!(t.disk.inner().lba_status(40, 8).unwrap().1, 4);
        // RDPROTECT / WRPROTECT are not supported: protection information is off.
        invalid_cdb(&t.lu, &cdb10(0x28, 0x20, 0, 1), 1, 5);
        invalid_cdb(&t.lu, &cdb16(0x8a, 0xe0, 0, 1), 1, 7);
        // READ(6) with length 0 means 256 blocks.
        let (c, d) = run(&t.lu, I1, &[0x08, 0, 0, 0, 0, 0], &[], 256 * bs);
        assert_eq!((c.status, d.len()), (ScsiStatus::Good, 256 * bs));
    }
}

#[test]
fn zero_length_transfers_and_out_of_range_lbas() {
    let t = lu512();
    let n = BLOCKS_512;
    good(&t.lu, I1, &read10(0, 0), &[], 0);
    good(&t.lu, I1, &read10(n as u32, 0), &[], 0);
    lba_oob(&t.lu, &read10(n as u32 + 1, 0), &[]);
    lba_oob(&t.lu, &read10(0x8000_0000, 0), &[]);
    lba_oob(&t.lu, &read10(u32::MAX, 0), &[]);
    lba_oob(&t.lu, &read10(n as u32 - 1, 2), &[]);
    lba_oob(&t.lu, &cdb16(0x88, 0, u64::MAX, 1), &[]);
    lba_oob(&t.lu, &cdb16(0x88, 0, 1 << 63, 1), &[]);
    lba_oob(&t.lu, &write10(n as u32, 1), &[0; 512]);
    lba_oob(&t.lu, &cdb12(0xaa, 0, n as u32 - 1, 2), &[0; 1024]);
    lba_oob(&t.lu, &[0x08, 0x1f, 0xff, 0xff, 1, 0], &[]);
    good(&t.lu, I1, &write10(n as u32 - 1, 1), &[7; 512], 0);
    assert_eq!(read_blocks(&t.lu, n - 1, 1), vec![7; 512]);
    // Longer than MAXIMUM TRANSFER LENGTH: INVALID FIELD IN CDB at the length field.
    invalid_cdb(&t.lu, &read10(0, 1025), 7, 7);
    invalid_cdb(&t.lu, &cdb12(0xa8, 0, 0, 1025), 6, 7);
    invalid_cdb(&t.lu, &cdb16(0x8a, 0, 0, 0xFFFF_FFFF), 10, 7);
}

#[test]
fn residuals_follow_the_expected_transfer_length() {
    let t = lu512();
    write_blocks(&t.lu, 0, &[b'a'; 1024]);
    // One block, EDTL 0: nothing written, overflow of one block.
    let (c, _) = run(&t.lu, I1, &write10(0, 1), &[], 0);
    assert_eq!(
        (c.status, c.residual),
        (ScsiStatus::Good, Residual::Overflow(512))
    );
    // One block, EDTL 10000: underflow.
    let (c, _) = run(&t.lu, I1, &write10(0, 1), &[b'b'; 10000], 0);
    assert_eq!(c.residual, Residual::Underflow(10000 - 512));
    // EDTL 2 blocks, TL 1: only one block written.
    write_blocks(&t.lu, 0, &[b'a'; 1024]);
    let (c, _) = run(&t.lu, I1, &write10(0, 1), &[b'b'; 1024], 0);
    assert_eq!(c.residual, Residual::Underflow(512));
    let d = read_blocks(&t.lu, 0, 2);
    assert!(d[..512].iter().all(|b| *b == b'b') && d[512..].iter().all(|b| *b == b'a'));
    // TL 2, EDTL 1 block: only the EDTL is written.
    write_blocks(&t.lu, 0, &[b'a'; 1024]);
    let (c, _) = run(&t.lu, I1, &write10(0, 2), &[b'b'; 512], 0);
    assert_eq!(
        (c.status, c.residual),
        (ScsiStatus::Good, Residual::Overflow(512))
    );
    let d = read_blocks(&t.lu, 0, 2);
    assert!(d[..512].iter().all(|b| *b == b'b') && d[512..].iter().all(|b| *b == b'a'));
    // TL 1, EDTL 200: no whole block, nothing written, overflow 312.
    let (c, _) = run(&t.lu, I1, &write10(0, 1), &[b'c'; 200], 0);
    assert_eq!(c.residual, Residual::Overflow(312));
    assert_eq!(read_blocks(&t.lu, 0, 1), vec![b'b'; 512]);
    // Reads: EDTL smaller transfers a prefix; larger underflows.
    let (c, d) = run(&t.lu, I1, &read10(0, 2), &[], 700);
    assert_eq!((d.len(), c.residual), (700, Residual::Overflow(324)));
    let (c, d) = run(&t.lu, I1, &read10(0, 1), &[], 4096);
    assert_eq!((d.len(), c.residual), (512, Residual::Underflow(3584)));
    let (c, d) = run(&t.lu, I1, &read10(0, 1), &[], 0);
    assert_eq!(
        (c.status, d.len(), c.residual),
        (ScsiStatus::Good, 0, Residual::Overflow(512))
    );
}

#[test]
fn write_and_verify_writes_and_checks() {
    let t = lu512();
    let data = pattern(100, 2, 512);
    good(&t.lu, I1, &cdb10(0x2e, 0x02, 100, 2), &data, 0);
    good(&t.lu, I1, &cdb12(0xae, 0x10, 100, 2), &data, 0);
    good(&t.lu, I1, &cdb16(0x8e, 0x12, 100, 2), &data, 0);
    assert_eq!(read_blocks(&t.lu, 100, 2), data);
    invalid_cdb(&t.lu, &cdb10(0x2e, 0x08, 100, 2), 1, 3);
    lba_oob(&t.lu, &cdb16(0x8e, 0, BLOCKS_512, 1), &[0; 512]);
}

#[test]
fn verify_compares_and_reports_miscompare_offset() {
    let t = lu512();
    let data = pattern(200, 2, 512);
    write_blocks(&t.lu, 200, &data);
    good(&t.lu, I1, &cdb10(0x2f, 0x02, 200, 2), &data, 0);
    good(&t.lu, I1, &cdb12(0xaf, 0x12, 200, 2), &data, 0);
    good(&t.lu, I1, &cdb16(0x8f, 0x02, 200, 2), &data, 0);
    let mut bad = data.clone();
    bad[700] ^= 0xFF;
    let c = expect_check(
        &t.lu,
        I1,
        &cdb10(0x2f, 0x02, 200, 2),
        &bad,
        SenseKey::Miscompare,
        Asc::MISCOMPARE_DURING_VERIFY_OPERATION,
        None,
    );
    assert_eq!(sense_of(&c).information, Some(700));
    // Fixed format: VALID + INFORMATION bytes 3..7.
    assert_eq!(
        &c.sense.unwrap().as_bytes()[..7],
        &[0xF0, 0, 0x0E, 0, 0, 0x02, 0xBC]
    );
    // BYTCHK = 0: medium verification only, data-out ignored.
    good(&t.lu, I1, &cdb16(0x8f, 0x00, 200, 2), &[], 0);
    invalid_cdb(&t.lu, &cdb10(0x2f, 0x04, 200, 2), 1, 2);
    invalid_cdb(&t.lu, &cdb10(0x2f, 0x06, 200, 2), 1, 2);
    lba_oob(&t.lu, &cdb16(0x8f, 0, BLOCKS_512 - 1, 2), &[]);
    good(&t.lu, I1, &cdb10(0x2f, 0, 0, 0), &[], 0);
}

#[test]
fn prefetch_and_synchronize_cache_check_ranges() {
    let t = lu512();
    let n = BLOCKS_512;
    good(&t.lu, I1, &cdb10(0x34, 0x02, 0, 8), &[], 0);
    good(&t.lu, I1, &cdb16(0x90, 0, n - 1, 1), &[], 0);
    good(&t.lu, I1, &cdb10(0x34, 0, n as u32, 0), &[], 0);
    lba_oob(&t.lu, &cdb10(0x34, 0, n as u32, 1), &[]);
    lba_oob(&t.lu, &cdb16(0x90, 0, n + 1, 0), &[]);
    good(&t.lu, I1, &cdb10(0x35, 0x02, 0, 0), &[], 0);
    good(&t.lu, I1, &cdb16(0x91, 0, 5, 10), &[], 0);
    lba_oob(&t.lu, &cdb16(0x91, 0, n - 1, 2), &[]);
    invalid_cdb(&t.lu, &cdb10(0x35, 0x01, 0, 0), 1, 0);
}

#[test]
fn write_same_fills_unmaps_and_enforces_limits() {
    let t = lu512();
    let block = [0x5Au8; 512];
    good(&t.lu, I1, &cdb10(0x41, 0, 10, 300), &block, 0);
    assert!(read_blocks(&t.lu, 10, 300).iter().all(|b| *b == 0x5A));
    good(&t.lu, I1, &cdb16(0x93, 0, BLOCKS_512 - 5, 5), &block, 0);
    // UNMAP with a zero block deallocates.
    let zero = [0u8; 512];
    good(&t.lu, I1, &cdb10(0x41, 0x08, 10, 300), &zero, 0);
    assert!(read_blocks(&t.lu, 10, 300).iter().all(|b| *b == 0));
    assert_eq!(
        t.disk.inner().lba_status(10, 300).unwrap(),
        (device::backend::LbaStatus::Deallocated, 300)
    );
    // UNMAP with non-zero data writes the data.
    good(&t.lu, I1, &cdb16(0x93, 0x08, 10, 2), &block, 0);
    assert_eq!(read_blocks(&t.lu, 10, 2), vec![0x5A; 1024]);
    // NDOB: zeroes without data-out.
    good(&t.lu, I1, &cdb16(0x93, 0x09, 10, 2), &[], 0);
    assert_eq!(read_blocks(&t.lu, 10, 2), vec![0; 1024]);
    // ANCHOR is not supported; zero blocks (WSNZ) and too many blocks are refused.
    invalid_cdb(&t.lu, &cdb10(0x41, 0x18, 0, 1), 1, 4);
    invalid_cdb(&t.lu, &cdb10(0x41, 0x10, 0, 1), 1, 4);
    invalid_cdb(&t.lu, &cdb10(0x41, 0, 0, 0), 7, 7);
    lba_oob(&t.lu, &cdb10(0x41, 0, BLOCKS_512 as u32 + 1, 0), &block);
    lba_oob(&t.lu, &cdb10(0x41, 0, u32::MAX, 0), &block);
    invalid_cdb(&t.lu, &cdb16(0x93, 0, 0, 4097), 10, 7);
    lba_oob(&t.lu, &cdb16(0x93, 0, BLOCKS_512 - 1, 2), &block);
    // Data-out must be exactly one block.
    for len in [256usize, 1024] {
        expect_check(
            &t.lu,
            I1,
            &cdb10(0x41, 0x08, 0, 1),
            &vec![0; len],
            SenseKey::IllegalRequest,
            Asc::INVALID_FIELD_IN_CDB,
            None,
        );
    }
}

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut l = vec![0u8; 8];
    l[0..2].copy_from_slice(&((6 + 16 * descs.len()) as u16).to_be_bytes());
    l[2..4].copy_from_slice(&((16 * descs.len()) as u16).to_be_bytes());
    for (lba, n) in descs {
        l.extend(lba.to_be_bytes());
        l.extend(n.to_be_bytes());
        l.extend([0u8; 4]);
    }
    l
}

#[test]
fn unmap_deallocates_every_descriptor_or_none() {
    let t = lu512();
    write_blocks(&t.lu, 0, &[b'a'; 512 * 64]);
    let list = unmap_list(&[(0, 4), (10, 1), (20, 0)]);
    good(&t.lu, I1, &cdb10(0x42, 0, 0, list.len() as u16), &list, 0);
    let d = read_blocks(&t.lu, 0, 12);
    assert!(d[..2048].iter().all(|b| *b == 0));
    assert!(d[2048..5120].iter().all(|b| *b == b'a'));
    assert!(d[5120..5632].iter().all(|b| *b == 0));
    // One bad descriptor: nothing is unmapped.
    let list = unmap_list(&[(30, 1), (BLOCKS_512, 1)]);
    lba_oob(&t.lu, &cdb10(0x42, 0, 0, list.len() as u16), &list);
    assert_eq!(read_blocks(&t.lu, 30, 1), vec![b'a'; 512]);
    // MAXIMUM UNMAP LBA COUNT (8192) bounds the sum over all descriptors.
    let list = unmap_list(&[(30, 8000), (9000, 193)]);
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x42, 0, 0, list.len() as u16),
        &list,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 32, Some(7))),
    );
    assert_eq!(read_blocks(&t.lu, 30, 1), vec![b'a'; 512]);
    let many: Vec<(u64, u32)> = (0..257).map(|i| (i, 1)).collect();
    let list = unmap_list(&many);
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x42, 0, 0, list.len() as u16),
        &list,
        SenseKey::IllegalRequest,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        Some((false, 2, Some(7))),
    );
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x42, 0, 0, 4),
        &[0; 4],
        SenseKey::IllegalRequest,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        None,
    );
    good(&t.lu, I1, &cdb10(0x42, 0, 0, 0), &[], 0);
    invalid_cdb(&t.lu, &cdb10(0x42, 0x01, 0, 24), 1, 0);
}

#[test]
fn get_lba_status_reports_runs_exactly() {
    let t = lu512();
    write_blocks(&t.lu, 8, &[1u8; 8 * 512]);
    let gls = |lba: u64, alloc: u32| cdb16(0x9e, 0x12, lba, alloc);
    let d = good(&t.lu, I1, &gls(0, 4096), &[], 4096);
    let mut want = vec![0, 0, 0, 4 + 48, 0, 0, 0, 0];
    for (lba, n, st) in [
        (0u64, 8u32, 1u8),
        (8, 8, 0),
        (16, BLOCKS_512 as u32 - 16, 1),
    ] {
        want.extend(lba.to_be_bytes());
        want.extend(n.to_be_bytes());
        want.extend([st, 0, 0, 0]);
    }
    assert_eq!(d, want);
    // Allocation length for one descriptor.
    let (c, d) = run(&t.lu, I1, &gls(10, 24), &[], 24);
    assert_eq!(
        (c.status, d.len(), c.residual),
        (ScsiStatus::Good, 24, Residual::None)
    );
    assert_eq!(&d[..4], &[0, 0, 0, 20]);
    assert_eq!(
        &d[8..24],
        &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 6, 0, 0, 0, 0]
    );
    lba_oob(&t.lu, &gls(BLOCKS_512, 24), &[]);
    let (c, d) = run(&t.lu, I1, &gls(0, 0), &[], 0);
    assert_eq!((c.status, d.len()), (ScsiStatus::Good, 0));
}

fn caw(lba: u64, blocks: u8, b1: u8) -> [u8; 16] {
    let mut c = cdb16(0x89, b1, lba, 0);
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write_writes_on_match_and_reports_offset_on_miscompare() {
    for t in [lu512(), lu4k()] {
        let bs = t.lu.block_size() as usize;
        write_blocks(&t.lu, 5, &vec![b'A'; 2 * bs]);
        let mut out = vec![b'A'; 2 * bs];
        out.extend(vec![b'B'; 2 * bs]);
        good(&t.lu, I1, &caw(5, 2, 0x08), &out, 0);
        assert_eq!(read_blocks(&t.lu, 5, 2), vec![b'B'; 2 * bs]);
        // Miscompare 27 bytes from the end of the compare data: nothing written.
        let mut out = vec![b'B'; 2 * bs];
        out[2 * bs - 27] = b'C';
        out.extend(vec![b'D'; 2 * bs]);
        let c = expect_check(
            &t.lu,
            I1,
            &caw(5, 2, 0),
            &out,
            SenseKey::Miscompare,
            Asc::MISCOMPARE_DURING_VERIFY_OPERATION,
            None,
        );
        assert_eq!(sense_of(&c).information, Some(2 * bs as u64 - 27));
        assert_eq!(read_blocks(&t.lu, 5, 2), vec![b'B'; 2 * bs]);
        // Limits and sizes.
        invalid_cdb(&t.lu, &caw(0, 17, 0), 13, 7);
        lba_oob(&t.lu, &caw(t.lu.num_blocks() - 1, 2, 0), &vec![0; 4 * bs]);
        expect_check(
            &t.lu,
            I1,
            &caw(5, 2, 0),
            &vec![b'B'; 3 * bs],
            SenseKey::IllegalRequest,
            Asc::INVALID_FIELD_IN_CDB,
            None,
        );
        good(&t.lu, I1, &caw(5, 0, 0), &[], 0);
        // Zero blocks with data-out (a count of 256 truncated to one byte) is refused
        // and writes nothing.
        let mut out = vec![b'B'; 256 * bs];
        out.extend(vec![b'E'; 256 * bs]);
        expect_check(
            &t.lu,
            I1,
            &caw(5, 0, 0),
            &out,
            SenseKey::IllegalRequest,
            Asc::INVALID_FIELD_IN_CDB,
            Some((true, 13, Some(7))),
        );
        assert_eq!(read_blocks(&t.lu, 5, 2), vec![b'B'; 2 * bs]);
        invalid_cdb(&t.lu, &caw(5, 1, 0x20), 1, 5);
    }
}

#[test]
fn orwrite_ors_data_into_the_medium() {
    let t = lu512();
    write_blocks(&t.lu, 3, &[0x0F; 1024]);
    good(&t.lu, I1, &cdb16(0x8b, 0x08, 3, 2), &[0xF0; 1024], 0);
    assert_eq!(read_blocks(&t.lu, 3, 2), vec![0xFF; 1024]);
    good(&t.lu, I1, &cdb16(0x8b, 0, 50, 1), &[0x81; 512], 0);
    assert_eq!(read_blocks(&t.lu, 50, 1), vec![0x81; 512]);
    lba_oob(&t.lu, &cdb16(0x8b, 0, BLOCKS_512, 1), &[0; 512]);
    good(&t.lu, I1, &cdb16(0x8b, 0, 0, 0), &[], 0);
    invalid_cdb(&t.lu, &cdb16(0x8b, 0x20, 0, 1), 1, 5);
}

#[test]
fn backend_errors_become_sense_and_the_lu_keeps_serving() {
    let t = lu512();
    t.disk.inject(InjectedFault::READ_EIO);
    expect_check(
        &t.lu,
        I1,
        &read10(0, 1),
        &[],
        SenseKey::MediumError,
        Asc::UNRECOVERED_READ_ERROR,
        None,
    );
    t.disk.clear();
    t.disk.inject(InjectedFault::WRITE_EIO);
    expect_check(
        &t.lu,
        I1,
        &write10(0, 1),
        &[1; 512],
        SenseKey::MediumError,
        Asc::WRITE_ERROR,
        None,
    );
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x41, 0, 0, 4),
        &[1; 512],
        SenseKey::MediumError,
        Asc::WRITE_ERROR,
        None,
    );
    t.disk.clear();
    t.disk.inject(InjectedFault::WRITE_ENOSPC);
    let c = expect_check(
        &t.lu,
        I1,
        &cdb16(0x8a, 0, 0, 1),
        &[1; 512],
        SenseKey::DataProtect,
        Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        None,
    );
    assert_eq!(&c.sense.unwrap().as_bytes()[12..14], &[0x27, 0x07]);
    t.disk.clear();
    t.disk.inject(InjectedFault::FLUSH_EIO);
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x35, 0, 0, 0),
        &[],
        SenseKey::MediumError,
        Asc::WRITE_ERROR,
        None,
    );
    t.disk.clear();
    t.disk.inject(InjectedFault {
        op: BackendOp::Unmap,
        errno: 5,
        blocks: None,
    });
    let list = unmap_list(&[(0, 1)]);
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x42, 0, 0, list.len() as u16),
        &list,
        SenseKey::MediumError,
        Asc::WRITE_ERROR,
        None,
    );
    t.disk.clear();
    // Only a range fails.
    t.disk.inject(InjectedFault {
        op: BackendOp::Read,
        errno: 5,
        blocks: Some((100, 1)),
    });
    good(&t.lu, I1, &read10(99, 1), &[], 512);
    expect_check(
        &t.lu,
        I1,
        &read10(99, 2),
        &[],
        SenseKey::MediumError,
        Asc::UNRECOVERED_READ_ERROR,
        None,
    );
    expect_check(
        &t.lu,
        I1,
        &cdb10(0x2f, 0, 100, 1),
        &[],
        SenseKey::MediumError,
        Asc::UNRECOVERED_READ_ERROR,
        None,
    );
    t.disk.clear();
    write_blocks(&t.lu, 0, &[9; 512]);
    assert_eq!(read_blocks(&t.lu, 0, 1), vec![9; 512]);
}

#[test]
fn prepare_and_finish_let_the_caller_do_the_io() {
    let t = lu512();
    // WRITE through the split path.
    let data = pattern(7, 2, 512);
    let cdb = write10(7, 2);
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &cdb,
        data_out: &data,
        data_in: &mut [],
    };
    let Prepared::Io(plan) = t.lu.prepare(&mut req) else {
        panic!("WRITE must plan I/O")
    };
    assert_eq!(
        (plan.op, plan.offset, plan.len),
        (IoOp::Write { fua: false }, 7 * 512, 1024)
    );
    // While the write is in flight, an overlapping COMPARE AND WRITE is BUSY (it must not
    // wait for I/O the caller may complete only after it returns).
    let (c, _) = run(&t.lu, I2, &caw(8, 1, 0), &[0u8; 1024], 0);
    assert_eq!(c.status, ScsiStatus::Busy);
    t.disk
        .inner()
        .write_at(plan.offset, &data[..plan.len], false)
        .unwrap();
    let c = t.lu.finish(plan, Ok(()));
    assert_eq!((c.status, c.residual), (ScsiStatus::Good, Residual::None));
    let mut out = data[512..].to_vec();
    out.extend([3u8; 512]);
    good(&t.lu, I2, &caw(8, 1, 0), &out, 0);
    // READ through the split path, failing in the backend.
    let cdb = read10(7, 1);
    let mut buf = [0u8; 512];
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &cdb,
        data_out: &[],
        data_in: &mut buf,
    };
    let Prepared::Io(plan) = t.lu.prepare(&mut req) else {
        panic!("READ must plan I/O")
    };
    assert_eq!(plan.op, IoOp::Read);
    let err = device::backend::BackendError::from_errno(BackendOp::Read, 5);
    let c = t.lu.finish(plan, Err(err));
    check(&c, SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR, None);
    // SYNCHRONIZE CACHE plans a flush; INQUIRY completes inside prepare.
    let cdb = cdb10(0x35, 0, 0, 0);
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &cdb,
        data_out: &[],
        data_in: &mut [],
    };
    assert!(matches!(t.lu.prepare(&mut req), Prepared::Io(p) if p.op == IoOp::Flush));
    let cdb = inquiry(false, 0, 36);
    let mut buf = [0u8; 36];
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &cdb,
        data_out: &[],
        data_in: &mut buf,
    };
    assert!(matches!(t.lu.prepare(&mut req), Prepared::Done(c) if c.data_in_len == 36));
}

#[test]
fn wce_off_makes_every_write_fua() {
    let t = lu512();
    let mut list = vec![0u8, 0, 0, 0, 0x08, 0x12];
    list.resize(4 + 20, 0);
    good(
        &t.lu,
        I1,
        &[0x15, 0x10, 0, 0, list.len() as u8, 0],
        &list,
        0,
    );
    let cdb = write10(0, 1);
    let mut req = ScsiRequest {
        nexus: I1,
        cdb: &cdb,
        data_out: &[0; 512],
        data_in: &mut [],
    };
    let Prepared::Io(plan) = t.lu.prepare(&mut req) else {
        panic!()
    };
    assert_eq!(plan.op, IoOp::Write { fua: true });
}

#[test]
fn compare_and_write_increments_never_get_lost() {
    // Each thread increments a counter in block 0 with read + COMPARE AND WRITE, retrying
    // on MISCOMPARE. If compare and write were not one atomic step, two threads could
    // both compare the same value and one increment would be lost.
    let t = std::sync::Arc::new(lu512());
    write_blocks(&t.lu, 0, &[0; 512]);
    let per_thread = 150u64;
    let threads: Vec<_> = [I1, I2]
        .into_iter()
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                while done < per_thread {
                    let (c, cur) = run(&t.lu, n, &read10(0, 1), &[], 512);
                    assert_eq!(c.status, ScsiStatus::Good);
                    let v = u64::from_be_bytes(cur[..8].try_into().unwrap());
                    let mut out = cur.clone();
                    let mut next = vec![0u8; 512];
                    next[..8].copy_from_slice(&(v + 1).to_be_bytes());
                    out.extend(next);
                    let (c, _) = run(&t.lu, n, &caw(0, 1, 0), &out, 0);
                    match c.status {
                        ScsiStatus::Good => done += 1,
                        ScsiStatus::CheckCondition => {
                            assert_eq!(sense_of(&c).key, SenseKey::Miscompare)
                        }
                        s => panic!("unexpected {s:?}"),
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let d = read_blocks(&t.lu, 0, 1);
    assert_eq!(
        u64::from_be_bytes(d[..8].try_into().unwrap()),
        2 * per_thread
    );
}

#[test]
fn file_backed_lu_reads_writes_unmaps_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let fb = device::backend::FileBackend::open(dir.path().join("lu.img"), 4096, Some(16 << 20))
        .unwrap();
    let lu = device::LogicalUnit::new(config(), std::sync::Arc::new(fb));
    let data = pattern(3, 2, 4096);
    good(&lu, I1, &cdb16(0x8a, 0x08, 3, 2), &data, 0);
    assert_eq!(good(&lu, I1, &cdb16(0x88, 0, 3, 2), &[], 8192), data);
    let list = unmap_list(&[(3, 1)]);
    good(&lu, I1, &cdb10(0x42, 0, 0, list.len() as u16), &list, 0);
    let back = good(&lu, I1, &cdb16(0x88, 0, 3, 2), &[], 8192);
    assert!(back[..4096].iter().all(|b| *b == 0));
    assert_eq!(&back[4096..], &data[4096..]);
    good(&lu, I1, &cdb10(0x35, 0, 0, 0), &[], 0);
    let d = good(&lu, I1, &cdb16(0x9e, 0x10, 0, 32), &[], 32);
    assert_eq!((&d[8..12], d[14]), (&[0u8, 0, 0x10, 0][..], 0xC0));
    let d = good(&lu, I1, &cdb16(0x9e, 0x12, 4, 24), &[], 24);
    assert_eq!(
        (&d[8..16], d[20]),
        (&4u64.to_be_bytes()[..], 0),
        "LBA 4 still mapped"
    );
}

#[test]
fn try_new_refuses_unusable_backends() {
    struct Odd(u32, u64);
    impl BlockBackend for Odd {
        fn block_size(&self) -> u32 {
            self.0
        }
        fn num_blocks(&self) -> u64 {
            self.1
        }
        fn read_at(&self, _: u64, _: &mut [u8]) -> device::backend::BackendResult<()> {
            Ok(())
        }
        fn write_at(&self, _: u64, _: &[u8], _: bool) -> device::backend::BackendResult<()> {
            Ok(())
        }
        fn flush(&self) -> device::backend::BackendResult<()> {
            Ok(())
        }
    }
    use device::{LogicalUnit, LuConfigError};
    let e = LogicalUnit::try_new(config(), std::sync::Arc::new(Odd(1000, 8))).unwrap_err();
    assert_eq!(e, LuConfigError::BlockSize(1000));
    let e = LogicalUnit::try_new(config(), std::sync::Arc::new(Odd(512, 0))).unwrap_err();
    assert_eq!(e, LuConfigError::Empty);
    let lu = LogicalUnit::try_new(config(), std::sync::Arc::new(Odd(4096, 8))).unwrap();
    // A backend without its own lba_status reports everything mapped.
    let d = good(&lu, I1, &cdb16(0x9e, 0x12, 0, 24), &[], 24);
    assert_eq!(&d[8..21], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
}

#[test]
fn verify_and_orwrite_work_across_chunks() {
    let t = lu4k();
    let blocks = 1000usize;
    let data = pattern(0, blocks, 4096);
    write_blocks(&t.lu, 0, &data);
    good(&t.lu, I1, &cdb16(0x8f, 0x02, 0, blocks as u32), &data, 0);
    let mut bad = data.clone();
    let at = 3 * (1 << 20) + 5;
    bad[at] ^= 1;
    let c = expect_check(
        &t.lu,
        I1,
        &cdb16(0x8f, 0x02, 0, blocks as u32),
        &bad,
        SenseKey::Miscompare,
        Asc::MISCOMPARE_DURING_VERIFY_OPERATION,
        None,
    );
    assert_eq!(sense_of(&c).information, Some(at as u64));
    let ones = vec![0x80u8; blocks * 4096];
    good(&t.lu, I1, &cdb16(0x8b, 0, 0, blocks as u32), &ones, 0);
    let back = read_blocks(&t.lu, 0, blocks as u32);
    assert!(back.iter().zip(&data).all(|(b, d)| *b == d | 0x80));
}

#[test]
fn read_defect_data_returns_an_empty_list_of_the_requested_kind() {
    let t = lu512();
    // READ DEFECT DATA(10): REQ_PLIST + REQ_GLIST, format 101b (physical sector).
    let rdd10 = |b2: u8, alloc: u16| {
        let a = alloc.to_be_bytes();
        [0x37, 0, b2, 0, 0, 0, 0, a[0], a[1], 0]
    };
    let d = good(&t.lu, I1, &rdd10(0x18 | 0x05, 32), &[], 32);
    assert_eq!(d, [0, 0x1d, 0, 0]);
    let d = good(&t.lu, I1, &rdd10(0x08, 32), &[], 32);
    assert_eq!(d, [0, 0x08, 0, 0]);
    // The allocation length truncates; zero transfers nothing.
    let (c, d) = run(&t.lu, I1, &rdd10(0x10, 2), &[], 2);
    assert_eq!((c.status, d), (ScsiStatus::Good, vec![0, 0x10]));
    let (c, d) = run(&t.lu, I1, &rdd10(0x10, 0), &[], 0);
    assert_eq!((c.status, d.len()), (ScsiStatus::Good, 0));
    // Reserved bits.
    invalid_cdb(&t.lu, &rdd10(0x20, 32), 2, 5);
    let mut c = rdd10(0, 32);
    c[1] = 0x01;
    invalid_cdb(&t.lu, &c, 1, 0);

    // READ DEFECT DATA(12): 8-byte header with a 4-byte DEFECT LIST LENGTH.
    let rdd12 = |b1: u8, index: u32, alloc: u32| {
        let i = index.to_be_bytes();
        let a = alloc.to_be_bytes();
        [
            0xb7, b1, i[0], i[1], i[2], i[3], a[0], a[1], a[2], a[3], 0, 0,
        ]
    };
    let d = good(&t.lu, I1, &rdd12(0x14, 0, 64), &[], 64);
    assert_eq!(d, [0, 0x14, 0, 0, 0, 0, 0, 0]);
    let d = good(&t.lu, I1, &rdd12(0x08, 7, 64), &[], 64);
    assert_eq!(d, [0, 0x08, 0, 0, 0, 0, 0, 0]);
    invalid_cdb(&t.lu, &rdd12(0x20, 0, 64), 1, 5);
}
