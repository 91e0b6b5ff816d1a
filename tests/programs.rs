//! README's "Programs": each curl call in that section, read from README.md and sent as
//! written (the security code is swapped for the one that reached the simulated
//! handset) to the real daemon on a simulated bank of 4, and its effect checked on what
//! left the bank.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, Start};
use serde_json::Value;
use std::time::Duration;

/// One curl command: method, path, body.
#[derive(Debug)]
struct Call {
    method: String,
    path: String,
    body: Option<String>,
}

/// The curl commands of README's "Programs" section, in order.
fn readme_calls() -> Vec<Call> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## Programs\n")
        .expect("README has a Programs section");
    let rest = &readme[start + 1..];
    let section = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3)];
    let mut calls = Vec::new();
    let mut cmd = String::new();
    for line in section.lines() {
        let l = line.trim();
        if cmd.is_empty() && !l.starts_with("curl ") {
            continue;
        }
        cmd.push_str(l.trim_end_matches('\\'));
        cmd.push(' ');
        if l.ends_with('\\') {
            continue;
        }
        let body = cmd.find("-d '").map(|i| {
            let b = &cmd[i + 4..];
            b[..b.find('\'').unwrap()].to_owned()
        });
        let url = cmd.find("http://127.0.0.1:8080").unwrap();
        let path = cmd[url + "http://127.0.0.1:8080".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let method = if cmd.contains("-X DELETE") {
            "DELETE"
        } else if body.is_some() {
            "POST"
        } else {
            "GET"
        };
        assert!(cmd.contains("Bearer secret"), "{cmd}");
        calls.push(Call {
            method: method.into(),
            path,
            body,
        });
        cmd.clear();
    }
    calls
}

async fn start() -> Daemon {
    Daemon::start(Start {
        sim: Some(4),
        tokens: vec!["secret".into()],
        ..Start::default()
    })
    .await
}

/// One README call against the daemon (its body is JSON as README writes it).
async fn call(d: &Daemon, c: &Call) -> (u16, Value) {
    let body = c
        .body
        .as_deref()
        .map(|b| serde_json::from_str::<Value>(b).unwrap_or_else(|e| panic!("{b}: {e}")));
    d.call(&c.method, &c.path, body.as_ref()).await
}

/// What reached the simulated network, once `n` messages have.
async fn sent(d: &Daemon, n: usize) -> Vec<Value> {
    common::eventually(
        &format!("{n} messages sent"),
        Duration::from_secs(30),
        || async {
            let v = d.sink().await;
            if v.len() >= n {
                Ok(v)
            } else {
                Err(format!("{v:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_programs_work_as_shown() {
    let calls = readme_calls();
    assert_eq!(calls.len(), 6, "{calls:?}");
    let d = start().await;

    // Order confirmation and shipping update: one template call each.
    let (s, order) = call(&d, &calls[0]).await;
    assert_eq!(s, 202, "{order}");
    assert_eq!(
        order["text"],
        "Thanks for your order #1042: 2x Coffee beans 1kg, total EUR 31.80. We will text you when it ships."
    );
    let (s, ship) = call(&d, &calls[1]).await;
    assert_eq!(s, 202, "{ship}");
    let sink = sent(&d, 2).await;
    assert!(sink.iter().any(|m| m["text"] == order["text"]), "{sink:?}");
    assert!(sink.iter().any(
        |m| m["text"] == "Your order #1042 is on its way. Track it: https://track.example/1042"
    ));

    // Appointment: confirmation now, reminder scheduled; one DELETE cancels what is left.
    let (s, appt) = call(&d, &calls[2]).await;
    assert_eq!(s, 202, "{appt}");
    assert_eq!(appt["id"], 3, "README's DELETE names id 3");
    assert_eq!(appt["reminder"]["send_at"], "2099-12-03T09:00:00.000Z");
    assert_eq!(appt["reminder"]["group_id"], 3);
    let sink = sent(&d, 3).await;
    assert!(sink.iter().any(|m| m["text"] == "Hi Ann, your appointment on Fri 4 Dec 2099, 10:00 is confirmed."));
    let (s, del) = call(&d, &calls[3]).await;
    assert_eq!(s, 200, "{del}");
    let reminder = appt["reminder"]["id"].as_i64().unwrap();
    assert!(
        del["cancelled"]
            .as_array()
            .unwrap()
            .contains(&reminder.into()),
        "{del}"
    );
    assert_eq!(
        d.get_json(&format!("/v1/messages/{reminder}")).await["status"],
        "cancelled"
    );

    // Security code: the code reaches the handset, the API never shows it, verify works.
    let (s, otp) = call(&d, &calls[4]).await;
    assert_eq!(s, 202, "{otp}");
    assert_eq!(otp["id"], 1, "README's verify names id 1");
    let sink = sent(&d, 4).await;
    let sms = sink
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .starts_with("Your security code is")
        })
        .unwrap();
    let code: String = sms["text"].as_str().unwrap()["Your security code is ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6);
    let shown = d
        .get_json(&format!("/v1/messages/{}", otp["message_id"]))
        .await;
    assert!(
        shown["text"].is_null() && !shown.to_string().contains(&code),
        "{shown}"
    );
    let listed = d.get_json("/v1/messages").await;
    assert!(!listed.to_string().contains(&code));
    let verify = Call {
        body: calls[5].body.as_ref().map(|b| b.replace("123456", &code)),
        ..Call {
            method: calls[5].method.clone(),
            path: calls[5].path.clone(),
            body: None,
        }
    };
    let (s, v) = call(&d, &verify).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], "verified");

    d.stop().await;
}

/// Opt-out through the real inbound path (hw-sim → modem → StoreSink), USSD on a
/// simulated SIM, and the scoped listing routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_by_sms_ussd_and_sims() {
    let d = start().await;
    let post = |path: &str, body: &str| Call {
        method: "POST".into(),
        path: path.into(),
        body: Some(body.into()),
    };
    let sim_ctl = format!("http://{}/inbound", d.running.sim_control.unwrap());
    let r = d
        .http
        .post(&sim_ctl)
        .json(&serde_json::json!({"modem": 0, "from": "+4917612345678", "text": "Stop"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = call(
            &d,
            &post(
                "/v1/messages",
                r#"{"to": "+4917612345678", "text": "promo"}"#,
            ),
        )
        .await;
        if s == 400 {
            assert_eq!(v["error"]["code"], "suppressed", "{v}");
            break;
        }
        assert_eq!(s, 202, "{v}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "STOP never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = d.get_json("/v1/suppressions").await;
    assert_eq!(list["items"][0]["number"], "+4917612345678", "{list}");
    let inbox = d.get_json("/v1/inbox").await;
    assert_eq!(inbox["items"][0]["text"], "Stop");
    // A security code is still sent to a suppressed number (exempt_otp).
    let (s, v) = call(&d, &post("/v1/otp", r#"{"to": "+4917612345678"}"#)).await;
    assert_eq!(s, 202, "{v}");

    // SIMs appear once the modems are up; USSD on one of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let iccid = loop {
        let sims = d.get_json("/v1/sims").await;
        if let Some(i) = sims["items"][0]["iccid"].as_str() {
            break i.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SIM seen: {sims}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (s, v) = call(
        &d,
        &post(&format!("/v1/sims/{iccid}/ussd"), r#"{"code": "*100#"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["text"].as_str().is_some_and(|t| !t.is_empty()), "{v}");

    d.stop().await;
}
