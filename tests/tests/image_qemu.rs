//! The firmware image end to end: `images/build.sh` output booted under
//! `qemu-system-aarch64` (TCG) through `images/run.sh`, with a config drive
//! made by `images/mkconfig.sh`, a blank state disk, and user-mode networking
//! that lets the guest reach a `cpe-provision serve` on the host's loopback
//! as 10.0.2.2. The test hook `images/test/selftest.sh` on the config drive
//! builds a clinic LAN inside the VM and prints the nftables ruleset, a
//! terminal's connection attempt and the agent's VmRSS on the serial console.
//!
//! Skipped (with a printed reason) when qemu-system-aarch64 or the image is
//! absent, unless `CPE_REQUIRE_IMAGE=1` (set by `images/test.sh`). Steps that
//! need agent or carrier commands that are not in the binaries under test
//! print a note and are left out; `CPE_REQUIRE_IMAGE_FEATURES=1` makes that a
//! failure too. Figures are printed as `IMAGE-BENCH key=value` lines;
//! `CPE_IMAGE_TEST_LOGS=DIR` keeps the serial console and server logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpe_e2e::{binary, wait_for, Proc};
use serde_json::Value;

const CODE: &str = "1312345678";
/// Seconds between the selftest hook's reports.
const SELFTEST_INTERVAL_S: u64 = 4;
/// Boot to the certificate import.
const IMPORT_TIMEOUT: Duration = Duration::from_mins(3);
/// A step carried out through the carrier channel, seen inside the VM.
const STEP_TIMEOUT: Duration = Duration::from_mins(3);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The image directory, or `None` (with the reason printed) when the test
/// cannot run here; a panic instead when `CPE_REQUIRE_IMAGE=1`.
fn image_dir() -> Option<PathBuf> {
    let dir =
        std::env::var_os("CPE_IMAGE_DIR").map_or_else(|| workspace().join("target/image"), PathBuf::from);
    let qemu = Command::new("qemu-system-aarch64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    let missing = if !qemu {
        Some("qemu-system-aarch64 is not installed (scripts/setup.sh installs qemu-system-arm)".to_owned())
    } else if !dir.join("vmlinuz").is_file() || !dir.join("initramfs.cpio.gz").is_file() {
        Some(format!("no image in {} (build it with `bash images/build.sh`)", dir.display()))
    } else {
        None
    };
    match missing {
        None => Some(dir),
        Some(reason) if std::env::var("CPE_REQUIRE_IMAGE").as_deref() == Ok("1") => {
            panic!("CPE_REQUIRE_IMAGE=1 but {reason}")
        }
        Some(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// Optional agent commands in the image (from `agent-commands`, written by build.sh).
fn agent_has(image: &Path, command: &str) -> bool {
    std::fs::read_to_string(image.join("agent-commands"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == command)
}

/// Whether this `cpe-provision` has the subcommand path `args`.
fn carrier_has(args: &[&str]) -> bool {
    Command::new(binary("cpe-provision"))
        .args(args)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

/// Says a step is left out because a feature is missing, or fails when
/// `CPE_REQUIRE_IMAGE_FEATURES=1`.
fn gated(step: &str, missing: &str) {
    let note = format!("{step}: not tested, {missing} is not in the binaries under test");
    assert!(std::env::var("CPE_REQUIRE_IMAGE_FEATURES").as_deref() != Ok("1"), "{note}");
    eprintln!("NOTE {note}");
}

fn provision(args: &[&str]) -> String {
    cpe_e2e::provision(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A TCP listener on the host's loopback that only counts connections: the
/// target of the terminal's connection attempts inside the VM.
struct ProbeSink {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl ProbeSink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stream.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { port, accepted }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// One boot of the image: qemu's stdout is the serial console, copied to a
/// log file and kept in memory; its stdin types on the console.
struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Mutex<String>>,
    log: PathBuf,
    started: Instant,
}

impl Vm {
    fn boot(image: &Path, config: &Path, state: &Path, log: PathBuf) -> Self {
        let mut child = Command::new("bash")
            .arg(workspace().join("images/run.sh"))
            .arg(config)
            .arg(state)
            .env("CPE_IMAGE_DIR", image)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let serial = Arc::new(Mutex::new(String::new()));
        let mut file = std::fs::File::create(&log).unwrap();
        let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = serial.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                let _ = file.write_all(&buf[..n]);
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
                }
            }
        });
        let sink = serial.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if let Ok(mut serial) = sink.lock() {
                let _ = write!(serial, "\n[qemu stderr] {text}");
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, serial, log, started }
    }

    fn text(&self) -> String {
        self.serial.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.text().len()
    }

    /// Waits until `check` finds something in the console output after byte `from`.
    fn wait<T>(&self, from: usize, timeout: Duration, check: impl Fn(&str) -> Option<T>) -> Option<T> {
        wait_for(timeout, || check(self.text().get(from..).unwrap_or("")))
    }

    /// Types `cpe-selftest WORD` on the console (the selftest hook acts on it).
    fn command(&mut self, word: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("cpe-selftest {word}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for qemu to exit (the guest rebooted or powered off under -no-reboot).
    fn exited(&mut self, timeout: Duration) -> bool {
        wait_for(timeout, || self.child.try_wait().ok().flatten()).is_some()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The selftest hook's report lines (`CPE-SELFTEST ...`), marker removed.
fn selftest(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|l| l.split_once("CPE-SELFTEST ").map(|(_, rest)| rest.trim()))
}

/// (VmRSS kB, agent age s) of each `rss` report.
fn rss_reports(text: &str) -> Vec<(u64, u64)> {
    selftest(text)
        .filter_map(|l| l.strip_prefix("rss "))
        .filter_map(|l| {
            let field = |key: &str| {
                l.split_whitespace().find_map(|kv| kv.strip_prefix(key)).and_then(|v| v.parse::<u64>().ok())
            };
            Some((field("kb=")?, field("age=")?))
        })
        .collect()
}

/// The last `nft list ruleset` the hook printed.
fn last_ruleset(text: &str) -> Option<String> {
    let start = text.rfind("CPE-SELFTEST ruleset-begin")?;
    let body = &text[start..];
    let end = body.find("CPE-SELFTEST ruleset-end")?;
    Some(body[..end].lines().skip(1).collect::<Vec<_>>().join("\n"))
}

/// Everything the test sets up on the host: PKI, carrier server, probe sink,
/// the unit's config drive and state disk.
struct World {
    dir: tempfile::TempDir,
    image: PathBuf,
    device: String,
    database: String,
    keys: Option<String>,
    server: Option<Proc>,
    sink: ProbeSink,
    boots: Vec<PathBuf>,
}

impl World {
    fn new(image: PathBuf, order_keys: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let unit = cpe_e2e::unique_unit("vm");
        // The guest reaches the host's loopback as 10.0.2.2: the server's certificate names it.
        cpe_e2e::carrier_pki(d, &["10.0.2.2", "127.0.0.1"]).unwrap();
        let drive = d.join("drive");
        std::fs::create_dir(&drive).unwrap();
        cpe_e2e::issue_pkcs12(d, CODE, &unit, "identity", &[]).unwrap();
        std::fs::copy(d.join("identity.p12"), drive.join("identity.p12")).unwrap();
        let keys = order_keys.then(|| {
            let keys = s(&d.join("keys"));
            provision(&["keys", "init", "--dir", &keys]);
            keys
        });
        let mut world = Self {
            database: format!("sqlite:{}", s(&d.join("carrier.db"))),
            device: format!("{CODE}/{unit}"),
            dir,
            image,
            keys,
            server: None,
            sink: ProbeSink::start(),
            boots: Vec::new(),
        };
        let port = world.start_server();
        world.write_drive(port);
        // A blank state disk: the image formats it on first boot.
        std::fs::File::create(world.path("state.img")).unwrap().set_len(32 << 20).unwrap();
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn start_server(&mut self) -> u16 {
        let args = cpe_e2e::serve_args(
            self.dir.path(),
            "127.0.0.1:0",
            &self.database,
            &[
                "--enrol-ca",
                &s(&self.path("ca")),
                "--silent-after",
                "60",
                "--check-every",
                "5",
                "--long-poll-max",
                "5",
            ],
        );
        let mut server = Proc::spawn("cpe-provision", &args, &self.path("server.log")).unwrap();
        let line = server
            .read_line_starting("listening on ")
            .unwrap_or_else(|| panic!("server did not start: {}", self.log("server.log")));
        self.server = Some(server);
        line.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The config drive: agent.toml, CA, identity, the selftest hook.
    fn write_drive(&self, port: u16) {
        let drive = self.path("drive");
        std::fs::copy(self.path("ca/ca.pem"), drive.join("ca.pem")).unwrap();
        std::fs::copy(self.path("pw"), drive.join("identity.pass")).unwrap();
        let mut config = format!(
            "state_dir = \"/var/lib/cpe-agent\"\ntrust_anchors = [\"ca.pem\"]\ninstitution_code = \"{CODE}\"\n\
             [carrier]\nurl = \"https://10.0.2.2:{port}\"\nca = \"ca.pem\"\n\
             interval_s = 5\nsample_s = 5\nlong_poll_s = 5\nbackoff_max_s = 5\n\
             [system]\nprimary_uplink = \"eth0\"\n\
             [network]\nlan = [\"lan0\"]\n"
        );
        if let Some(keys) = &self.keys {
            let shown: Value =
                serde_json::from_str(&provision(&["keys", "show", "--dir", keys, "--json"])).unwrap();
            let key = shown[0]["public_key"].as_str().unwrap();
            let _ = write!(config, "[orders]\nkeys = [\"{key}\"]\n");
        }
        std::fs::write(drive.join("agent.toml"), config).unwrap();
        std::fs::copy(workspace().join("images/test/selftest.sh"), drive.join("selftest.sh")).unwrap();
        std::fs::write(
            drive.join("selftest.env"),
            format!(
                "PROBE_HOST=10.0.2.2\nPROBE_PORT={}\nSELFTEST_INTERVAL={SELFTEST_INTERVAL_S}\n",
                self.sink.port
            ),
        )
        .unwrap();
        let out = Command::new("bash")
            .arg(workspace().join("images/mkconfig.sh"))
            .arg(&drive)
            .arg(self.path("config.img"))
            .output()
            .unwrap();
        assert!(out.status.success(), "mkconfig.sh: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn boot(&mut self) -> Vm {
        let log = self.path(&format!("serial-{}.log", self.boots.len() + 1));
        self.boots.push(log.clone());
        Vm::boot(&self.image, &self.path("config.img"), &self.path("state.img"), log)
    }

    /// Serial logs of every boot and the server log, for failure messages.
    fn logs(&self, vm: &Vm) -> String {
        let mut out = String::new();
        for (n, log) in self.boots.iter().enumerate() {
            let text =
                if *log == vm.log { vm.text() } else { std::fs::read_to_string(log).unwrap_or_default() };
            let _ = write!(out, "\n===== serial console, boot {} ({}) =====\n{text}", n + 1, log.display());
        }
        let _ = write!(out, "\n===== server log =====\n{}", self.log("server.log"));
        out
    }

    fn carrier(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--database", &self.database]);
        provision(&all)
    }

    fn detail(&self) -> Value {
        serde_json::from_str(&self.carrier(&["device", "show", &self.device, "--json"])).unwrap()
    }

    /// This device in `cpe-provision devices` (`Null` before its first report).
    fn device_row(&self) -> Value {
        let devices: Value = serde_json::from_str(&self.carrier(&["devices", "--json"])).unwrap();
        devices
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == self.device.as_str()).cloned())
            .unwrap_or_default()
    }

    fn state(&self) -> Option<String> {
        self.device_row()["state"].as_str().map(str::to_owned)
    }

    /// Waits until the carrier holds the device's verified receipt for its
    /// latest `kind` order (state `applied`).
    fn wait_order_applied(&self, kind: &str, vm: &Vm) {
        let latest = || {
            let list: Value =
                serde_json::from_str(&self.carrier(&["order", "list", "--device", &self.device, "--json"]))
                    .unwrap();
            list.as_array()?.iter().find(|o| o["kind"] == kind).cloned()
        };
        wait_for(STEP_TIMEOUT, || latest().filter(|o| o["state"] == "applied")).unwrap_or_else(|| {
            panic!("{kind} order not applied at the carrier: {:?}{}", latest(), self.logs(vm))
        });
    }

    fn order(&self, args: &[&str]) -> String {
        let mut all = vec!["order"];
        all.extend(args);
        all.extend(["--device", &self.device, "--keys", self.keys.as_deref().unwrap(), "--operator", "e2e"]);
        self.carrier(&all)
    }
}

impl Drop for World {
    /// Stops the server; with `CPE_IMAGE_TEST_LOGS=DIR` (images/test.sh sets
    /// it) keeps the serial and server logs there, passed or failed.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
        if let Some(keep) = std::env::var_os("CPE_IMAGE_TEST_LOGS").map(PathBuf::from) {
            let _ = std::fs::create_dir_all(&keep);
            for log in self.boots.iter().chain([&self.path("server.log")]) {
                if let Some(name) = log.file_name() {
                    let _ = std::fs::copy(log, keep.join(name));
                }
            }
        }
    }
}

/// Waits for the hook to report the suspension table `present`/`absent`
/// and then the terminal's probe `open`/`blocked`, after byte `from`.
fn wait_enforcement(vm: &Vm, world: &World, from: usize, table: &str, probe: &str, what: &str) {
    vm.wait(from, STEP_TIMEOUT, |text| {
        let lines: Vec<&str> = selftest(text).collect();
        let at = lines.iter().position(|l| *l == format!("table {table}"))?;
        lines[at..].iter().any(|l| *l == format!("probe {probe}")).then_some(())
    })
    .unwrap_or_else(|| panic!("{what}: never saw `table {table}` then `probe {probe}`{}", world.logs(vm)));
}

#[test]
#[allow(clippy::too_many_lines)]
fn image_boots_reports_diagnoses_and_enforces_orders_across_reboot() {
    let Some(image) = image_dir() else { return };
    let test_started = Instant::now();
    let orders = agent_has(&image, "orders") && agent_has(&image, "apply-state");
    let carrier_orders = carrier_has(&["order", "stop"]) && carrier_has(&["keys", "init"]);
    let diagnose = agent_has(&image, "diagnose");
    let mut world = World::new(image.clone(), orders && carrier_orders);

    // Boot 1: blank state disk formatted, certificate imported from the config drive.
    let mut vm = world.boot();
    vm.wait(0, IMPORT_TIMEOUT, |t| t.contains("cpe-init: certificate imported").then_some(()))
        .unwrap_or_else(|| panic!("no certificate import{}", world.logs(&vm)));
    let text = vm.text();
    assert!(
        text.contains("is blank: formatting"),
        "state disk not formatted on first boot{}",
        world.logs(&vm)
    );

    // Health reports reach the carrier: the device is up.
    wait_for(STEP_TIMEOUT, || (world.state().as_deref() == Some("up")).then_some(()))
        .unwrap_or_else(|| panic!("device never up at the carrier{}", world.logs(&vm)));
    let boot_to_report = vm.started.elapsed();
    println!("IMAGE-BENCH boot_to_first_report_s={:.1}", boot_to_report.as_secs_f64());

    // The LAN works while not suspended: the terminal's connections reach the host.
    wait_enforcement(&vm, &world, 0, "absent", "open", "before any order");
    assert!(world.sink.count() > 0, "probe reported open but no connection reached the host");

    // Idle RSS after one minute of agent uptime.
    let idle = vm
        .wait(0, Duration::from_secs(150), |t| rss_reports(t).into_iter().find(|(_, age)| *age >= 60))
        .unwrap_or_else(|| panic!("no RSS report after 60 s of agent uptime{}", world.logs(&vm)));
    println!("IMAGE-BENCH agent_vmrss_idle_kb={} agent_age_s={}", idle.0, idle.1);

    // The agent dies: /init restarts it and reporting goes on.
    let from = vm.len();
    vm.command("kill-agent");
    vm.wait(from, STEP_TIMEOUT, |t| {
        t.contains("cpe-init: starting cpe-agent run (restarts so far: 1)").then_some(())
    })
    .unwrap_or_else(|| panic!("agent not restarted after SIGKILL{}", world.logs(&vm)));
    // Received after the old agent was gone: the new one reports.
    let last_report = || world.device_row()["last_seen_ms"].as_i64();
    let before = last_report();
    wait_for(STEP_TIMEOUT, || (last_report() > before).then_some(()))
        .unwrap_or_else(|| panic!("no report from the restarted agent{}", world.logs(&vm)));

    // Remote diagnosis: the verdict arrives as the device's latest incident.
    if diagnose {
        world.carrier(&["command", "--device", &world.device, "diagnose"]);
        let incident = wait_for(STEP_TIMEOUT, || {
            let detail = world.detail();
            let incident = detail.get("latest_incident")?;
            incident["segment"].as_str().is_some_and(|s| !s.is_empty()).then(|| incident.clone())
        })
        .unwrap_or_else(|| panic!("no diagnosis verdict: {}{}", world.detail(), world.logs(&vm)));
        println!("diagnosis verdict: segment={} summary={}", incident["segment"], incident["summary"]);
        let from = vm.len();
        let after = vm
            .wait(from, Duration::from_mins(1), |t| rss_reports(t).into_iter().next())
            .unwrap_or_else(|| panic!("no RSS report after the diagnosis{}", world.logs(&vm)));
        println!("IMAGE-BENCH agent_vmrss_after_diagnosis_kb={}", after.0);
    } else {
        gated("remote diagnosis", "`cpe-agent diagnose`");
    }

    // A stop order is enforced inside the VM: the agent's table appears and
    // the terminal's connection is rejected.
    if world.keys.is_some() {
        world.carrier(&[
            "case",
            "open",
            "--device",
            &world.device,
            "--fact",
            "e2e: image test",
            "--operator",
            "e2e",
        ]);
        let from = vm.len();
        world.order(&[
            "stop",
            "--reason",
            "image end-to-end test",
            "--urgent",
            "--justification",
            "exercised by the image test",
        ]);
        wait_enforcement(&vm, &world, from, "present", "blocked", "after the stop order");
        let ruleset = last_ruleset(&vm.text()).unwrap_or_default();
        assert!(
            ruleset.contains("table inet cpe_agent") && ruleset.contains("reject"),
            "suspension ruleset: {ruleset}"
        );
        println!("ruleset while suspended:\n{ruleset}");
        world.wait_order_applied("stop", &vm);
    } else {
        let missing =
            if orders { "`cpe-provision order`/`keys`" } else { "`cpe-agent orders`/`apply-state`" };
        gated("stop order, suspension across reboot, resume", missing);
    }

    // Reboot (clean, asked on the console): state survives on the state disk.
    vm.command("reboot");
    assert!(vm.exited(Duration::from_secs(90)), "VM did not reboot{}", world.logs(&vm));
    assert!(vm.text().contains("cpe-init: reboot now"), "no clean shutdown{}", world.logs(&vm));
    drop(vm);
    let mut vm = world.boot();
    vm.wait(0, IMPORT_TIMEOUT, |t| t.contains("cpe-init: certificate already installed").then_some(()))
        .unwrap_or_else(|| panic!("identity lost across reboot{}", world.logs(&vm)));
    if world.keys.is_some() {
        // Enforced by apply-state before the LAN exists: the very first report says so.
        let first = vm
            .wait(0, STEP_TIMEOUT, |t| {
                let lines: Vec<String> = selftest(t).map(str::to_owned).collect();
                let table = lines.iter().find(|l| l.starts_with("table "))?.clone();
                let probe = lines.iter().find(|l| l.starts_with("probe "))?.clone();
                Some((table, probe))
            })
            .unwrap_or_else(|| panic!("no selftest report after reboot{}", world.logs(&vm)));
        assert_eq!(
            (first.0.as_str(), first.1.as_str()),
            ("table present", "probe blocked"),
            "suspension not kept across reboot{}",
            world.logs(&vm)
        );
        let text = vm.text();
        let enforced = text.find("cpe-init: order state enforced");
        let lan = text.find("cpe-init: test hook: starting");
        assert!(
            enforced.is_some() && enforced < lan,
            "apply-state did not run before the LAN{}",
            world.logs(&vm)
        );

        // Resume lifts it.
        let from = vm.len();
        world.order(&["resume", "--reason", "image end-to-end test done", "--justification", "test"]);
        wait_enforcement(&vm, &world, from, "absent", "open", "after the resume order");
        world.wait_order_applied("resume", &vm);
    }
    wait_for(STEP_TIMEOUT, || (world.state().as_deref() == Some("up")).then_some(()))
        .unwrap_or_else(|| panic!("device not up after reboot{}", world.logs(&vm)));

    vm.command("poweroff");
    assert!(vm.exited(Duration::from_secs(90)), "VM did not power off{}", world.logs(&vm));
    assert!(vm.text().contains("cpe-init: poweroff now"), "no clean power-off{}", world.logs(&vm));
    println!("IMAGE-BENCH test_duration_s={:.0}", test_started.elapsed().as_secs_f64());
}
