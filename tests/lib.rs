//! End-to-end tests that drive the built `cpe-agent` and `cpe-provision`
//! binaries the way a field engineer and a carrier operator do. The tests
//! live in `tests/tests/*.rs`; this library holds what they share: finding
//! the binaries, child processes that are always killed, a minimal SMTP
//! sink that records alert mail, and waiting with a deadline. Topologies in
//! network namespaces (terminals, CPE, carrier, platform) are in [`netns`].
#![forbid(unsafe_code)]

pub mod netns;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether the suite runs under CI (`CI=true`, as `.ci/run` sets it).
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// What a test does when its prerequisite (root, PostgreSQL, chromium…) is
/// missing: under CI (see [`under_ci`]) it FAILS (panics) naming `reason`,
/// since a suite that passes without running its tests proves nothing;
/// elsewhere it prints `skipped: <test>: <reason>` past the harness's
/// capture, so the developer sees it was not run. The caller returns.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(!under_ci(), "CI=true: {test} must run, but {reason}");
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
}

/// Path of a workspace binary built next to the running test
/// (`target/<profile>/<name>`). `scripts/test.sh` builds them first with
/// `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(std::path::Path::parent).map(PathBuf::from).unwrap_or_default();
    dir.join(name)
}

/// Runs `cpe-provision args` and returns its stdout, or its stderr as the
/// error when it fails.
pub fn provision(args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary("cpe-provision"))
        .args(args)
        .output()
        .map_err(|e| format!("cpe-provision: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("cpe-provision {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A test carrier PKI in `dir`: the PKCS#12 password file `pw`, the
/// certification body's CA in `ca/`, and the carrier server's certificate
/// `server.crt.pem` / `server.key.pem` naming `server_names`.
pub fn carrier_pki(dir: &std::path::Path, server_names: &[&str]) -> Result<(), String> {
    std::fs::write(dir.join("pw"), "pw\n").map_err(|e| format!("{}: {e}", dir.display()))?;
    let (ca, server) =
        (dir.join("ca").to_string_lossy().into_owned(), dir.join("server").to_string_lossy().into_owned());
    provision(&["ca", "init", "--dir", &ca])?;
    let mut args = vec!["ca", "server-cert", "--ca", &ca, "--out", &server];
    for name in server_names {
        args.extend(["--name", name]);
    }
    provision(&args).map(|_| ())
}

/// The arguments of `cpe-provision serve` with the PKI [`carrier_pki`] made
/// in `dir`: listening on `listen`, storing in `database`, then `extra`.
pub fn serve_args(dir: &std::path::Path, listen: &str, database: &str, extra: &[&str]) -> Vec<String> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--database".into(),
        database.into(),
        "--tls-cert".into(),
        path("server.crt.pem"),
        "--tls-key".into(),
        path("server.key.pem"),
        "--client-ca".into(),
        path("ca/ca.pem"),
    ];
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// A device id (certificate OU) no other test process uses at the same time:
/// `<prefix>-<pid>-<nanoseconds>`.
pub fn unique_unit(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Issues `<name>.p12` (password file `dir/pw`) and
/// `<name>.crt.pem`/`<name>.key.pem` for institution `code`, device `unit`,
/// from the test CA in `dir/ca`; `extra` adds `cert issue` options
/// (`--days`, `--not-before`).
pub fn issue_pkcs12(
    dir: &std::path::Path,
    code: &str,
    unit: &str,
    name: &str,
    extra: &[&str],
) -> Result<(), String> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let (ca, out, pw, pem) = (
        path(dir.join("ca")),
        path(dir.join(format!("{name}.p12"))),
        path(dir.join("pw")),
        path(dir.join(name)),
    );
    let mut args = vec![
        "cert",
        "issue",
        "--ca",
        &ca,
        "--institution",
        code,
        "--device-id",
        unit,
        "--out",
        &out,
        "--password-file",
        &pw,
        "--pem-out",
        &pem,
    ];
    args.extend_from_slice(extra);
    provision(&args).map(drop)
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing
/// test never leaves servers or agents running.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `bin` with `args`; stdout is piped, stderr goes to `log`.
    pub fn spawn(bin: &str, args: &[String], log: &std::path::Path) -> std::io::Result<Self> {
        let stderr = std::fs::File::create(log)?;
        let child = Command::new(binary(bin))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("RUST_LOG", "info")
            .spawn()?;
        Ok(Self { child, name: bin.to_owned() })
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of it.
    pub fn read_line_starting(&mut self, prefix: &str) -> Option<String> {
        let stdout = self.child.stdout.take()?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                let rest = rest.to_owned();
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in reader.lines() {});
                return Some(rest);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why a headless-Chromium test driving `script` (under `tests/browser/`)
/// cannot run here, if it cannot: Debian's chromium, node, playwright-core
/// (`npm ci` in tests/browser) and the Japanese fonts are needed, all
/// installed by scripts/setup.sh.
pub fn browser_unavailable(script: &std::path::Path) -> Option<String> {
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed (scripts/setup.sh installs it)".into());
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed (scripts/setup.sh installs nodejs)".into());
    }
    let modules = script.with_file_name("node_modules").join("playwright-core");
    if !modules.exists() {
        return Some(format!(
            "{} is missing (scripts/setup.sh runs npm ci in tests/browser)",
            modules.display()
        ));
    }
    let fonts = std::path::Path::new("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc");
    if !fonts.exists() {
        return Some("fonts-noto-cjk is not installed (scripts/setup.sh installs it)".into());
    }
    None
}

/// What a recording server keeps: one entry per message or request body.
type Recorded = Arc<Mutex<Vec<String>>>;

/// Listens on a free port of 127.0.0.1 and serves every connection on its
/// own thread with `serve`, which records what it receives.
fn spawn_recorder(
    serve: fn(TcpStream, &Mutex<Vec<String>>) -> std::io::Result<()>,
) -> std::io::Result<(std::net::SocketAddr, Recorded)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let recorded: Recorded = Arc::new(Mutex::new(Vec::new()));
    let store = recorded.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &store);
            });
        }
    });
    Ok((addr, recorded))
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message and keeps
/// its text (headers and body), for checking that alert mail arrives.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    messages: Recorded,
}

impl SmtpSink {
    /// Starts the sink on a free port.
    pub fn start() -> std::io::Result<Self> {
        let (addr, messages) = spawn_recorder(serve_smtp)?;
        Ok(Self { addr: addr.to_string(), messages })
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn serve_smtp(stream: TcpStream, store: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => writer.write_all(b"250 sink\r\n")?,
            "DATA" => {
                writer.write_all(b"354 go ahead\r\n")?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    message.push_str(&line);
                }
                if let Ok(mut m) = store.lock() {
                    m.push(message);
                }
                writer.write_all(b"250 queued\r\n")?;
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => writer.write_all(b"250 ok\r\n")?,
        }
    }
}

/// A fake `/proc` and `/sys` for an agent under test: one uplink `wan0`
/// with a default route, and a CPU whose busy share the test sets while a
/// background thread advances the counters every 100 ms.
#[derive(Debug)]
pub struct FakeSystem {
    /// Root holding `proc/` and `sys/`.
    pub root: PathBuf,
    busy_pct: Arc<std::sync::atomic::AtomicU32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeSystem {
    /// Writes the tree under `root` and starts the CPU ticker at `busy_pct`.
    pub fn start(root: &std::path::Path, busy_pct: u32) -> std::io::Result<Self> {
        let proc_dir = root.join("proc");
        std::fs::create_dir_all(proc_dir.join("net"))?;
        std::fs::write(
            proc_dir.join("meminfo"),
            "MemTotal: 1000000 kB\nMemFree: 500000 kB\nMemAvailable: 600000 kB\n",
        )?;
        std::fs::write(proc_dir.join("loadavg"), "0.10 0.20 0.30 1/100 1234\n")?;
        std::fs::write(proc_dir.join("uptime"), "1234.56 1000.00\n")?;
        std::fs::write(
            proc_dir.join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nwan0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
        )?;
        let net = root.join("sys/class/net/wan0");
        std::fs::create_dir_all(net.join("statistics"))?;
        std::fs::write(net.join("operstate"), "up\n")?;
        std::fs::write(net.join("carrier"), "1\n")?;
        for counter in [
            "rx_bytes",
            "tx_bytes",
            "rx_packets",
            "tx_packets",
            "rx_errors",
            "tx_errors",
            "rx_dropped",
            "tx_dropped",
        ] {
            std::fs::write(net.join("statistics").join(counter), "0\n")?;
        }
        let system = Self {
            root: root.to_owned(),
            busy_pct: Arc::new(std::sync::atomic::AtomicU32::new(busy_pct)),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let (busy, stop, stat) = (system.busy_pct.clone(), system.stop.clone(), proc_dir.join("stat"));
        let rx_path = net.join("statistics/rx_bytes");
        std::thread::spawn(move || {
            let (mut busy_ticks, mut idle_ticks, mut rx) = (0u64, 0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pct = u64::from(busy.load(std::sync::atomic::Ordering::Relaxed).min(100));
                busy_ticks += pct;
                idle_ticks += 100 - pct;
                rx += 125_000;
                let text = format!("cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\ncpu0 {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n");
                let tmp = stat.with_extension("tmp");
                if std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &stat)).is_err() {
                    return;
                }
                let _ = std::fs::write(&rx_path, format!("{rx}\n"));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Ok(system)
    }

    /// Moves the default route to `iface` (as when the primary line fails
    /// and the backup takes over).
    pub fn set_default_route(&self, iface: &str) -> std::io::Result<()> {
        let route = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n{iface}\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        let path = self.root.join("proc/net/route");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, route)?;
        std::fs::rename(&tmp, &path)
    }

    /// Sets the CPU busy share from now on.
    pub fn set_cpu(&self, busy_pct: u32) {
        self.busy_pct.store(busy_pct, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for FakeSystem {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A minimal HTTP server on 127.0.0.1 that answers 200 to every request and
/// keeps the bodies, for checking webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    bodies: Recorded,
}

impl WebhookSink {
    /// Starts the sink on a free port.
    pub fn start() -> std::io::Result<Self> {
        let (addr, bodies) = spawn_recorder(serve_http)?;
        Ok(Self { url: format!("http://{addr}/hook"), bodies })
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

fn serve_http(stream: TcpStream, store: &Mutex<Vec<String>>) -> std::io::Result<()> {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        if let Ok(mut b) = store.lock() {
            b.push(String::from_utf8_lossy(&body).into_owned());
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}
