//! Incremental tokenizer of the modem's byte stream (nom, streaming).
//!
//! It owns the byte buffer and knows only about framing: lines, the `>` prompt and garbage.
//! It does not know what a line *means* (response, URC, PDU data): that depends on the
//! command in flight and is the session's business.
//!
//! Framing rules, chosen so that feeding the same bytes in any chunking yields the same
//! tokens:
//! - a line ends at any CR or LF (`\r\n`, lone `\r`, lone `\n`); empty lines are skipped, so
//!   emitting on the CR and then skipping the LF is the same as seeing `\r\n` at once;
//! - the prompt is a `>` at the start of a line followed by a space or a line end
//!   (`\r\n> ` and `\r\n>\r\n`). While the session waits for the prompt, any `>` at the
//!   start of a line is the prompt, taken alone (some modems send no space, and the space
//!   may not have arrived yet): the space is then trimmed away with the next line, so the
//!   tokens do not depend on where the input was cut;
//! - our own control characters echoed back (Ctrl-Z 0x1A, ESC 0x1B) are dropped from lines;
//!   spaces and tabs around a line are trimmed;
//! - a line holding any other control byte, DEL, or invalid UTF-8 (0xFF, noise after a
//!   power cycle) is garbage: the whole line is skipped and its length reported;
//! - a line longer than [`MAX_LINE`] is garbage too, so noise without a line end can not
//!   grow the buffer without bound.

use nom::branch::alt;
use nom::bytes::streaming::{tag, take, take_till};
use nom::combinator::{peek, verify};
use nom::sequence::terminated;
use nom::{IResult, Parser};

/// Longest line accepted. A PDU line is at most ~360 hex characters plus its SMSC prefix;
/// a `+CMGL` header or a USSD reply in UCS2 hex stays well below this.
pub const MAX_LINE: usize = 2048;

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// One framing unit of the modem's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A non-empty, trimmed, printable line (without its line end).
    Line(String),
    /// The `> ` prompt asking for the PDU of `AT+CMGS`/`AT+CMGW`.
    Prompt,
    /// A line of garbage was skipped; the number of bytes it held (line end excluded).
    Garbage(usize),
}

#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Line(&'a [u8]),
    Prompt,
}

fn is_eol(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

fn eol(i: &[u8]) -> IResult<&[u8], &[u8]> {
    // Not `take_while_m_n(1, 1, ..)`: in streaming mode it asks for more input even when
    // the one byte it wants is there.
    verify(take(1usize), |b: &[u8]| {
        b.first().copied().is_some_and(is_eol)
    })
    .parse(i)
}

/// `>` followed by a space (consumed) or a line end (left for the empty-line skip).
fn prompt(i: &[u8]) -> IResult<&[u8], Raw<'_>> {
    let (rest, _) = terminated(tag(&b">"[..]), alt((tag(&b" "[..]), peek(eol)))).parse(i)?;
    Ok((rest, Raw::Prompt))
}

/// Everything up to a line end; `Incomplete` until the line end arrives.
fn line(i: &[u8]) -> IResult<&[u8], Raw<'_>> {
    let (rest, content) = terminated(take_till(is_eol), eol).parse(i)?;
    Ok((rest, Raw::Line(content)))
}

fn token(i: &[u8]) -> IResult<&[u8], Raw<'_>> {
    alt((prompt, line)).parse(i)
}

/// Turns the raw content of a line into a token; `None` for a line that is empty once
/// trimmed.
fn classify(content: &[u8]) -> Option<Token> {
    if content.len() > MAX_LINE {
        return Some(Token::Garbage(content.len()));
    }
    let cleaned: Vec<u8> = content
        .iter()
        .copied()
        .filter(|&b| b != CTRL_Z && b != ESC)
        .collect();
    let Ok(text) = std::str::from_utf8(&cleaned) else {
        return Some(Token::Garbage(content.len()));
    };
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Some(Token::Garbage(content.len()));
    }
    let trimmed = text.trim_matches(|c| c == ' ' || c == '\t');
    if trimmed.is_empty() {
        None
    } else {
        Some(Token::Line(trimmed.to_owned()))
    }
}

/// The incremental lexer: push bytes in, pull tokens out.
#[derive(Debug, Default, Clone)]
pub struct Lexer {
    buf: Vec<u8>,
    /// Bytes of an over-long line discarded so far; `Some` while skipping to its line end.
    skipping: Option<usize>,
    prompt_pending: bool,
}

impl Lexer {
    /// An empty lexer, at the start of a line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the modem.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Tells the lexer whether a lone `>` at the end of the input is the prompt (the session
    /// sets this while a command waits for it).
    pub fn set_prompt_pending(&mut self, pending: bool) {
        self.prompt_pending = pending;
    }

    /// Drops a buffered `>` (and the space after it) at the start of a line. Called when a
    /// command is about to be sent: bytes that arrived before it can never be its
    /// prompt, and a stale `>` taken as the prompt would send the PDU before the modem
    /// asked for it. Whatever followed the `>` stays and is read as usual, so the result
    /// is the same whether the bytes after it were already buffered or not (the modem
    /// may have sent them in the same read or the next).
    pub fn drop_stale_prompt(&mut self) {
        let blank = self.buf.iter().take_while(|&&b| is_eol(b)).count();
        if self.buf.get(blank) == Some(&b'>') {
            let end = blank + 1 + usize::from(self.buf.get(blank + 1) == Some(&b' '));
            self.buf.drain(..end);
        }
    }

    /// Bytes buffered but not yet tokenized (a partial line).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets everything buffered, e.g. when the port is reopened.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipping = None;
        self.prompt_pending = false;
    }

    /// The next complete token, or `None` when more bytes are needed.
    pub fn next_token(&mut self) -> Option<Token> {
        loop {
            if let Some(skipped) = self.skipping {
                match self.buf.iter().position(|&b| is_eol(b)) {
                    Some(p) => {
                        self.buf.drain(..p);
                        self.skipping = None;
                        return Some(Token::Garbage(skipped + p));
                    }
                    None => {
                        self.skipping = Some(skipped + self.buf.len());
                        self.buf.clear();
                        return None;
                    }
                }
            }
            let blank = self.buf.iter().take_while(|&&b| is_eol(b)).count();
            self.buf.drain(..blank);
            if self.buf.is_empty() {
                return None;
            }
            if self.prompt_pending && self.buf.first() == Some(&b'>') {
                // Only the '>': whether a space follows may not be known yet, and taking it
                // only sometimes would make the result depend on the chunking.
                self.buf.drain(..1);
                return Some(Token::Prompt);
            }
            let (consumed, tok) = match token(&self.buf) {
                Ok((rest, Raw::Prompt)) => (self.buf.len() - rest.len(), Some(Token::Prompt)),
                Ok((rest, Raw::Line(content))) => (self.buf.len() - rest.len(), classify(content)),
                Err(_) => {
                    // Incomplete (or, defensively, any parse error: `line` accepts
                    // everything once a line end is present).
                    if self.buf.len() > MAX_LINE {
                        self.skipping = Some(self.buf.len());
                        self.buf.clear();
                        continue;
                    }
                    return None;
                }
            };
            self.buf.drain(..consumed);
            if tok.is_some() {
                return tok;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lex_all(lexer: &mut Lexer) -> Vec<Token> {
        std::iter::from_fn(|| lexer.next_token()).collect()
    }

    fn lex(bytes: &[u8]) -> Vec<Token> {
        let mut l = Lexer::new();
        l.push(bytes);
        lex_all(&mut l)
    }

    fn line(s: &str) -> Token {
        Token::Line(s.to_owned())
    }

    #[test]
    fn line_end_variants() {
        assert_eq!(
            lex(b"\r\nOK\r\nA\rB\nC\r\r\n\n\rD\n"),
            vec![line("OK"), line("A"), line("B"), line("C"), line("D")]
        );
    }

    #[test]
    fn incomplete_line_waits() {
        let mut l = Lexer::new();
        l.push(b"\r\n+CSQ: 2");
        assert_eq!(l.next_token(), None);
        l.push(b"0,99");
        assert_eq!(l.next_token(), None);
        l.push(b"\r");
        assert_eq!(l.next_token(), Some(line("+CSQ: 20,99")));
        l.push(b"\n");
        assert_eq!(l.next_token(), None);
        assert_eq!(l.buffered(), 0);
    }

    #[test]
    fn prompt_forms() {
        assert_eq!(lex(b"\r\n> "), vec![Token::Prompt]);
        assert_eq!(lex(b"\r\n>\r\n"), vec![Token::Prompt]);
        assert_eq!(lex(b"\r\n> \r\n"), vec![Token::Prompt]);
        // Echoed PDU right after the prompt, Ctrl-Z dropped.
        assert_eq!(
            lex(b"\r\n> 0011AA\x1a\r\n+CMGS: 5\r\n"),
            vec![Token::Prompt, line("0011AA"), line("+CMGS: 5")]
        );
        // Not a prompt: a line starting with '>'.
        assert_eq!(lex(b">x\r\n"), vec![line(">x")]);
    }

    #[test]
    fn lone_gt_needs_pending_prompt() {
        let mut l = Lexer::new();
        l.push(b"\r\n>");
        assert_eq!(l.next_token(), None);
        l.set_prompt_pending(true);
        assert_eq!(l.next_token(), Some(Token::Prompt));
        l.set_prompt_pending(false);
        l.push(b" \r\nOK\r\n");
        assert_eq!(lex_all(&mut l), vec![line("OK")]);
    }

    #[test]
    fn garbage_is_skipped_to_line_end() {
        assert_eq!(
            lex(b"\x00\xff\xfe\r\nOK\r\nAB\x01CD\r\n\xc3\xa9t\xc3\xa9\r\n"),
            vec![
                Token::Garbage(3),
                line("OK"),
                Token::Garbage(5),
                line("\u{e9}t\u{e9}")
            ]
        );
    }

    #[test]
    fn overlong_line_is_garbage_whatever_the_chunking() {
        let mut data = vec![b'A'; MAX_LINE + 10];
        data.extend_from_slice(b"\r\nOK\r\n");
        let expected = vec![Token::Garbage(MAX_LINE + 10), line("OK")];
        assert_eq!(lex(&data), expected);
        let mut l = Lexer::new();
        let mut out = Vec::new();
        for chunk in data.chunks(7) {
            l.push(chunk);
            out.extend(lex_all(&mut l));
        }
        assert_eq!(out, expected);
        assert!(l.buffered() <= MAX_LINE + 7);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let data: &[u8] =
            b"AT+CMGS=23\r\r\n> 0011\x1a\r\n+CMTI: \"SM\",1\r\n\x00\x00\r\n+CMGS: 5\r\n\r\nOK\r\n";
        let whole = lex(data);
        let mut l = Lexer::new();
        let mut out = Vec::new();
        for b in data {
            l.push(std::slice::from_ref(b));
            out.extend(lex_all(&mut l));
        }
        assert_eq!(out, whole);
        assert_eq!(
            whole,
            vec![
                line("AT+CMGS=23"),
                Token::Prompt,
                line("0011"),
                line("+CMTI: \"SM\",1"),
                Token::Garbage(2),
                line("+CMGS: 5"),
                line("OK"),
            ]
        );
    }
}
