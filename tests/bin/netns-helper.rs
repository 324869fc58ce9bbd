//! Small network services the namespace tests run inside a namespace (with
//! `ip netns exec`, since a thread cannot enter a namespace without unsafe
//! code): a DNS responder, a TCP echo server, a web server answering every
//! request with one fixed page, and a TCP/UDP relay that adds a fixed delay
//! (the kernel here has no `tc netem`).
//!
//! ```text
//! netns-helper dns --listen ADDR --name NAME=IPV4 [--name …]
//! netns-helper tcp-echo --listen ADDR
//! netns-helper http --listen ADDR --body TEXT
//! netns-helper relay --listen ADDR --to ADDR --delay-ms N [--udp]
//! netns-helper connect --to ADDR --timeout-ms N
//! netns-helper slow-clients --to ADDR --count N --line-every-ms M --reconnect-ms R
//! netns-helper http-get --to ADDR --timeout-ms N
//! ```
//! Each server prints `listening on ADDR` on stdout once bound, then serves
//! until killed. `connect` tries one TCP connection and prints its outcome
//! (`connected`, `refused`, `timeout`, `unreachable: …`), exiting 0 only
//! when connected. `slow-clients` is a slowloris attacker: `N` clients
//! each open a connection, send a request line and then one header line
//! every `M` ms, never ending the head, and reconnect `R` ms after the
//! server closes; it prints `attacking` once all have connected once
//! and a `connects N closed N` line to stderr every second. `http-get`
//! sends one `GET /` and prints `<status line>` and `<ms>` (until the
//! answer is complete), exiting 0 only on an answer. Exit code 2 on bad arguments or when the address cannot
//! be bound.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpe_e2e::netns::dns;

const USAGE: &str = "usage: netns-helper dns --listen ADDR --name NAME=IPV4 … | tcp-echo --listen ADDR | \
                     http --listen ADDR --body TEXT | \
                     relay --listen ADDR --to ADDR --delay-ms N [--udp] | connect --to ADDR --timeout-ms N | \
                     slow-clients --to ADDR --count N --line-every-ms M --reconnect-ms R | http-get --to ADDR --timeout-ms N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("netns-helper: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The value following `--flag`, every occurrence.
fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
}

fn value<'a>(args: &'a [String], flag: &str) -> Result<&'a str, String> {
    values(args, flag).first().copied().ok_or_else(|| format!("{flag} is required"))
}

fn addr(args: &[String], flag: &str) -> Result<SocketAddr, String> {
    let text = value(args, flag)?;
    text.parse().map_err(|e| format!("{flag} {text}: {e}"))
}

fn serve(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("connect") => return connect(addr(args, "--to")?, value(args, "--timeout-ms")?),
        Some("http-get") => return http_get(addr(args, "--to")?, value(args, "--timeout-ms")?),
        Some("slow-clients") => {
            let number = |flag| value(args, flag)?.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            return slow_clients(
                addr(args, "--to")?,
                number("--count")?,
                Duration::from_millis(number("--line-every-ms")?),
                Duration::from_millis(number("--reconnect-ms")?),
            );
        }
        _ => {}
    }
    let listen = addr(args, "--listen")?;
    match args.first().map(String::as_str) {
        Some("dns") => {
            let records = values(args, "--name")
                .into_iter()
                .map(|pair| {
                    let (name, ip) =
                        pair.split_once('=').ok_or_else(|| format!("--name {pair}: expected NAME=IPV4"))?;
                    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("--name {pair}: {e}"))?;
                    Ok((name.to_owned(), ip))
                })
                .collect::<Result<Vec<_>, String>>()?;
            serve_dns(listen, &records)
        }
        Some("tcp-echo") => serve_tcp_echo(listen),
        Some("http") => serve_http(listen, value(args, "--body")?),
        Some("relay") => {
            let to = addr(args, "--to")?;
            let delay_ms: u64 = value(args, "--delay-ms")?.parse().map_err(|e| format!("--delay-ms: {e}"))?;
            let delay = Duration::from_millis(delay_ms);
            if args.iter().any(|a| a == "--udp") {
                serve_udp_relay(listen, to, delay)
            } else {
                serve_tcp_relay(listen, to, delay)
            }
        }
        _ => Err("unknown or missing subcommand".into()),
    }
}

/// One TCP connection attempt; prints the outcome, exits 1 unless connected.
fn connect(to: SocketAddr, timeout_ms: &str) -> Result<(), String> {
    let timeout = Duration::from_millis(timeout_ms.parse().map_err(|e| format!("--timeout-ms: {e}"))?);
    let outcome = match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => "connected".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    println!("{outcome}");
    if outcome != "connected" {
        std::process::exit(1);
    }
    Ok(())
}

/// One `GET /`; prints the status line and the milliseconds to the whole answer.
fn http_get(to: SocketAddr, timeout_ms: &str) -> Result<(), String> {
    let timeout = Duration::from_millis(timeout_ms.parse().map_err(|e| format!("--timeout-ms: {e}"))?);
    let started = Instant::now();
    let answer = TcpStream::connect_timeout(&to, timeout).and_then(|mut stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: cpe\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer)
    });
    let took = started.elapsed().as_millis();
    match answer {
        Ok(answer) if !answer.is_empty() => {
            let text = String::from_utf8_lossy(&answer);
            println!("{}\n{took}", text.lines().next().unwrap_or_default());
            Ok(())
        }
        Ok(_) => {
            println!("closed without an answer\n{took}");
            std::process::exit(1);
        }
        Err(e) => {
            println!("{e}\n{took}");
            std::process::exit(1);
        }
    }
}

/// The slowloris attacker (see the module doc); runs until killed.
fn slow_clients(to: SocketAddr, count: u64, every: Duration, pause: Duration) -> Result<(), String> {
    let connects = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let closed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (first, all_connected) = mpsc::channel();
    for _ in 0..count {
        let (connects, closed, first) = (connects.clone(), closed.clone(), first.clone());
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut announced = false;
                loop {
                    if let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
                        connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if !announced {
                            announced = first.send(()).is_ok();
                        }
                        // Wait for the server between lines, so a close is seen at once.
                        let mut byte = [0_u8; 1];
                        let mut alive = stream.set_read_timeout(Some(every)).is_ok()
                            && stream.write_all(b"GET / HTTP/1.1\r\nHost: cpe\r\n").is_ok();
                        while alive {
                            alive = match stream.read(&mut byte) {
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                    ) =>
                                {
                                    stream.write_all(b"X-Slow: 1\r\n").is_ok()
                                }
                                _ => false,
                            };
                        }
                        closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    std::thread::sleep(pause);
                }
            })
            .map_err(|e| format!("thread: {e}"))?;
    }
    drop(first);
    for _ in 0..count {
        all_connected.recv().map_err(|e| format!("a client thread ended: {e}"))?;
    }
    let mut out = std::io::stdout();
    writeln!(out, "attacking").and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        eprintln!(
            "connects {} closed {}",
            connects.load(std::sync::atomic::Ordering::Relaxed),
            closed.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

fn announce(addr: std::io::Result<SocketAddr>) -> Result<(), String> {
    let addr = addr.map_err(|e| format!("local address: {e}"))?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on {addr}").and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))
}

fn serve_dns(listen: SocketAddr, records: &[(String, Ipv4Addr)]) -> Result<(), String> {
    let socket = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    announce(socket.local_addr())?;
    let mut buf = [0u8; 512];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
        if let Some(reply) = dns::answer(&buf[..len], records) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

fn serve_tcp_echo(listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    announce(listener.local_addr())?;
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Ok(mut writer) = stream.try_clone() {
                let mut reader = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            }
        });
    }
    Ok(())
}

/// Answers every HTTP request (once its head has arrived) with `body` as
/// `text/plain`, then closes.
fn serve_http(listen: SocketAddr, body: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    announce(listener.local_addr())?;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    for mut stream in listener.incoming().flatten() {
        let response = response.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
        });
    }
    Ok(())
}

fn serve_tcp_relay(listen: SocketAddr, to: SocketAddr, delay: Duration) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    announce(listener.local_addr())?;
    for client in listener.incoming().flatten() {
        let Ok(upstream) = TcpStream::connect(to) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        for (from, into) in
            [(client.try_clone(), upstream.try_clone()), (upstream.try_clone(), client.try_clone())]
        {
            if let (Ok(from), Ok(into)) = (from, into) {
                delayed_pipe(from, into, delay);
            }
        }
    }
    Ok(())
}

/// Copies `from` to `into`, each chunk leaving `delay` after it arrived
/// (a pipeline: the delay adds latency, not a throughput limit).
fn delayed_pipe(mut from: TcpStream, mut into: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let len = from.read(&mut buf).unwrap_or(0);
            // An empty chunk marks the end of the stream.
            if tx.send((Instant::now() + delay, buf[..len].to_vec())).is_err() || len == 0 {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if chunk.is_empty() {
                let _ = into.shutdown(Shutdown::Write);
                return;
            }
            if into.write_all(&chunk).is_err() {
                return;
            }
        }
    });
}

fn serve_udp_relay(listen: SocketAddr, to: SocketAddr, delay: Duration) -> Result<(), String> {
    let socket = Arc::new(UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?);
    announce(socket.local_addr())?;
    let unspecified: SocketAddr =
        if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(|_| "address")?;
    // One upstream socket per client, so replies find their way back.
    let upstreams: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>> = Mutex::new(HashMap::new());
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buf) else { continue };
        let Ok(mut map) = upstreams.lock() else { continue };
        let upstream = if let Some(upstream) = map.get(&client) {
            upstream.clone()
        } else {
            let Ok(upstream) = UdpSocket::bind(unspecified).and_then(|u| u.connect(to).map(|()| Arc::new(u)))
            else {
                continue;
            };
            let (back, reply_to) = (upstream.clone(), socket.clone());
            std::thread::spawn(move || {
                let mut reply = vec![0u8; 65_536];
                while let Ok(len) = back.recv(&mut reply) {
                    let (data, reply_to) = (reply[..len].to_vec(), reply_to.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        let _ = reply_to.send_to(&data, client);
                    });
                }
            });
            map.insert(client, upstream.clone());
            upstream
        };
        let data = buf[..len].to_vec();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = upstream.send(&data);
        });
    }
}
