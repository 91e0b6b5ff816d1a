//! Message templates (`/v1/templates`): named bodies with `{{variable}}` placeholders.
//! Migration 4 ships the defaults the seed's programs use; operators may edit or delete
//! them like any other.

use super::Result;
use rusqlite::{Connection, OptionalExtension, params};

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// The key messages name it by (`"template": "…"`).
    pub name: String,
    /// The text with `{{variable}}` placeholders.
    pub body: String,
    /// For people: what the template is for.
    pub description: Option<String>,
    /// When it was created (or shipped by a migration), ms since the Unix epoch.
    pub created_at: i64,
    /// Its last edit, ms since the Unix epoch.
    pub updated_at: i64,
}

const SELECT: &str = "SELECT name, body, description, created_at, updated_at FROM templates";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        name: r.get(0)?,
        body: r.get(1)?,
        description: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// A template by name.
pub fn get_template(conn: &Connection, name: &str) -> Result<Option<TemplateRecord>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE name = ?1"))?
        .query_row([name], from_row)
        .optional()?)
}

/// Every template, by name.
pub fn list_templates(conn: &Connection) -> Result<Vec<TemplateRecord>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} ORDER BY name"))?
        .query_map([], from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Creates a template; `false` if the name is taken.
pub fn insert_template(
    conn: &Connection,
    name: &str,
    body: &str,
    description: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO templates (name, body, description, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )?
        .execute(params![name, body, description, now])?;
    Ok(n == 1)
}

/// Replaces a template's body (and description when given); `false` if unknown.
pub fn update_template(
    conn: &Connection,
    name: &str,
    body: &str,
    description: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE templates SET body = ?2, description = COALESCE(?3, description), \
             updated_at = ?4 WHERE name = ?1",
        )?
        .execute(params![name, body, description, now])?;
    Ok(n == 1)
}

/// `false` if unknown.
pub fn delete_template(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM templates WHERE name = ?1")?
        .execute([name])?
        == 1)
}
