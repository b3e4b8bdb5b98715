//! Authentication and authorization: CHAP (MD5 and SHA-256, one-way and
//! mutual) and ACLs, with libiscsi's tools and with the crate's initiator.

mod common;

use std::time::Duration;

use common::{have_tool, run_tool};
use iscsi::config::{ChapConfig, ChapCredential, TargetConfig};
use iscsi::testing::initiator::{Initiator, LoginError, LoginOptions};
use iscsi::testing::{RunningServer, TEST_IQN, simple_config, spawn_server};

const INI: &str = "iqn.2026-11.org.scsiport:initiator";
const T: Duration = Duration::from_secs(10);
const USER: &str = "alice";
const SECRET: &str = "alice-secret-12";
const TUSER: &str = "target-user";
const TSECRET: &str = "target-secret-34";

fn chap_server(mutual: bool) -> RunningServer {
    let (mut config, disk) = simple_config(2048);
    config.targets[0].chap = Some(ChapConfig {
        users: vec![ChapCredential::new(USER, SECRET)],
        mutual: mutual.then(|| ChapCredential::new(TUSER, TSECRET)),
    });
    spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap()
}

fn login(server: &RunningServer, o: &LoginOptions) -> Result<Initiator, LoginError> {
    let mut ini = Initiator::connect(server.addr, T).unwrap();
    ini.login(o)?;
    Ok(ini)
}

#[test]
fn libiscsi_chap_one_way() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let server = chap_server(false);
    let url = |cred: &str| {
        format!(
            "iscsi://{cred}127.0.0.1:{}/{TEST_IQN}/0",
            server.addr.port()
        )
    };
    let ok = run_tool("iscsi-inq", &[&url(&format!("{USER}%{SECRET}@"))], &[], T);
    assert!(ok.success, "{ok:?}");
    assert!(ok.stdout.contains("Vendor:SCSIPORT"));
    // Credentials through the environment work the same way.
    let env = [
        ("LIBISCSI_CHAP_USERNAME", USER),
        ("LIBISCSI_CHAP_PASSWORD", SECRET),
    ];
    assert!(run_tool("iscsi-inq", &[&url("")], &env, T).success);
    for (what, cred) in [
        ("wrong secret", format!("{USER}%not-the-secret@")),
        ("unknown user", format!("mallory%{SECRET}@")),
        ("no CHAP", String::new()),
    ] {
        let out = run_tool("iscsi-inq", &[&url(&cred)], &[], T);
        assert!(!out.success, "{what}: login must fail");
        assert!(
            out.stderr.contains("Authentication failure"),
            "{what}: {out:?}"
        );
    }
}

#[test]
fn libiscsi_mutual_chap() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let server = chap_server(true);
    let url = format!(
        "iscsi://{USER}%{SECRET}@127.0.0.1:{}/{TEST_IQN}/0",
        server.addr.port()
    );
    let good = [
        ("LIBISCSI_CHAP_TARGET_USERNAME", TUSER),
        ("LIBISCSI_CHAP_TARGET_PASSWORD", TSECRET),
    ];
    let out = run_tool("iscsi-inq", &[&url], &good, T);
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("Vendor:SCSIPORT"));
    // The initiator refuses a target that does not know the expected secret.
    let bad = [
        ("LIBISCSI_CHAP_TARGET_USERNAME", TUSER),
        ("LIBISCSI_CHAP_TARGET_PASSWORD", "another-secret"),
    ];
    let out = run_tool("iscsi-inq", &[&url], &bad, T);
    assert!(!out.success, "{out:?}");
    let bad_user = [
        ("LIBISCSI_CHAP_TARGET_USERNAME", "wrong"),
        ("LIBISCSI_CHAP_TARGET_PASSWORD", TSECRET),
    ];
    assert!(!run_tool("iscsi-inq", &[&url], &bad_user, T).success);
}

#[test]
fn mutual_chap_requested_but_not_configured_fails() {
    let server = chap_server(false);
    let mut o = LoginOptions::normal(INI, TEST_IQN);
    o.chap = Some((USER.into(), SECRET.into()));
    o.mutual = Some((TUSER.into(), TSECRET.into()));
    assert!(matches!(
        login(&server, &o),
        Err(LoginError::Status(0x0201))
    ));
}

#[test]
fn chap_md5_and_sha256_one_way_and_mutual() {
    for mutual in [false, true] {
        let server = chap_server(mutual);
        for alg in ["5", "7", "7,5", "6,5"] {
            let mut o = LoginOptions::normal(INI, TEST_IQN);
            o.chap = Some((USER.into(), SECRET.into()));
            o.chap_algorithms = alg.into();
            if mutual {
                o.mutual = Some((TUSER.into(), TSECRET.into()));
            }
            let mut ini =
                login(&server, &o).unwrap_or_else(|e| panic!("alg {alg} mutual {mutual}: {e:?}"));
            assert_eq!(ini.read10(0, 0, 1).unwrap().status, 0);
            o.isid[5] = o.isid[5].wrapping_add(1);
        }
        // Wrong secret, unknown user, unsupported algorithm, no CHAP at all.
        let mut o = LoginOptions::normal(INI, TEST_IQN);
        o.chap = Some((USER.into(), "wrong-secret-999".into()));
        o.chap_algorithms = "7".into();
        assert!(matches!(
            login(&server, &o),
            Err(LoginError::Status(0x0201))
        ));
        o.chap = Some(("bob".into(), SECRET.into()));
        assert!(matches!(
            login(&server, &o),
            Err(LoginError::Status(0x0201))
        ));
        o.chap = Some((USER.into(), SECRET.into()));
        o.chap_algorithms = "6".into();
        assert!(matches!(
            login(&server, &o),
            Err(LoginError::Status(0x0201))
        ));
        let o = LoginOptions::normal(INI, TEST_IQN);
        assert!(matches!(
            login(&server, &o),
            Err(LoginError::Status(0x0201))
        ));
    }
}

#[test]
fn acl_refuses_other_initiators_and_hides_the_target() {
    let (mut config, disk) = simple_config(2048);
    config.targets[0].allowed_initiators = vec![INI.into()];
    let mut other = TargetConfig::new("iqn.2026-11.org.scsiport:open");
    other.portal_group_tag = 2;
    config.targets.push(other);
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    let stranger = "iqn.2026-11.org.example:stranger";
    assert!(login(&server, &LoginOptions::normal(INI, TEST_IQN)).is_ok());
    assert!(matches!(
        login(&server, &LoginOptions::normal(stranger, TEST_IQN)),
        Err(LoginError::Status(0x0202))
    ));
    assert!(matches!(
        login(
            &server,
            &LoginOptions::normal(INI, "iqn.2026-11.org.scsiport:missing")
        ),
        Err(LoginError::Status(0x0203))
    ));
    let mut d = login(&server, &LoginOptions::discovery(stranger)).unwrap();
    let names: Vec<String> = d
        .send_targets("All")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k == "TargetName")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(names, vec!["iqn.2026-11.org.scsiport:open".to_string()]);
    if have_tool("iscsi-inq") && have_tool("iscsi-ls") {
        let url = format!("iscsi://{}/{TEST_IQN}/0", server.addr);
        let out = run_tool("iscsi-inq", &["-i", stranger, &url], &[], T);
        assert!(!out.success);
        assert!(out.stderr.contains("Authorization failure"), "{out:?}");
        assert!(run_tool("iscsi-inq", &["-i", INI, &url], &[], T).success);
        let out = run_tool(
            "iscsi-ls",
            &["-i", stranger, &format!("iscsi://{}/", server.addr)],
            &[],
            T,
        );
        assert!(!out.stdout.contains(TEST_IQN), "{out:?}");
        assert!(
            out.stdout.contains("iqn.2026-11.org.scsiport:open"),
            "{out:?}"
        );
    }
}

#[test]
fn discovery_chap() {
    let (mut config, disk) = simple_config(64);
    config.discovery_chap = Some(ChapConfig {
        users: vec![ChapCredential::new(USER, SECRET)],
        mutual: None,
    });
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), config, disk).unwrap();
    assert!(matches!(
        login(&server, &LoginOptions::discovery(INI)),
        Err(LoginError::Status(0x0201))
    ));
    let mut o = LoginOptions::discovery(INI);
    o.chap = Some((USER.into(), SECRET.into()));
    let mut d = login(&server, &o).unwrap();
    assert_eq!(d.send_targets("All").unwrap()[0].1, TEST_IQN);
}
