//! The AT command-line syntax of ITU-T V.250 as a modem reads it.
//!
//! Owns: splitting one command line (`AT...` up to CR) into basic commands (`E0`, `Z`,
//! `&F`, `S0=0`) and extended ones (`+CMGS=...`, `^ICCID?`, `$TSSPCSW=?`) joined by
//! `;`, and splitting parameter lists. Pure functions: the modem state machine decides
//! what each command does.

/// The four forms an extended command takes (V.250 §5.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `+CMD`
    Action,
    /// `+CMD=?`
    Test,
    /// `+CMD?`
    Read,
    /// `+CMD=<args>`, the raw argument text.
    Set(String),
}

/// One command out of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A basic command (`E0`, `&F`, `S7=60`).
    Basic {
        /// Upper-case, `&` kept: `E`, `&F`, `S7`.
        name: String,
        /// The numeric/text argument as written: `S7=60` has `=60`, `S7?` has `?`,
        /// `E0` has `0`, `D` has the rest of the line; empty when there is none.
        arg: String,
    },
    /// An extended command (`+CMGS=...`, `^ICCID?`).
    Ext {
        /// Upper-case with its prefix: `+CMGS`, `^ICCID`.
        name: String,
        /// Which of the four forms it was written in.
        form: Form,
    },
}

/// A syntax error: the modem answers `ERROR` for the whole line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError;

/// Parses the text after `AT` (the caller strips it). An empty body is plain `AT`.
pub fn parse_line(body: &str) -> Result<Vec<Command>, SyntaxError> {
    let b: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == ' ' || c == ';' {
            i += 1;
            continue;
        }
        if "+^$%*#!".contains(c) {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || "!%-./:_".contains(b[i])) {
                i += 1;
            }
            if i == start + 1 {
                return Err(SyntaxError);
            }
            let name: String = b[start..i].iter().collect::<String>().to_ascii_uppercase();
            let form = if b.get(i) == Some(&'=') && b.get(i + 1) == Some(&'?') {
                i += 2;
                Form::Test
            } else if b.get(i) == Some(&'?') {
                i += 1;
                Form::Read
            } else if b.get(i) == Some(&'=') {
                i += 1;
                let s = i;
                let mut quoted = false;
                while i < b.len() && (quoted || b[i] != ';') {
                    if b[i] == '"' {
                        quoted = !quoted;
                    }
                    i += 1;
                }
                if quoted {
                    return Err(SyntaxError);
                }
                Form::Set(b[s..i].iter().collect::<String>().trim_end().to_string())
            } else {
                Form::Action
            };
            out.push(Command::Ext { name, form });
            continue;
        }
        let mut name = String::new();
        if c == '&' {
            name.push('&');
            i += 1;
        }
        let Some(&letter) = b.get(i) else {
            return Err(SyntaxError);
        };
        if !letter.is_ascii_alphabetic() {
            return Err(SyntaxError);
        }
        name.push(letter.to_ascii_uppercase());
        i += 1;
        let mut arg = String::new();
        if name == "D" {
            // Dial takes the rest of the line.
            arg = b[i..].iter().collect();
            i = b.len();
        } else if name == "S" {
            while i < b.len() && b[i].is_ascii_digit() {
                name.push(b[i]);
                i += 1;
            }
            if b.get(i) == Some(&'?') {
                arg.push('?');
                i += 1;
            } else if b.get(i) == Some(&'=') {
                arg.push('=');
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    arg.push(b[i]);
                    i += 1;
                }
            }
        } else {
            while i < b.len() && b[i].is_ascii_digit() {
                arg.push(b[i]);
                i += 1;
            }
        }
        out.push(Command::Basic { name, arg });
    }
    Ok(out)
}

/// One parameter of a set command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Nothing between the commas (`+CMGF=,1`): the command's default applies.
    Empty,
    /// A `"..."` string, quotes removed.
    Quoted(String),
    /// An unquoted value, usually a number.
    Bare(String),
}

impl Param {
    /// A number, when the parameter is one (quoted numbers are accepted: some hosts quote).
    pub fn num(&self) -> Option<i64> {
        match self {
            Param::Bare(s) | Param::Quoted(s) => s.trim().parse().ok(),
            Param::Empty => None,
        }
    }

    /// The text, quoted or not.
    pub fn text(&self) -> Option<&str> {
        match self {
            Param::Bare(s) | Param::Quoted(s) => Some(s.as_str()),
            Param::Empty => None,
        }
    }
}

/// Splits `a,"b,c",,3` into parameters.
pub fn params(args: &str) -> Result<Vec<Param>, SyntaxError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let finish = |cur: &mut String, was_quoted: &mut bool, out: &mut Vec<Param>| {
        let t = cur.trim();
        out.push(if *was_quoted {
            Param::Quoted(cur.clone())
        } else if t.is_empty() {
            Param::Empty
        } else {
            Param::Bare(t.to_string())
        });
        cur.clear();
        *was_quoted = false;
    };
    for c in args.chars() {
        match c {
            '"' => {
                if !quoted && was_quoted {
                    return Err(SyntaxError);
                }
                if !quoted {
                    cur.clear();
                }
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => finish(&mut cur, &mut was_quoted, &mut out),
            _ => {
                if !quoted && was_quoted && !c.is_whitespace() {
                    return Err(SyntaxError);
                }
                if quoted || !was_quoted {
                    cur.push(c);
                }
            }
        }
    }
    if quoted {
        return Err(SyntaxError);
    }
    if !args.trim().is_empty() {
        finish(&mut cur, &mut was_quoted, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ext(n: &str, f: Form) -> Command {
        Command::Ext {
            name: n.into(),
            form: f,
        }
    }

    #[test]
    fn compound_line() {
        assert_eq!(
            parse_line("+CMEE=1;+CREG=2").unwrap(),
            vec![
                ext("+CMEE", Form::Set("1".into())),
                ext("+CREG", Form::Set("2".into()))
            ]
        );
    }

    #[test]
    fn basic_run() {
        let c = parse_line("E0V1&D2S0=0").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[0],
            Command::Basic {
                name: "E".into(),
                arg: "0".into()
            }
        );
        assert_eq!(
            c[2],
            Command::Basic {
                name: "&D".into(),
                arg: "2".into()
            }
        );
        assert_eq!(
            c[3],
            Command::Basic {
                name: "S0".into(),
                arg: "=0".into()
            }
        );
    }

    #[test]
    fn forms_and_vendor_prefixes() {
        assert_eq!(
            parse_line("+cnmi=?").unwrap(),
            vec![ext("+CNMI", Form::Test)]
        );
        assert_eq!(
            parse_line("^ICCID?").unwrap(),
            vec![ext("^ICCID", Form::Read)]
        );
        assert_eq!(
            parse_line("$TSSPCSW=?").unwrap(),
            vec![ext("$TSSPCSW", Form::Test)]
        );
        assert_eq!(
            parse_line("+CGMI").unwrap(),
            vec![ext("+CGMI", Form::Action)]
        );
        assert_eq!(parse_line("").unwrap(), vec![]);
    }

    #[test]
    fn quoted_semicolon_stays_in_args() {
        assert_eq!(
            parse_line("+CUSD=1,\"*100;#\",15;+CSQ").unwrap(),
            vec![
                ext("+CUSD", Form::Set("1,\"*100;#\",15".into())),
                ext("+CSQ", Form::Action)
            ]
        );
        assert!(parse_line("+CUSD=1,\"abc").is_err());
        assert!(parse_line("+").is_err());
        assert!(parse_line("&").is_err());
    }

    #[test]
    fn params_split() {
        assert_eq!(
            params("1,\"a,b\",,x").unwrap(),
            vec![
                Param::Bare("1".into()),
                Param::Quoted("a,b".into()),
                Param::Empty,
                Param::Bare("x".into())
            ]
        );
        assert_eq!(params("").unwrap(), vec![]);
        assert_eq!(params("\"\"").unwrap(), vec![Param::Quoted(String::new())]);
        assert!(params("\"a\"b").is_err());
        assert_eq!(params("2,1").unwrap()[1].num(), Some(1));
    }
}
