//! `shibafu-probe`: the test tiers' reachability probe, run inside containers and namespaces.
//!
//! ```text
//! shibafu-probe serve [--tcp PORT]... [--udp PORT]...   listen (dual stack) until killed;
//!                                                       TCP accepts and closes, UDP echoes
//! shibafu-probe check [--timeout-ms N] SPEC...          SPEC = tcp:ADDR:PORT | udp:ADDR:PORT
//!                                                       | icmp:ADDR (ADDR in [] for IPv6);
//!                                                       all at once; prints `SPEC ok|blocked`
//! shibafu-probe spoof --src IP --to IP:PORT [--count N] send UDP datagrams with a forged IPv4
//!                                                       source (raw socket, needs CAP_NET_RAW)
//! shibafu-probe sink --udp PORT --secs S                listen S seconds; print `from ADDR`
//!                                                       for each source of a forged datagram
//! shibafu-probe burst --to IP:PORT --count N [--timeout-ms T] NAME...
//!                                                       send N DNS A queries (IDs 0.., names in
//!                                                       turn) from one socket before reading;
//!                                                       print `ID RCODE ANCOUNT A|-` per answer
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("spoof") => spoof(&args[1..]),
        Some("sink") => sink(&args[1..]),
        Some("burst") => burst(&args[1..]),
        _ => Err("usage: shibafu-probe serve [--tcp PORT]... [--udp PORT]... | check [--timeout-ms N] SPEC... | spoof --src IP --to IP:PORT [--count N] | sink --udp PORT --secs S | burst --to IP:PORT --count N [--timeout-ms T] NAME...".into()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shibafu-probe: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--flag VALUE` pairs and positional arguments.
type Parsed = (Vec<(String, String)>, Vec<String>);

/// Pairs of `--flag VALUE` as (flag, value), the rest as positional arguments.
fn flags(args: &[String]) -> Result<Parsed, String> {
    let (mut out, mut rest) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            out.push((a.clone(), v.clone()));
        } else {
            rest.push(a.clone());
        }
    }
    Ok((out, rest))
}

fn serve(args: &[String]) -> Result<(), String> {
    let (flags, _) = flags(args)?;
    let mut threads = Vec::new();
    for (flag, port) in flags {
        let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
        let addr = SocketAddr::from(([0u16; 8], port));
        match flag.as_str() {
            "--tcp" => {
                let l = TcpListener::bind(addr).map_err(|e| format!("tcp {port}: {e}"))?;
                threads.push(thread::spawn(move || {
                    for conn in l.incoming() {
                        drop(conn);
                    }
                }));
            }
            "--udp" => {
                let s = UdpSocket::bind(addr).map_err(|e| format!("udp {port}: {e}"))?;
                threads.push(thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// The value of `--name` in `flags`.
fn value<'a>(flags: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    flags
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
        .ok_or(format!("{name} is required"))
}

/// The value of `--name` in `flags` (`default` when absent, if there is one), parsed.
fn parsed<T: std::str::FromStr>(
    flags: &[(String, String)],
    name: &str,
    default: Option<&str>,
) -> Result<T, String> {
    let v = match value(flags, name) {
        Ok(v) => v,
        Err(e) => default.ok_or(e)?,
    };
    v.parse().map_err(|_| format!("bad {name} {v}"))
}

fn spoof(args: &[String]) -> Result<(), String> {
    let (flags, _) = flags(args)?;
    let src = parsed(&flags, "--src", None)?;
    let to: std::net::SocketAddrV4 = parsed(&flags, "--to", None)?;
    let count = parsed(&flags, "--count", Some("5"))?;
    shibafu_tests::spoof::send(src, *to.ip(), to.port(), count).map_err(|e| format!("spoof: {e}"))
}

fn sink(args: &[String]) -> Result<(), String> {
    let (flags, _) = flags(args)?;
    let port = parsed(&flags, "--udp", None)?;
    let secs = parsed(&flags, "--secs", None)?;
    println!("ready");
    let _ = std::io::stdout().flush();
    for from in shibafu_tests::spoof::sink(port, secs).map_err(|e| format!("sink: {e}"))? {
        println!("from {from}");
    }
    Ok(())
}

fn burst(args: &[String]) -> Result<(), String> {
    let (flags, names) = flags(args)?;
    let to = parsed(&flags, "--to", None)?;
    let count = parsed(&flags, "--count", None)?;
    let ms = parsed(&flags, "--timeout-ms", Some("3000"))?;
    if names.is_empty() {
        return Err("burst needs at least one NAME".into());
    }
    let answers = shibafu_tests::burst::run(to, &names, count, Duration::from_millis(ms))
        .map_err(|e| format!("burst: {e}"))?;
    for a in answers {
        let ip = a
            .first_a
            .map_or_else(|| "-".to_string(), |ip| ip.to_string());
        println!("{} {} {} {ip}", a.id, a.rcode, a.answers);
    }
    Ok(())
}

fn check(args: &[String]) -> Result<(), String> {
    let (flags, specs) = flags(args)?;
    let mut timeout = Duration::from_millis(500);
    for (flag, v) in flags {
        match flag.as_str() {
            "--timeout-ms" => {
                timeout = Duration::from_millis(v.parse().map_err(|_| format!("bad timeout {v}"))?)
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let probes: Vec<_> = specs
        .into_iter()
        .map(|spec| {
            thread::spawn(move || {
                let ok = probe(&spec, timeout);
                (spec, ok)
            })
        })
        .collect();
    for p in probes {
        let (spec, ok) = p.join().map_err(|_| "a probe thread panicked")?;
        match ok {
            Ok(true) => println!("{spec} ok"),
            Ok(false) => println!("{spec} blocked"),
            Err(e) => return Err(format!("{spec}: {e}")),
        }
    }
    Ok(())
}

/// One probe: a TCP connect, a UDP echo, or one ping.
fn probe(spec: &str, timeout: Duration) -> Result<bool, String> {
    let (kind, target) = spec.split_once(':').ok_or("SPEC is KIND:TARGET")?;
    match kind {
        "tcp" => {
            let addr: SocketAddr = target
                .parse()
                .map_err(|_| format!("bad address {target}"))?;
            Ok(TcpStream::connect_timeout(&addr, timeout).is_ok())
        }
        "udp" => {
            let addr: SocketAddr = target
                .parse()
                .map_err(|_| format!("bad address {target}"))?;
            let local: SocketAddr = match addr {
                SocketAddr::V4(_) => "0.0.0.0:0".parse().map_err(|_| "bind")?,
                SocketAddr::V6(_) => "[::]:0".parse().map_err(|_| "bind")?,
            };
            let s = UdpSocket::bind(local).map_err(|e| e.to_string())?;
            // Like a DNS client: the datagram goes again every third of the timeout, so one
            // lost on a busy machine (or an echo server not scheduled in time) is not a block.
            let tries = 3;
            s.set_read_timeout(Some(timeout / tries))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 16];
            for _ in 0..tries {
                if s.send_to(b"probe", addr).is_err() {
                    return Ok(false);
                }
                if matches!(s.recv_from(&mut buf), Ok((5, from)) if from == addr) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        "icmp" => {
            let addr: IpAddr = target
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("bad address {target}"))?;
            let secs = timeout.as_secs().max(1).to_string();
            let status = Command::new("ping")
                .args(["-c", "1", "-W", &secs, &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("ping: {e}"))?;
            Ok(status.success())
        }
        other => Err(format!("unknown probe kind {other}")),
    }
}
