//! The release path end to end on loopback: `install/package.sh` packs the built bridge, a local
//! HTTP server stands in for the GitHub release, `install/install.sh` downloads, verifies and
//! installs it, and the installed binary runs. A tampered checksum or a missing archive must
//! abort and leave nothing installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::common::temp_dir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The triple `install.sh` picks on this machine.
fn host_target() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "x86_64-unknown-linux-musl",
        ("linux", "aarch64") => "aarch64-unknown-linux-musl",
        ("macos", "x86_64") => "x86_64-apple-darwin",
        ("macos", "aarch64") => "aarch64-apple-darwin",
        other => panic!("no release target for {other:?}"),
    }
}

fn sh(script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run sh")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Serves the files of a directory at `/<name>` on a loopback port.
async fn serve_dir(dir: PathBuf) -> String {
    async fn file(State(dir): State<PathBuf>, UrlPath(name): UrlPath<String>) -> impl IntoResponse {
        if name.contains('/') || name.starts_with('.') {
            return Err(StatusCode::NOT_FOUND);
        }
        tokio::fs::read(dir.join(name))
            .await
            .map_err(|_| StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(file))
        .with_state(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_bridge_installs_from_a_mirror_and_a_bad_checksum_aborts() {
    let root = temp_dir("installer");
    let bin_dir = root.join("bin");
    let dist = root.join("dist");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_mcp-chat-bridge"),
        bin_dir.join("mcp-chat-bridge"),
    )
    .unwrap();

    // Pack as the release workflow does.
    let target = host_target();
    let package = repo_root().join("install/package.sh");
    let out = sh(
        &package,
        &[target, bin_dir.to_str().unwrap(), dist.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let archive = format!("mcp-chat-bridge-{target}.tar.gz");
    assert!(dist.join(&archive).is_file(), "{}", text(&out));
    let checksum = std::fs::read_to_string(dist.join(format!("{archive}.sha256"))).unwrap();
    assert_eq!(checksum, {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(std::fs::read(dist.join(&archive)).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}  {archive}\n")
    });

    let base = serve_dir(dist.clone()).await;
    let install = repo_root().join("install/install.sh");
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run_installer = |to: &Path, base: &str| {
        sh(
            &install,
            &["--to", to.to_str().unwrap(), "--yes"],
            &[
                ("HOME", home.to_str().unwrap()),
                ("MCP_CHAT_DOWNLOAD_URL", base),
            ],
        )
    };

    // Blocking calls below run on this worker; the file server runs on the other one.
    let good = root.join("good");
    let out = run_installer(&good, &base);
    assert!(out.status.success(), "{}", text(&out));
    let installed = good.join("mcp-chat-bridge");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("mcp-chat-bridge {}", env!("CARGO_PKG_VERSION"))
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("install --client"), "{}", text(&out));

    // A checksum that does not match: abort, nothing installed.
    std::fs::write(
        dist.join(format!("{archive}.sha256")),
        format!("{}  {archive}\n", "0".repeat(64)),
    )
    .unwrap();
    let tampered = root.join("tampered");
    let out = run_installer(&tampered, &base);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("checksum"),
        "{}",
        text(&out)
    );
    assert_no_files(&tampered);

    // An existing install is not replaced by a tampered download either.
    let before = std::fs::read(&installed).unwrap();
    let out = run_installer(&good, &base);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&installed).unwrap(), before);
    assert_eq!(std::fs::read_dir(&good).unwrap().count(), 1);

    // A mirror without the archive.
    let missing = root.join("missing");
    let out = run_installer(&missing, &format!("{base}/nothing-here"));
    assert!(!out.status.success(), "{}", text(&out));
    assert_no_files(&missing);

    let _ = std::fs::remove_dir_all(&root);
}

fn assert_no_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let names: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        assert!(
            names.is_empty(),
            "left behind in {}: {names:?}",
            dir.display()
        );
    }
}
