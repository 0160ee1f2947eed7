//! Shared helpers for end-to-end tests: run the real `itinera` binary on a temporary data
//! directory. Servers listen on port 0 and the test reads the address they announce, so no port
//! is picked, released and bound again.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_itinera"))
}

/// Generated worlds are dated absolutely (2024 onwards): commands run here accept timestamps up
/// to a century ahead, so that no test depends on today's date.
pub const MAX_FUTURE_HOURS: &str = "876000";

/// Runs `itinera ARGS` to completion and returns stdout; panics with stderr on failure.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("ITINERA_LOG", "warn")
        .env("ITINERA_MAX_FUTURE_HOURS", MAX_FUTURE_HOURS)
        .output()
        .expect("itinera runs");
    assert!(
        out.status.success(),
        "itinera {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `itinera ARGS`, expects it to fail, and returns stderr.
pub fn run_fails(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("ITINERA_LOG", "warn")
        .env("ITINERA_MAX_FUTURE_HOURS", MAX_FUTURE_HOURS)
        .output()
        .expect("itinera runs");
    assert!(!out.status.success(), "itinera {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

pub struct Keys {
    pub write_key: String,
    pub read_token: String,
    /// A token of the edit scope (`itinera keys create --scope edit`).
    pub edit_token: String,
}

pub fn create_keys(data: &Path, project: &str) -> Keys {
    let out = run(&[
        "keys",
        "create",
        "--data",
        data.to_str().unwrap(),
        "--project",
        project,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let edit: serde_json::Value = serde_json::from_str(&run(&[
        "keys",
        "create",
        "--data",
        data.to_str().unwrap(),
        "--project",
        project,
        "--scope",
        "edit",
        "--format",
        "json",
    ]))
    .unwrap();
    Keys {
        write_key: v["write_key"].as_str().unwrap().into(),
        read_token: v["read_token"].as_str().unwrap().into(),
        edit_token: edit["token"].as_str().unwrap().into(),
    }
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data: PathBuf,
}

impl Server {
    pub fn start(data: &Path, extra_env: &[(&str, &str)]) -> Server {
        Server::start_with(data, &[], extra_env)
    }

    /// `itinera serve` on port 0; returns once it has announced the address it listens on.
    pub fn start_with(data: &Path, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra_args)
        .env("ITINERA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("server starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("the server announces its address");
        let addr = line
            .strip_prefix("Itinera is running at http://")
            .and_then(|rest| rest.trim().strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        // keep reading so that the server never blocks on a full pipe
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Server {
            child,
            port,
            data: data.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe_sigterm(self.child.id());
        let status = self.child.wait().unwrap();
        status.code()
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every stored message of a project, via `itinera export`.
pub fn export(data: &Path, project: &str) -> Vec<serde_json::Value> {
    let out = tempfile::NamedTempFile::new().unwrap();
    run(&[
        "export",
        "--data",
        data.to_str().unwrap(),
        "--project",
        project,
        out.path().to_str().unwrap(),
    ]);
    std::fs::read_to_string(out.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client
        .post(url)
        .basic_auth(key, Some(""))
        .json(body)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// GET `url` with a read token; the JSON answer.
pub fn get_json(client: &reqwest::blocking::Client, url: &str, token: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .expect("request")
        .json()
        .expect("json answer")
}

/// Requests a sink received: (lower-case headers, body).
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// One HTTP request read off `stream`: its lower-case headers and its body; None when the
/// connection ended before a whole request (a sender killed while sending).
pub fn read_request(stream: &std::net::TcpStream) -> Option<(Vec<(String, String)>, String)> {
    use std::io::Read;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse().unwrap();
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((headers, String::from_utf8(body).unwrap()))
}

/// A webhook receiver on loopback: answers 500 to its first `fail_first` requests and 200
/// afterwards, and keeps every request.
pub fn sink(fail_first: usize) -> (String, Received) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Default::default();
    let got2 = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // a connection cut before a whole request (a sender killed) is not a request
            let Some(request) = read_request(&stream) else {
                continue;
            };
            let n = {
                let mut g = got2.lock().unwrap();
                g.push(request);
                g.len()
            };
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

/// The value of header `name` (lower case) in a received request.
pub fn header<'a>(request: &'a (Vec<(String, String)>, String), name: &str) -> Option<&'a str> {
    request
        .0
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A minimal SMTP server on loopback that keeps every message it is given.
pub fn smtp_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            write!(stream, "220 sink ESMTP\r\n").unwrap();
            let mut data: Option<String> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(d) = &mut data {
                    if line == ".\r\n" {
                        got2.lock().unwrap().push(std::mem::take(d));
                        data = None;
                        write!(stream, "250 queued\r\n").unwrap();
                    } else {
                        d.push_str(&line);
                    }
                    continue;
                }
                let cmd = line.to_ascii_uppercase();
                let reply = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    "250 sink\r\n"
                } else if cmd.starts_with("DATA") {
                    data = Some(String::new());
                    "354 go ahead\r\n"
                } else if cmd.starts_with("QUIT") {
                    write!(stream, "221 bye\r\n").unwrap();
                    break;
                } else {
                    "250 ok\r\n"
                };
                write!(stream, "{reply}").unwrap();
            }
        }
    });
    (port, got)
}
