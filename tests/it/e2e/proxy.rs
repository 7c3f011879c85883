//! A TCP proxy between `virt-sizer serve` and the apiserver, so a test can
//! make the apiserver look hung to virt-sizer alone (connections stay open,
//! nothing is forwarded, as when its process is stopped) or slow (bytes
//! from the apiserver trickle at a set rate per connection), while the
//! apiserver itself keeps calling the webhook.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::control_plane::ControlPlane;

/// How the proxy forwards, changed while it runs.
#[derive(Debug, Default)]
struct Control {
    /// Nothing is forwarded while set.
    frozen: AtomicBool,
    /// Bytes per second from the apiserver, per connection (0: no limit).
    rate: AtomicU64,
}

/// A running proxy; it stops with the test's runtime.
pub(crate) struct Proxy {
    control: Arc<Control>,
    /// `https://127.0.0.1:PORT`, the address virt-sizer is given.
    pub(crate) server: String,
}

impl Proxy {
    /// A proxy to `plane`'s apiserver.
    pub(crate) async fn start(plane: &ControlPlane) -> Proxy {
        let upstream = plane
            .server
            .strip_prefix("https://")
            .expect("an https URL")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let control = Arc::new(Control::default());
        let shared = control.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (control, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pipe(client_read, server_write, control.clone(), false));
                    pipe(server_read, client_write, control, true).await;
                });
            }
        });
        Proxy {
            control,
            server: format!("https://127.0.0.1:{port}"),
        }
    }

    /// Stops forwarding, keeping every connection open.
    pub(crate) fn freeze(&self) {
        self.control.frozen.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub(crate) fn thaw(&self) {
        self.control.frozen.store(false, Ordering::SeqCst);
    }

    /// Limits what the apiserver sends to `bytes_per_second` per connection
    /// (0: no limit).
    pub(crate) fn throttle(&self, bytes_per_second: u64) {
        self.control.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// A copy of `plane`'s admin kubeconfig, written in `dir`, that goes
    /// through the proxy.
    pub(crate) fn kubeconfig(&self, plane: &ControlPlane, dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(&plane.kubeconfig).expect("kubeconfig");
        assert!(text.contains(&plane.server));
        let path = dir.join("proxied-kubeconfig.yaml");
        std::fs::write(&path, text.replace(&plane.server, &self.server)).expect("write");
        path
    }
}

/// Copies `from` to `to`, holding bytes while frozen and pacing them when
/// `from_server` and a rate is set.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: Arc<Control>,
    from_server: bool,
) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        while control.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rate = control.rate.load(Ordering::SeqCst);
        if from_server && rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(read as f64 / rate as f64)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
