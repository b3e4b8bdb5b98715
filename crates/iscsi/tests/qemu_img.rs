//! `qemu-img convert` (QEMU's libiscsi block driver) copies a 64 MiB random
//! image into a LU and back out unchanged.

mod common;

use std::time::Duration;

use common::{have_tool, run_tool};
use iscsi::service::LuHandle;
use iscsi::testing::{TEST_IQN, simple_config, spawn_server};

#[test]
fn qemu_img_round_trip_64mib() {
    if !have_tool("qemu-img") {
        return;
    }
    let size = 64usize << 20;
    let (config, disk) = simple_config((size / 512) as u64);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk.clone()).unwrap();
    let dir = std::env::temp_dir().join(format!("iscsi-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("in.img");
    let dst = dir.join("out.img");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..size / 8)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect();
    std::fs::write(&src, &data).unwrap();
    let url = format!("iscsi://{}/{}/0", server.addr, TEST_IQN);
    let t = Duration::from_secs(120);
    let out = run_tool(
        "qemu-img",
        &["convert", "-n", "-O", "raw", src.to_str().unwrap(), &url],
        &[],
        t,
    );
    assert!(out.success, "{out:?}");
    assert!(
        disk.contents(LuHandle(0)).unwrap() == data,
        "LU contents after qemu-img write"
    );
    let out = run_tool(
        "qemu-img",
        &["convert", "-O", "raw", &url, dst.to_str().unwrap()],
        &[],
        t,
    );
    assert!(out.success, "{out:?}");
    let back = std::fs::read(&dst).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.len(), size);
    assert!(back == data, "image read back differs");
}
