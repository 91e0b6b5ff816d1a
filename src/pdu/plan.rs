//! The splitting planner: for a text, the encoding and the fewest parts, before
//! anything is sent. The HTTP API shows its answer ("3 parts, ucs2") to callers.
//!
//! Rules: 160 septets or 70 UTF-16 units fit one part; a concatenation header leaves
//! 153 and 67 (fewer again when shift-table headers are needed). An escape sequence or
//! a surrogate pair is never cut, and neither is a grapheme cluster (flag, ZWJ
//! sequence, skin tone, combining marks) unless one grapheme alone exceeds a part.
//! A national language table is used only where it needs fewer parts than UCS-2 (or
//! than the default alphabet, when that can encode the text too).

use super::error::PduError;
use super::gsm7::{Gsm7Tables, Language};
use super::message::{SubmitOptions, encode_submit};
use super::tpdu::EncodedPdu;
use super::userdata::{MAX_OCTETS, MAX_SEPTETS};
use std::ops::Range;
use unicode_segmentation::UnicodeSegmentation;

/// What the planner may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// National languages whose shift tables may be used; empty switches them off.
    pub languages: Vec<Language>,
    /// Use 16-bit concatenation references (one octet more header per part).
    pub concat16: bool,
    /// Always use UCS-2, even for GSM 7-bit text.
    pub force_ucs2: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            languages: Language::national().to_vec(),
            concat16: false,
            force_ucs2: false,
        }
    }
}

impl PlanOptions {
    /// The default alphabet and UCS-2 only.
    pub fn without_national() -> Self {
        PlanOptions {
            languages: Vec::new(),
            ..Self::default()
        }
    }
}

/// The text encoding a plan chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// The GSM 7-bit default alphabet (TS 23.038), with the national locking and
    /// single shift tables the text needs (none for plain default-alphabet text).
    Gsm7(Gsm7Tables),
    /// UCS-2 (UTF-16 code units, surrogate pairs kept whole): for text 7-bit cannot
    /// encode.
    Ucs2,
}

impl TextEncoding {
    /// `"gsm7"` or `"ucs2"`: the name the API and the CLI show.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Gsm7(_) => "gsm7",
            TextEncoding::Ucs2 => "ucs2",
        }
    }

    /// Header octets (UDHL included, 0 without any element) for a part.
    pub fn header_octets(self, concat: bool, concat16: bool) -> usize {
        let nls = match self {
            TextEncoding::Gsm7(t) => t.header_elements(),
            TextEncoding::Ucs2 => 0,
        };
        let concat_len = match (concat, concat16) {
            (false, _) => 0,
            (true, false) => 5,
            (true, true) => 6,
        };
        let elements = concat_len + 3 * nls;
        if elements == 0 { 0 } else { 1 + elements }
    }

    /// Units (septets or UTF-16 code units) that fit one part.
    pub fn capacity(self, concat: bool, concat16: bool) -> usize {
        let h = self.header_octets(concat, concat16);
        match self {
            TextEncoding::Gsm7(_) => MAX_SEPTETS - (h * 8).div_ceil(7),
            TextEncoding::Ucs2 => (MAX_OCTETS - h) / 2,
        }
    }

    /// Cost of one character in this encoding's units; 0 if it cannot be encoded.
    #[inline]
    pub fn cost(self, c: char) -> usize {
        match self {
            TextEncoding::Gsm7(t) => t.cost(c),
            TextEncoding::Ucs2 => c.len_utf16(),
        }
    }
}

/// One planned part: a byte range of the text and its size in units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPart {
    /// Byte range of this part's characters in the planned text.
    pub range: Range<usize>,
    /// Septets or UTF-16 units the part's text takes (header not included).
    pub units: usize,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The encoding every part uses.
    pub encoding: TextEncoding,
    /// The parts, in sending order; one part means no concatenation header.
    pub parts: Vec<PlannedPart>,
    /// Units of the whole text.
    pub units: usize,
    /// Whether parts carry 16-bit concatenation references.
    pub concat16: bool,
}

impl Plan {
    /// Units left in the last part before another part would be needed.
    pub fn remaining_in_last_part(&self) -> usize {
        let multi = self.parts.len() > 1;
        let cap = self.encoding.capacity(multi, self.concat16);
        cap.saturating_sub(self.parts.last().map_or(0, |p| p.units))
    }
}

/// One encoded part of a message, numbered: the one type that goes from the planner
/// through the dispatcher to the modem port (`AT+CMGS`). The number travels with the
/// PDU because a resumed message sends only the parts not yet accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPart {
    /// 1-based part number within the message (reported back with its MR).
    pub seq: u32,
    /// SMSC field + TPDU, and the TPDU length `AT+CMGS=<n>` wants.
    pub pdu: EncodedPdu,
}

/// Plans `text` and encodes every part, numbered from 1: what the daemon and the CLI
/// both send, so a text is encoded one way wherever it goes out.
pub fn plan_parts(text: &str, opts: &SubmitOptions) -> Result<(Plan, Vec<OutPart>), PduError> {
    let (plan, pdus) = encode_submit(text, opts)?;
    let parts = (1u32..)
        .zip(pdus)
        .map(|(seq, pdu)| OutPart { seq, pdu })
        .collect();
    Ok((plan, parts))
}

/// Plans `text`. Never fails: any text can be sent as UCS-2.
pub fn plan(text: &str, opts: &PlanOptions) -> Plan {
    let ucs2 = TextEncoding::Ucs2;
    let ucs2_plan = || split(text, ucs2, opts.concat16, text.encode_utf16().count());
    if opts.force_ucs2 {
        return ucs2_plan();
    }
    let default = TextEncoding::Gsm7(Gsm7Tables::DEFAULT);
    let default_plan = total_cost(text, default).map(|n| split(text, default, opts.concat16, n));
    // The plan to beat: the default alphabet if it can encode the text, else UCS-2.
    let mut best = match default_plan {
        Some(p) if p.parts.len() == 1 || opts.languages.is_empty() => return p,
        Some(p) => p,
        None if opts.languages.is_empty() => return ucs2_plan(),
        None => ucs2_plan(),
    };
    for (tables, total) in national_candidates(text, &opts.languages) {
        let enc = TextEncoding::Gsm7(tables);
        let cap = enc.capacity(true, opts.concat16);
        let single = enc.capacity(false, opts.concat16);
        let lower_bound = if total <= single {
            1
        } else {
            total.div_ceil(cap)
        };
        if lower_bound >= best.parts.len() {
            continue;
        }
        let p = split(text, enc, opts.concat16, total);
        if p.parts.len() < best.parts.len() {
            best = p;
        }
    }
    best
}

/// Total units of `text`, or `None` if a character cannot be encoded.
fn total_cost(text: &str, enc: TextEncoding) -> Option<usize> {
    if enc == TextEncoding::Gsm7(Gsm7Tables::DEFAULT) && text.is_ascii() {
        return super::gsm7::ascii_default_cost(text.as_bytes());
    }
    let mut total = 0;
    for c in text.chars() {
        match enc.cost(c) {
            0 => return None,
            n => total += n,
        }
    }
    Some(total)
}

/// Every (locking, single) pair other than the default that can encode the text, with
/// its total septets, ordered so that fewer header elements and fewer septets come
/// first (the planner keeps the first of equal part counts).
fn national_candidates(text: &str, languages: &[Language]) -> Vec<(Gsm7Tables, usize)> {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    // Distinct characters with their counts and, per language code, whether the
    // locking (bit set in `lock`) or single shift table (`single`) holds them.
    let mut distinct: Vec<(char, usize, u16, u16)> = Vec::new();
    for c in chars {
        match distinct.last_mut() {
            Some(last) if last.0 == c => last.1 += 1,
            _ => distinct.push((c, 1, 0, 0)),
        }
    }
    let mut langs: Vec<Language> = vec![Language::Default];
    langs.extend(
        languages
            .iter()
            .copied()
            .filter(|&l| l != Language::Default),
    );
    langs.sort_unstable();
    langs.dedup();
    for d in &mut distinct {
        for &l in &langs {
            if l.has_locking_table() && l.locking_code(d.0).is_some() {
                d.2 |= 1 << l.code();
            }
            if l.single_code(d.0).is_some() {
                d.3 |= 1 << l.code();
            }
        }
        if d.2 == 0 && d.3 == 0 {
            // In no table at all (an emoji, say): no GSM 7-bit candidate exists.
            return Vec::new();
        }
    }
    let mut out = Vec::new();
    for &locking in langs.iter().filter(|l| l.has_locking_table()) {
        for &single in &langs {
            let tables = Gsm7Tables { locking, single };
            if tables == Gsm7Tables::DEFAULT {
                continue;
            }
            let (lb, sb) = (1u16 << locking.code(), 1u16 << single.code());
            let mut total = 0;
            let mut ok = true;
            for &(_, count, lock, sing) in &distinct {
                if lock & lb != 0 {
                    total += count;
                } else if sing & sb != 0 {
                    total += 2 * count;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok {
                out.push((tables, total));
            }
        }
    }
    out.sort_by_key(|&(t, total)| (t.header_elements(), total));
    out
}

/// Splits `text` of `units` units in `enc` (which must encode every character) into the
/// fewest parts that keep grapheme clusters whole.
fn split(text: &str, enc: TextEncoding, concat16: bool, units: usize) -> Plan {
    let single_cap = enc.capacity(false, concat16);
    if units <= single_cap {
        return Plan {
            encoding: enc,
            parts: vec![PlannedPart {
                range: 0..text.len(),
                units,
            }],
            units,
            concat16,
        };
    }
    let cap = enc.capacity(true, concat16);
    let mut parts = Vec::with_capacity(units.div_ceil(cap));
    let (mut start, mut used) = (0usize, 0usize);
    for (gi, g) in text.grapheme_indices(true) {
        let gcost: usize = g.chars().map(|c| enc.cost(c)).sum();
        if used + gcost <= cap {
            used += gcost;
        } else if gcost <= cap {
            parts.push(PlannedPart {
                range: start..gi,
                units: used,
            });
            start = gi;
            used = gcost;
        } else {
            // A grapheme longer than a part: cut it between characters, which still
            // keeps escapes and surrogate pairs whole.
            for (ci, c) in g.char_indices() {
                let cc = enc.cost(c);
                if used + cc > cap {
                    parts.push(PlannedPart {
                        range: start..gi + ci,
                        units: used,
                    });
                    start = gi + ci;
                    used = 0;
                }
                used += cc;
            }
        }
    }
    parts.push(PlannedPart {
        range: start..text.len(),
        units: used,
    });
    Plan {
        encoding: enc,
        parts,
        units,
        concat16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (usize, &'static str) {
        let p = plan(text, &PlanOptions::default());
        (p.parts.len(), p.encoding.name())
    }

    fn parts_without_national(text: &str) -> usize {
        plan(text, &PlanOptions::without_national()).parts.len()
    }

    #[test]
    fn boundaries_gsm7() {
        assert_eq!(parts(&"a".repeat(160)), (1, "gsm7"));
        assert_eq!(parts(&"a".repeat(161)), (2, "gsm7"));
        assert_eq!(parts(&"a".repeat(306)), (2, "gsm7"));
        assert_eq!(parts(&"a".repeat(307)), (3, "gsm7"));
        // Escapes count two septets.
        assert_eq!(parts(&"{".repeat(80)), (1, "gsm7"));
        assert_eq!(parts(&"{".repeat(81)), (2, "gsm7"));
        // '€' is one septet in the Turkish (and Portuguese) locking table: 81 of them fit
        // one part with a 4-octet NLS header (155 septets), where the default needs two.
        // Equal candidates go to the lower language code.
        let p = plan(&"€".repeat(81), &PlanOptions::default());
        assert_eq!(p.parts.len(), 1);
        assert!(matches!(p.encoding, TextEncoding::Gsm7(t) if t.locking == Language::Turkish));
        assert_eq!(parts_without_national(&"€".repeat(81)), 2);
    }

    #[test]
    fn boundaries_ucs2() {
        assert_eq!(parts(&"я".repeat(70)), (1, "ucs2"));
        assert_eq!(parts(&"я".repeat(71)), (2, "ucs2"));
        assert_eq!(parts(&"я".repeat(134)), (2, "ucs2"));
        assert_eq!(parts(&"я".repeat(135)), (3, "ucs2"));
    }

    #[test]
    fn escape_at_part_boundary_moves_whole() {
        // 152 septets then '€' (2 septets): the escape pair cannot straddle 153.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let p = plan(&text, &PlanOptions::default());
        assert_eq!(p.parts.len(), 2);
        assert_eq!(p.parts[0].units, 152);
        assert_eq!(&text[p.parts[1].range.clone()][..3], "€");
    }

    #[test]
    fn emoji_at_part_boundary_moves_whole() {
        // 66 units then a surrogate pair: it cannot straddle 67.
        let text = format!("{}😀{}", "я".repeat(66), "я".repeat(10));
        let p = plan(&text, &PlanOptions::default());
        assert_eq!(p.parts[0].units, 66);
        assert!(text[p.parts[1].range.clone()].starts_with('😀'));
    }

    #[test]
    fn flag_and_zwj_sequences_stay_whole() {
        let family = "👨\u{200D}👩\u{200D}👧\u{200D}👦"; // 11 units
        let text = format!("{}{family}{}", "я".repeat(60), "я".repeat(10));
        let p = plan(&text, &PlanOptions::default());
        assert_eq!(p.parts[0].units, 60);
        assert!(text[p.parts[1].range.clone()].starts_with(family));
        let flag = "🇩🇪"; // 4 units
        let text = format!("{}{flag}", "я".repeat(67));
        let p = plan(&text, &PlanOptions::default());
        assert_eq!(p.parts.len(), 2);
        assert_eq!(&text[p.parts[1].range.clone()], flag);
    }

    #[test]
    fn national_tables_only_when_they_save_parts() {
        // Turkish: 'ş' and 'ğ' need the Turkish tables; a short text is one UCS-2 part
        // anyway, so UCS-2 (universally supported) is kept.
        let short = "Şu an ağdayız";
        assert_eq!(
            plan(short, &PlanOptions::default()).encoding,
            TextEncoding::Ucs2
        );
        let long = "Siparişiniz kargoya verildi, teşekkür ederiz. ".repeat(3);
        let p = plan(&long, &PlanOptions::default());
        assert!(
            matches!(p.encoding, TextEncoding::Gsm7(t) if t.locking == Language::Turkish || t.single == Language::Turkish),
            "{p:?}"
        );
        let u = plan(&long, &PlanOptions::without_national());
        assert_eq!(u.encoding, TextEncoding::Ucs2);
        assert!(p.parts.len() < u.parts.len());
    }

    #[test]
    fn planned_parts_are_numbered_from_one_and_encoded_as_submit_does() {
        let opts = SubmitOptions::new(super::super::Address::parse("+491701234567").unwrap());
        let text = "z".repeat(400);
        let (p, parts) = plan_parts(&text, &opts).unwrap();
        let (_, pdus) = encode_submit(&text, &opts).unwrap();
        assert_eq!(p.parts.len(), 3);
        assert_eq!(parts.iter().map(|x| x.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(parts.iter().zip(&pdus).all(|(part, pdu)| part.pdu == *pdu));
    }

    #[test]
    fn forced_ucs2_and_empty_text() {
        let p = plan(
            "hello",
            &PlanOptions {
                force_ucs2: true,
                ..PlanOptions::default()
            },
        );
        assert_eq!(p.encoding, TextEncoding::Ucs2);
        let p = plan("", &PlanOptions::default());
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.units, 0);
    }
}
