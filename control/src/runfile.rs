//! The run file: `up` writes where its admin API listens under the stack's storage root
//! (`<storageRoot>/sitecar.run.json`) and removes it when it stops, so `status`, `logs`,
//! `reload`, `restart` and `down` find the running stack without being told its address.

use std::path::{Path, PathBuf};

/// Its name under the storage root.
pub const NAME: &str = "sitecar.run.json";

/// The file of a stack whose spec lives in `base_dir`.
pub fn path(base_dir: &Path, storage_root: &Path) -> PathBuf {
    crate::storage::absolute(base_dir, storage_root).join(NAME)
}

/// The pid of a sitecar still running this stack, from its run file (a run file whose process is
/// gone is what a killed sitecar left: not a running stack).
pub fn running(run: &Path) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run).ok()?).ok()?;
    let pid = u32::try_from(v["pid"].as_u64()?).ok()?;
    let alive = pid != std::process::id() && std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("sitecar"));
    alive.then_some(pid)
}

/// Removes the run file when dropped (the end of `up`, however it ends).
pub struct RunFile(PathBuf);

impl RunFile {
    pub fn write(path: PathBuf, admin: std::net::SocketAddr, spec: Option<&Path>, site: &str) -> std::io::Result<Self> {
        let doc = serde_json::json!({
            "pid": std::process::id(),
            "admin": admin.to_string(),
            "spec": spec.map(|s| s.display().to_string()),
            "site": site,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, format!("{doc:#}\n"))?;
        Ok(Self(path))
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the admin API of the stack a command means listens, and how that was found:
/// `--admin`, else the run file of `-f SPEC` (read with `options`; or its `admin.listen`), else
/// the run file under `./.sitecar`, else the default address.
pub fn locate(admin: Option<&str>, file: Option<&Path>, options: &sitecar_config::LoadOptions) -> Result<(String, String), String> {
    if let Some(a) = admin {
        return Ok((a.to_owned(), "--admin".into()));
    }
    if let Some(file) = file {
        let base = file.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
        let spec = match sitecar_config::load_file(file, options) {
            Ok(spec) => spec,
            // One that needs what `up` was given (parameters, --main): the default storage root.
            Err(e) => {
                let run = base.join(".sitecar").join(NAME);
                return read(&run).map(|a| (a, run.display().to_string())).ok_or_else(|| format!("{}: {e}", file.display()));
            }
        };
        let run = path(&base, &spec.local.storage_root);
        return Ok(match read(&run) {
            Some(a) => (a, run.display().to_string()),
            None => (spec.admin.listen.to_string(), format!("admin.listen of {} (no {} there: is it up?)", file.display(), run.display())),
        });
    }
    let run = PathBuf::from(".sitecar").join(NAME);
    Ok(match read(&run) {
        Some(a) => (a, run.display().to_string()),
        None => ("127.0.0.1:9901".into(), "the default address (no run file under ./.sitecar; give -f SPEC or --admin)".into()),
    })
}

fn read(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["admin"].as_str().map(str::to_owned)
}
