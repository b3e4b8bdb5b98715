//! Real initiators against `scsiport serve`: libiscsi's tools (iscsi-ls, iscsi-inq,
//! iscsi-readcapacity16) and qemu-img's iscsi block driver, for a RAM LU and a file LU;
//! the default `scsiport serve` (no arguments) and shutdown on SIGTERM.
//!
//! Loopback only; every server runs behind a guard that kills it even when an assertion
//! fails; every tool runs with a deadline.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::{DEFAULT_IQN, Server, TempDir, run_tool, write_config};

const TOOL: Duration = Duration::from_secs(30);
const COPY: Duration = Duration::from_secs(180);
const IMAGE_BYTES: usize = 64 << 20;

fn serve(config: &Path) -> Server {
    Server::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
    ])
}

fn assert_ok(what: &str, out: &common::ToolOutput, server: &Server) {
    assert!(
        out.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}\nserver stderr:\n{}",
        out.status,
        out.stdout,
        out.stderr,
        server.stderr_tail()
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), so no two blocks are alike.
fn random_image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes a 64 MiB random image into LUN 0 with `qemu-img convert`, reads the LU back
/// into another file and compares the first 64 MiB.
fn qemu_img_round_trip(server: &Server, dir: &TempDir, seed: u64) {
    let url = server.lun0_url();
    let image = random_image(IMAGE_BYTES, seed);
    let src = dir.path().join("in.raw");
    let back = dir.path().join("out.raw");
    std::fs::write(&src, &image).expect("write image");
    let src_s = src.to_str().expect("utf-8 path");
    let back_s = back.to_str().expect("utf-8 path");
    let out = run_tool(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", src_s, &url],
        COPY,
    );
    assert_ok("qemu-img convert into the LU", &out, server);
    let out = run_tool(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &url, back_s],
        COPY,
    );
    assert_ok("qemu-img convert out of the LU", &out, server);
    let got = std::fs::read(&back).expect("read image back");
    assert!(
        got.len() >= IMAGE_BYTES,
        "read back {} bytes, wanted at least {IMAGE_BYTES}",
        got.len()
    );
    if let Some(i) = got[..IMAGE_BYTES]
        .iter()
        .zip(&image)
        .position(|(a, b)| a != b)
    {
        panic!(
            "the image read back differs first at byte {i} (block {})",
            i / 512
        );
    }
}

#[test]
fn libiscsi_tools_list_inquire_and_read_capacity() {
    let dir = TempDir::new("tools");
    let server = serve(&write_config(&dir, "ram", "128 MiB", None));
    let out = run_tool(
        "iscsi-ls",
        &["-s", &format!("iscsi://{}/", server.addr)],
        TOOL,
    );
    assert_ok("iscsi-ls", &out, &server);
    assert!(
        out.stdout
            .contains(&format!("Target:{DEFAULT_IQN} Portal:{}", server.addr)),
        "iscsi-ls did not list the target:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("Lun:0"), "no LUN 0:\n{}", out.stdout);
    assert!(out.stdout.contains("DIRECT_ACCESS"), "{}", out.stdout);

    let url = server.lun0_url();
    assert!(server.urls.contains(&url), "printed URLs {:?}", server.urls);
    let out = run_tool("iscsi-inq", &[&url], TOOL);
    assert_ok("iscsi-inq", &out, &server);
    assert!(
        out.stdout.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Vendor:SCSIPORT"), "{}", out.stdout);
    // VPD page 0x80: the unit serial number.
    let out = run_tool("iscsi-inq", &["-e", "1", "-c", "128", &url], TOOL);
    assert_ok("iscsi-inq -e 1 -c 128", &out, &server);

    let out = run_tool("iscsi-readcapacity16", &[&url], TOOL);
    assert_ok("iscsi-readcapacity16", &out, &server);
    let blocks = (128u64 << 20) / 512;
    assert!(
        out.stdout
            .contains(&format!("RETURNED LOGICAL BLOCK ADDRESS:{}", blocks - 1)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("LOGICAL BLOCK LENGTH IN BYTES:512"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("Total size:{}", 128u64 << 20)),
        "{}",
        out.stdout
    );
}

#[test]
fn qemu_img_round_trip_through_a_ram_lu() {
    let dir = TempDir::new("qemu-ram");
    let server = serve(&write_config(&dir, "ram", "128 MiB", None));
    qemu_img_round_trip(&server, &dir, 0x5eed_0001);
}

#[test]
fn qemu_img_round_trip_through_a_file_lu() {
    let dir = TempDir::new("qemu-file");
    let backing = dir.path().join("lu0.img");
    let server = serve(&write_config(&dir, "file", "128 MiB", Some(&backing)));
    qemu_img_round_trip(&server, &dir, 0x5eed_0002);
    // The blocks reached the backing file too.
    drop(server);
    let image = random_image(IMAGE_BYTES, 0x5eed_0002);
    let on_disk = std::fs::read(&backing).expect("read backing file");
    assert!(on_disk.len() >= IMAGE_BYTES);
    assert!(
        on_disk[..IMAGE_BYTES] == image[..],
        "backing file differs from the image"
    );
}

/// The README's run command: `scsiport serve` with no arguments serves the 1 GiB RAM LU
/// on 127.0.0.1:3260 and prints the URL that iscsi-inq then answers at. The only test that
/// uses the fixed port.
#[test]
fn default_serve_answers_iscsi_inq_at_the_printed_url() {
    match TcpListener::bind("127.0.0.1:3260") {
        Ok(l) => drop(l),
        Err(e) => panic!(
            "127.0.0.1:3260 is not free ({e}): another iSCSI target (or a leftover scsiport) \
             holds the default port; stop it and run the test again"
        ),
    }
    let server = Server::start(&[]);
    assert_eq!(server.addr, "127.0.0.1:3260");
    let want = format!("iscsi://127.0.0.1:3260/{DEFAULT_IQN}/0");
    assert_eq!(server.urls, vec![want.clone()]);
    let out = run_tool("iscsi-inq", &[&want], TOOL);
    assert_ok("iscsi-inq at the printed URL", &out, &server);
    assert!(out.stdout.contains("Vendor:SCSIPORT"), "{}", out.stdout);
    let out = run_tool("iscsi-readcapacity16", &[&want], TOOL);
    assert_ok("iscsi-readcapacity16", &out, &server);
    assert!(
        out.stdout.contains(&format!("Total size:{}", 1u64 << 30)),
        "{}",
        out.stdout
    );
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let dir = TempDir::new("sigterm");
    let backing = dir.path().join("lu0.img");
    let mut server = serve(&write_config(&dir, "file", "16 MiB", Some(&backing)));
    // Sessions did some work first: an inquiry and a 1 MiB write.
    let out = run_tool("iscsi-inq", &[&server.lun0_url()], TOOL);
    assert_ok("iscsi-inq", &out, &server);
    let image = random_image(1 << 20, 0x5eed_0003);
    let src = dir.path().join("small.raw");
    std::fs::write(&src, &image).expect("write image");
    let out = run_tool(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().expect("utf-8 path"),
            &server.lun0_url(),
        ],
        COPY,
    );
    assert_ok("qemu-img convert into the LU", &out, &server);
    let addr = server.addr.clone();
    let status = server.terminate(Duration::from_secs(5));
    let tail = server.stderr_tail();
    let status = status.unwrap_or_else(|| {
        panic!("scsiport serve still running 5 s after SIGTERM; stderr:\n{tail}")
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; stderr:\n{tail}"
    );
    // Nothing listens any more.
    assert!(
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
            .is_err(),
        "{addr} still accepts connections after shutdown"
    );
    // The written blocks are in the backing file.
    let on_disk = std::fs::read(&backing).expect("read backing file");
    assert!(on_disk.len() >= image.len());
    assert!(
        on_disk[..image.len()] == image[..],
        "backing file lacks the written data"
    );
}
