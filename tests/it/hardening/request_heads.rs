//! Request heads: at most 32 KiB (`MAX_HEAD_BYTES`), on the TLS port and on
//! the plain-HTTP probe port alike; past it, 431 and the connection closes.

use super::*;

/// A `GET /healthz` whose head is `size` bytes long, padded by a header.
fn head_of(size: usize) -> Vec<u8> {
    let start = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: ";
    let end = "\r\n\r\n";
    let mut head = start.as_bytes().to_vec();
    head.resize(size - end.len(), b'p');
    head.extend_from_slice(end.as_bytes());
    assert_eq!(head.len(), size);
    head
}

/// What the server answers to `head`, on a fresh connection from `connect`.
async fn answer<S, F>(connect: impl Fn() -> F, head: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: Future<Output = S>,
{
    let mut stream = connect().await;
    // The server may answer and close before the whole head is written.
    let _ = stream.write_all(head).await;
    let (answer, _) = read_until_closed_or_answered(&mut stream).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until an answer's status line arrived or the peer closed.
async fn read_until_closed_or_answered<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    loop {
        let mut chunk = [0_u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "no answer within 5 s: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return (received, Instant::now()),
            Ok(Ok(n)) => {
                received.extend_from_slice(&chunk[..n]);
                if received.windows(4).any(|window| window == b"\r\n\r\n") {
                    return (received, Instant::now());
                }
            }
        }
    }
}

fn assert_cap(under: &str, over: &str, port: &str) {
    assert!(
        under.starts_with("HTTP/1.1 200"),
        "{port}, 16 KiB head: {under}"
    );
    assert!(
        over.starts_with("HTTP/1.1 431"),
        "{port}, 40 KiB head: {over}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_heads_over_32_kib_get_431_on_both_ports() {
    let (under, over) = (head_of(16 * 1024), head_of(40 * 1024));
    assert!(under.len() < server::MAX_HEAD_BYTES && over.len() > server::MAX_HEAD_BYTES);
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    let connect = || tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]);
    assert_cap(
        &answer(connect, &under).await,
        &answer(connect, &over).await,
        "TLS port",
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let probes = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server::serve_plain(
        listener,
        server::probe_app(running.state.clone()),
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let connect = || async move {
        tokio::net::TcpStream::connect(probes)
            .await
            .expect("connect")
    };
    assert_cap(
        &answer(connect, &under).await,
        &answer(connect, &over).await,
        "probe port",
    );
    let _ = stop.send(());
    served.await.expect("probe server");
    running.stop().await;
}
