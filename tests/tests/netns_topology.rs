//! The namespace topology library itself: the diagnosis picture is built,
//! a terminal reaches the platform beyond the demarcation point, the helper
//! services (DNS, TCP echo, delay relay) and injected faults work, and
//! nothing is left behind. Skipped (with a printed reason) when not root or
//! without `ip`/`nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use cpe_e2e::netns::{self, plan, FaultRule, Reach, Topology};

#[test]
fn topology_routes_terminal_to_platform_and_cleans_up() {
    if netns::skip("topology_routes_terminal_to_platform_and_cleans_up") {
        return;
    }
    let started = Instant::now();
    let topology = Topology::build(2).unwrap();
    let built = started.elapsed();
    let names = topology.namespace_names();
    assert_eq!(names.len(), 7);
    let existing = netns::existing().unwrap();
    for name in &names {
        assert!(existing.contains(name), "{name} missing from {existing:?}");
    }

    let terminal = &topology.terminals[0];
    assert_eq!(terminal.ip, plan::terminal_ip(0));
    let platform = IpAddr::V4(plan::PLATFORM);
    assert!(terminal.netns.ping(platform, 1, 2), "terminal → platform");
    assert!(
        topology.terminals[1].netns.ping(IpAddr::V4(terminal.ip), 1, 2),
        "terminal → terminal over br-lan"
    );
    assert!(topology.cpe.ping(IpAddr::V4(plan::CARRIER), 1, 2), "cpe → carrier");
    // The neighbour table of the CPE now knows the terminal's MAC.
    let neigh = topology.cpe.ip(&["neigh", "show", &terminal.ip.to_string()]).unwrap();
    assert!(neigh.contains(&terminal.mac), "{neigh}");

    // The primary line dies: traffic moves to the backup route.
    let route = |t: &Topology| t.cpe.ip(&["route", "get", &plan::CARRIER.to_string()]).unwrap();
    assert!(route(&topology).contains(plan::PRIMARY), "{}", route(&topology));
    topology.edge.link_down(plan::EDGE_PRIMARY).unwrap();
    assert!(route(&topology).contains(plan::BACKUP), "{}", route(&topology));
    assert!(terminal.netns.ping(platform, 1, 2), "terminal → platform over the backup");
    topology.edge.link_up(plan::EDGE_PRIMARY).unwrap();

    // An injected drop on the platform makes it unreachable; removing it heals.
    topology.platform.set_faults(&[FaultRule::DropAll { iface: plan::HOST_IFACE.into() }]).unwrap();
    assert!(!terminal.netns.ping(platform, 1, 1), "platform should be unreachable");
    topology.platform.set_faults(&[]).unwrap();
    assert!(terminal.netns.ping(platform, 1, 2), "platform reachable again");

    eprintln!("topology of 7 namespaces built in {} ms", built.as_millis());
    let dropped = Instant::now();
    drop(topology);
    eprintln!("torn down in {} ms", dropped.elapsed().as_millis());
    let left: Vec<String> = netns::existing().unwrap().into_iter().filter(|n| names.contains(n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn helper_services_work_inside_namespaces() {
    if netns::skip("helper_services_work_inside_namespaces") {
        return;
    }
    let topology = Topology::build(0).unwrap();
    let cpe_dir = std::path::Path::new("/etc/netns").join(topology.cpe.name());

    // DNS: the CPE resolves the carrier's name through the responder; other names do not exist.
    let dns = topology.start_dns().unwrap();
    assert_eq!(dns.addr, SocketAddr::new(IpAddr::V4(plan::CARRIER), 53));
    assert!(cpe_dir.join("resolv.conf").exists());
    let hosts = topology.cpe.exec("getent", &["ahostsv4", plan::CARRIER_HOST]).unwrap();
    assert!(hosts.contains(&plan::CARRIER.to_string()), "{hosts}");
    let missing = topology.cpe.output("getent", &["ahostsv4", "nowhere.cpe-e2e.test"]).unwrap();
    assert!(!missing.status.success(), "unknown name resolved");
    // The same answer through a UDP relay on the gateway that adds 100 ms each way.
    let udp_relay = topology
        .edge
        .start_relay(
            SocketAddr::new(IpAddr::V4(plan::PRIMARY_GATEWAY), 53),
            dns.addr,
            100,
            true,
            &topology.log_path("udp-relay.log"),
        )
        .unwrap();
    topology.cpe.set_resolv_conf(&[udp_relay.addr.ip()]).unwrap();
    let asked = Instant::now();
    let hosts = topology.cpe.exec("getent", &["ahostsv4", plan::CARRIER_HOST]).unwrap();
    let slow = asked.elapsed().as_millis();
    assert!(hosts.contains(&plan::CARRIER.to_string()), "{hosts}");
    assert!(slow >= 200, "resolved through a 2×100 ms relay in {slow} ms");
    eprintln!("DNS through the 100 ms UDP relay: {slow} ms");
    topology.cpe.set_resolv_conf(&[dns.addr.ip()]).unwrap();
    dns.stop();
    let stopped = Instant::now();
    let down = topology.cpe.output("getent", &["ahostsv4", plan::CARRIER_HOST]).unwrap();
    assert!(!down.status.success(), "resolved with the DNS server stopped");
    eprintln!("DNS failure noticed in {} ms", stopped.elapsed().as_millis());

    // TCP echo on the platform, reached from the carrier host through a 100 ms relay on the edge.
    let echo = topology
        .platform
        .start_tcp_echo(SocketAddr::new(IpAddr::V4(plan::PLATFORM), 7), &topology.log_path("echo.log"))
        .unwrap();
    let relay = topology
        .edge
        .start_relay(
            SocketAddr::new(IpAddr::V4(plan::CARRIER_GATEWAY), 7007),
            echo.addr,
            100,
            false,
            &topology.log_path("relay.log"),
        )
        .unwrap();
    let client = format!(
        "exec 3<>/dev/tcp/{}/{}; t=$(date +%s%N); printf ping >&3; head -c 4 <&3; echo \" $(( ($(date +%s%N) - t) / 1000000 ))\"",
        relay.addr.ip(),
        relay.addr.port()
    );
    let out = topology.carrier.exec("bash", &["-c", &client]).unwrap();
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("ping"), "{out}");
    let rtt: u64 = words.next().unwrap().parse().unwrap();
    assert!(rtt >= 200, "a 100 ms relay each way gave a round trip of {rtt} ms");
    eprintln!("echo through the 100 ms relay: round trip {rtt} ms");

    // Services run inside their namespace (and die with it).
    let pids = topology.platform.pids().unwrap();
    assert!(pids.contains(&echo.proc.child.id()), "{pids:?} lacks the echo server");
    drop(relay);
    drop(echo);
    drop(topology);
    assert!(!cpe_dir.exists(), "{} left behind", cpe_dir.display());
}

#[test]
fn tcp_echo_answers_across_the_topology() {
    if netns::skip("tcp_echo_answers_across_the_topology") {
        return;
    }
    let topology = Topology::build(1).unwrap();
    let echo = topology
        .carrier
        .start_tcp_echo(SocketAddr::new(IpAddr::V4(plan::CARRIER), 0), &topology.log_path("echo.log"))
        .unwrap();
    // nc-free check: bash's /dev/tcp from the terminal.
    let script =
        format!("exec 3<>/dev/tcp/{}/{}; printf hello >&3; head -c 5 <&3", echo.addr.ip(), echo.addr.port());
    let out = topology.terminals[0].netns.exec("bash", &["-c", &script]).unwrap();
    assert_eq!(out, "hello");

    // Connection outcomes: connected, refused (host up, port closed), timeout (dropped).
    let terminal = &topology.terminals[0].netns;
    assert_eq!(terminal.tcp_connect(echo.addr, 2000).unwrap(), Reach::Connected);
    let closed = SocketAddr::new(echo.addr.ip(), echo.addr.port() + 1);
    assert_eq!(terminal.tcp_connect(closed, 2000).unwrap(), Reach::Refused);
    topology.carrier.set_faults(&[FaultRule::DropTcpPort { port: echo.addr.port() }]).unwrap();
    assert_eq!(terminal.tcp_connect(echo.addr, 300).unwrap(), Reach::Timeout);
    topology.terminals[0].netns.del_route("default", plan::CPE_LAN).unwrap();
    assert!(matches!(terminal.tcp_connect(echo.addr, 300).unwrap(), Reach::Unreachable(_)));
}

#[test]
fn leftovers_of_dead_test_processes_are_swept() {
    if netns::skip("leftovers_of_dead_test_processes_are_swept") {
        return;
    }
    // A namespace named as if created by a process that no longer exists (pids never get this big).
    let stale = format!("{}-4000000000-0-stale", netns::PREFIX);
    let status = std::process::Command::new("ip").args(["netns", "add", &stale]).status().unwrap();
    assert!(status.success());
    let etc = std::path::Path::new("/etc/netns").join(&stale);
    std::fs::create_dir_all(&etc).unwrap();
    // A live namespace of this process must survive the sweep.
    let live = netns::Netns::new("live").unwrap();
    netns::sweep_leftovers();
    let existing = netns::existing().unwrap();
    assert!(!existing.contains(&stale), "{stale} not swept: {existing:?}");
    assert!(!etc.exists(), "{} not swept", etc.display());
    assert!(existing.iter().any(|n| n == live.name()), "the sweep removed a live namespace");
}

#[test]
fn injected_faults_drop_what_they_say() {
    if netns::skip("injected_faults_drop_what_they_say") {
        return;
    }
    let topology = Topology::build(0).unwrap();
    // Loss: 100 % on the edge's primary interface makes the gateway silent; 0 % restores it.
    let gateway = IpAddr::V4(plan::PRIMARY_GATEWAY);
    topology
        .edge
        .set_faults(&[FaultRule::Loss { iface: Some(plan::EDGE_PRIMARY.into()), percent: 100 }])
        .unwrap();
    assert!(!topology.cpe.ping(gateway, 2, 1), "gateway answered through 100 % loss");
    topology
        .edge
        .set_faults(&[FaultRule::Loss { iface: Some(plan::EDGE_PRIMARY.into()), percent: 0 }])
        .unwrap();
    assert!(topology.cpe.ping(gateway, 1, 2));

    // MTU black hole: big DF packets vanish, small ones pass.
    topology.edge.set_faults(&[FaultRule::DropLargerThan { bytes: 1400 }]).unwrap();
    let carrier = plan::CARRIER.to_string();
    let big = topology
        .cpe
        .output("ping", &["-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", &carrier])
        .unwrap();
    assert!(!big.status.success(), "1500-byte DF ping passed the black hole");
    let small = topology
        .cpe
        .output("ping", &["-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1300", &carrier])
        .unwrap();
    assert!(small.status.success(), "1328-byte ping lost: {}", String::from_utf8_lossy(&small.stdout));

    // The classic black hole: a 1400-byte link behind the edge whose "fragmentation needed" errors
    // are filtered. With the errors let through, the sender learns the MTU instead.
    topology.edge.set_faults(&[]).unwrap();
    topology.edge.set_mtu(plan::EDGE_CARRIER, 1400).unwrap();
    let big = |t: &Topology| {
        let out =
            t.cpe.output("ping", &["-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", &carrier]).unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (passed, text) = big(&topology);
    assert!(!passed && text.contains("mtu = 1400"), "the edge should report the MTU:\n{text}");
    topology.cpe.ip(&["route", "flush", "cache"]).unwrap();
    topology.edge.set_faults(&[FaultRule::DropFragNeeded]).unwrap();
    let (passed, text) = big(&topology);
    assert!(!passed && !text.contains("mtu = 1400"), "frag-needed got through:\n{text}");
}
