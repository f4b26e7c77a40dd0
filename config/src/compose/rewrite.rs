//! What a compose file says that changes on one shared localhost: service names used as host
//! names become `localhost`, and what a warning shows of a value has its passwords masked.

/// Whether a variable's value is a secret not to be shown in a warning.
pub(crate) fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PWD", "CONNECTION_STRING", "CONNSTR"].iter().any(|s| n.contains(s))
}

/// `text` with passwords hidden: `user:pass@` in URLs, and the word after a password flag.
pub(crate) fn mask(text: &str) -> String {
    let mut out = String::new();
    let mut hide_next = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if hide_next && !word.is_empty() {
            out.push_str("****");
            hide_next = false;
            continue;
        }
        let lower = word.to_ascii_lowercase();
        if ["-a", "--pass", "--password", "--requirepass", "-p"].contains(&lower.as_str()) {
            hide_next = lower != "-p" || !text.contains("pg_isready");
        }
        if let Some(eq) = lower.find("password=") {
            out.push_str(&word[..eq + "password=".len()]);
            out.push_str("****");
            continue;
        }
        match (word.find("://"), word.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &word[scheme + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{}{user}:****{}", &word[..scheme + 3], &word[at..])),
                    None => out.push_str(word),
                }
            }
            _ => out.push_str(word),
        }
    }
    out
}

/// Service names used as host names in `value`, rewritten to `localhost`: in URLs
/// (`http://otel:4317`), `host:port` (`redis:6379`), after `@` (`user@db`), as a word of a command
/// (`--host db`), or as the whole value of a variable that names a host. Returns the new text
/// and the names rewritten.
pub(crate) fn localhost(value: &str, services: &[String], host_var: bool) -> (String, Vec<String>) {
    let is_host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let mut out = String::new();
    let mut found = Vec::new();
    let chars: Vec<char> = value.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_host_char(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_host_char(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let before: String = chars[..start].iter().collect();
        let after = chars.get(i).copied();
        let whole = start == 0 && i == chars.len();
        let opens = before.is_empty() || ["//", "@", " ", "=", ","].iter().any(|o| before.ends_with(o));
        let closes = matches!(after, None | Some(':') | Some('/') | Some(' ') | Some(',') | Some(';'));
        // `scheme://user:pass@host`: what comes before an `@` is no host.
        let rest: String = chars[i..].iter().collect();
        let userinfo = rest.split('/').next().is_some_and(|r| r.contains('@'));
        let port_follows = after == Some(':') && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        let prev = before.trim_end_matches([' ', '=']).rsplit([' ', '=']).next().unwrap_or("").to_ascii_lowercase();
        let named_by_flag = (before.ends_with(' ') || before.ends_with('='))
            && (prev.ends_with("host") || prev.ends_with("server") || prev.ends_with("addr") || prev == "-h");
        let host_like = (whole && host_var)
            || (opens && closes && !userinfo && (port_follows || before.ends_with("//") || before.ends_with('@') || named_by_flag));
        if host_like && services.iter().any(|s| s == &word) {
            out.push_str("localhost");
            found.push(word);
        } else {
            out.push_str(&word);
        }
    }
    (out, found)
}

/// Whether a variable's name says it holds a host or an address.
pub(crate) fn names_a_host(var: &str) -> bool {
    let v = var.to_ascii_uppercase();
    ["HOST", "ADDR", "SERVER", "URL", "URI", "ENDPOINT", "SERVICE"].iter().any(|s| v.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_as_hosts_become_localhost_and_nothing_else_does() {
        let s = ["db".to_owned(), "redis".to_owned(), "otel-collector".to_owned(), "app".to_owned()];
        let l = |v: &str, host: bool| localhost(v, &s, host).0;
        assert_eq!(l("postgres://user:pw@db:5432/app", false), "postgres://user:pw@localhost:5432/app", "the database named app stays");
        assert_eq!(l("redis:6379", false), "localhost:6379");
        assert_eq!(l("http://otel-collector:4317", false), "http://localhost:4317");
        assert_eq!(l("db", true), "localhost", "a variable naming a host");
        assert_eq!(l("db", false), "db", "DB_ENGINE=db stays");
        assert_eq!(l("mongodb://mongo:27017", false), "mongodb://mongo:27017");
        assert_eq!(l("--host db --port 5432", false), "--host localhost --port 5432");
        assert_eq!(l("--redis-host=redis", false), "--redis-host=localhost");
        assert_eq!(l("celery -A app worker", false), "celery -A app worker", "a module named like a service stays");
        assert_eq!(l("postgres://db:1234@host/x", false), "postgres://db:1234@host/x", "userinfo is no host");
        assert_eq!(l("kafka1:9092,redis:6379", false), "kafka1:9092,localhost:6379");
        assert_eq!(l("redis-server --appendonly yes", false), "redis-server --appendonly yes");
        assert_eq!(l("-H unix:///var/run/docker.sock", false), "-H unix:///var/run/docker.sock");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(mask("postgres://app:s3cret@db/app"), "postgres://app:****@db/app");
        assert_eq!(mask("redis-cli -a s3cret ping"), "redis-cli -a **** ping");
        assert_eq!(mask("mysqladmin ping --password=s3cret"), "mysqladmin ping --password=****");
        assert_eq!(mask("pg_isready -U postgres -p 5432"), "pg_isready -U postgres -p 5432");
    }
}
