//! Sockets are bounded: idle and slow clients are closed after the header timeout, a full server
//! still answers `/healthz` (and `503` to the rest), and it serves again once they are gone.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn idle_and_slow_connections_are_closed_and_a_full_server_still_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let keys = create_keys(dir.path(), "default");
    let s = Server::start(
        dir.path(),
        &[
            ("ITINERA_MAX_CONNECTIONS", "6"),
            ("ITINERA_HEADER_TIMEOUT_SECONDS", "1"),
        ],
    );
    let addr = format!("127.0.0.1:{}", s.port);
    // five idle sockets and one slowloris that never finishes its headers fill the server
    let mut held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    held.push(slow);
    std::thread::sleep(Duration::from_millis(200));
    let c = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = c.get(s.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200, "health answers at the limit");
    let (status, _) = post(
        &c,
        &s.url("/v1/track"),
        &keys.write_key,
        &json!({"userId": "u", "event": "e"}),
    );
    assert_eq!(status, 503, "the rest is refused at the limit");

    // the server closes every one of them after the header timeout
    for mut sock in held {
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        // end of stream, or an error answer before it: closed either way
        if let Err(e) = sock.read(&mut buf) {
            panic!("still open after {:?}: {e}", started.elapsed());
        }
    }
    let (status, body) = post(
        &c,
        &s.url("/v1/track"),
        &keys.write_key,
        &json!({"userId": "u", "event": "e"}),
    );
    assert_eq!(status, 200, "serving again: {body}");
}
