//! Opening the byte stream to a modem: a serial device (tokio-serial), a TCP socket
//! (`tcp://host:port`, for ser2net-style remote banks), or anything else a test provides
//! through [`Opener`].
//!
//! Serial ports open exclusive by default (TIOCEXCL + flock). Before serialport touches a
//! device we try the flock ourselves on a plain descriptor: serialport 4.10 clears
//! TIOCEXCL on the *other* owner's port when its own flock fails (its error path runs
//! TIOCNXCL), so a probe must never let it fail there. A plain `close()` changes nothing.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::error::ModemError;

/// A bidirectional byte stream to a modem.
pub trait Link: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Link for T {}

/// A boxed future, for the object-safe traits of this module.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens (and after an unplug, reopens) the link to one modem.
pub trait Opener: Send + Sync + 'static {
    /// Opens a fresh link.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Link>, ModemError>>;
    /// The port as a human reads it (device path, `tcp://…`).
    fn describe(&self) -> String;
}

/// Where a modem is: a serial device path or `tcp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A serial device (or PTY) path.
    Serial(PathBuf),
    /// A TCP server that relays the modem's serial line (`host:port`).
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = ModemError;

    fn from_str(s: &str) -> Result<Self, ModemError> {
        if let Some(addr) = s.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(ModemError::Open {
                    port: s.to_owned(),
                    reason: "expected tcp://host:port".into(),
                });
            }
            return Ok(Endpoint::Tcp(addr.to_owned()));
        }
        if s.is_empty() {
            return Err(ModemError::Open {
                port: s.to_owned(),
                reason: "empty port".into(),
            });
        }
        Ok(Endpoint::Serial(PathBuf::from(s)))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Serial(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Serial line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    /// Baud rate (USB modems ignore it; real UARTs do not).
    pub baud: u32,
    /// Open with TIOCEXCL + flock so no other process can talk to the modem meanwhile.
    pub exclusive: bool,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Hardware flow control (RTS/CTS), for UART boards wired with it.
    pub rtscts: bool,
    /// Raise DTR (and RTS, without flow control) on open: many modems stay silent
    /// without DTR; boards that wire DTR to sleep or reset want it low.
    pub dtr: bool,
}

impl Default for SerialSettings {
    fn default() -> Self {
        Self {
            baud: 115_200,
            exclusive: true,
            connect_timeout: Duration::from_secs(5),
            rtscts: false,
            dtr: true,
        }
    }
}

/// The [`Opener`] for an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointOpener {
    /// Where.
    pub endpoint: Endpoint,
    /// How.
    pub settings: SerialSettings,
}

impl EndpointOpener {
    /// An opener with the default settings (exclusive, 115200 baud).
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            settings: SerialSettings::default(),
        }
    }
}

impl Opener for EndpointOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Link>, ModemError>> {
        Box::pin(open_endpoint(&self.endpoint, &self.settings))
    }

    fn describe(&self) -> String {
        self.endpoint.to_string()
    }
}

/// Opens an endpoint.
pub async fn open_endpoint(
    endpoint: &Endpoint,
    settings: &SerialSettings,
) -> Result<Box<dyn Link>, ModemError> {
    let fail = |reason: String| ModemError::Open {
        port: endpoint.to_string(),
        reason,
    };
    match endpoint {
        Endpoint::Tcp(addr) => {
            let stream = tokio::time::timeout(
                settings.connect_timeout,
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            .map_err(|_| fail("connect timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
            // AT traffic is a few short lines: latency matters, not throughput.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        Endpoint::Serial(path) => open_serial(path, settings).map_err(fail),
    }
}

fn open_serial(path: &Path, settings: &SerialSettings) -> Result<Box<dyn Link>, String> {
    use tokio_serial::{SerialPort, SerialPortBuilderExt};
    if settings.exclusive {
        check_not_locked(path)?;
    }
    let name = path.to_string_lossy();
    let flow = if settings.rtscts {
        tokio_serial::FlowControl::Hardware
    } else {
        tokio_serial::FlowControl::None
    };
    let mut port = tokio_serial::new(name.as_ref(), settings.baud)
        .exclusive(settings.exclusive)
        .flow_control(flow)
        .open_native_async()
        .map_err(|e| e.to_string())?;
    // Many modems want DTR before they talk; PTYs have no modem lines (ENOTTY), so this
    // is best-effort. With RTS/CTS the driver owns RTS.
    let _ = port.write_data_terminal_ready(settings.dtr);
    if !settings.rtscts {
        let _ = port.write_request_to_send(true);
    }
    Ok(Box::new(port))
}

/// Fails when another process holds the port's flock (see the module comment for why
/// this is checked on a descriptor of our own before serialport opens it).
fn check_not_locked(path: &Path) -> Result<(), String> {
    use nix::fcntl::{Flock, FlockArg, OFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| e.to_string())?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // Dropping the lock unlocks and closes: serialport takes its own right after.
        Ok(_lock) => Ok(()),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err("port in use by another process".into()),
        Err((_, e)) => Err(format!("flock: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "tcp://127.0.0.1:7000".parse::<Endpoint>().ok(),
            Some(Endpoint::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "/dev/ttyUSB2".parse::<Endpoint>().ok(),
            Some(Endpoint::Serial("/dev/ttyUSB2".into()))
        );
        assert!("tcp://host".parse::<Endpoint>().is_err());
        assert!("tcp://:80".parse::<Endpoint>().is_err());
        assert!("".parse::<Endpoint>().is_err());
        assert_eq!(Endpoint::Tcp("h:1".into()).to_string(), "tcp://h:1");
    }
}
