//! Fuzz the AT lexer: arbitrary bytes, cut anywhere, must give the same tokens as the
//! whole input, never panic, keep its buffer bounded, and only ever produce lines that
//! are non-empty, trimmed, printable and at most `MAX_LINE` long.
#![no_main]

use gsmgw::at::lexer::{Lexer, MAX_LINE, Token};
use libfuzzer_sys::fuzz_target;

/// Tokens of `input` fed in chunks of the sizes in `sizes` (cycled); checks the buffer
/// bound after each chunk.
fn lex(input: &[u8], sizes: &[usize], prompt_pending: bool) -> Vec<Token> {
    let mut l = Lexer::new();
    l.set_prompt_pending(prompt_pending);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        l.push(chunk);
        while let Some(t) = l.next_token() {
            out.push(t);
        }
        assert!(
            l.buffered() <= MAX_LINE + n,
            "buffer grew to {} with chunks of {n}",
            l.buffered()
        );
        rest = tail;
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, input)) = data.split_first() else {
        return;
    };
    let prompt_pending = head & 0x80 != 0;
    // Chunk sizes from the header byte: 1..=8, cycled with a few larger ones.
    let sizes = [
        usize::from(head & 7) + 1,
        usize::from((head >> 3) & 3) * 13 + 1,
        1,
        usize::from(head & 0x3F) + 2,
    ];
    let whole = lex(input, &[usize::MAX], prompt_pending);
    let chunked = lex(input, &sizes, prompt_pending);
    assert_eq!(whole, chunked, "tokens depend on the chunking ({sizes:?})");
    let bytes_one = lex(input, &[1], prompt_pending);
    assert_eq!(whole, bytes_one, "tokens differ byte by byte");

    let mut accounted = 0usize;
    for t in &whole {
        match t {
            Token::Line(l) => {
                assert!(!l.is_empty(), "empty line token");
                assert!(l.len() <= MAX_LINE, "line of {} bytes", l.len());
                assert_eq!(l.trim_matches([' ', '\t']), l, "untrimmed line {l:?}");
                assert!(
                    !l.chars().any(|c| c.is_control() && c != '\t'),
                    "control character in line {l:?}"
                );
                accounted += l.len();
            }
            Token::Garbage(n) => {
                assert!(*n > 0, "garbage of no bytes");
                accounted += n;
            }
            Token::Prompt => accounted += 1,
        }
    }
    assert!(
        accounted <= input.len(),
        "tokens account for {accounted} of {} bytes",
        input.len()
    );
});
