//! Sets `STRATA_REVISION` to the git commit being built, for `strata_build_info`. Never
//! fails the build: without git or a repository (a source tarball) the revision is
//! `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=STRATA_REVISION={}",
        revision.as_deref().unwrap_or("unknown")
    );
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    // Only files that exist are watched, since a missing one would rerun this every build.
    let mut watched = vec!["build.rs".to_owned()];
    if revision.is_some() {
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        let paths = ["HEAD", "packed-refs"]
            .into_iter()
            .map(str::to_owned)
            .chain(branch);
        watched.extend(paths.filter_map(|path| git(&["rev-parse", "--git-path", &path])));
    }
    for path in watched.iter().filter(|path| Path::new(path).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}
