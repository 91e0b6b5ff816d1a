//! Hotplug: which modem ports exist right now. The daemon's configured ports are paths,
//! globs (`/dev/gsmgw/*`, `/dev/serial/by-id/*`) or `tcp://` addresses; this module
//! watches the directories the globs live in (inotify) and rescans on any change, with
//! a slow periodic rescan as a safety net (a directory that does not exist yet, a
//! missed event). It reports ports that appeared and ports that went away; the daemon
//! probes the new ones for AT (a multi-port stick has one or two AT ports among
//! several) and brings them up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A change in the set of ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEvent {
    /// A port appeared (its path, as the pattern matched it).
    Added(String),
    /// A port went away.
    Removed(String),
}

/// Expands the configured patterns now: globs to the paths that exist (dangling links
/// dropped), plain paths if they exist, `tcp://` always.
pub fn scan(patterns: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in patterns {
        if p.starts_with("tcp://") {
            out.insert(p.clone());
        } else if p.contains(['*', '?', '[']) {
            if let Ok(paths) = glob::glob(p) {
                for path in paths.flatten() {
                    if path.exists() {
                        out.insert(path.display().to_string());
                    }
                }
            }
        } else if Path::new(p).exists() {
            out.insert(p.clone());
        }
    }
    out
}

/// What changed from `old` to `new`.
pub fn diff(old: &BTreeSet<String>, new: &BTreeSet<String>) -> Vec<PortEvent> {
    let mut out: Vec<PortEvent> = new
        .difference(old)
        .map(|p| PortEvent::Added(p.clone()))
        .collect();
    out.extend(old.difference(new).map(|p| PortEvent::Removed(p.clone())));
    out
}

/// The directories to watch for `patterns`: the longest prefix of each glob without a
/// wildcard, and the parent of each plain path.
pub fn watch_dirs(patterns: &[String]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for p in patterns.iter().filter(|p| !p.starts_with("tcp://")) {
        let mut dir = PathBuf::new();
        for comp in Path::new(p).components() {
            let s = comp.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[']) {
                break;
            }
            dir.push(comp);
        }
        if !p.contains(['*', '?', '[']) {
            dir.pop();
        }
        if !dir.as_os_str().is_empty() {
            out.insert(dir);
        }
    }
    out
}

/// Watches `patterns` and sends every change. Starts from `initial` (the ports the
/// daemon already handles). Runs until the receiver is dropped.
pub fn spawn(
    patterns: Vec<String>,
    initial: BTreeSet<String>,
    rescan_every: Duration,
    tx: mpsc::UnboundedSender<PortEvent>,
) -> tokio::task::JoinHandle<()> {
    let (poke_tx, mut poke_rx) = mpsc::unbounded_channel::<()>();
    spawn_inotify(watch_dirs(&patterns), poke_tx);
    tokio::spawn(async move {
        let mut known = initial;
        let mut tick = tokio::time::interval(rescan_every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = poke_rx.recv() => {
                    if r.is_none() {
                        // No inotify: the periodic rescan carries on alone.
                        poke_rx = mpsc::unbounded_channel().1;
                    }
                    // Let a burst of events (a stick's ports appear together) settle.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while poke_rx.try_recv().is_ok() {}
                }
            }
            let now = scan(&patterns);
            for ev in diff(&known, &now) {
                debug!(?ev, "port change");
                if tx.send(ev).is_err() {
                    return;
                }
            }
            known = now;
        }
    })
}

/// A blocking thread reading inotify events on `dirs`; each event pokes the rescan.
fn spawn_inotify(dirs: BTreeSet<PathBuf>, poke: mpsc::UnboundedSender<()>) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = match Inotify::init(InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => {
            warn!(error = %e, "inotify unavailable; hotplug falls back to periodic rescans");
            return;
        }
    };
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB;
    let mut watching = 0;
    for d in &dirs {
        match inotify.add_watch(d.as_path(), flags) {
            Ok(_) => watching += 1,
            Err(e) => {
                debug!(dir = %d.display(), error = %e, "not watched (periodic rescan covers it)")
            }
        }
    }
    if watching == 0 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("gsmgw-hotplug".into())
        .spawn(move || {
            while let Ok(events) = inotify.read_events() {
                if !events.is_empty() && poke.send(()).is_err() {
                    return;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_and_diff_follow_links_that_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, b"").unwrap();
        let pat = vec![
            format!("{}/modem*", dir.path().display()),
            "tcp://127.0.0.1:7000".into(),
        ];
        let before = scan(&pat);
        assert_eq!(before.len(), 1, "tcp ports are always there");
        std::os::unix::fs::symlink(&target, dir.path().join("modem0")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("modem1")).unwrap();
        let after = scan(&pat);
        let added = format!("{}/modem0", dir.path().display());
        assert_eq!(
            diff(&before, &after),
            vec![PortEvent::Added(added.clone())],
            "dangling links are not ports"
        );
        std::fs::remove_file(dir.path().join("modem0")).unwrap();
        assert_eq!(diff(&after, &scan(&pat)), vec![PortEvent::Removed(added)]);
    }

    #[test]
    fn watch_dirs_are_the_glob_prefixes() {
        let d = watch_dirs(&[
            "/dev/gsmgw/*".into(),
            "/dev/serial/by-id/usb-*-if0[0-3]-port0".into(),
            "/dev/ttyUSB3".into(),
            "tcp://h:1".into(),
        ]);
        let want: BTreeSet<PathBuf> = ["/dev", "/dev/gsmgw", "/dev/serial/by-id"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(d, want);
    }

    #[tokio::test]
    async fn the_watcher_reports_a_link_within_moments() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, b"").unwrap();
        let pat = vec![format!("{}/modem*", dir.path().display())];
        let (tx, mut rx) = mpsc::unbounded_channel();
        // A long periodic rescan: only inotify can make this test pass in time.
        let task = spawn(pat, BTreeSet::new(), Duration::from_secs(3600), tx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::os::unix::fs::symlink(&target, dir.path().join("modem7")).unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(
            ev,
            Some(PortEvent::Added(format!("{}/modem7", dir.path().display())))
        );
        std::fs::remove_file(dir.path().join("modem7")).unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert!(matches!(ev, Some(PortEvent::Removed(_))));
        task.abort();
    }
}
