//! Test helpers: a bank on its own runtime, a PTY client with timeouts, a tiny HTTP client.
#![allow(clippy::unwrap_used, dead_code)]

use hw_sim::{Bank, BankConfig, BankHandle};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) struct Sim {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) bank: Option<BankHandle>,
    pub(crate) dir: tempfile::TempDir,
}

impl Sim {
    pub(crate) fn start(f: impl FnOnce(&mut BankConfig)) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = BankConfig {
            link_dir: dir.path().join("links"),
            latency: (0, 0),
            ..BankConfig::default()
        };
        f(&mut cfg);
        let bank = rt.block_on(Bank::start(cfg)).unwrap();
        Sim {
            rt,
            bank: Some(bank),
            dir,
        }
    }

    pub(crate) fn bank(&self) -> &BankHandle {
        self.bank.as_ref().unwrap()
    }

    pub(crate) fn link(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join("links").join(format!("modem{i}"))
    }

    pub(crate) fn open(&self, i: usize) -> Port {
        Port::open(&self.link(i))
    }

    pub(crate) fn shutdown(mut self) {
        if let Some(b) = self.bank.take() {
            self.rt.block_on(b.shutdown());
        }
    }
}

pub(crate) struct Port {
    f: std::fs::File,
    pub(crate) buf: Vec<u8>,
}

impl Port {
    pub(crate) fn open(p: &Path) -> Port {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY).bits())
            .open(p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
        Port { f, buf: Vec::new() }
    }

    pub(crate) fn send(&mut self, b: &[u8]) {
        self.f.write_all(b).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 4096];
        match self.f.read(&mut b) {
            Ok(n) if n > 0 => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            _ => false,
        }
    }

    /// Reads until `pred(buf)` or the timeout; returns and clears what was read.
    pub(crate) fn read_until(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        let end = Instant::now() + timeout;
        while !pred(&self.buf) && Instant::now() < end {
            if !self.fill() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Whatever is readable right now, without waiting.
    pub(crate) fn read_now(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Everything that arrives within `d`.
    pub(crate) fn drain(&mut self, d: Duration) -> Vec<u8> {
        self.read_until(d, |_| false)
    }

    /// Sends a command line and reads through its final result.
    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r").as_bytes());
        let out = self.read_until(Duration::from_secs(5), final_seen);
        String::from_utf8_lossy(&out).into_owned()
    }

    pub(crate) fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let n = needle.as_bytes().to_vec();
        let out = self.read_until(timeout, |b| b.windows(n.len()).any(|w| w == n.as_slice()));
        let s = String::from_utf8_lossy(&out).into_owned();
        assert!(s.contains(needle), "expected {needle:?}, got {s:?}");
        s
    }
}

pub(crate) fn final_seen(b: &[u8]) -> bool {
    let s = String::from_utf8_lossy(b);
    s.ends_with("OK\r\n")
        || s.ends_with("ERROR\r\n")
        || s.contains("ERROR: ") && s.ends_with("\r\n")
        || s.ends_with("> ")
        || s.ends_with(">\r\n")
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub(crate) fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let b = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    // Undo chunked encoding if used.
    let body = if resp
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}
