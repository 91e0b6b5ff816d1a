//! The command line over the HTTP API: `gsmgw send`, `gsmgw send --csv`,
//! `gsmgw status`, `gsmgw messages`. They talk to a running daemon (`--url`, default
//! `$GSMGW_URL` or http://127.0.0.1:8080) with a token (`--token` or
//! `$GSMGW_API_TOKEN`), so they work the same against a local or a remote gateway.

use clap::Args;
use serde_json::{Map, Value, json};
use std::error::Error;
use std::path::PathBuf;

type Res<T> = Result<T, Box<dyn Error>>;

#[derive(Args, Debug, Clone)]
pub(crate) struct Conn {
    /// The daemon's API (default $GSMGW_URL or http://127.0.0.1:8080).
    #[arg(long, env = "GSMGW_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token (default $GSMGW_API_TOKEN).
    #[arg(long, env = "GSMGW_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    conn: Conn,
    /// Recipient (E.164, or national with the daemon's default region).
    #[arg(long, required_unless_present = "csv")]
    to: Option<String>,
    /// `otp`, `high`, `normal`, `bulk` or a number.
    #[arg(long)]
    priority: Option<String>,
    /// A template name instead of TEXT.
    #[arg(long)]
    template: Option<String>,
    /// Template variable NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Send every row of a CSV file: a `to` column, and `text` or template variables
    /// (other columns), plus optional `priority`. Shows progress; prints a summary.
    #[arg(long, conflicts_with = "to")]
    csv: Option<PathBuf>,
    /// The text.
    text: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct MessagesArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only this status (queued, sending, sent, delivered, failed, expired, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// Only to this number.
    #[arg(long)]
    to: Option<String>,
    /// How many (newest first).
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(c: &Conn) -> Res<Api> {
        Ok(Api {
            base: c.url.trim_end_matches('/').to_owned(),
            token: c.token.clone(),
            http: reqwest::Client::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Sends a request; returns (status, JSON body).
    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Res<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok((status, v))
        })
    }

    /// `call` that turns an error answer into the API's message.
    fn ok(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Res<Value> {
        let (status, v) = self.call(method, path, body)?;
        if status >= 400 {
            return Err(api_error(status, &v).into());
        }
        Ok(v)
    }
}

fn api_error(status: u16, v: &Value) -> String {
    let e = &v["error"];
    match (e["message"].as_str(), e["field"].as_str()) {
        (Some(m), Some(f)) => format!(
            "{status} {}: {m} (field {f})",
            e["code"].as_str().unwrap_or("")
        ),
        (Some(m), None) => format!("{status} {}: {m}", e["code"].as_str().unwrap_or("")),
        _ => format!("HTTP {status}: {v}"),
    }
}

pub(crate) fn send(a: SendArgs) -> Res<()> {
    let api = Api::new(&a.conn)?;
    if let Some(path) = &a.csv {
        return send_csv(&api, path, &a);
    }
    let mut body = Map::new();
    body.insert("to".into(), json!(a.to));
    match (&a.template, &a.text) {
        (Some(t), _) => {
            body.insert("template".into(), json!(t));
            let vars: Map<String, Value> =
                a.vars.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            body.insert("vars".into(), Value::Object(vars));
        }
        (None, Some(t)) => {
            body.insert("text".into(), json!(t));
        }
        (None, None) => return Err("give TEXT or --template".into()),
    }
    if let Some(p) = &a.priority {
        body.insert("priority".into(), priority_json(p));
    }
    let v = api.ok(
        reqwest::Method::POST,
        "/v1/messages",
        Some(&Value::Object(body)),
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn priority_json(p: &str) -> Value {
    p.parse::<i64>().map_or_else(|_| json!(p), |n| json!(n))
}

/// Sends a CSV file in batches of up to 500; a row the API rejects is reported with its
/// line and the rest of its batch is sent again without it.
fn send_csv(api: &Api, path: &PathBuf, a: &SendArgs) -> Res<()> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.headers()?.clone();
    if !headers.iter().any(|h| h == "to") {
        return Err(format!("{}: a `to` column is required", path.display()).into());
    }
    let mut rows: Vec<(usize, Value)> = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = i + 2;
        let mut msg = Map::new();
        let mut vars = Map::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            match h {
                "to" | "text" | "template" => {
                    msg.insert(h.into(), json!(v));
                }
                "priority" if !v.is_empty() => {
                    msg.insert(h.into(), priority_json(v));
                }
                _ => {
                    vars.insert(h.into(), json!(v));
                }
            }
        }
        if let Some(t) = &a.template {
            msg.entry("template").or_insert(json!(t));
        }
        if let Some(p) = &a.priority {
            msg.entry("priority").or_insert(priority_json(p));
        }
        if msg.contains_key("template") {
            msg.insert("vars".into(), Value::Object(vars));
        }
        rows.push((line, Value::Object(msg)));
    }
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sent to the gateway, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut accepted, mut rejected) = (0usize, Vec::new());
    for chunk in rows.chunks(500) {
        let mut batch: Vec<(usize, Value)> = chunk.to_vec();
        while !batch.is_empty() {
            let body = json!({"messages": batch.iter().map(|r| r.1.clone()).collect::<Vec<_>>()});
            let (status, v) = api.call(reqwest::Method::POST, "/v1/messages/batch", Some(&body))?;
            if status < 300 {
                accepted += batch.len();
                bar.inc(batch.len() as u64);
                break;
            }
            // Which item? The error names `messages[i]…`.
            let idx = v["error"]["field"]
                .as_str()
                .and_then(|f| f.strip_prefix("messages["))
                .and_then(|f| f.split(']').next())
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < batch.len());
            let Some(i) = idx else {
                return Err(format!("batch refused: {}", api_error(status, &v)).into());
            };
            let (line, _) = batch.remove(i);
            rejected.push(json!({"line": line, "error": api_error(status, &v)}));
            bar.inc(1);
            bar.set_message(format!("{} rejected", rejected.len()));
        }
    }
    bar.finish();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"accepted": accepted, "rejected": rejected}))?
    );
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(format!("{} row(s) rejected", rejected.len()).into())
    }
}

pub(crate) fn status(a: StatusArgs) -> Res<()> {
    let api = Api::new(&a.conn)?;
    let modems = api.ok(reqwest::Method::GET, "/v1/modems", None)?;
    // `{"items": […]}` since 0.2; a bare array from an older daemon.
    let modems = modems.get("items").cloned().unwrap_or(modems);
    let sims = api.ok(reqwest::Method::GET, "/v1/sims", None)?;
    let (_, metrics) = api.call(reqwest::Method::GET, "/metrics", None)?;
    let mut depth = Map::new();
    for line in metrics.as_str().unwrap_or("").lines() {
        if let Some(rest) = line.strip_prefix("gsmgw_queue_depth{priority=\"")
            && let Some((p, n)) = rest.split_once("\"} ")
        {
            depth.insert(p.to_owned(), json!(n.parse::<f64>().unwrap_or(0.0) as i64));
        }
    }
    if a.json {
        let v = json!({"modems": modems, "sims": sims["items"], "queue_depth": depth});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<38} {:<12} {:<5} {:<12} {:<20} SIM",
        "MODEM", "STATE", "BARS", "NETWORK", "OPERATOR"
    );
    for m in modems.as_array().into_iter().flatten() {
        let bars = m["signal"]["bars"].as_u64().map_or("-".into(), |b| {
            format!(
                "{}{}",
                "▮".repeat(b as usize),
                "▯".repeat(5 - (b as usize).min(5))
            )
        });
        println!(
            "{:<38} {:<12} {:<5} {:<12} {:<20} {}",
            m["id"].as_str().unwrap_or(""),
            m["state"]["state"].as_str().unwrap_or(""),
            bars,
            m["registration"].as_str().unwrap_or("-"),
            m["operator"].as_str().unwrap_or("-"),
            m["iccid"].as_str().unwrap_or("-"),
        );
    }
    println!();
    println!(
        "queue: otp {} · high {} · normal {} · bulk {}",
        depth.get("otp").unwrap_or(&json!(0)),
        depth.get("high").unwrap_or(&json!(0)),
        depth.get("normal").unwrap_or(&json!(0)),
        depth.get("bulk").unwrap_or(&json!(0)),
    );
    println!();
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10}",
        "SIM", "TODAY", "SENT", "FAILED", "RECEIVED"
    );
    for s in sims["items"].as_array().into_iter().flatten() {
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>10}",
            s["iccid"].as_str().unwrap_or(""),
            s["usage"]["day"]["count"].as_u64().unwrap_or(0),
            s["sent_parts"].as_i64().unwrap_or(0),
            s["failed"].as_i64().unwrap_or(0),
            s["received"].as_i64().unwrap_or(0),
        );
    }
    Ok(())
}

pub(crate) fn messages(a: MessagesArgs) -> Res<()> {
    let api = Api::new(&a.conn)?;
    let mut q = vec![format!("limit={}", a.limit.clamp(1, 1000))];
    if let Some(s) = &a.status {
        q.push(format!("status={s}"));
    }
    if let Some(t) = &a.to {
        q.push(format!("to={}", t.replace('+', "%2B")));
    }
    let v = api.ok(
        reqwest::Method::GET,
        &format!("/v1/messages?{}", q.join("&")),
        None,
    )?;
    println!("{}", serde_json::to_string_pretty(&v["items"])?);
    Ok(())
}
