//! Variables in a compose file as the Compose specification defines them: `${VAR}`, `$VAR`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}`,
//! `${VAR?message}`, `${VAR:+other}`, `${VAR+other}`, `$$` for a literal `$`; values from the
//! environment, then the `.env` file of the project directory.

use std::collections::BTreeMap;

/// Where variables come from: the shell's environment wins over `.env`.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    pub shell: BTreeMap<String, String>,
    pub dot_env: BTreeMap<String, String>,
}

impl Variables {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.shell.get(name).or_else(|| self.dot_env.get(name)).map(String::as_str)
    }
}

/// What interpolating one value found besides its result.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Variables used but not set (they become "", as `docker compose` warns).
    pub unset: Vec<String>,
    /// `${VAR?message}` whose variable is missing: the message (an error).
    pub errors: Vec<String>,
}

/// `text` with every variable replaced.
pub fn interpolate(text: &str, vars: &Variables, notes: &mut Notes) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                // The matching brace, counting nested ones in defaults.
                let mut depth = 0;
                let mut end = None;
                for (j, ch) in chars.iter().enumerate().skip(i + 1) {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    notes.errors.push(format!("an unclosed ${{ in \"{text}\""));
                    out.extend(&chars[i..]);
                    return out;
                };
                let body: String = chars[i + 2..end].iter().collect();
                out.push_str(&braced(&body, vars, notes));
                i = end + 1;
            }
            Some(ch) if ch.is_ascii_alphabetic() || *ch == '_' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                match vars.get(&name) {
                    Some(v) => out.push_str(v),
                    None => notes.unset.push(name),
                }
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// The inside of `${...}`.
fn braced(body: &str, vars: &Variables, notes: &mut Notes) -> String {
    let name_end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (name, rest) = body.split_at(name_end);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix(":+") {
        (":+", a)
    } else if let Some(a) = rest.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = rest.strip_prefix('?') {
        ("?", a)
    } else if let Some(a) = rest.strip_prefix('+') {
        ("+", a)
    } else {
        ("", rest)
    };
    match op {
        ":-" if !set_nonempty => interpolate(arg, vars, notes),
        "-" if value.is_none() => interpolate(arg, vars, notes),
        ":?" if !set_nonempty => {
            notes.errors.push(if arg.is_empty() { format!("{name} is not set") } else { format!("{name}: {arg}") });
            String::new()
        }
        "?" if value.is_none() => {
            notes.errors.push(if arg.is_empty() { format!("{name} is not set") } else { format!("{name}: {arg}") });
            String::new()
        }
        ":+" => {
            if set_nonempty {
                interpolate(arg, vars, notes)
            } else {
                String::new()
            }
        }
        "+" => {
            if value.is_some() {
                interpolate(arg, vars, notes)
            } else {
                String::new()
            }
        }
        "" if !arg.is_empty() => {
            notes.errors.push(format!("cannot read ${{{body}}}"));
            String::new()
        }
        _ => match value {
            Some(v) => v.to_owned(),
            None => {
                notes.unset.push(name.to_owned());
                String::new()
            }
        },
    }
}

/// A `.env` or `env_file` file: `NAME=VALUE` lines, `#` comments, an optional `export `, values
/// optionally quoted (double quotes take `\n` escapes).
pub fn env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            // A bare name takes its value from the environment; nothing to record here.
            continue;
        };
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            q.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(q) = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            q.to_owned()
        } else {
            // An unquoted value ends at " #" (an inline comment).
            v.split(" #").next().unwrap_or("").trim_end().to_owned()
        };
        out.insert(k.trim().to_owned(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables {
            shell: [("TAG", "2.0"), ("EMPTY", ""), ("USER", "shell-wins")].map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
            dot_env: [("USER", "dotenv"), ("DB", "db")].map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
        }
    }

    fn run(s: &str) -> (String, Notes) {
        let mut n = Notes::default();
        (interpolate(s, &vars(), &mut n), n)
    }

    #[test]
    fn the_compose_specification_forms() {
        assert_eq!(run("web:${TAG}").0, "web:2.0");
        assert_eq!(run("$TAG-x").0, "2.0-x");
        assert_eq!(run("${USER}").0, "shell-wins", "the shell wins over .env");
        assert_eq!(run("${DB}").0, "db", ".env fills in");
        assert_eq!(run("${EMPTY:-fallback}").0, "fallback", ":- covers empty");
        assert_eq!(run("${EMPTY-fallback}").0, "", "- covers unset only");
        assert_eq!(run("${NOPE-fallback}").0, "fallback");
        assert_eq!(run("${NOPE:-${TAG}}").0, "2.0", "a default with a variable in it");
        assert_eq!(run("${TAG:+set}/${NOPE:+set}").0, "set/");
        assert_eq!(run("cost: $$5").0, "cost: $5");
        let (v, n) = run("${NOPE}");
        assert_eq!((v.as_str(), n.unset.as_slice()), ("", ["NOPE".to_owned()].as_slice()));
        let (_, n) = run("${NOPE:?set NOPE to the password}");
        assert_eq!(n.errors, ["NOPE: set NOPE to the password"]);
        let (_, n) = run("${EMPTY?must exist}");
        assert!(n.errors.is_empty(), "? only needs it set");
    }

    #[test]
    fn env_files() {
        let f = env_file("# comment\nA=1\nexport B=\"two words\"\nC='x # y'\nD=plain # note\nBARE\n");
        assert_eq!(f["A"], "1");
        assert_eq!(f["B"], "two words");
        assert_eq!(f["C"], "x # y");
        assert_eq!(f["D"], "plain");
        assert!(!f.contains_key("BARE"));
    }
}
