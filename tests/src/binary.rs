//! Which `swarmd` the harness spawns. Tests never build it: `cargo nextest
//! run` builds it first (the `build-swarmd` setup script in
//! `.config/nextest.toml` runs `scripts/build-swarmd.sh`, which hands the
//! binary over in `SWARMD_BIN`), and a binary that is missing or older than
//! its sources is an error that says how to build it, never a silent fallback
//! to whatever binary happens to be there.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};

/// The `swarmd` binary to test.
///
/// `$SWARMD_BIN` when set, used as is: the nextest setup script sets it to the
/// binary it built for this run, and a user sets it to test another binary.
/// Otherwise `swarmd` in the target directory of the running executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/swarmd`), which must
/// exist and be at least as new as every source file cargo built it from.
pub fn swarmd_binary() -> Result<PathBuf> {
    built_binary("swarmd", "SWARMD_BIN", "swarm-node")
}

/// The `swarmctl` binary to test (the MCP server's tests spawn it), found as
/// [`swarmd_binary`] finds `swarmd`: `$SWARMCTL_BIN`, set by the same setup
/// script, or `swarmctl` beside the test executable's target directory.
pub fn swarmctl_binary() -> Result<PathBuf> {
    built_binary("swarmctl", "SWARMCTL_BIN", "swarm-cli")
}

/// Binary `name` of `package`: `$var` when set, else the one in the target
/// directory, refused when missing or stale.
fn built_binary(name: &str, var: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{var} is {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locate the test executable")?;
    let profile_dir = profile_dir_of(&exe)?;
    let binary = profile_dir.join(name);
    let how = how_to_build(&profile_dir, package, name);
    if !binary.is_file() {
        bail!("{name} at {} is missing: {how}", binary.display());
    }
    if let Some(source) = newer_source(&binary)? {
        bail!(
            "{name} at {} is older than {}: {how}",
            binary.display(),
            relative_to_workspace(&source).display()
        );
    }
    Ok(binary)
}

/// The cargo artifact directory (`target/<profile>`) an executable was built
/// into: its own directory, or the parent of `deps/` for a test executable.
fn profile_dir_of(exe: &Path) -> Result<PathBuf> {
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable {} has no parent directory", exe.display()))?;
    Ok(match dir.parent() {
        Some(parent) if dir.file_name().is_some_and(|n| n == "deps") => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

/// The remedy for a missing or stale binary `name` of `package` in
/// `profile_dir`.
fn how_to_build(profile_dir: &Path, package: &str, name: &str) -> String {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".to_owned(),
        Some(other) => format!(" --profile {other}"),
    };
    format!(
        "build it with `cargo build{profile} -p {package} --bin {name}` or run the tests with \
         `cargo nextest run --workspace`, which builds it first"
    )
}

/// The newest source file that is newer than `binary`, if any, judged by the
/// dep-info file cargo writes beside every binary it builds (`swarmd.d`). That
/// file lists every file of every workspace crate that went into the binary,
/// build-script inputs (`proto/`) included, so no list of crates here can
/// fall behind the dependency graph, and a file cargo would not rebuild for
/// never makes the binary stale.
fn newer_source(binary: &Path) -> Result<Option<PathBuf>> {
    let built = modified(binary)?;
    let dep_info = binary.with_extension("d");
    let text = std::fs::read_to_string(&dep_info).with_context(|| {
        format!(
            "read {}, the list of sources {} was built from",
            dep_info.display(),
            binary.display()
        )
    })?;
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in dep_info_sources(&text) {
        let at = match modified(&source) {
            Ok(at) if at <= built => continue,
            Ok(at) => at,
            // A source that is gone has changed since the build as surely as
            // one that was edited: cargo rebuilds for both.
            Err(_) => SystemTime::UNIX_EPOCH,
        };
        if newest.as_ref().is_none_or(|(n, _)| at > *n) {
            newest = Some((at, source));
        }
    }
    Ok(newest.map(|(_, source)| source))
}

fn modified(path: &Path) -> Result<SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("read the modification time of {}", path.display()))
}

/// The prerequisites of a Makefile-style dep-info file (`target: a.rs b.rs`,
/// a space in a path escaped as `\ `).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, prerequisites)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = prerequisites.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' | '\t' => {
                    if !current.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            sources.push(PathBuf::from(current));
        }
    }
    sources
}

/// `path` relative to the workspace root when it is inside it, for messages.
fn relative_to_workspace(path: &Path) -> &Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    path.strip_prefix(root).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fs::File;
    use std::time::Duration;

    use super::*;

    #[test]
    fn dep_info_lists_every_prerequisite_and_unescapes_spaces() {
        let text = "/t/debug/swarmd: /w/a.rs /w/sp\\ ace/b.rs\n\n/w/a.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            vec![PathBuf::from("/w/a.rs"), PathBuf::from("/w/sp ace/b.rs")]
        );
    }

    #[test]
    fn test_executables_live_in_deps_and_binaries_beside_it() {
        let dir = Path::new("/t/debug");
        assert_eq!(profile_dir_of(&dir.join("deps/cluster-1234")).unwrap(), dir);
        assert_eq!(profile_dir_of(&dir.join("swarm-chaos")).unwrap(), dir);
    }

    #[test]
    fn the_remedy_builds_with_the_profile_of_the_tests() {
        let how = |dir: &str| how_to_build(Path::new(dir), "swarm-node", "swarmd");
        assert!(how("/t/debug").contains("`cargo build -p swarm-node --bin swarmd"));
        assert!(how("/t/release").contains("`cargo build --release -p"));
        assert!(how("/t/ci").contains("`cargo build --profile ci -p"));
    }

    fn touch(path: &Path, at: SystemTime) {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn a_binary_is_stale_when_a_listed_source_is_newer_or_gone() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("swarmd");
        let (old, new) = (dir.path().join("old.rs"), dir.path().join("new.rs"));
        let unlisted = dir.path().join("unlisted.rs");
        let t0 = SystemTime::now() - Duration::from_secs(60);
        touch(&old, t0);
        touch(&binary, t0 + Duration::from_secs(1));
        touch(&new, t0 + Duration::from_secs(2));
        touch(&unlisted, t0 + Duration::from_secs(3));

        let list = |sources: &[&Path]| {
            let names: Vec<_> = sources.iter().map(|s| s.display().to_string()).collect();
            let line = format!("{}: {}\n", binary.display(), names.join(" "));
            std::fs::write(binary.with_extension("d"), line).unwrap();
        };
        list(&[&old]);
        assert_eq!(newer_source(&binary).unwrap(), None);
        list(&[&old, &new]);
        assert_eq!(newer_source(&binary).unwrap(), Some(new.clone()));
        let gone = dir.path().join("gone.rs");
        list(&[&old, &gone]);
        assert_eq!(newer_source(&binary).unwrap(), Some(gone));

        std::fs::remove_file(binary.with_extension("d")).unwrap();
        let err = newer_source(&binary).unwrap_err();
        assert!(format!("{err:#}").contains("swarmd.d"), "{err:#}");
    }
}
