//! The gateway: Debian's nginx, unmodified, with its X509-SVID in files that
//! `signet-agent helper` keeps current and a SIGHUP to nginx after every rotation.
//!
//! nginx runs as a child process in the foreground (`daemon off`) with a configuration, pid
//! file, logs and temporary directories of its own in the scenario's directory, never as the
//! system service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signet_e2e::Agent;
use signet_e2e::process::Process;
use signet_e2e::wait::{self, START_TIMEOUT};
use tokio::process::Command;

use crate::ORDERS_DNS_NAME;

/// Directories searched for the nginx executable after `$PATH`, since `/usr/sbin` is often
/// missing from the path of unprivileged users.
const NGINX_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin"];

/// Time nginx gets to stop its workers when a gateway is dropped without [`Gateway::stop`].
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running gateway: nginx and the helper that feeds it certificates.
#[derive(Debug)]
pub struct Gateway {
    address: SocketAddr,
    pid_file: PathBuf,
    stopped: bool,
    nginx: Process,
    helper: Process,
}

/// The gateway's directory, which contains all of its files.
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
}

// === impl Gateway ===

impl Gateway {
    /// Writes the gateway's SVID files, starts nginx on `address` proxying to `orders`, then
    /// starts the helper in daemon mode so that rotations reach nginx.
    ///
    /// # Errors
    ///
    /// When the agent serves the gateway no SVID in time, or nginx or the helper fail to start.
    pub async fn start(
        nginx: &Path,
        signet_agent: &Path,
        agent: &Agent,
        dir: &Path,
        address: SocketAddr,
        orders: SocketAddr,
    ) -> anyhow::Result<Self> {
        let layout = Layout::create(dir)?;
        write_svid_files(signet_agent, agent, &layout).await?;

        std::fs::write(layout.config(), config(&layout, address, orders))
            .context("writing nginx.conf failed")?;
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&layout.dir)
            .arg("-e")
            .arg(layout.dir.join("error.log"))
            .arg("-c")
            .arg(layout.config());
        let mut nginx = Process::spawn("nginx", command, &layout.dir.join("nginx.log"))?;
        wait_accepting(&mut nginx, address).await?;

        let mut command = helper_command(signet_agent, agent, &layout);
        command
            .arg("--pid-file-name")
            .arg(layout.pid_file())
            .args(["--renew-signal", "SIGHUP"]);
        let helper = match Process::spawn(
            "signet-agent helper",
            command,
            &layout.dir.join("helper.log"),
        ) {
            Ok(helper) => helper,
            Err(error) => {
                // A killed nginx master would leave its workers running, so stop it properly.
                if let Err(stop_error) = nginx.stop().await {
                    tracing::warn!(error = format!("{stop_error:#}"), "Failed to stop nginx");
                }
                return Err(error);
            }
        };
        Ok(Self {
            address,
            pid_file: layout.pid_file(),
            stopped: false,
            nginx,
            helper,
        })
    }

    /// Returns the address nginx listens on.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the helper, then nginx with SIGTERM, which makes its master stop the workers.
    ///
    /// # Errors
    ///
    /// When either does not exit in time.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.helper.stop().await?;
        self.nginx.stop().await?;
        self.stopped = true;
        Ok(())
    }
}

impl Drop for Gateway {
    /// Sends nginx SIGTERM and waits up to 5 s for it to exit when [`Gateway::stop`] did not run,
    /// as after an error or a panic. The processes are killed with SIGKILL on drop, which would
    /// leave nginx's workers running, since only the master stops them.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 0)
        else {
            return;
        };
        if kill(Pid::from_raw(pid), Signal::SIGTERM).is_err() {
            return;
        }
        // nginx removes its pid file once the workers are gone.
        let deadline = Instant::now() + DROP_STOP_TIMEOUT;
        while self.pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// === impl Layout ===

impl Layout {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("gateway");
        std::fs::create_dir_all(dir.join("tmp"))
            .with_context(|| format!("creating {} failed", dir.display()))?;
        Ok(Self { dir })
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("nginx.pid")
    }
}

/// Returns the path of Debian's nginx.
///
/// # Errors
///
/// When nginx is not installed, telling how to install it.
pub fn locate() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(NGINX_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("nginx");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("nginx not found in $PATH or {NGINX_DIRS:?}: install it with `apt-get install nginx`")
}

/// Waits until `process` accepts TCP connections on `address`.
///
/// # Errors
///
/// When the process exits first or does not accept within the start bound.
pub async fn wait_accepting(process: &mut Process, address: SocketAddr) -> anyhow::Result<()> {
    let address = address.to_string();
    process
        .wait_ready("accepting connections", || {
            let address = address.clone();
            async move { wait::tcp_accepts(&address).await }
        })
        .await
}

/// Runs the helper once until it has written the gateway's files: the agent may not serve the
/// gateway's entry yet, and nginx cannot start without them.
async fn write_svid_files(
    signet_agent: &Path,
    agent: &Agent,
    layout: &Layout,
) -> anyhow::Result<()> {
    wait::eventually("the gateway's X509-SVID files", START_TIMEOUT, || async {
        let output = helper_command(signet_agent, agent, layout)
            .arg("--one-shot")
            .output()
            .await
            .context("running signet-agent helper failed")?;
        if !output.status.success() {
            bail!(
                "signet-agent helper --one-shot failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    })
    .await
}

fn helper_command(signet_agent: &Path, agent: &Agent, layout: &Layout) -> Command {
    let mut command = Command::new(signet_agent);
    command
        .arg("helper")
        .arg("--socket-path")
        .arg(agent.socket_path())
        .arg("--cert-dir")
        .arg(layout.cert_dir());
    command
}

/// Returns nginx.conf: TLS for clients with the gateway's SVID, and mutual TLS to orders with
/// the same SVID as client certificate, verifying orders' certificate against the bundle and
/// its DNS name.
fn config(layout: &Layout, address: SocketAddr, orders: SocketAddr) -> String {
    let dir = layout.dir.display();
    let certs = layout.cert_dir();
    let certs = certs.display();
    let pid = layout.pid_file();
    let pid = pid.display();
    format!(
        r"# Generated by the zero-trust-gateway example.
daemon off;
pid {pid};
worker_processes 1;
error_log {dir}/error.log notice;

events {{
    worker_connections 64;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    server {{
        # Clients reach the gateway over TLS; the certificate is the gateway's X509-SVID.
        listen {address} ssl;
        ssl_certificate {certs}/svid.pem;
        ssl_certificate_key {certs}/svid_key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;

        location /orders/ {{
            proxy_pass https://{orders};

            # Mutual TLS to orders: the gateway's SVID is the client certificate, and orders'
            # certificate must chain to the trust bundle and carry orders' DNS name.
            proxy_ssl_certificate {certs}/svid.pem;
            proxy_ssl_certificate_key {certs}/svid_key.pem;
            proxy_ssl_trusted_certificate {certs}/svid_bundle.pem;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name {ORDERS_DNS_NAME};
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;

            # The client's JWT-SVID goes to orders unchanged.
            proxy_set_header Authorization $http_authorization;
            proxy_set_header Host {ORDERS_DNS_NAME};
        }}
    }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_verifies_orders() {
        let layout = Layout {
            dir: PathBuf::from("/tmp/scenario/gateway"),
        };
        let address: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let orders: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let config = config(&layout, address, orders);

        for directive in [
            "daemon off;",
            "pid /tmp/scenario/gateway/nginx.pid;",
            "listen 127.0.0.1:8443 ssl;",
            "proxy_pass https://127.0.0.1:9443;",
            "proxy_ssl_verify on;",
            "proxy_ssl_name orders.example.org;",
            "proxy_ssl_certificate /tmp/scenario/gateway/certs/svid.pem;",
            "proxy_ssl_trusted_certificate /tmp/scenario/gateway/certs/svid_bundle.pem;",
            "proxy_set_header Authorization $http_authorization;",
        ] {
            assert!(
                config.contains(directive),
                "missing {directive:?} in\n{config}"
            );
        }
        // Every file argument (pid, logs, temporary directories, certificates) is in the
        // gateway's directory; `location` takes a URI path, not a file.
        let files = config
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let directive = words.next()?;
                let argument = words.next()?;
                (directive != "location" && argument.starts_with('/')).then_some(argument)
            })
            .collect::<Vec<_>>();
        assert!(files.len() >= 10, "{files:?}");
        for file in files {
            assert!(
                file.starts_with("/tmp/scenario/gateway/"),
                "file outside the gateway directory: {file}"
            );
        }
    }
}
