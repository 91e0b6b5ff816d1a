//! Hexadecimal text as modems print PDUs (`+CMGR`, `+CMT`) and as `AT+CMGS` wants them.

use super::error::{PduError, Result};

/// Decodes upper- or lower-case hex; surrounding whitespace is ignored because modem
/// lines and shell arguments often carry it.
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let trimmed = text.trim();
    let lead = text.len() - text.trim_start().len();
    let bytes = trimmed.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(PduError::Hex {
            position: lead + bytes.len(),
            reason: "odd number of digits",
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(PduError::Hex {
            position: lead + 2 * i,
            reason: "not a hex digit",
        })?;
        let lo = nibble(pair[1]).ok_or(PduError::Hex {
            position: lead + 2 * i + 1,
            reason: "not a hex digit",
        })?;
        out.push(hi << 4 | lo);
    }
    Ok(out)
}

/// Encodes as upper-case hex, the form every modem accepts.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0F)] as char);
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(decode(" 00ff1A\r\n"), Ok(vec![0x00, 0xFF, 0x1A]));
        assert_eq!(encode(&[0x00, 0xFF, 0x1A]), "00FF1A");
        assert_eq!(
            decode("0G"),
            Err(PduError::Hex {
                position: 1,
                reason: "not a hex digit"
            })
        );
        assert!(matches!(
            decode("ABC"),
            Err(PduError::Hex { position: 3, .. })
        ));
    }
}
