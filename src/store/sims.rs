//! SIMs by ICCID: where each was last seen, its counters, rejected PINs and quota usage.

use super::Result;
use rusqlite::{Connection, params};
use serde::Serialize;

/// Records that a SIM was seen in a modem (keyed by ICCID: it keeps its counters when it
/// moves to another port or stick).
pub fn upsert_sim(
    conn: &Connection,
    iccid: &str,
    imsi: Option<&str>,
    modem: &str,
    operator: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sims (iccid, imsi, first_seen, last_seen, last_modem, operator) \
         VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT(iccid) DO UPDATE SET \
         imsi = COALESCE(excluded.imsi, imsi), last_seen = excluded.last_seen, \
         last_modem = excluded.last_modem, operator = COALESCE(excluded.operator, operator)",
    )?
    .execute(params![iccid, imsi, now, modem, operator])?;
    Ok(())
}

/// Per-SIM counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimRecord {
    /// The SIM's ICCID, its key.
    pub iccid: String,
    /// The IMSI, once a modem read it.
    pub imsi: Option<String>,
    /// When a modem first reported it, ms since the Unix epoch.
    pub first_seen: i64,
    /// When it was last reported or last sent a part, ms since the Unix epoch.
    pub last_seen: i64,
    /// The modem's name it was last seen in.
    pub last_modem: Option<String>,
    /// The network operator's name, once a modem reported it.
    pub operator: Option<String>,
    /// Parts the SMSC accepted from it.
    pub sent_parts: i64,
    /// Messages that failed or expired with it as their last SIM.
    pub failed: i64,
    /// Inbox messages that arrived on it.
    pub received: i64,
    /// The pool's quota windows, JSON (`{}` until first saved).
    pub usage: String,
}

/// Every SIM ever seen, by ICCID.
pub fn list_sims(conn: &Connection) -> Result<Vec<SimRecord>> {
    let mut st = conn.prepare_cached(
        "SELECT iccid, imsi, first_seen, last_seen, last_modem, operator, sent_parts, failed, \
         received, usage FROM sims ORDER BY iccid",
    )?;
    let rows = st.query_map([], |r| {
        Ok(SimRecord {
            iccid: r.get(0)?,
            imsi: r.get(1)?,
            first_seen: r.get(2)?,
            last_seen: r.get(3)?,
            last_modem: r.get(4)?,
            operator: r.get(5)?,
            sent_parts: r.get(6)?,
            failed: r.get(7)?,
            received: r.get(8)?,
            usage: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// PIN rejections recorded earlier: ICCID → fingerprint.
pub fn load_rejected_pins(conn: &Connection) -> Result<std::collections::HashMap<String, String>> {
    let mut st = conn.prepare_cached("SELECT iccid, fingerprint FROM rejected_pins")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records that a SIM rejected a PIN (by fingerprint).
pub fn save_rejected_pin(
    conn: &Connection,
    iccid: &str,
    fingerprint: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO rejected_pins (iccid, fingerprint, rejected_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(iccid) DO UPDATE SET fingerprint = excluded.fingerprint, \
         rejected_at = excluded.rejected_at",
    )?
    .execute(params![iccid, fingerprint, now])?;
    Ok(())
}

/// Saves a SIM's quota usage (JSON from the pool) so limits survive restarts.
pub fn save_sim_usage(conn: &Connection, iccid: &str, usage_json: &str) -> Result<()> {
    conn.prepare_cached("UPDATE sims SET usage = ?2 WHERE iccid = ?1")?
        .execute(params![iccid, usage_json])?;
    Ok(())
}
