//! `gsmgw backup` (an online, verified copy of the database) and `gsmgw export` (the
//! message history as NDJSON or CSV). Both read the database file directly, read-only,
//! while the daemon keeps serving: run them as the service user (`sudo -u gsmgw`).

use crate::store::{self, MessageRecord};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the database is: `--db`, else `store.path` of the configuration.
#[derive(Args, Debug)]
pub(crate) struct DbArgs {
    /// Configuration file whose `store.path` names the database (default
    /// /etc/gsmgw/gsmgw.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The database file (overrides the configuration).
    #[arg(long)]
    db: Option<PathBuf>,
}

impl DbArgs {
    fn path(&self) -> Result<PathBuf, Box<dyn std::error::Error>> {
        match &self.db {
            Some(p) => Ok(p.clone()),
            None => Ok(super::serve::load(self.config.as_deref(), true)?.store.path),
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// Where the copy goes (a file; refused if it exists, unless --force).
    dest: PathBuf,
    /// Replace an existing DEST (only once the new copy has been verified).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Prints the [`store::BackupReport`] as JSON.
pub(crate) fn backup(a: BackupArgs) -> Result<(), Box<dyn std::error::Error>> {
    let src = a.db.path()?;
    let started = std::time::Instant::now();
    let report = store::backup(&src, &a.dest, a.force)?;
    let mut v = serde_json::to_value(&report)?;
    v["source"] = src.display().to_string().into();
    v["took_ms"] = u64::try_from(started.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .into();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// The export's formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Ndjson,
    /// RFC 4180 with a header row.
    Csv,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Messages created at or after this: RFC 3339 (`2026-11-01T00:00:00Z`) or an age
    /// (`7d`, `24h`). Default: all.
    #[arg(long)]
    since: Option<String>,
    /// Messages created before this (same forms as --since). Default: now.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

/// One exported message: the history an operator audits, flat so CSV can carry it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: i64,
    created_at: String,
    updated_at: String,
    to: &'a str,
    status: &'a str,
    parts: u32,
    attempts: u32,
    sim: Option<&'a str>,
    modem: Option<&'a str>,
    error_code: Option<&'a str>,
    error: Option<&'a str>,
    possible_duplicate: bool,
    tags: String,
    /// Masked bodies (one-time codes) are already redacted in the store.
    text: &'a str,
}

impl<'a> Row<'a> {
    fn of(m: &'a MessageRecord) -> Row<'a> {
        Row {
            id: m.id,
            created_at: store::rfc3339(m.created_at),
            updated_at: store::rfc3339(m.updated_at),
            to: &m.to,
            status: m.status.as_str(),
            parts: m.parts_total,
            attempts: m.attempts,
            sim: m.sim.as_deref(),
            modem: m.modem.as_deref(),
            error_code: m.error_code.as_deref(),
            error: m.error.as_deref(),
            possible_duplicate: m.possible_duplicate,
            tags: m.tags.join(";"),
            text: &m.body,
        }
    }
}

/// A point in time from an RFC 3339 string or an age before `now` (unix ms).
fn parse_when(flag: &str, s: &str, now: i64) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(store::to_ms(t));
    }
    match humantime::parse_duration(s) {
        Ok(age) => Ok(now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "--{flag} {s:?}: expected RFC 3339 (2026-11-01T00:00:00Z) or an age (7d, 24h)"
        )),
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Writes the history page by page (a serving daemon is never held up).
pub(crate) fn export(a: ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let now = store::now_ms();
    let since = a
        .since
        .as_deref()
        .map(|s| parse_when("since", s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_when("until", s, now))
        .transpose()?;
    let conn = store::open_read_only(&a.db.path()?)?;
    let out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(create_private(p)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let pages = |each: &mut dyn FnMut(Row<'_>) -> CliResult| {
        let mut after = 0;
        loop {
            let page = store::export_page(&conn, since, until, after, 1000)?;
            let Some(last) = page.last() else {
                return CliResult::Ok(());
            };
            after = last.id;
            for m in &page {
                each(Row::of(m))?;
            }
        }
    };
    match a.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            pages(&mut |row| Ok(w.serialize(row)?))?;
            w.flush()?;
        }
        Format::Ndjson => pages(&mut |row| {
            serde_json::to_writer(&mut out, &row)?;
            out.write_all(b"\n")?;
            Ok(())
        })?,
    }
    out.flush()?;
    Ok(())
}

/// The export holds message text: mode 0600, like the database.
fn create_private(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn since_takes_rfc3339_or_an_age() {
        assert_eq!(parse_when("since", "1970-01-01T00:00:01Z", 0), Ok(1_000));
        assert_eq!(
            parse_when("since", "2h", 10_000_000),
            Ok(10_000_000 - 7_200_000)
        );
        assert!(parse_when("since", "yesterday", 0).is_err());
    }
}
