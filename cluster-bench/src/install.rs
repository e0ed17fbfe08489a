//! Starting the throwaway cluster on a fresh machine: when `redis-server` is missing, the
//! bench installs it with `scripts/install-redis.sh` (as `scripts/test.sh` does) and tries
//! once more.

use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;
use test_cluster::{Cluster, ClusterSpec, HarnessError, INSTALL_HINT};

/// `scripts/install-redis.sh` of the workspace this bench was built from.
pub fn script_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("install-redis.sh");
    // Without the `..`, for the messages; as is if it is not there.
    path.canonicalize().unwrap_or(path)
}

/// Starts a cluster; if the servers are missing, installs them and starts it again.
/// The bar is hidden while the installer writes to the terminal.
pub fn start_cluster(spec: ClusterSpec, bar: &ProgressBar) -> Result<Cluster, String> {
    start_or_install(
        || Cluster::start(spec.clone()),
        || bar.suspend(|| run_installer(&script_path())),
    )
}

/// `start`, and on [`HarnessError::MissingServer`] `install` then `start` once more.
fn start_or_install<T>(
    mut start: impl FnMut() -> Result<T, HarnessError>,
    install: impl FnOnce() -> Result<(), String>,
) -> Result<T, String> {
    match start() {
        Err(HarnessError::MissingServer) => {
            install()?;
            start().map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

/// Runs the install script, saying so on stderr; its failure carries the harness's hint.
fn run_installer(script: &Path) -> Result<(), String> {
    eprintln!(
        "cluster-bench: redis-server is missing; installing it with {}",
        script.display()
    );
    if !script.is_file() {
        return Err(format!("{} not found; {INSTALL_HINT}", script.display()));
    }
    // Through bash, so a lost executable bit does not matter.
    match Command::new("bash").arg(script).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "{} failed ({status}); {INSTALL_HINT}",
            script.display()
        )),
        Err(e) => Err(format!(
            "could not run {}: {e}; {INSTALL_HINT}",
            script.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn finds_the_workspace_install_script() {
        let script = script_path();
        assert!(script.is_file(), "{} is missing", script.display());
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.contains("apt-get install"), "not the installer");
    }

    #[test]
    fn installs_and_retries_once_when_the_server_is_missing() {
        let starts = Cell::new(0);
        let installs = Cell::new(0);
        let r = start_or_install(
            || {
                starts.set(starts.get() + 1);
                if starts.get() == 1 {
                    Err(HarnessError::MissingServer)
                } else {
                    Ok(7)
                }
            },
            || {
                installs.set(installs.get() + 1);
                Ok(())
            },
        );
        assert_eq!(r, Ok(7));
        assert_eq!((starts.get(), installs.get()), (2, 1));
    }

    #[test]
    fn retries_only_once_and_other_errors_do_not_install() {
        let starts = Cell::new(0);
        let r: Result<(), String> = start_or_install(
            || {
                starts.set(starts.get() + 1);
                Err(HarnessError::MissingServer)
            },
            || Ok(()),
        );
        assert_eq!(r, Err(INSTALL_HINT.to_string()));
        assert_eq!(starts.get(), 2);

        let r: Result<(), String> = start_or_install(
            || Err(HarnessError::State("boom".into())),
            || panic!("installed for an unrelated error"),
        );
        assert_eq!(r, Err("boom".to_string()));
    }

    #[test]
    fn a_failed_install_gives_the_hint_and_no_retry() {
        let starts = Cell::new(0);
        let r: Result<(), String> = start_or_install(
            || {
                starts.set(starts.get() + 1);
                Err(HarnessError::MissingServer)
            },
            || run_installer(Path::new("/nonexistent/install-redis.sh")),
        );
        assert!(r.unwrap_err().contains(INSTALL_HINT));
        assert_eq!(starts.get(), 1);

        // A script that fails, like the real one without root.
        let dir =
            std::env::temp_dir().join(format!("cluster-bench-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("install-redis.sh");
        std::fs::write(&script, "echo 'needs root' >&2\nexit 1\n").unwrap();
        let r = run_installer(&script);
        let _ = std::fs::remove_dir_all(&dir);
        let e = r.unwrap_err();
        assert!(e.contains("failed") && e.contains(INSTALL_HINT), "{e}");
    }
}
