//! Storage as App Service lays it out: a shared home (unless `WEBSITES_ENABLE_APP_SERVICE_STORAGE`
//! is false), `LogFiles` inside it (always kept), and one directory per `volumeSubPath`, shared by
//! every container naming the same subpath.

use std::path::{Path, PathBuf};

use sitecar_config::{Container, Spec};

use crate::error::Error;

/// Directories of one stack, all under the storage root.
#[derive(Debug, Clone)]
pub struct Storage {
    pub root: PathBuf,
    pub shared_home: bool,
}

impl Storage {
    /// Creates the root, the home, `LogFiles` and every volume directory of the spec.
    pub fn prepare(spec: &Spec, base: &Path) -> Result<Self, Error> {
        let root = absolute(base, &spec.local.storage_root);
        let storage = Self { root, shared_home: spec.platform.app_service_storage };
        create(&storage.log_dir())?;
        for c in &spec.containers {
            create(&storage.home(c))?;
            for m in &c.volume_mounts {
                create(&storage.volume(&m.volume_sub_path))?;
            }
        }
        Ok(storage)
    }

    /// `HOME` of a container: the shared home, or a private one when storage is off.
    pub fn home(&self, c: &Container) -> PathBuf {
        if self.shared_home {
            self.root.join("home")
        } else {
            self.root.join("private").join(&c.name)
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("home").join("LogFiles")
    }

    /// The directory behind a `volumeSubPath` (validation has ruled out `..`).
    pub fn volume(&self, sub_path: &str) -> PathBuf {
        self.root.join("volumes").join(sub_path.trim_matches('/'))
    }
}

/// `p` made absolute against `base`.
pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn create(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Storage { path: path.to_owned(), source })
}
