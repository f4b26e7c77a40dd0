//! The log stream: every line of every container, printed `name | line` like
//! `docker compose logs`, kept in a bounded ring per container, published to followers, and
//! appended to App Service-style files under the shared home's `LogFiles`.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast;

/// Longest line kept whole; longer output is cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept per container for `/logs`.
pub const RING_LINES: usize = 1000;

/// Compose's prefix colours: cyan, yellow, green, magenta, blue, then the same in bold.
const COLOURS: [&str; 10] = ["36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogLine {
    pub container: Arc<str>,
    pub stream: Stream,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub text: String,
}

/// Where the stream writes besides memory.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Print to stdout.
    pub console: bool,
    /// Colour the prefixes (off when stdout is not a terminal or `NO_COLOR` is set).
    pub colour: bool,
    /// `LogFiles` directory for `<date>_<host>_default_docker.log` and `<date>_<host>_docker.log`.
    pub dir: Option<PathBuf>,
    pub host: String,
}

/// Shared handle to the stream; clone freely.
#[derive(Clone)]
pub struct LogStream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStream")
    }
}

struct Inner {
    options: LogOptions,
    /// Prefix width: the longest name.
    width: usize,
    colours: HashMap<String, &'static str>,
    rings: Mutex<HashMap<Arc<str>, VecDeque<LogLine>>>,
    files: Mutex<Files>,
    tx: broadcast::Sender<LogLine>,
}

#[derive(Default)]
struct Files {
    /// Date the open files belong to (`YYYY_MM_DD`).
    day: String,
    containers: Option<File>,
    platform: Option<File>,
}

impl LogStream {
    pub fn new(names: &[String], options: LogOptions) -> Self {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max("front-door".len());
        let colours = names.iter().enumerate().map(|(i, n)| (n.clone(), COLOURS[i % COLOURS.len()])).collect();
        let (tx, _) = broadcast::channel(1024);
        Self { inner: Arc::new(Inner { options, width, colours, rings: Mutex::default(), files: Mutex::default(), tx }) }
    }

    /// New lines as they arrive, for `/logs?follow=1`.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.inner.tx.subscribe()
    }

    /// The most recent `n` lines of a container, oldest first.
    pub fn recent(&self, container: &str, n: usize) -> Vec<LogLine> {
        let rings = self.inner.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.get(container).map(|r| r.iter().skip(r.len().saturating_sub(n)).cloned().collect()).unwrap_or_default()
    }

    /// Records one line of a container's output.
    pub fn push(&self, container: &Arc<str>, stream: Stream, raw: &[u8]) {
        let text = clean(raw);
        let line = LogLine { container: container.clone(), stream, at_ms: now_ms(), text };
        if self.inner.options.console {
            self.print(&line.container, &line.text);
        }
        self.append(false, &format!("{} [{}] {}", iso(line.at_ms), line.container, line.text));
        {
            let mut rings = self.inner.rings.lock().unwrap_or_else(|e| e.into_inner());
            let ring = rings.entry(container.clone()).or_default();
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        let _ = self.inner.tx.send(line);
    }

    /// sitecar's own event about a container (start, exit, restart): console and `_docker.log`.
    pub fn event(&self, container: &str, message: &str) {
        if self.inner.options.console {
            self.print("sitecar", &format!("{container}: {message}"));
        }
        self.append(true, &format!("{} INFO  - {container}: {message}", iso(now_ms())));
    }

    fn print(&self, name: &str, text: &str) {
        let width = self.inner.width;
        let out = if self.inner.options.colour {
            let colour = self.inner.colours.get(name).copied().unwrap_or("1");
            format!("\x1b[{colour}m{name:<width$} |\x1b[0m {text}\n")
        } else {
            format!("{name:<width$} | {text}\n")
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
    }

    fn append(&self, platform: bool, line: &str) {
        let Some(dir) = &self.inner.options.dir else { return };
        let mut files = self.inner.files.lock().unwrap_or_else(|e| e.into_inner());
        let day = day(now_ms());
        if files.day != day {
            *files = Files { day: day.clone(), containers: None, platform: None };
        }
        let host = &self.inner.options.host;
        let (slot, name) = if platform {
            (&mut files.platform, format!("{day}_{host}_docker.log"))
        } else {
            (&mut files.containers, format!("{day}_{host}_default_docker.log"))
        };
        if slot.is_none() {
            *slot = OpenOptions::new().create(true).append(true).open(dir.join(name)).ok();
        }
        if let Some(f) = slot {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Reads `reader` line by line into the stream until it closes. Lines longer than
    /// [`MAX_LINE`] are cut, so no output can make sitecar hold more than that per stream.
    pub async fn pump(self, container: Arc<str>, stream: Stream, reader: impl AsyncRead + Unpin) {
        let mut reader = BufReader::with_capacity(8192, reader);
        let mut line: Vec<u8> = Vec::with_capacity(256);
        loop {
            let chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(c) => c,
            };
            let (used, complete) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE - line.len();
            let take = used.min(room);
            line.extend_from_slice(&chunk[..take]);
            reader.consume(take);
            if (complete && take == used) || line.len() >= MAX_LINE {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                self.push(&container, stream, &line);
                line.clear();
            }
        }
        if !line.is_empty() {
            self.push(&container, stream, &line);
        }
    }
}

/// Text for a terminal: invalid UTF-8 replaced, control characters other than tab and ESC
/// (colour codes) shown as U+FFFD, a trailing CR dropped.
fn clean(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(raw).chars().map(|c| if c.is_control() && c != '\t' && c != '\x1b' { '\u{fffd}' } else { c }).collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `2026-11-22T01:02:03.456Z`
pub fn iso(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// `2026_11_22`, as App Service names its log files.
fn day(ms: u64) -> String {
    iso(ms)[..10].replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_795_392_123_456), "2026-11-23T00:02:03.456Z");
        assert_eq!(day(951_782_400_000), "2000_02_29");
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(clean(b"ok\tfine\r"), "ok\tfine");
        assert_eq!(clean(b"\x00bell\x07 \x1b[31mred"), "\u{fffd}bell\u{fffd} \x1b[31mred");
        assert_eq!(clean(&[0xff, b'a']), "\u{fffd}a");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_rings_are_bounded() {
        let names = vec!["app".to_string()];
        let logs = LogStream::new(&names, LogOptions::default());
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        for i in 0..RING_LINES + 5 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        input.extend_from_slice(b"tail without newline");
        logs.clone().pump("app".into(), Stream::Stdout, &input[..]).await;
        let all = logs.recent("app", usize::MAX);
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(all.last().unwrap().text, "tail without newline");
        assert_eq!(all[all.len() - 2].text, format!("line {}", RING_LINES + 4));
        // The 32 KiB line came out as pieces no longer than MAX_LINE.
        let logs = LogStream::new(&names, LogOptions::default());
        let long = [vec![b'y'; MAX_LINE * 2 + 10], b"\n".to_vec()].concat();
        logs.clone().pump("app".into(), Stream::Stdout, &long[..]).await;
        let lens: Vec<usize> = logs.recent("app", 10).iter().map(|l| l.text.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
    }
}
