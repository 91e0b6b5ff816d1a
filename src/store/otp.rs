//! One-time codes (`/v1/otp`): only a salted SHA-256 of each code is stored, with its
//! expiry and attempt counter, so neither the database nor a backup gives a code away.

use super::Result;
use rusqlite::{Connection, OptionalExtension, params};

/// A stored code (its hash, never the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpRecord {
    /// The code's id, what `/v1/otp/{id}/verify` names.
    pub id: i64,
    /// The message that carries the code.
    pub message_id: i64,
    /// The recipient, E.164 with `+`.
    pub to: String,
    /// 16 random bytes, lower-case hex, hashed in front of the code.
    pub salt: String,
    /// SHA-256 of salt and code, lower-case hex.
    pub code_hash: String,
    /// When it was issued, ms since the Unix epoch.
    pub created_at: i64,
    /// After this (ms since the Unix epoch) the code no longer verifies.
    pub expires_at: i64,
    /// Verification attempts so far, right or wrong.
    pub attempts: u32,
    /// Attempts allowed before the code is locked.
    pub max_attempts: u32,
    /// When it verified, ms since the Unix epoch; `None` until then (a code verifies
    /// once).
    pub verified_at: Option<i64>,
}

/// What a new code row needs (the message is inserted first, in the same write).
#[derive(Debug, Clone)]
pub struct NewOtp {
    /// The message that carries the code.
    pub message_id: i64,
    /// The recipient, E.164 with `+`.
    pub to: String,
    /// 16 random bytes, lower-case hex.
    pub salt: String,
    /// SHA-256 of salt and code, lower-case hex.
    pub code_hash: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: i64,
    /// Attempts allowed before the code is locked.
    pub max_attempts: u32,
}

/// Stores a new code issued at `now`; returns its id.
pub fn insert_otp(conn: &Connection, o: &NewOtp, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO otps (message_id, to_number, salt, code_hash, created_at, expires_at, \
         max_attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        o.message_id,
        o.to,
        o.salt,
        o.code_hash,
        now,
        o.expires_at,
        o.max_attempts
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A code by id.
pub fn get_otp(conn: &Connection, id: i64) -> Result<Option<OtpRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, message_id, to_number, salt, code_hash, created_at, expires_at, \
             attempts, max_attempts, verified_at FROM otps WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(OtpRecord {
                id: r.get(0)?,
                message_id: r.get(1)?,
                to: r.get(2)?,
                salt: r.get(3)?,
                code_hash: r.get(4)?,
                created_at: r.get(5)?,
                expires_at: r.get(6)?,
                attempts: r.get(7)?,
                max_attempts: r.get(8)?,
                verified_at: r.get(9)?,
            })
        })
        .optional()?)
}

/// When the last code to `to` was created (for the resend cooldown).
pub fn last_otp_at(conn: &Connection, to: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MAX(created_at) FROM otps WHERE to_number = ?1")?
        .query_row([to], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Counts one verification attempt.
pub fn otp_attempted(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE otps SET attempts = attempts + 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Marks a code used: it verifies once.
pub fn otp_verified(conn: &Connection, id: i64, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE otps SET verified_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}
