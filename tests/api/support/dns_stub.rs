//! A DNS server stub on loopback that shows whether update messages are sent concurrently,
//! without timing anything: it holds the first `hold` messages unanswered until all `hold` of
//! them have arrived, then answers them, and every later message at once. A client that sent
//! its messages one after another never gets the first answer, so it runs into its own timeout
//! (an error the test can tell from the stub's answer); one that sent them together gets the
//! answers.
//!
//! Every answer is `REFUSED`, unsigned: what BIND sends for a zone without an update policy
//! (tests/api/support/bind.rs, `readonly.example.com`), which the gateway reports as the
//! server's answer (`DnsError::Rejected`) without a TSIG signature to verify (see
//! `send_one` in src/dns/client.rs). The stub cannot sign a valid answer: that needs the
//! request's MAC in the response's TSIG (RFC 8945 §5.3), which is BIND's job in the other tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use tokio::net::UdpSocket;

/// One message the stub received: the zone (the question's name, RFC 2136 §2.3) and its
/// update RRs in text (`vs-a.lab.example.com. 300 IN A 10.20.0.2`).
#[derive(Debug, Clone)]
pub struct Received {
    pub zone: String,
    pub updates: Vec<String>,
    /// How many messages were waiting for an answer when this one arrived (itself included).
    pub waiting: usize,
}

pub struct DnsStub {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsStub {
    pub async fn start(hold: usize) -> DnsStub {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = socket.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut held: Vec<(Message, SocketAddr)> = Vec::new();
            let mut released = false;
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(msg) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let zone = msg
                    .queries
                    .first()
                    .map(|q| q.name().to_string())
                    .unwrap_or_default();
                let updates = msg.authorities.iter().map(|r| r.to_string()).collect();
                held.push((msg, from));
                log.lock().expect("log").push(Received {
                    zone,
                    updates,
                    waiting: held.len(),
                });
                if released || held.len() >= hold {
                    released = true;
                    for (m, to) in held.drain(..) {
                        let mut answer = Message::error_msg(
                            m.metadata.id,
                            m.metadata.op_code,
                            ResponseCode::Refused,
                        );
                        for q in &m.queries {
                            answer.add_query(q.clone());
                        }
                        if let Ok(bytes) = answer.to_vec() {
                            let _ = socket.send_to(&bytes, to).await;
                        }
                    }
                }
            }
        });
        DnsStub {
            addr,
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}
