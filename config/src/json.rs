//! A reader over `serde_json::Value` that knows where it is.
//!
//! Every accessor records a [`Problem`] with the JSON path instead of failing, so one pass over a
//! document reports all that is wrong with it. Keys match case-insensitively (as the Azure CLI
//! reads spec files), and [`Obj::finish`] reports every key nobody asked for, with a "did you mean".

use serde_json::{Map, Value};

use crate::error::Problem;

/// Collects problems during one load.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub(crate) fn at(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }
}

/// Appends a key to a JSON path, quoting keys that are not plain identifiers.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::Value::String(key.to_owned()))
    }
}

/// Appends an array index to a JSON path.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The JSON type name a person expects in an error message.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object being read: which keys were asked for, so the rest can be reported as unknown.
pub(crate) struct Obj<'a> {
    pub(crate) path: String,
    map: &'a Map<String, Value>,
    /// Canonical spellings of the keys this reader was asked about.
    known: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    /// Reads `value` as an object, or records that it is not one.
    pub(crate) fn new(p: &mut Problems, value: &'a Value, path: &str) -> Option<Self> {
        match value {
            Value::Object(map) => {
                let obj = Self { path: path.to_owned(), map, known: Vec::new() };
                obj.check_case_duplicates(p);
                Some(obj)
            }
            other => {
                p.at(path, format!("expected an object, found {}", type_name(other)));
                None
            }
        }
    }

    fn check_case_duplicates(&self, p: &mut Problems) {
        let keys: Vec<&String> = self.map.keys().collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[..i] {
                if a.eq_ignore_ascii_case(b) {
                    p.push(
                        Problem::new(join(&self.path, a), format!("duplicate key: \"{a}\" and \"{b}\" name the same field"))
                            .hint("keys are matched case-insensitively; keep one of them"),
                    );
                }
            }
        }
    }

    /// The value under `key` (any case) and its path; `null` counts as absent.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<(&'a Value, String)> {
        self.known.push(key);
        let (k, v) = self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))?;
        if v.is_null() {
            return None;
        }
        Some((v, join(&self.path, k)))
    }

    pub(crate) fn string(&mut self, p: &mut Problems, key: &'static str) -> Option<String> {
        let (v, path) = self.get(key)?;
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                p.at(&path, format!("expected a string, found {}", type_name(other)));
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, p: &mut Problems, key: &'static str) -> Option<bool> {
        let (v, path) = self.get(key)?;
        match v {
            Value::Bool(b) => Some(*b),
            // The Azure CLI and ARM accept "true"/"false" strings for booleans.
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                p.at(&path, format!("expected true or false, found {}", type_name(other)));
                None
            }
        }
    }

    /// A non-negative number of seconds (fractions allowed), within `max`.
    pub(crate) fn seconds(&mut self, p: &mut Problems, key: &'static str, max: f64) -> Option<std::time::Duration> {
        let (v, path) = self.get(key)?;
        match v.as_f64() {
            Some(s) if (0.0..=max).contains(&s) => Some(std::time::Duration::from_secs_f64(s)),
            Some(s) => {
                p.at(&path, format!("{s} is out of range 0-{max} seconds"));
                None
            }
            None => {
                p.at(&path, format!("expected a number of seconds, found {}", type_name(v)));
                None
            }
        }
    }

    /// A whole number within `min..=max`; strings of digits are accepted, as ARM does.
    pub(crate) fn integer(&mut self, p: &mut Problems, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let (v, path) = self.get(key)?;
        integer_value(p, v, &path, min, max)
    }

    pub(crate) fn array(&mut self, p: &mut Problems, key: &'static str) -> Option<(&'a Vec<Value>, String)> {
        let (v, path) = self.get(key)?;
        match v {
            Value::Array(a) => Some((a, path)),
            other => {
                p.at(&path, format!("expected an array, found {}", type_name(other)));
                None
            }
        }
    }

    pub(crate) fn object(&mut self, p: &mut Problems, key: &'static str) -> Option<Obj<'a>> {
        let (v, path) = self.get(key)?;
        Obj::new(p, v, &path)
    }

    /// A string-to-string map whose keys are user data (app setting names), kept as written.
    pub(crate) fn string_map(&mut self, p: &mut Problems, key: &'static str) -> Vec<(String, String)> {
        let Some((v, path)) = self.get(key) else { return Vec::new() };
        let Value::Object(map) = v else {
            p.at(&path, format!("expected an object of names to strings, found {}", type_name(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.clone(), s.clone())),
                // Numbers and booleans are common in hand-written settings; keep their text.
                Value::Number(n) => out.push((k.clone(), n.to_string())),
                Value::Bool(b) => out.push((k.clone(), b.to_string())),
                other => p.at(&join(&path, k), format!("expected a string, found {}", type_name(other))),
            }
        }
        out
    }

    /// Entries of a map-valued field whose keys are user data, with their paths.
    pub(crate) fn entries(&mut self, p: &mut Problems, key: &'static str) -> Vec<(String, &'a Value, String)> {
        let Some((v, path)) = self.get(key) else { return Vec::new() };
        let Value::Object(map) = v else {
            p.at(&path, format!("expected an object, found {}", type_name(v)));
            return Vec::new();
        };
        map.iter().map(|(k, v)| (k.clone(), v, join(&path, k))).collect()
    }

    /// Marks keys as accepted but unused (read-only ARM fields and the like).
    pub(crate) fn ignore(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    /// Reports every key that no accessor asked for.
    pub(crate) fn finish(self, p: &mut Problems) {
        for key in self.map.keys() {
            if self.known.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                continue;
            }
            let mut problem = Problem::new(join(&self.path, key), format!("unknown field \"{key}\""));
            if let Some(near) = did_you_mean(key, &self.known) {
                problem = problem.hint(format!("did you mean \"{near}\"?"));
            } else if !self.known.is_empty() {
                let mut names: Vec<&str> = self.known.clone();
                names.dedup();
                problem = problem.hint(format!("known fields here: {}", names.join(", ")));
            }
            p.push(problem);
        }
    }
}

/// The closest known name, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (*k, strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase())))
        .filter(|(k, d)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

pub(crate) fn integer_value(p: &mut Problems, v: &Value, path: &str, min: u64, max: u64) -> Option<u64> {
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|_| u64::MAX)),
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) if s.trim().parse::<i64>().is_ok() => Some(u64::MAX),
            Err(_) => {
                p.at(path, format!("expected a whole number, found \"{s}\""));
                return None;
            }
        },
        other => {
            p.at(path, format!("expected a whole number, found {}", type_name(other)));
            return None;
        }
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            p.at(path, format!("{v} is out of range {min}-{max}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_odd_keys() {
        assert_eq!(join("$", "image"), "$.image");
        assert_eq!(join("$", "my key"), "$[\"my key\"]");
        assert_eq!(join("$", "0a"), "$[\"0a\"]");
        assert_eq!(index("$.a", 3), "$.a[3]");
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(did_you_mean("imgae", &["image", "isMain"]), Some("image"));
        assert_eq!(did_you_mean("targetport", &["targetPort"]), Some("targetPort"));
        assert_eq!(did_you_mean("colour", &["image", "isMain"]), None);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_all_reported() {
        let v = serde_json::json!({"Image": 3, "isMian": true, "targetPort": "x"});
        let mut p = Problems::default();
        let mut o = Obj::new(&mut p, &v, "$").unwrap();
        assert_eq!(o.string(&mut p, "image"), None);
        assert_eq!(o.boolean(&mut p, "isMain"), None);
        assert_eq!(o.integer(&mut p, "targetPort", 1, 65535), None);
        o.finish(&mut p);
        let paths: Vec<_> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["$.Image", "$.targetPort", "$.isMian"]);
        assert_eq!(p.0[2].hint.as_deref(), Some("did you mean \"isMain\"?"));
    }
}
