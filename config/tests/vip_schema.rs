//! `[[vip]]` and `[director]` in the server configuration.

use std::{path::Path, time::Duration};

use headroom_config::{vip::parse_mac, Config, ConfigError};

const BASE: &str = r#"
[node]
id = 1
address = "10.200.0.1"

[interfaces]
outer = "outer"
inner = "inner"
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(&format!("{BASE}{extra}"), Path::new("test.toml"))
}

const SERVICE: &str = r#"
[[vip]]
name = "web"
vip = "10.200.100.1"
protocol = "tcp"
ports = [80, "8000-8001"]
weights = [{ node = 2, weight = 2 }]
sticky_secs = 60
"#;

#[test]
fn no_vip_means_no_director() {
    let c = parse("").unwrap();
    assert!(c.vips.is_empty());
    assert!(c.director.hosts.is_empty());
}

#[test]
fn services_and_hosts_parse() {
    let c = parse(&format!(
        r#"
[director]
gratuitous_arp_interval_ms = 50
[[director.hosts]]
node = 1
address = "10.200.1.1"
[[director.hosts]]
node = 2
address = "10.200.1.2"
mac = "02:00:00:00:00:02"
{SERVICE}"#
    ))
    .unwrap();
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].weight_of(2), 2);
    assert_eq!(
        c.director.gratuitous_arp_interval,
        Duration::from_millis(50)
    );
    // Written in the deprecated form: accepted, with a warning naming the line.
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("director.gratuitous_arp_interval_ms: deprecated")));
    let h2 = c.director.host_of(2).unwrap();
    assert_eq!(
        parse_mac(h2.mac.as_deref().unwrap()),
        Some([2, 0, 0, 0, 0, 2])
    );
    assert!(c.director.host_of(1).unwrap().mac.is_none());
}

#[test]
fn own_host_address_is_required_with_services() {
    let e = parse(SERVICE).unwrap_err().to_string();
    assert!(e.contains("director.hosts"), "{e}");
}

#[test]
fn bad_hosts_and_services_are_rejected() {
    let host1 = "[[director.hosts]]\nnode = 1\naddress = \"10.200.1.1\"\n";
    let bad_mac = format!(
        "[director]\n{host1}[[director.hosts]]\nnode = 2\naddress = \"10.200.1.2\"\nmac = \"02:00\"\n{SERVICE}"
    );
    assert!(parse(&bad_mac)
        .unwrap_err()
        .to_string()
        .contains("director"));
    let dup = format!("[director]\n{host1}{host1}{SERVICE}");
    assert!(parse(&dup).unwrap_err().to_string().contains("director"));
    let overlap = format!(
        "[director]\n{host1}{SERVICE}{}",
        SERVICE.replace("\"web\"", "\"web2\"")
    );
    let e = parse(&overlap).unwrap_err().to_string();
    assert!(e.contains("overlap"), "{e}");
}

#[test]
fn mac_parsing() {
    assert_eq!(
        parse_mac("aa:bb:cc:dd:ee:ff"),
        Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])
    );
    assert_eq!(parse_mac("aa:bb:cc:dd:ee"), None);
    assert_eq!(parse_mac("aa:bb:cc:dd:ee:ff:00"), None);
    assert_eq!(parse_mac("zz:bb:cc:dd:ee:ff"), None);
}

#[test]
fn reference_file_documents_the_director() {
    let src = include_str!("../headroom.toml");
    let c = Config::parse(src, Path::new("headroom.toml")).expect("reference file");
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].sticky_timeout, Duration::from_secs(300));
    assert_eq!(c.director.hosts.len(), 2);
    assert_eq!(c.director, {
        let mut d = headroom_config::vip::DirectorSettings {
            hosts: c.director.hosts.clone(),
            ..Default::default()
        };
        d.gratuitous_arp_interval = Duration::from_millis(200);
        d
    });
}
