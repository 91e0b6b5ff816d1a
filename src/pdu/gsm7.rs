//! The GSM 7-bit alphabet of 3GPP TS 23.038 §6.2.1: the default table, its extension
//! table, the national language locking and single shift tables, and septet packing
//! with the fill bits that follow a user data header.

use super::tables::*;

/// A national language of TS 23.038 §6.2.1.2.4, by its code in the shift-table IEs.
/// `Default` is the default alphabet and its extension table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Language {
    /// No national table: the default alphabet and extension table.
    #[default]
    Default = 0,
    /// Latin script with ğ, ı, ş; both shift tables.
    Turkish = 1,
    /// A single shift table only (á, í, ó, ú, ç…): the default alphabet stays.
    Spanish = 2,
    /// Latin script with ã, õ, ê…; both shift tables.
    Portuguese = 3,
    /// Bengali script; both shift tables.
    Bengali = 4,
    /// Gujarati script; both shift tables.
    Gujarati = 5,
    /// Devanagari script; both shift tables.
    Hindi = 6,
    /// Kannada script; both shift tables.
    Kannada = 7,
    /// Malayalam script; both shift tables.
    Malayalam = 8,
    /// Oriya (Odia) script; both shift tables.
    Oriya = 9,
    /// Gurmukhi script; both shift tables.
    Punjabi = 10,
    /// Tamil script; both shift tables.
    Tamil = 11,
    /// Telugu script; both shift tables.
    Telugu = 12,
    /// Arabic script; both shift tables.
    Urdu = 13,
}

impl Language {
    /// Every language with a table, in code order.
    pub const ALL: [Language; 14] = [
        Language::Default,
        Language::Turkish,
        Language::Spanish,
        Language::Portuguese,
        Language::Bengali,
        Language::Gujarati,
        Language::Hindi,
        Language::Kannada,
        Language::Malayalam,
        Language::Oriya,
        Language::Punjabi,
        Language::Tamil,
        Language::Telugu,
        Language::Urdu,
    ];

    /// The national languages (everything but `Default`).
    pub fn national() -> &'static [Language] {
        &Self::ALL[1..]
    }

    /// The language for a code of the NLS information elements; unknown codes are
    /// `None` (TS 23.040 says to fall back to the default table then).
    pub fn from_code(code: u8) -> Option<Language> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The code the NLS information elements carry (the inverse of [`Language::from_code`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Lower-case English name, as used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Language::Default => "default",
            Language::Turkish => "turkish",
            Language::Spanish => "spanish",
            Language::Portuguese => "portuguese",
            Language::Bengali => "bengali",
            Language::Gujarati => "gujarati",
            Language::Hindi => "hindi",
            Language::Kannada => "kannada",
            Language::Malayalam => "malayalam",
            Language::Oriya => "oriya",
            Language::Punjabi => "punjabi",
            Language::Tamil => "tamil",
            Language::Telugu => "telugu",
            Language::Urdu => "urdu",
        }
    }

    /// Parses [`Language::name`].
    pub fn from_name(name: &str) -> Option<Language> {
        Self::ALL
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(name))
    }

    /// Spanish is the one language with a single shift table but no locking table.
    pub fn has_locking_table(self) -> bool {
        self != Language::Spanish
    }

    /// The septet of `c` in this language's locking shift table.
    pub fn locking_code(self, c: char) -> Option<u8> {
        self.locking().find(c)
    }

    /// The code of `c` in this language's single shift table (sent after an escape).
    pub fn single_code(self, c: char) -> Option<u8> {
        self.single().find(c)
    }

    fn locking(self) -> &'static Table {
        match self {
            Language::Default | Language::Spanish => &T_LOCK_DEFAULT,
            Language::Turkish => &T_LOCK_TURKISH,
            Language::Portuguese => &T_LOCK_PORTUGUESE,
            Language::Bengali => &T_LOCK_BENGALI,
            Language::Gujarati => &T_LOCK_GUJARATI,
            Language::Hindi => &T_LOCK_HINDI,
            Language::Kannada => &T_LOCK_KANNADA,
            Language::Malayalam => &T_LOCK_MALAYALAM,
            Language::Oriya => &T_LOCK_ORIYA,
            Language::Punjabi => &T_LOCK_PUNJABI,
            Language::Tamil => &T_LOCK_TAMIL,
            Language::Telugu => &T_LOCK_TELUGU,
            Language::Urdu => &T_LOCK_URDU,
        }
    }

    fn single(self) -> &'static Table {
        match self {
            Language::Default => &T_SINGLE_DEFAULT,
            Language::Turkish => &T_SINGLE_TURKISH,
            Language::Spanish => &T_SINGLE_SPANISH,
            Language::Portuguese => &T_SINGLE_PORTUGUESE,
            Language::Bengali => &T_SINGLE_BENGALI,
            Language::Gujarati => &T_SINGLE_GUJARATI,
            Language::Hindi => &T_SINGLE_HINDI,
            Language::Kannada => &T_SINGLE_KANNADA,
            Language::Malayalam => &T_SINGLE_MALAYALAM,
            Language::Oriya => &T_SINGLE_ORIYA,
            Language::Punjabi => &T_SINGLE_PUNJABI,
            Language::Tamil => &T_SINGLE_TAMIL,
            Language::Telugu => &T_SINGLE_TELUGU,
            Language::Urdu => &T_SINGLE_URDU,
        }
    }
}

/// The pair of tables a GSM 7-bit text is written in: the locking shift table replaces
/// the default alphabet, the single shift table replaces the extension table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gsm7Tables {
    /// Replaces the default alphabet; announced by IE 0x25 unless `Default`.
    pub locking: Language,
    /// Replaces the extension table reached by the escape 0x1B; announced by IE 0x24
    /// unless `Default`.
    pub single: Language,
}

impl Gsm7Tables {
    /// The default alphabet with its extension table.
    pub const DEFAULT: Gsm7Tables = Gsm7Tables {
        locking: Language::Default,
        single: Language::Default,
    };

    /// How many NLS information elements a header needs to announce these tables.
    pub fn header_elements(self) -> usize {
        usize::from(self.locking != Language::Default)
            + usize::from(self.single != Language::Default)
    }

    /// The septets for one character: one from the locking table, or the escape and one
    /// from the single shift table. `None` if the character is in neither.
    #[inline]
    pub fn encode_char(self, c: char) -> Option<Septets> {
        if self.locking == Language::Default
            && let Some(&s) = ASCII_DEFAULT.get(c as usize)
            && s != ABSENT
        {
            return Some(Septets::One(s));
        }
        if let Some(s) = self.locking.locking().find(c) {
            return Some(Septets::One(s));
        }
        self.single.single().find(c).map(Septets::Two)
    }

    /// Septet cost of one character, 0 when it cannot be encoded.
    #[inline]
    pub fn cost(self, c: char) -> usize {
        match self.encode_char(c) {
            Some(Septets::One(_)) => 1,
            Some(Septets::Two(_)) => 2,
            None => 0,
        }
    }

    /// Appends the septets of `text`, failing on the first character with no place.
    pub fn encode_str(self, text: &str, out: &mut Vec<u8>) -> Result<(), char> {
        for c in text.chars() {
            match self.encode_char(c) {
                Some(Septets::One(s)) => out.push(s),
                Some(Septets::Two(s)) => {
                    out.push(ESCAPE);
                    out.push(s);
                }
                None => return Err(c),
            }
        }
        Ok(())
    }

    /// Decodes septets. An escape followed by a code the single shift table leaves
    /// unassigned shows the locking table's character, as TS 23.038 §6.2.1.1 asks; a
    /// second escape (reserved for a future table) shows a space; a dangling escape at
    /// the end is dropped; unassigned locking positions show U+FFFD.
    pub fn decode(self, septets: &[u8], out: &mut String) {
        let lock = self.locking.locking();
        let single = self.single.single();
        let mut it = septets.iter().map(|s| s & 0x7F);
        while let Some(s) = it.next() {
            if s == ESCAPE {
                match it.next() {
                    Some(ESCAPE) => out.push(' '),
                    Some(code) => match single.get(code) {
                        Some(c) => out.push(c),
                        None => out.push(lock.get(code).unwrap_or('\u{FFFD}')),
                    },
                    None => {}
                }
            } else {
                out.push(lock.get(s).unwrap_or('\u{FFFD}'));
            }
        }
    }
}

/// One character's septets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// In the locking shift table (or default alphabet).
    One(u8),
    /// Preceded by the escape septet 0x1B.
    Two(u8),
}

/// The escape to the single shift (extension) table.
pub const ESCAPE: u8 = 0x1B;

const ABSENT: u8 = 0xFF;

/// A table with its reverse index, both built at compile time, so lookups cost a
/// binary search and no start-up work or global mutable state is needed.
struct Table {
    forward: &'static [char; 128],
    reverse: [(char, u8); 128],
}

impl Table {
    const fn new(forward: &'static [char; 128]) -> Table {
        let mut reverse = [(NA, 0u8); 128];
        let mut i = 0;
        while i < 128 {
            reverse[i] = (forward[i], i as u8);
            i += 1;
        }
        // Insertion sort by character; on equal characters the lower septet stays
        // first so the encoder picks a stable, lowest code.
        let mut i = 1;
        while i < 128 {
            let mut j = i;
            while j > 0 && (reverse[j - 1].0 as u32) > (reverse[j].0 as u32) {
                let t = reverse[j - 1];
                reverse[j - 1] = reverse[j];
                reverse[j] = t;
                j -= 1;
            }
            i += 1;
        }
        Table { forward, reverse }
    }

    #[inline]
    fn get(&self, septet: u8) -> Option<char> {
        match self.forward.get(usize::from(septet)) {
            Some(&c) if c != NA => Some(c),
            _ => None,
        }
    }

    #[inline]
    fn find(&self, c: char) -> Option<u8> {
        if c == NA {
            return None;
        }
        let i = self.reverse.partition_point(|&(k, _)| k < c);
        match self.reverse.get(i) {
            Some(&(k, s)) if k == c => Some(s),
            _ => None,
        }
    }
}

const fn ascii_index(table: &[char; 128]) -> [u8; 128] {
    let mut out = [ABSENT; 128];
    let mut i = 0;
    while i < 128 {
        let c = table[i] as u32;
        if c < 128 && out[c as usize] == ABSENT {
            out[c as usize] = i as u8;
        }
        i += 1;
    }
    out
}

/// The ASCII characters of the default alphabet, indexed by code point: the fast path
/// for the texts most gateways send.
static ASCII_DEFAULT: [u8; 128] = ascii_index(&LOCKING_DEFAULT);

/// Septets per ASCII character in the default tables (0: not encodable).
static ASCII_DEFAULT_COST: [u8; 128] = ascii_cost(&LOCKING_DEFAULT, &SINGLE_DEFAULT);

const fn ascii_cost(lock: &[char; 128], single: &[char; 128]) -> [u8; 128] {
    let base = ascii_index(lock);
    let ext = ascii_index(single);
    let mut out = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        out[i] = if base[i] != ABSENT {
            1
        } else if ext[i] != ABSENT {
            2
        } else {
            0
        };
        i += 1;
    }
    out
}

/// Septets of an ASCII text in the default tables, `None` if one has no place.
pub(crate) fn ascii_default_cost(text: &[u8]) -> Option<usize> {
    let mut total = 0usize;
    for &b in text {
        match ASCII_DEFAULT_COST.get(usize::from(b)) {
            Some(&n) if n > 0 => total += usize::from(n),
            _ => return None,
        }
    }
    Some(total)
}

static T_LOCK_DEFAULT: Table = Table::new(&LOCKING_DEFAULT);
static T_LOCK_TURKISH: Table = Table::new(&LOCKING_TURKISH);
static T_LOCK_PORTUGUESE: Table = Table::new(&LOCKING_PORTUGUESE);
static T_LOCK_BENGALI: Table = Table::new(&LOCKING_BENGALI);
static T_LOCK_GUJARATI: Table = Table::new(&LOCKING_GUJARATI);
static T_LOCK_HINDI: Table = Table::new(&LOCKING_HINDI);
static T_LOCK_KANNADA: Table = Table::new(&LOCKING_KANNADA);
static T_LOCK_MALAYALAM: Table = Table::new(&LOCKING_MALAYALAM);
static T_LOCK_ORIYA: Table = Table::new(&LOCKING_ORIYA);
static T_LOCK_PUNJABI: Table = Table::new(&LOCKING_PUNJABI);
static T_LOCK_TAMIL: Table = Table::new(&LOCKING_TAMIL);
static T_LOCK_TELUGU: Table = Table::new(&LOCKING_TELUGU);
static T_LOCK_URDU: Table = Table::new(&LOCKING_URDU);
static T_SINGLE_DEFAULT: Table = Table::new(&SINGLE_DEFAULT);
static T_SINGLE_TURKISH: Table = Table::new(&SINGLE_TURKISH);
static T_SINGLE_SPANISH: Table = Table::new(&SINGLE_SPANISH);
static T_SINGLE_PORTUGUESE: Table = Table::new(&SINGLE_PORTUGUESE);
static T_SINGLE_BENGALI: Table = Table::new(&SINGLE_BENGALI);
static T_SINGLE_GUJARATI: Table = Table::new(&SINGLE_GUJARATI);
static T_SINGLE_HINDI: Table = Table::new(&SINGLE_HINDI);
static T_SINGLE_KANNADA: Table = Table::new(&SINGLE_KANNADA);
static T_SINGLE_MALAYALAM: Table = Table::new(&SINGLE_MALAYALAM);
static T_SINGLE_ORIYA: Table = Table::new(&SINGLE_ORIYA);
static T_SINGLE_PUNJABI: Table = Table::new(&SINGLE_PUNJABI);
static T_SINGLE_TAMIL: Table = Table::new(&SINGLE_TAMIL);
static T_SINGLE_TELUGU: Table = Table::new(&SINGLE_TELUGU);
static T_SINGLE_URDU: Table = Table::new(&SINGLE_URDU);

/// Writes `septets` packed LSB-first into `out`, starting `start_bit` bits after
/// `out[base]`. `out` must already be zero-filled up to the needed length.
fn pack_at(septets: &[u8], out: &mut [u8], start_bit: usize) {
    for (i, &s) in septets.iter().enumerate() {
        let bit = start_bit + 7 * i;
        let (byte, shift) = (bit / 8, bit % 8);
        let s = u16::from(s & 0x7F) << shift;
        out[byte] |= (s & 0xFF) as u8;
        if shift > 1 {
            out[byte + 1] |= (s >> 8) as u8;
        }
    }
}

/// Packs septets after a header of `header_octets` octets (UDHL included, 0 when there
/// is no header), inserting the fill bits TS 23.040 §9.2.3.24 requires so the text
/// starts on a septet boundary. Returns the user data (header space zeroed, for the
/// caller to fill) and the UDL in septets.
pub fn pack_with_header(header_octets: usize, septets: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let udl = pack_into(header_octets, septets, &mut out);
    (out, udl)
}

/// Like [`pack_with_header`], appending to `out`; returns the UDL in septets.
pub fn pack_into(header_octets: usize, septets: &[u8], out: &mut Vec<u8>) -> usize {
    let header_septets = (header_octets * 8).div_ceil(7);
    let udl = header_septets + septets.len();
    let start = out.len();
    out.resize(start + (udl * 7).div_ceil(8), 0);
    pack_at(septets, &mut out[start..], header_septets * 7);
    udl
}

/// Packs septets with no header.
pub fn pack(septets: &[u8]) -> Vec<u8> {
    pack_with_header(0, septets).0
}

/// Unpacks septets `skip..count` of packed data; `data` must hold at least
/// `ceil(count * 7 / 8)` octets (callers check, so this never reads past the end).
pub fn unpack(data: &[u8], skip: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count.saturating_sub(skip));
    for i in skip..count {
        let bit = 7 * i;
        let (byte, shift) = (bit / 8, bit % 8);
        let lo = u16::from(data.get(byte).copied().unwrap_or(0));
        let hi = u16::from(data.get(byte + 1).copied().unwrap_or(0));
        out.push((((hi << 8 | lo) >> shift) & 0x7F) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_alphabet_positions() {
        let t = Gsm7Tables::DEFAULT;
        assert_eq!(t.encode_char('@'), Some(Septets::One(0)));
        assert_eq!(t.encode_char('\n'), Some(Septets::One(0x0A)));
        assert_eq!(t.encode_char('Δ'), Some(Septets::One(0x10)));
        assert_eq!(t.encode_char('à'), Some(Septets::One(0x7F)));
        assert_eq!(t.encode_char('€'), Some(Septets::Two(0x65)));
        assert_eq!(t.encode_char('\u{c}'), Some(Septets::Two(0x0A)));
        assert_eq!(t.encode_char('`'), None);
        assert_eq!(t.encode_char('ç'), None);
        assert_eq!(t.encode_char('\u{FFFF}'), None);
    }

    #[test]
    fn every_table_round_trips_every_assigned_character() {
        for &locking in &Language::ALL {
            if !locking.has_locking_table() {
                continue;
            }
            for &single in &Language::ALL {
                let t = Gsm7Tables { locking, single };
                for code in 0..128u8 {
                    if let Some(c) = locking.locking().get(code) {
                        let mut s = Vec::new();
                        t.encode_str(&c.to_string(), &mut s).unwrap();
                        let mut back = String::new();
                        t.decode(&s, &mut back);
                        assert_eq!(back, c.to_string(), "{locking:?} {code:#x}");
                    }
                    if let Some(c) = single.single().get(code) {
                        let mut back = String::new();
                        t.decode(&[ESCAPE, code], &mut back);
                        assert_eq!(back, c.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn escape_to_unassigned_falls_back_to_locking_table() {
        let mut s = String::new();
        Gsm7Tables::DEFAULT.decode(&[ESCAPE, 0x41, ESCAPE, ESCAPE, 0x41, ESCAPE], &mut s);
        assert_eq!(s, "A A");
    }

    #[test]
    fn packing_spec_example() {
        // "hellohello" from TS 23.038 §6.1.2.1.1's packing description, as every
        // implementation packs it.
        let mut s = Vec::new();
        Gsm7Tables::DEFAULT
            .encode_str("hellohello", &mut s)
            .unwrap();
        assert_eq!(super::super::hex::encode(&pack(&s)), "E8329BFD4697D9EC37");
        assert_eq!(unpack(&pack(&s), 0, 10), s);
    }

    #[test]
    fn fill_bits_after_header() {
        // A 6-octet concatenation header (48 bits) needs one fill bit before the first
        // septet (7 septets = 49 bits).
        let (ud, udl) = pack_with_header(6, &[0x41]);
        assert_eq!(udl, 8);
        assert_eq!(ud.len(), 7);
        assert_eq!(ud[6], 0x41 << 1);
        assert_eq!(unpack(&ud, 7, 8), vec![0x41]);
    }
}
