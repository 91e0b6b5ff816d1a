//! A cursor over TPDU octets that knows its absolute offset, so that every error can
//! name the octet where decoding failed.

use super::error::{PduError, Result};

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the whole PDU as the user gave it (SMSC field included).
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
        }
    }

    /// Absolute offset of the next octet.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(PduError::Truncated {
                offset: self.offset(),
                field,
                needed: n - self.remaining(),
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array7(&mut self, field: &'static str) -> Result<[u8; 7]> {
        let s = self.take(7, field)?;
        let mut a = [0u8; 7];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() > 0 {
            return Err(PduError::Trailing {
                offset: self.offset(),
                count: self.remaining(),
            });
        }
        Ok(())
    }
}
