//! HTTP/2 flow control: the windows the server grants bound the request
//! data a stream and a connection can hold unread (docs/server.md: 64 KiB a
//! stream, 256 KiB a connection, 32 streams, a 32 KiB head).

use super::*;
use std::collections::BTreeMap;

/// One HTTP/2 frame: type, flags, stream, payload.
struct H2Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn read_frame<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> H2Frame {
    let mut head = [0_u8; 9];
    stream.read_exact(&mut head).await.expect("a frame header");
    let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; length];
    stream
        .read_exact(&mut payload)
        .await
        .expect("a frame payload");
    H2Frame {
        kind: head[3],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_windows_streams_and_head_are_small() {
    const SETTINGS: u8 = 0x4;
    const WINDOW_UPDATE: u8 = 0x8;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    // RFC 9113 §6.9.2: every window starts at 65,535 until changed.
    const DEFAULT_WINDOW: u32 = 65_535;
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[b"h2"]).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.expect("write");
    let mut settings: Option<BTreeMap<u16, u32>> = None;
    let mut connection_window: Option<u32> = None;
    tokio::time::timeout(Duration::from_secs(5), async {
        while settings.is_none() || connection_window.is_none() {
            let frame = read_frame(&mut stream).await;
            match frame.kind {
                SETTINGS if !frame.payload.is_empty() => {
                    settings = Some(
                        frame
                            .payload
                            .chunks_exact(6)
                            .map(|entry| {
                                (
                                    u16::from_be_bytes([entry[0], entry[1]]),
                                    u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                                )
                            })
                            .collect(),
                    );
                }
                WINDOW_UPDATE if frame.stream == 0 => {
                    let increment =
                        u32::from_be_bytes(frame.payload[..4].try_into().expect("4 bytes"))
                            & 0x7fff_ffff;
                    connection_window = Some(DEFAULT_WINDOW + increment);
                }
                _ => {}
            }
        }
    })
    .await
    .expect("SETTINGS and a connection WINDOW_UPDATE");
    let settings = settings.expect("settings");
    assert_eq!(
        settings.get(&INITIAL_WINDOW_SIZE),
        Some(&(64 * 1024)),
        "{settings:?}"
    );
    assert_eq!(connection_window, Some(256 * 1024));
    assert_eq!(
        settings.get(&MAX_CONCURRENT_STREAMS),
        Some(&32),
        "{settings:?}"
    );
    assert_eq!(
        settings.get(&MAX_HEADER_LIST_SIZE),
        Some(&(32 * 1024)),
        "{settings:?}"
    );
    assert_eq!(server::MAX_HEAD_BYTES, 32 * 1024);
    drop(stream);
    running.stop().await;
}
