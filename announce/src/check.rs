//! The health checks: a DNS query to the local server, an HTTP GET expecting a status, or a
//! TCP connect. Each returns whether it passed and a reason for logs and the published health.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::config::Check;

/// Runs `check` once within `timeout`.
pub async fn run(check: &Check, timeout: Duration, http: &reqwest::Client) -> (bool, String) {
    match tokio::time::timeout(timeout, run_inner(check, http)).await {
        Ok(Ok(reason)) => (true, reason),
        Ok(Err(reason)) => (false, reason),
        Err(_) => (
            false,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
    }
}

async fn run_inner(check: &Check, http: &reqwest::Client) -> Result<String, String> {
    match check {
        Check::Tcp { addr } => tokio::net::TcpStream::connect(addr)
            .await
            .map(|_| format!("tcp {addr} connected"))
            .map_err(|e| format!("tcp {addr}: {e}")),
        Check::Http { url, status } => {
            let resp = http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let got = resp.status().as_u16();
            if got == *status {
                Ok(format!("GET {url}: {got}"))
            } else {
                Err(format!("GET {url}: {got}, want {status}"))
            }
        }
        Check::Dns {
            server,
            name,
            qtype,
        } => {
            let rtype: RecordType = qtype
                .parse()
                .map_err(|_| format!("{qtype} is not a record type"))?;
            let qname = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
            let id = (std::process::id() as u16) ^ 0x5a5a;
            let mut m = Message::new(id, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(qname, rtype));
            let packet = m.to_vec().map_err(|e| e.to_string())?;
            let bind = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|e| e.to_string())?;
            sock.connect(server)
                .await
                .map_err(|e| format!("dns {server}: {e}"))?;
            sock.send(&packet)
                .await
                .map_err(|e| format!("dns {server}: {e}"))?;
            let mut buf = vec![0u8; 4096];
            loop {
                let n = sock
                    .recv(&mut buf)
                    .await
                    .map_err(|e| format!("dns {server}: {e}"))?;
                let Ok(r) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if r.metadata.id != id {
                    continue;
                }
                let rcode = r.metadata.response_code;
                return if rcode == ResponseCode::NoError && !r.answers.is_empty() {
                    Ok(format!("dns {name} {qtype}: {} answer(s)", r.answers.len()))
                } else {
                    Err(format!(
                        "dns {name} {qtype}: {rcode:?} with {} answer(s)",
                        r.answers.len()
                    ))
                };
            }
        }
    }
}
