//! Raw-bytes MQTT 3.1.1 / 5.0 conformance tests against the real `tern` binary.
//!
//! Every packet here is written by hand so the exact bytes the broker sends back
//! (CONNACK return codes, DISCONNECT reason codes, SUBACK codes, packet flags)
//! can be asserted. Every read is bounded by a socket read timeout.
//!
//! Spec statement numbers in test names: `mqtt_X_Y_Z_N` = [MQTT-X.Y.Z-N]
//! (MQTT 5.0 numbering unless the test name says `v3`/`v4`, which refers to
//! MQTT 3.1.1).

mod common;

use common::Tern;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default bound for "the broker answers".
const WAIT: Duration = Duration::from_secs(5);
/// How long we listen to conclude that nothing (more) is coming.
const QUIET: Duration = Duration::from_millis(600);

// ---------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------

/// Variable Byte Integer (remaining length / property lengths).
fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Two-byte length prefixed bytes (UTF-8 string or binary data).
fn str16(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Fixed header byte + remaining length + body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A v5 property block: length then properties.
fn props_block(props: &[u8]) -> Vec<u8> {
    let mut out = varint(props.len());
    out.extend_from_slice(props);
    out
}

fn p_u8(id: u8, v: u8) -> Vec<u8> {
    vec![id, v]
}
fn p_u16(id: u8, v: u16) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(v.to_be_bytes());
    out
}
fn p_u32(id: u8, v: u32) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(v.to_be_bytes());
    out
}
fn p_var(id: u8, v: usize) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(varint(v));
    out
}

/// CONNECT with an arbitrary protocol level; `props` is only written for level 5.
fn connect_level(
    level: u8,
    client_id: &[u8],
    clean: bool,
    keepalive: u16,
    props: &[u8],
) -> Vec<u8> {
    let mut body = str16(b"MQTT");
    body.push(level);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend(keepalive.to_be_bytes());
    if level == 5 {
        body.extend(props_block(props));
    }
    body.extend(str16(client_id));
    packet(0x10, &body)
}

fn connect_v4(client_id: &str, clean: bool, keepalive: u16) -> Vec<u8> {
    connect_level(4, client_id.as_bytes(), clean, keepalive, &[])
}

fn connect_v5(client_id: &str, clean: bool, keepalive: u16, props: &[u8]) -> Vec<u8> {
    connect_level(5, client_id.as_bytes(), clean, keepalive, props)
}

/// PUBLISH. `props = None` writes a v3.1.1 packet, `Some(p)` a v5 packet.
/// `pid` is written only when `Some`, independent of the QoS bits, so
/// malformed packets can be built.
fn publish_raw(
    first: u8,
    topic: &[u8],
    pid: Option<u16>,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = str16(topic);
    if let Some(pid) = pid {
        body.extend(pid.to_be_bytes());
    }
    if let Some(p) = props {
        body.extend(props_block(p));
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// Well-formed PUBLISH.
fn publish(v5: bool, qos: u8, retain: bool, topic: &str, pid: u16, payload: &[u8]) -> Vec<u8> {
    let first = 0x30 | (qos << 1) | u8::from(retain);
    let pid = (qos > 0).then_some(pid);
    publish_raw(first, topic.as_bytes(), pid, v5.then_some(&[][..]), payload)
}

/// SUBSCRIBE with the given first byte (normally 0x82).
fn subscribe_raw(first: u8, v5: bool, pid: u16, props: &[u8], filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.extend(props_block(props));
    }
    for (f, opts) in filters {
        body.extend(str16(f));
        body.push(*opts);
    }
    packet(first, &body)
}

fn subscribe(v5: bool, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let f: Vec<(&[u8], u8)> = filters.iter().map(|(f, q)| (f.as_bytes(), *q)).collect();
    subscribe_raw(0x82, v5, pid, &[], &f)
}

fn unsubscribe(v5: bool, pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend(str16(f.as_bytes()));
    }
    packet(0xA2, &body)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP with reason code omitted (valid in both versions).
fn ack(first: u8, pid: u16) -> Vec<u8> {
    packet(first, &pid.to_be_bytes())
}
const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBREL: u8 = 0x62;
const PUBCOMP: u8 = 0x70;
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const DISCONNECT: [u8; 2] = [0xE0, 0x00];

// ---------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Pkt {
    first: u8,
    body: Vec<u8>,
}

impl Pkt {
    fn kind(&self) -> u8 {
        self.first >> 4
    }
    fn bytes(&self) -> Vec<u8> {
        packet(self.first, &self.body)
    }
}

#[derive(Debug)]
enum ReadResult {
    Pkt(Pkt),
    Closed,
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
enum PV {
    Byte(u8),
    U16(u16),
    U32(u32),
    Var(usize),
    Str(Vec<u8>),
    Pair(Vec<u8>, Vec<u8>),
}

fn read_varint(b: &[u8], pos: &mut usize) -> usize {
    let mut mult = 1usize;
    let mut v = 0usize;
    loop {
        let byte = b[*pos];
        *pos += 1;
        v += (byte & 0x7F) as usize * mult;
        if byte & 0x80 == 0 {
            return v;
        }
        mult *= 128;
    }
}

fn read_u16(b: &[u8], pos: &mut usize) -> u16 {
    let v = u16::from_be_bytes([b[*pos], b[*pos + 1]]);
    *pos += 2;
    v
}

fn read_str(b: &[u8], pos: &mut usize) -> Vec<u8> {
    let n = read_u16(b, pos) as usize;
    let s = b[*pos..*pos + n].to_vec();
    *pos += n;
    s
}

/// Parses a property block starting at `pos` (length included); advances `pos`.
fn parse_props(b: &[u8], pos: &mut usize) -> Vec<(u8, PV)> {
    let len = read_varint(b, pos);
    let end = *pos + len;
    let mut out = Vec::new();
    while *pos < end {
        let id = b[*pos];
        *pos += 1;
        let v = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                *pos += 1;
                PV::Byte(b[*pos - 1])
            }
            0x13 | 0x21 | 0x22 | 0x23 => PV::U16(read_u16(b, pos)),
            0x02 | 0x11 | 0x18 | 0x27 => {
                let v = u32::from_be_bytes([b[*pos], b[*pos + 1], b[*pos + 2], b[*pos + 3]]);
                *pos += 4;
                PV::U32(v)
            }
            0x0B => PV::Var(read_varint(b, pos)),
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                PV::Str(read_str(b, pos))
            }
            0x26 => {
                let k = read_str(b, pos);
                let v = read_str(b, pos);
                PV::Pair(k, v)
            }
            other => panic!("unknown property id 0x{other:02X} in {b:02X?}"),
        };
        out.push((id, v));
    }
    assert_eq!(*pos, end, "property block length mismatch");
    out
}

fn prop(props: &[(u8, PV)], id: u8) -> Option<PV> {
    props.iter().find(|(i, _)| *i == id).map(|(_, v)| v.clone())
}

#[derive(Debug)]
struct Connack {
    session_present: bool,
    code: u8,
    props: Vec<(u8, PV)>,
}

fn parse_connack(p: &Pkt, v5: bool) -> Connack {
    assert_eq!(p.first, 0x20, "expected CONNACK, got {:02X?}", p.bytes());
    assert!(p.body.len() >= 2, "short CONNACK {:02X?}", p.bytes());
    assert_eq!(p.body[0] & 0xFE, 0, "CONNACK reserved flag bits set");
    let mut props = Vec::new();
    if v5 && p.body.len() > 2 {
        let mut pos = 2;
        props = parse_props(&p.body, &mut pos);
        assert_eq!(pos, p.body.len());
    } else if !v5 {
        assert_eq!(
            p.body.len(),
            2,
            "v3.1.1 CONNACK must have remaining length 2"
        );
    }
    Connack {
        session_present: p.body[0] & 1 == 1,
        code: p.body[1],
        props,
    }
}

#[derive(Debug)]
struct Pub {
    dup: bool,
    qos: u8,
    retain: bool,
    topic: Vec<u8>,
    pid: Option<u16>,
    props: Vec<(u8, PV)>,
    payload: Vec<u8>,
}

fn parse_publish(p: &Pkt, v5: bool) -> Pub {
    assert_eq!(p.kind(), 3, "expected PUBLISH, got {:02X?}", p.bytes());
    let qos = (p.first >> 1) & 3;
    let mut pos = 0;
    let topic = read_str(&p.body, &mut pos);
    let pid = (qos > 0).then(|| read_u16(&p.body, &mut pos));
    let props = if v5 {
        parse_props(&p.body, &mut pos)
    } else {
        Vec::new()
    };
    Pub {
        dup: p.first & 0x08 != 0,
        qos,
        retain: p.first & 1 != 0,
        topic,
        pid,
        props,
        payload: p.body[pos..].to_vec(),
    }
}

/// Return codes of a SUBACK (after the packet id and, for v5, the properties).
fn suback_codes(p: &Pkt, v5: bool, pid: u16) -> Vec<u8> {
    assert_eq!(p.first, 0x90, "expected SUBACK, got {:02X?}", p.bytes());
    let mut pos = 0;
    assert_eq!(read_u16(&p.body, &mut pos), pid, "SUBACK packet id");
    if v5 {
        parse_props(&p.body, &mut pos);
    }
    p.body[pos..].to_vec()
}

/// Reason code of a v5 PUBACK/PUBREC/PUBREL/PUBCOMP/DISCONNECT-like ack (0 when omitted).
fn ack_reason(p: &Pkt, pid: u16) -> u8 {
    let mut pos = 0;
    assert_eq!(
        read_u16(&p.body, &mut pos),
        pid,
        "ack packet id in {:02X?}",
        p.bytes()
    );
    p.body.get(2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Connection helper
// ---------------------------------------------------------------------------

struct Conn {
    s: TcpStream,
    v5: bool,
}

impl Conn {
    fn open(addr: SocketAddr, v5: bool) -> Conn {
        let s = TcpStream::connect_timeout(&addr, WAIT).expect("tcp connect");
        s.set_nodelay(true).ok();
        s.set_write_timeout(Some(WAIT)).ok();
        Conn { s, v5 }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to broker");
    }

    /// Write that may fail because the broker already closed the connection.
    fn try_send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// Reads exactly `buf.len()` bytes before `deadline`.
    fn fill(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), ReadResult> {
        let mut got = 0;
        while got < buf.len() {
            let now = Instant::now();
            if now >= deadline {
                if got == 0 {
                    return Err(ReadResult::Timeout);
                }
                panic!(
                    "partial packet: timed out after {got} of {} bytes",
                    buf.len()
                );
            }
            self.s.set_read_timeout(Some(deadline - now)).unwrap();
            match self.s.read(&mut buf[got..]) {
                Ok(0) => {
                    if got == 0 {
                        return Err(ReadResult::Closed);
                    }
                    panic!("connection closed inside a packet after {got} bytes");
                }
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Err(ReadResult::Closed);
                }
                Err(e) => panic!("read error: {e}"),
            }
        }
        Ok(())
    }

    fn read(&mut self, within: Duration) -> ReadResult {
        let deadline = Instant::now() + within;
        let mut first = [0u8; 1];
        if let Err(r) = self.fill(&mut first, deadline) {
            return r;
        }
        // Remaining length: a packet has started, so allow WAIT more for the rest.
        let deadline = deadline.max(Instant::now() + WAIT);
        let mut len = 0usize;
        let mut mult = 1usize;
        for i in 0..4 {
            let mut b = [0u8; 1];
            if self.fill(&mut b, deadline).is_err() {
                panic!("connection ended inside a fixed header");
            }
            len += (b[0] & 0x7F) as usize * mult;
            mult *= 128;
            if b[0] & 0x80 == 0 {
                break;
            }
            assert!(i < 3, "broker sent a remaining length longer than 4 bytes");
        }
        let mut body = vec![0u8; len];
        if self.fill(&mut body, deadline).is_err() {
            panic!("connection ended inside a packet body");
        }
        ReadResult::Pkt(Pkt {
            first: first[0],
            body,
        })
    }

    /// Next packet; panics on close or timeout.
    fn recv(&mut self) -> Pkt {
        match self.read(WAIT) {
            ReadResult::Pkt(p) => p,
            other => panic!("expected a packet from the broker, got {other:?}"),
        }
    }

    /// Next packet, skipping PINGRESPs.
    fn recv_publish(&mut self) -> Pub {
        loop {
            let p = self.recv();
            if p.first == 0xD0 {
                continue;
            }
            return parse_publish(&p, self.v5);
        }
    }

    /// Asserts that the broker closes the connection within `within` without sending anything.
    fn expect_closed(&mut self, within: Duration) {
        match self.read(within) {
            ReadResult::Closed => {}
            ReadResult::Pkt(p) => panic!(
                "expected the connection to be closed, got packet {:02X?}",
                p.bytes()
            ),
            ReadResult::Timeout => {
                panic!("expected the connection to be closed within {within:?}, it stayed open")
            }
        }
    }

    /// Asserts a v5 DISCONNECT with `code` followed by the connection closing.
    fn expect_disconnect(&mut self, codes: &[u8]) {
        let p = match self.read(WAIT) {
            ReadResult::Pkt(p) => p,
            other => panic!("expected DISCONNECT with reason {codes:02X?}, got {other:?}"),
        };
        assert_eq!(
            p.first,
            0xE0,
            "expected DISCONNECT with reason {codes:02X?}, got {:02X?}",
            p.bytes()
        );
        let code = p.body.first().copied().unwrap_or(0);
        assert!(
            codes.contains(&code),
            "DISCONNECT reason code 0x{code:02X}, expected one of {codes:02X?} (packet {:02X?})",
            p.bytes()
        );
        if p.body.len() > 1 {
            let mut pos = 1;
            parse_props(&p.body, &mut pos);
        }
        self.expect_closed(WAIT);
    }

    /// Asserts nothing but PINGRESP arrives for `d`.
    fn expect_quiet(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.read(deadline - now) {
                ReadResult::Timeout => return,
                ReadResult::Pkt(p) if p.first == 0xD0 => continue,
                ReadResult::Pkt(p) => panic!("expected nothing, got packet {:02X?}", p.bytes()),
                ReadResult::Closed => panic!("expected nothing, but the connection was closed"),
            }
        }
    }

    fn connect(&mut self, bytes: &[u8]) -> Connack {
        self.send(bytes);
        let p = self.recv();
        parse_connack(&p, self.v5)
    }

    fn subscribe(&mut self, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let v5 = self.v5;
        self.send(&subscribe(v5, pid, filters));
        let p = self.recv();
        suback_codes(&p, v5, pid)
    }

    /// QoS 0 publish.
    fn pub0(&mut self, topic: &str, payload: &[u8]) {
        let v5 = self.v5;
        self.send(&publish(v5, 0, false, topic, 0, payload));
    }

    /// QoS 1 publish, waits for the PUBACK.
    fn pub1(&mut self, topic: &str, pid: u16, payload: &[u8]) -> u8 {
        let v5 = self.v5;
        self.send(&publish(v5, 1, false, topic, pid, payload));
        let p = self.recv();
        assert_eq!(p.first, 0x40, "expected PUBACK, got {:02X?}", p.bytes());
        ack_reason(&p, pid)
    }

    /// QoS 2 publish with the full PUBREC/PUBREL/PUBCOMP exchange.
    fn pub2(&mut self, topic: &str, pid: u16, payload: &[u8]) {
        let v5 = self.v5;
        self.send(&publish(v5, 2, false, topic, pid, payload));
        let p = self.recv();
        assert_eq!(p.first, 0x50, "expected PUBREC, got {:02X?}", p.bytes());
        assert!(ack_reason(&p, pid) < 0x80);
        self.send(&ack(PUBREL, pid));
        let p = self.recv();
        assert_eq!(p.first, 0x70, "expected PUBCOMP, got {:02X?}", p.bytes());
        assert_eq!(ack_reason(&p, pid), 0);
    }

    /// Sends DISCONNECT and waits (up to 2 s) for the broker to close; the broker
    /// SHOULD close [MQTT-3.14.4], so staying open is tolerated here.
    fn disconnect(mut self) {
        self.send(&DISCONNECT);
        match self.read(Duration::from_secs(2)) {
            ReadResult::Closed | ReadResult::Timeout => {}
            ReadResult::Pkt(p) => panic!("unexpected packet after DISCONNECT: {:02X?}", p.bytes()),
        }
        let _ = self.s.shutdown(Shutdown::Both);
    }

    fn drop_abruptly(self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}

/// Connected v3.1.1 client with clean session.
fn v4_client(t: &Tern, id: &str) -> Conn {
    let mut c = Conn::open(t.mqtt, false);
    let ack = c.connect(&connect_v4(id, true, 60));
    assert_eq!(ack.code, 0, "CONNACK return code for {id}");
    c
}

/// Connected v5 client with clean start and the given CONNECT properties.
fn v5_client(t: &Tern, id: &str, props: &[u8]) -> (Conn, Connack) {
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5(id, true, 60, props));
    assert_eq!(ack.code, 0, "CONNACK reason code for {id}: {ack:?}");
    (c, ack)
}

// ---------------------------------------------------------------------------
// Sanity: exact bytes of the basic exchanges
// ---------------------------------------------------------------------------

#[test]
fn v4_basic_exchange_exact_bytes() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_v4("basic", true, 60));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x00], "CONNACK");

    c.send(&subscribe(false, 1, &[("b/t", 1)]));
    assert_eq!(c.recv().bytes(), [0x90, 0x03, 0x00, 0x01, 0x01], "SUBACK");

    c.send(&PINGREQ);
    assert_eq!(c.recv().bytes(), [0xD0, 0x00], "PINGRESP");

    // Publish to ourselves at QoS 1: PUBACK and the delivery may come in either order.
    c.send(&publish(false, 1, false, "b/t", 7, b"hi"));
    let mut got_ack = false;
    let mut got_pub = None;
    for _ in 0..2 {
        let p = c.recv();
        if p.first == 0x40 {
            assert_eq!(p.bytes(), [0x40, 0x02, 0x00, 0x07], "PUBACK");
            got_ack = true;
        } else {
            got_pub = Some(parse_publish(&p, false));
        }
    }
    assert!(got_ack);
    let p = got_pub.expect("delivery");
    assert_eq!((p.qos, p.dup, p.retain), (1, false, false));
    assert_eq!(p.topic, b"b/t");
    assert_eq!(p.payload, b"hi");
    let pid = p.pid.unwrap();
    assert_ne!(pid, 0);
    c.send(&ack(PUBACK, pid));

    c.send(&unsubscribe(false, 2, &["b/t"]));
    assert_eq!(c.recv().bytes(), [0xB0, 0x02, 0x00, 0x02], "UNSUBACK");
    c.pub0("b/t", b"after");
    c.expect_quiet(QUIET);

    c.send(&DISCONNECT);
    c.expect_closed(WAIT);
}

#[test]
fn v5_basic_exchange() {
    let t = Tern::start(&[]);
    let (mut c, ack) = v5_client(&t, "basic5", &[]);
    assert!(!ack.session_present);
    let codes = c.subscribe(1, &[("b/t", 2)]);
    assert_eq!(codes, [2]);
    c.send(&PINGREQ);
    assert_eq!(c.recv().bytes(), [0xD0, 0x00], "PINGRESP");
    c.pub0("b/t", b"x");
    let p = c.recv_publish();
    assert_eq!(
        (p.qos, p.topic.as_slice(), p.payload.as_slice()),
        (0, &b"b/t"[..], &b"x"[..])
    );
    c.send(&unsubscribe(true, 2, &["b/t"]));
    let p = c.recv();
    assert_eq!(p.first, 0xB0);
    let mut pos = 0;
    assert_eq!(read_u16(&p.body, &mut pos), 2);
    parse_props(&p.body, &mut pos);
    assert_eq!(&p.body[pos..], [0x00], "UNSUBACK reason code success");
    c.send(&DISCONNECT);
    c.expect_closed(WAIT);
}

// ---------------------------------------------------------------------------
// Malformed packets
// ---------------------------------------------------------------------------

/// Remaining length with 5 continuation bytes: [MQTT-2.2.3] (v5 §1.5.5 / v3 §2.2.3)
#[test]
fn mqtt_1_5_5_remaining_length_over_four_bytes_v4_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "rl4");
    c.try_send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    c.expect_closed(WAIT);
}

#[test]
fn mqtt_1_5_5_remaining_length_over_four_bytes_v5_malformed_0x81() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "rl5", &[]);
    c.try_send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    c.expect_disconnect(&[0x81]);
}

/// A remaining length of 5 bytes before any CONNECT: closed.
#[test]
fn mqtt_1_5_5_remaining_length_over_four_bytes_before_connect_closes() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    c.try_send(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    c.expect_closed(WAIT);
}

/// SUBSCRIBE fixed header flags must be 0010 [MQTT-3.8.1-1] (v3.1.1: close).
#[test]
fn mqtt_v3_3_8_1_1_subscribe_reserved_flags_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "sf4");
    c.try_send(&subscribe_raw(0x80, false, 1, &[], &[(b"a/b", 0)]));
    c.expect_closed(WAIT);
}

/// v5 §2.1.3: invalid flags are a Malformed Packet → DISCONNECT 0x81.
#[test]
fn mqtt_3_8_1_1_subscribe_reserved_flags_malformed_0x81() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "sf5", &[]);
    c.try_send(&subscribe_raw(0x80, true, 1, &[], &[(b"a/b", 0)]));
    c.expect_disconnect(&[0x81]);
}

/// PUBLISH with both QoS bits set [MQTT-3.3.1-4].
#[test]
fn mqtt_v3_3_3_1_4_publish_qos3_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "q3v4");
    c.try_send(&publish_raw(0x36, b"a/b", Some(1), None, b"x"));
    c.expect_closed(WAIT);
}

#[test]
fn mqtt_3_3_1_4_publish_qos3_malformed_0x81() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "q3v5", &[]);
    c.try_send(&publish_raw(0x36, b"a/b", Some(1), Some(&[]), b"x"));
    c.expect_disconnect(&[0x81]);
}

/// Ill-formed UTF-8 in a topic name [MQTT-1.5.3-1] (v3.1.1: close).
#[test]
fn mqtt_v3_1_5_3_1_invalid_utf8_topic_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "u4");
    c.try_send(&publish_raw(
        0x30,
        &[b'a', b'/', 0xC3, 0x28],
        None,
        None,
        b"x",
    ));
    c.expect_closed(WAIT);
}

/// Ill-formed UTF-8 in v5 is a Malformed Packet → 0x81.
#[test]
fn mqtt_1_5_4_1_invalid_utf8_topic_malformed_0x81() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "u5", &[]);
    c.try_send(&publish_raw(
        0x30,
        &[b'a', b'/', 0xFF],
        None,
        Some(&[]),
        b"x",
    ));
    c.expect_disconnect(&[0x81]);
}

/// U+0000 in a topic name is not allowed [MQTT-1.5.4-2].
#[test]
fn mqtt_1_5_4_2_null_character_in_topic_malformed_0x81() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "nul5", &[]);
    c.try_send(&publish_raw(0x30, b"a/\0b", None, Some(&[]), b"x"));
    c.expect_disconnect(&[0x81]);
}

/// Wildcards in a PUBLISH topic [MQTT-3.3.2-2] (v3.1.1: close).
#[test]
fn mqtt_v3_3_3_2_2_wildcard_in_publish_topic_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "w4");
    c.try_send(&publish(false, 0, false, "a/+/b", 0, b"x"));
    c.expect_closed(WAIT);
}

/// Wildcards in a v5 PUBLISH topic → DISCONNECT 0x90 Topic Name invalid.
#[test]
fn mqtt_3_3_2_2_wildcard_in_publish_topic_0x90() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "w5", &[]);
    c.try_send(&publish(true, 1, false, "a/#", 3, b"x"));
    c.expect_disconnect(&[0x90]);
}

/// QoS > 0 PUBLISH needs a non-zero packet identifier [MQTT-2.2.1-3] (v3.1.1: close).
#[test]
fn mqtt_v3_2_3_1_1_qos1_publish_packet_id_zero_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "pid4");
    c.try_send(&publish_raw(0x32, b"a/b", Some(0), None, b"x"));
    c.expect_closed(WAIT);
}

/// Packet id 0 on a v5 QoS 1 PUBLISH. The spec names no reason code; accept
/// Malformed Packet (0x81) or Protocol Error (0x82).
#[test]
fn mqtt_2_2_1_3_qos1_publish_packet_id_zero_disconnects() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "pid5", &[]);
    c.try_send(&publish_raw(0x32, b"a/b", Some(0), Some(&[]), b"x"));
    c.expect_disconnect(&[0x81, 0x82]);
}

/// v5 §3.3.2.3.2: "It is a Protocol Error to include the Payload Format Indicator more than once."
#[test]
fn mqtt_3_3_2_3_duplicate_publish_property_protocol_error_0x82() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "dupp", &[]);
    let mut props = p_u8(0x01, 0);
    props.extend(p_u8(0x01, 0));
    c.try_send(&publish_raw(0x30, b"a/b", None, Some(&props), b"x"));
    c.expect_disconnect(&[0x82]);
}

/// A second CONNECT is a protocol violation [MQTT-3.1.0-2] (v3.1.1: close).
#[test]
fn mqtt_v3_3_1_0_2_second_connect_closes() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "twice4");
    c.try_send(&connect_v4("twice4", true, 60));
    c.expect_closed(WAIT);
}

#[test]
fn mqtt_3_1_0_2_second_connect_protocol_error_0x82() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "twice5", &[]);
    c.try_send(&connect_v5("twice5", true, 60, &[]));
    c.expect_disconnect(&[0x82]);
}

/// The first packet must be CONNECT [MQTT-3.1.0-1].
#[test]
fn mqtt_3_1_0_1_first_packet_not_connect_closes() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    c.try_send(&PINGREQ);
    c.expect_closed(WAIT);

    let mut c = Conn::open(t.mqtt, false);
    c.try_send(&publish(false, 0, false, "a/b", 0, b"x"));
    c.expect_closed(WAIT);

    let mut c = Conn::open(t.mqtt, false);
    c.try_send(&subscribe(false, 1, &[("a/b", 0)]));
    c.expect_closed(WAIT);
}

/// Unsupported protocol level → CONNACK return code 1 then close [MQTT-3.1.2-2].
#[test]
fn mqtt_v3_3_1_2_2_unknown_protocol_level_7_connack_1() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_level(7, b"lvl7", true, 60, &[]));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x01]);
    c.expect_closed(WAIT);
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// `--packet-bytes-max 1024`: CONNACK advertises Maximum Packet Size and a bigger
/// packet is answered with DISCONNECT 0x95 [v5 §3.2.2.3.6, §4.13].
#[test]
fn mqtt_3_2_2_packet_too_large_v5_0x95() {
    let t = Tern::start(&["--packet-bytes-max", "1024"]);
    let (mut c, ack) = v5_client(&t, "big5", &[]);
    assert_eq!(
        prop(&ack.props, 0x27),
        Some(PV::U32(1024)),
        "CONNACK Maximum Packet Size: {ack:?}"
    );
    c.subscribe(1, &[("big/t", 0)]);
    // Well below the limit: fine.
    c.pub0("big/t", &[b'a'; 900]);
    assert_eq!(c.recv_publish().payload.len(), 900);
    // Above the limit.
    c.try_send(&publish(true, 0, false, "big/t", 0, &[b'b'; 2000]));
    c.expect_disconnect(&[0x95]);
}

#[test]
fn mqtt_v3_packet_too_large_closes() {
    let t = Tern::start(&["--packet-bytes-max", "1024"]);
    let mut c = v4_client(&t, "big4");
    c.subscribe(1, &[("big/t", 0)]);
    c.pub0("big/t", &[b'a'; 900]);
    assert_eq!(c.recv_publish().payload.len(), 900);
    c.try_send(&publish(false, 0, false, "big/t", 0, &[b'b'; 2000]));
    c.expect_closed(WAIT);
}

/// A TCP connection that never sends CONNECT is closed after `--connect-timeout-secs`.
#[test]
fn connect_timeout_closes_silent_connection() {
    let t = Tern::start(&["--connect-timeout-secs", "1"]);
    let mut c = Conn::open(t.mqtt, false);
    let start = Instant::now();
    c.expect_closed(Duration::from_secs(5));
    let e = start.elapsed();
    assert!(e >= Duration::from_millis(500), "closed too early: {e:?}");
}

/// Keep alive 1 s and silence → closed after 1.5 s [MQTT-3.1.2-24] (v3.1.1: close only).
#[test]
fn mqtt_v3_3_1_2_24_keepalive_expired_closes() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    let ack = c.connect(&connect_v4("ka4", true, 1));
    assert_eq!(ack.code, 0);
    let start = Instant::now();
    c.expect_closed(Duration::from_secs(5));
    let e = start.elapsed();
    assert!(
        e >= Duration::from_secs(1),
        "closed before 1.5 × keep alive: {e:?}"
    );
}

/// v5: the server may send DISCONNECT 0x8D (Keep Alive timeout) before closing.
#[test]
fn mqtt_3_1_2_22_keepalive_expired_v5_closes() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5("ka5", true, 1, &[]));
    assert_eq!(ack.code, 0);
    let ska = prop(&ack.props, 0x13);
    assert!(
        ska.is_none() || ska == Some(PV::U16(1)),
        "Server Keep Alive {ska:?} for a 1 s keep alive"
    );
    let start = Instant::now();
    match c.read(Duration::from_secs(5)) {
        ReadResult::Closed => {}
        ReadResult::Pkt(p) => {
            assert_eq!(p.first, 0xE0, "unexpected packet {:02X?}", p.bytes());
            assert_eq!(
                p.body.first().copied(),
                Some(0x8D),
                "DISCONNECT reason {:02X?}",
                p.bytes()
            );
            c.expect_closed(WAIT);
        }
        ReadResult::Timeout => panic!("keep alive not enforced"),
    }
    let e = start.elapsed();
    assert!(
        e >= Duration::from_secs(1),
        "closed before 1.5 × keep alive: {e:?}"
    );
}

/// PINGREQs within the keep alive keep the connection open.
#[test]
fn mqtt_3_1_2_23_pingreq_keeps_connection_alive() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    assert_eq!(c.connect(&connect_v4("ping", true, 1)).code, 0);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        c.send(&PINGREQ);
        assert_eq!(c.recv().bytes(), [0xD0, 0x00]);
    }
}

/// `--keepalive-max-secs 10` and a client asking 60 → Server Keep Alive = 10 [MQTT-3.2.2-21].
#[test]
fn mqtt_3_2_2_21_server_keep_alive_caps_client_keepalive() {
    let t = Tern::start(&["--keepalive-max-secs", "10"]);
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5("ska", true, 60, &[]));
    assert_eq!(ack.code, 0);
    assert_eq!(
        prop(&ack.props, 0x13),
        Some(PV::U16(10)),
        "Server Keep Alive: {ack:?}"
    );
}

/// `--receive-maximum 2`: CONNACK Receive Maximum = 2; a third unacknowledged
/// QoS 2 PUBLISH → DISCONNECT 0x93 [MQTT-3.3.4-9 / v5 §3.3.4].
#[test]
fn mqtt_3_3_4_9_receive_maximum_exceeded_0x93() {
    let t = Tern::start(&["--receive-maximum", "2"]);
    let (mut c, ack) = v5_client(&t, "rmx", &[]);
    assert_eq!(
        prop(&ack.props, 0x21),
        Some(PV::U16(2)),
        "CONNACK Receive Maximum: {ack:?}"
    );
    for pid in 1..=2u16 {
        c.send(&publish(true, 2, false, "rm/t", pid, b"x"));
        let p = c.recv();
        assert_eq!(p.first, 0x50, "PUBREC expected, got {:02X?}", p.bytes());
        assert_eq!(ack_reason(&p, pid) & 0x80, 0);
    }
    c.try_send(&publish(true, 2, false, "rm/t", 3, b"x"));
    c.expect_disconnect(&[0x93]);
}

/// Completing the QoS 2 exchange frees the receive window.
#[test]
fn mqtt_3_3_4_receive_maximum_window_reopens_after_pubcomp() {
    let t = Tern::start(&["--receive-maximum", "2"]);
    let (mut c, _) = v5_client(&t, "rmok", &[]);
    for pid in 1..=10u16 {
        c.pub2("rm/t", pid, b"x");
    }
    c.expect_quiet(Duration::from_millis(200));
}

/// Inbound Topic Alias: `--topic-alias-max 4` advertised; alias 5 → 0x94 [MQTT-3.3.2-9].
#[test]
fn mqtt_3_3_2_9_topic_alias_beyond_maximum_0x94() {
    let t = Tern::start(&["--topic-alias-max", "4"]);
    let (mut c, ack) = v5_client(&t, "ta5", &[]);
    assert_eq!(
        prop(&ack.props, 0x22),
        Some(PV::U16(4)),
        "CONNACK Topic Alias Maximum: {ack:?}"
    );
    c.try_send(&publish_raw(
        0x30,
        b"ta/x",
        None,
        Some(&p_u16(0x23, 5)),
        b"x",
    ));
    c.expect_disconnect(&[0x94]);
}

/// Topic Alias 0 is not permitted [MQTT-3.3.2-8].
#[test]
fn mqtt_3_3_2_8_topic_alias_zero_0x94() {
    let t = Tern::start(&["--topic-alias-max", "4"]);
    let (mut c, _) = v5_client(&t, "ta0", &[]);
    c.try_send(&publish_raw(
        0x30,
        b"ta/x",
        None,
        Some(&p_u16(0x23, 0)),
        b"x",
    ));
    c.expect_disconnect(&[0x94]);
}

/// Inbound aliases within the limit work: the subscriber sees the full topic.
#[test]
fn mqtt_3_3_2_3_4_inbound_topic_alias_resolved() {
    let t = Tern::start(&["--topic-alias-max", "4"]);
    let mut s = v4_client(&t, "tasub");
    s.subscribe(1, &[("ta/#", 0)]);
    let (mut c, _) = v5_client(&t, "tapub", &[]);
    c.send(&publish_raw(
        0x30,
        b"ta/x",
        None,
        Some(&p_u16(0x23, 4)),
        b"one",
    ));
    c.send(&publish_raw(0x30, b"", None, Some(&p_u16(0x23, 4)), b"two"));
    // Re-map alias 4 to another topic.
    c.send(&publish_raw(
        0x30,
        b"ta/y",
        None,
        Some(&p_u16(0x23, 4)),
        b"three",
    ));
    c.send(&publish_raw(
        0x30,
        b"",
        None,
        Some(&p_u16(0x23, 4)),
        b"four",
    ));
    for (topic, payload) in [
        ("ta/x", "one"),
        ("ta/x", "two"),
        ("ta/y", "three"),
        ("ta/y", "four"),
    ] {
        let p = s.recv_publish();
        assert_eq!(String::from_utf8_lossy(&p.topic), topic);
        assert_eq!(String::from_utf8_lossy(&p.payload), payload);
    }
}

/// An empty topic with an alias that was never set is a Protocol Error (v5 §3.3.4).
#[test]
fn mqtt_3_3_4_unknown_topic_alias_protocol_error() {
    let t = Tern::start(&["--topic-alias-max", "4"]);
    let (mut c, _) = v5_client(&t, "taunk", &[]);
    c.try_send(&publish_raw(0x30, b"", None, Some(&p_u16(0x23, 2)), b"x"));
    c.expect_disconnect(&[0x82]);
}

/// `--subscriptions-max 2`: the third filter fails with 0x97 Quota exceeded (v5).
#[test]
fn subscriptions_max_v5_suback_0x97() {
    let t = Tern::start(&["--subscriptions-max", "2"]);
    let (mut c, _) = v5_client(&t, "smax5", &[]);
    assert_eq!(
        c.subscribe(1, &[("s/a", 1), ("s/b", 1), ("s/c", 1)]),
        [1, 1, 0x97]
    );
    // Replacing an existing subscription is not a new one.
    assert_eq!(c.subscribe(2, &[("s/a", 0)]), [0]);
    assert_eq!(c.subscribe(3, &[("s/d", 0)]), [0x97]);
    // Freeing a slot lets a new filter in.
    c.send(&unsubscribe(true, 4, &["s/a"]));
    assert_eq!(c.recv().first, 0xB0);
    assert_eq!(c.subscribe(5, &[("s/d", 1)]), [1]);
}

/// `--subscriptions-max 2`: the third filter fails with 0x80 (v3.1.1).
#[test]
fn subscriptions_max_v4_suback_0x80() {
    let t = Tern::start(&["--subscriptions-max", "2"]);
    let mut c = v4_client(&t, "smax4");
    assert_eq!(
        c.subscribe(1, &[("s/a", 1), ("s/b", 2), ("s/c", 1)]),
        [1, 2, 0x80]
    );
    assert_eq!(c.subscribe(2, &[("s/b", 1)]), [1]);
}

/// Client id longer than `--client-id-bytes-max` → CONNACK 0x85 (v5) then close.
#[test]
fn client_id_too_long_v5_connack_0x85() {
    let t = Tern::start(&["--client-id-bytes-max", "8"]);
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5("123456789", true, 60, &[]));
    assert_eq!(ack.code, 0x85, "{ack:?}");
    assert!(
        !ack.session_present,
        "session present must be 0 with a non-zero reason code"
    );
    c.expect_closed(WAIT);
    // Exactly at the limit is fine.
    let mut c = Conn::open(t.mqtt, true);
    assert_eq!(c.connect(&connect_v5("12345678", true, 60, &[])).code, 0);
}

/// Client id longer than `--client-id-bytes-max` → CONNACK 2 (v3.1.1) then close [MQTT-3.1.3-9].
#[test]
fn client_id_too_long_v4_connack_2() {
    let t = Tern::start(&["--client-id-bytes-max", "8"]);
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_v4("123456789", true, 60));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x02]);
    c.expect_closed(WAIT);
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_v4("12345678", true, 60));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x00]);
}

/// v3.1.1: empty client id with CleanSession 0 → CONNACK 2 and close [MQTT-3.1.3-8].
#[test]
fn mqtt_v3_3_1_3_8_empty_client_id_without_clean_session_connack_2() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_v4("", false, 60));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x02]);
    c.expect_closed(WAIT);
    // With CleanSession 1 it is accepted [MQTT-3.1.3-6].
    let mut c = Conn::open(t.mqtt, false);
    c.send(&connect_v4("", true, 60));
    assert_eq!(c.recv().bytes(), [0x20, 0x02, 0x00, 0x00]);
}

/// v5: empty client id → Assigned Client Identifier in CONNACK [MQTT-3.2.2-16].
#[test]
fn mqtt_3_2_2_16_empty_client_id_gets_assigned_identifier() {
    let t = Tern::start(&[]);
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5("", true, 60, &[]));
    assert_eq!(ack.code, 0);
    match prop(&ack.props, 0x12) {
        Some(PV::Str(id)) => {
            assert!(!id.is_empty());
            assert!(std::str::from_utf8(&id).is_ok());
        }
        other => panic!("Assigned Client Identifier missing: {other:?} in {ack:?}"),
    }
    // Two anonymous clients get different identifiers and both stay connected.
    let mut c2 = Conn::open(t.mqtt, true);
    let ack2 = c2.connect(&connect_v5("", true, 60, &[]));
    assert_ne!(prop(&ack.props, 0x12), prop(&ack2.props, 0x12));
    c.send(&PINGREQ);
    assert_eq!(c.recv().bytes(), [0xD0, 0x00]);
}

/// Invalid filter `a/#/b` → SUBACK 0x8F (v5) [MQTT-4.7.1-1]; other filters still granted.
#[test]
fn mqtt_4_7_1_1_invalid_filter_v5_suback_0x8f() {
    let t = Tern::start(&[]);
    let (mut c, _) = v5_client(&t, "if5", &[]);
    assert_eq!(
        c.subscribe(1, &[("ok/a", 1), ("a/#/b", 1), ("a/b+", 0), ("ok/b", 2)]),
        [1, 0x8F, 0x8F, 2]
    );
}

/// Invalid filter → SUBACK 0x80 (v3.1.1).
#[test]
fn mqtt_v3_4_7_1_2_invalid_filter_v4_suback_0x80() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "if4");
    assert_eq!(
        c.subscribe(1, &[("ok/a", 1), ("a/#/b", 1), ("ok/b", 0)]),
        [1, 0x80, 0]
    );
}

/// v5 session takeover: the old connection gets DISCONNECT 0x8E [MQTT-3.1.4-3].
#[test]
fn mqtt_3_1_4_3_session_takeover_v5_disconnect_0x8e() {
    let t = Tern::start(&[]);
    let (mut old, _) = v5_client(&t, "same", &[]);
    let (mut new, _) = v5_client(&t, "same", &[]);
    old.expect_disconnect(&[0x8E]);
    new.send(&PINGREQ);
    assert_eq!(new.recv().bytes(), [0xD0, 0x00]);
}

/// v3.1.1 takeover: the old connection is closed [MQTT-3.1.4-2].
#[test]
fn mqtt_v3_3_1_4_2_session_takeover_v4_closes_old() {
    let t = Tern::start(&[]);
    let mut old = v4_client(&t, "same4");
    let mut new = v4_client(&t, "same4");
    old.expect_closed(WAIT);
    new.send(&PINGREQ);
    assert_eq!(new.recv().bytes(), [0xD0, 0x00]);
}

/// Payload Format Indicator 1 with invalid UTF-8 → 0x99 [MQTT-3.3.2-4 / v5 §3.3.2.3.2].
#[test]
fn mqtt_3_3_2_3_2_payload_format_invalid_0x99() {
    let t = Tern::start(&[]);
    let mut s = v4_client(&t, "pfsub");
    s.subscribe(1, &[("pf/t", 1)]);
    let (mut c, _) = v5_client(&t, "pfpub", &[]);
    c.send(&publish_raw(
        0x32,
        b"pf/t",
        Some(9),
        Some(&p_u8(0x01, 1)),
        &[0xFF, 0xFE, 0x00],
    ));
    let p = c.recv();
    match p.first {
        0x40 => assert_eq!(ack_reason(&p, 9), 0x99, "PUBACK {:02X?}", p.bytes()),
        0xE0 => {
            assert_eq!(
                p.body.first().copied(),
                Some(0x99),
                "DISCONNECT {:02X?}",
                p.bytes()
            );
            c.expect_closed(WAIT);
        }
        _ => panic!("expected PUBACK or DISCONNECT 0x99, got {:02X?}", p.bytes()),
    }
    s.expect_quiet(QUIET);
}

/// A valid UTF-8 payload with indicator 1 is delivered with the indicator [MQTT-3.3.2-4].
#[test]
fn mqtt_3_3_2_4_payload_format_indicator_forwarded() {
    let t = Tern::start(&[]);
    let (mut s, _) = v5_client(&t, "pfs5", &[]);
    s.subscribe(1, &[("pf/t", 0)]);
    let (mut c, _) = v5_client(&t, "pfp5", &[]);
    let props = p_u8(0x01, 1);
    c.send(&publish_raw(
        0x30,
        b"pf/t",
        None,
        Some(&props),
        "héllo".as_bytes(),
    ));
    let p = s.recv_publish();
    assert_eq!(p.payload, "héllo".as_bytes());
    assert_eq!(prop(&p.props, 0x01), Some(PV::Byte(1)), "{p:?}");
}

/// A malformed client never affects another connected subscriber.
#[test]
fn malformed_client_does_not_affect_other_subscribers() {
    let t = Tern::start(&["--packet-bytes-max", "4096"]);
    let mut s = v4_client(&t, "iso-sub");
    s.subscribe(1, &[("iso/t", 1)]);
    let (mut s5, _) = v5_client(&t, "iso-sub5", &[]);
    s5.subscribe(1, &[("iso/t", 1)]);
    let mut p = v4_client(&t, "iso-pub");
    p.pub1("iso/t", 1, b"before");
    for s in [&mut s, &mut s5] {
        let m = s.recv_publish();
        assert_eq!(m.payload, b"before");
        s.send(&ack(PUBACK, m.pid.unwrap()));
    }

    // Garbage before CONNECT.
    let mut bad = Conn::open(t.mqtt, false);
    bad.try_send(&[0xFF; 64]);
    bad.expect_closed(WAIT);
    // Truncated CONNECT then abrupt close.
    let mut bad = Conn::open(t.mqtt, false);
    let c = connect_v4("half", true, 60);
    bad.try_send(&c[..c.len() / 2]);
    bad.drop_abruptly();
    // v5 client with QoS 3 publish on the same topic.
    let (mut bad, _) = v5_client(&t, "bad5", &[]);
    bad.try_send(&publish_raw(0x36, b"iso/t", Some(1), Some(&[]), b"evil"));
    bad.expect_disconnect(&[0x81]);
    // v3 client sending a huge remaining length.
    let mut bad = v4_client(&t, "bad4");
    bad.try_send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    bad.expect_closed(WAIT);
    // Client taking over a subscriber's id would affect it, so use a different id; also
    // a v3 client publishing with an invalid topic.
    let mut bad = v4_client(&t, "bad4b");
    bad.try_send(&publish(false, 1, false, "iso/#", 1, b"evil"));
    bad.expect_closed(WAIT);

    p.pub1("iso/t", 2, b"after");
    for s in [&mut s, &mut s5] {
        let m = s.recv_publish();
        assert_eq!(m.payload, b"after", "subscriber got {m:?}");
        s.send(&ack(PUBACK, m.pid.unwrap()));
        s.expect_quiet(Duration::from_millis(300));
    }
}

// ---------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------

#[test]
fn sys_broker_uptime_published_every_interval() {
    let t = Tern::start(&["--sys-interval-secs", "1"]);
    let mut c = v4_client(&t, "sys");
    assert_eq!(c.subscribe(1, &[("$SYS/broker/uptime", 0)]), [0]);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seen = 0;
    while seen < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.read(left) {
            ReadResult::Pkt(p) if p.first == 0xD0 => {}
            ReadResult::Pkt(p) => {
                let m = parse_publish(&p, false);
                assert_eq!(m.topic, b"$SYS/broker/uptime");
                assert!(!m.payload.is_empty());
                seen += 1;
            }
            other => {
                panic!("expected $SYS/broker/uptime twice within 8 s, got {seen} then {other:?}")
            }
        }
    }
}

/// Filters starting with a wildcard do not match `$` topics [MQTT-4.7.2-1].
#[test]
fn mqtt_4_7_2_1_wildcards_do_not_match_sys_topics() {
    let t = Tern::start(&["--sys-interval-secs", "1"]);
    let mut c = v4_client(&t, "nosys");
    assert_eq!(c.subscribe(1, &[("#", 0), ("+/broker/uptime", 0)]), [0, 0]);
    c.expect_quiet(Duration::from_millis(2500));
}

// ---------------------------------------------------------------------------
// QoS 2 flows and session resume
// ---------------------------------------------------------------------------

/// Inbound QoS 2: PUBLISH → PUBREC, a DUP re-send before PUBREL is not delivered
/// twice, PUBREL → PUBCOMP [MQTT-4.3.3].
#[test]
fn mqtt_4_3_3_inbound_qos2_exactly_once_with_duplicate() {
    let t = Tern::start(&[]);
    let mut s = v4_client(&t, "q2sub");
    s.subscribe(1, &[("q2/t", 2)]);
    let mut c = v4_client(&t, "q2pub");
    c.send(&publish(false, 2, false, "q2/t", 10, b"once"));
    assert_eq!(c.recv().bytes(), [0x50, 0x02, 0x00, 0x0A], "PUBREC");
    // Duplicate with DUP=1 before PUBREL.
    c.send(&publish_raw(0x3C, b"q2/t", Some(10), None, b"once"));
    assert_eq!(
        c.recv().bytes(),
        [0x50, 0x02, 0x00, 0x0A],
        "PUBREC for the duplicate"
    );
    c.send(&ack(PUBREL, 10));
    assert_eq!(c.recv().bytes(), [0x70, 0x02, 0x00, 0x0A], "PUBCOMP");

    let m = s.recv_publish();
    assert_eq!((m.qos, m.payload.as_slice()), (2, &b"once"[..]));
    let pid = m.pid.unwrap();
    s.send(&ack(PUBREC, pid));
    assert_eq!(
        s.recv().bytes(),
        [0x62, 0x02, (pid >> 8) as u8, pid as u8],
        "PUBREL"
    );
    s.send(&ack(PUBCOMP, pid));
    s.expect_quiet(QUIET);

    // After PUBCOMP the packet id is free again: a new message with id 10 is a new message.
    c.pub2("q2/t", 10, b"again");
    let m = s.recv_publish();
    assert_eq!(m.payload, b"again");
}

/// PUBREL for an unknown packet id is answered with PUBCOMP (v5: reason 0x92 allowed).
#[test]
fn mqtt_4_3_3_pubrel_unknown_packet_id_gets_pubcomp() {
    let t = Tern::start(&[]);
    let mut c = v4_client(&t, "relunk");
    c.send(&ack(PUBREL, 77));
    assert_eq!(c.recv().bytes(), [0x70, 0x02, 0x00, 77]);
    let (mut c5, _) = v5_client(&t, "relunk5", &[]);
    c5.send(&ack(PUBREL, 78));
    let p = c5.recv();
    assert_eq!(p.first, 0x70);
    assert!(
        matches!(ack_reason(&p, 78), 0x00 | 0x92),
        "{:02X?}",
        p.bytes()
    );
}

/// Outbound QoS 2: PUBLISH, client PUBREC, server PUBREL, client PUBCOMP.
#[test]
fn mqtt_4_3_3_outbound_qos2_flow() {
    let t = Tern::start(&[]);
    let mut s = v4_client(&t, "oq2sub");
    s.subscribe(1, &[("oq2/t", 2)]);
    let mut c = v4_client(&t, "oq2pub");
    c.pub2("oq2/t", 1, b"m");
    let p = s.recv();
    assert_eq!(
        p.first,
        0x34,
        "QoS 2 PUBLISH without DUP/RETAIN: {:02X?}",
        p.bytes()
    );
    let m = parse_publish(&p, false);
    let pid = m.pid.unwrap();
    assert_ne!(pid, 0);
    s.send(&ack(PUBREC, pid));
    assert_eq!(s.recv().bytes(), [0x62, 0x02, (pid >> 8) as u8, pid as u8]);
    s.send(&ack(PUBCOMP, pid));
    s.expect_quiet(QUIET);
}

/// Unacked QoS 1 is re-sent with DUP=1 and the same packet id on session resume
/// [MQTT-4.4.0-1], [MQTT-3.3.1-1] (v3.1.1, CleanSession 0).
#[test]
fn mqtt_v3_4_4_0_1_unacked_qos1_redelivered_with_dup_on_resume() {
    let t = Tern::start(&[]);
    let mut s = Conn::open(t.mqtt, false);
    let ack0 = s.connect(&connect_v4("dup4", false, 60));
    assert_eq!(ack0.code, 0);
    s.subscribe(1, &[("dup/t", 1)]);
    let mut c = v4_client(&t, "dup4pub");
    c.pub1("dup/t", 1, b"m1");
    let p = s.recv();
    assert_eq!(p.first, 0x32, "{:02X?}", p.bytes());
    let first = parse_publish(&p, false);
    s.drop_abruptly();
    std::thread::sleep(Duration::from_millis(200));

    let mut s = Conn::open(t.mqtt, false);
    s.send(&connect_v4("dup4", false, 60));
    assert_eq!(
        s.recv().bytes(),
        [0x20, 0x02, 0x01, 0x00],
        "CONNACK with session present"
    );
    let p = s.recv();
    assert_eq!(
        p.first,
        0x3A,
        "re-sent PUBLISH must have DUP=1, QoS 1: {:02X?}",
        p.bytes()
    );
    let again = parse_publish(&p, false);
    assert_eq!(again.pid, first.pid);
    assert_eq!(again.topic, b"dup/t");
    assert_eq!(again.payload, b"m1");
    s.send(&ack(PUBACK, again.pid.unwrap()));
    s.expect_quiet(QUIET);
}

/// Same for v5 with Clean Start 0 and a Session Expiry Interval.
#[test]
fn mqtt_4_4_0_1_unacked_qos1_redelivered_with_dup_on_resume_v5() {
    let t = Tern::start(&[]);
    let expiry = p_u32(0x11, 300);
    let mut s = Conn::open(t.mqtt, true);
    assert_eq!(s.connect(&connect_v5("dup5", true, 60, &expiry)).code, 0);
    s.subscribe(1, &[("dup/t", 1)]);
    let (mut c, _) = v5_client(&t, "dup5pub", &[]);
    assert!(c.pub1("dup/t", 1, b"m1") < 0x80);
    let first = s.recv_publish();
    assert!(!first.dup);
    s.drop_abruptly();
    std::thread::sleep(Duration::from_millis(200));

    let mut s = Conn::open(t.mqtt, true);
    let ack1 = s.connect(&connect_v5("dup5", false, 60, &expiry));
    assert_eq!(ack1.code, 0);
    assert!(ack1.session_present, "session present expected: {ack1:?}");
    let p = s.recv();
    assert_eq!(
        p.first,
        0x3A,
        "re-sent PUBLISH must have DUP=1, QoS 1: {:02X?}",
        p.bytes()
    );
    let again = parse_publish(&p, true);
    assert_eq!(again.pid, first.pid);
    assert_eq!(again.payload, b"m1");
    s.send(&ack(PUBACK, again.pid.unwrap()));
    s.expect_quiet(QUIET);
}

/// PUBREC'd but not completed QoS 2: PUBREL is re-sent on resume [MQTT-4.4.0-1].
#[test]
fn mqtt_v3_4_4_0_1_pubrel_resent_on_resume() {
    let t = Tern::start(&[]);
    let mut s = Conn::open(t.mqtt, false);
    assert_eq!(s.connect(&connect_v4("rel4", false, 60)).code, 0);
    s.subscribe(1, &[("rel/t", 2)]);
    let mut c = v4_client(&t, "rel4pub");
    c.pub2("rel/t", 1, b"m");
    let m = s.recv_publish();
    let pid = m.pid.unwrap();
    let rel = [0x62, 0x02, (pid >> 8) as u8, pid as u8];
    s.send(&ack(PUBREC, pid));
    assert_eq!(s.recv().bytes(), rel);
    s.drop_abruptly();
    std::thread::sleep(Duration::from_millis(200));

    let mut s = Conn::open(t.mqtt, false);
    s.send(&connect_v4("rel4", false, 60));
    assert_eq!(s.recv().bytes(), [0x20, 0x02, 0x01, 0x00]);
    assert_eq!(
        s.recv().bytes(),
        rel,
        "PUBREL re-sent (and not the PUBLISH)"
    );
    s.send(&ack(PUBCOMP, pid));
    s.expect_quiet(QUIET);
}

/// Messages for an offline persistent session are queued and delivered on resume.
#[test]
fn mqtt_v3_3_1_2_4_offline_messages_queued_for_persistent_session() {
    let t = Tern::start(&[]);
    let mut s = Conn::open(t.mqtt, false);
    assert_eq!(s.connect(&connect_v4("queue4", false, 60)).code, 0);
    s.subscribe(1, &[("q/t", 1)]);
    s.disconnect();
    let mut c = v4_client(&t, "queue4pub");
    for i in 1..=3u16 {
        c.pub1("q/t", i, format!("m{i}").as_bytes());
    }
    let mut s = Conn::open(t.mqtt, false);
    s.send(&connect_v4("queue4", false, 60));
    assert_eq!(s.recv().bytes(), [0x20, 0x02, 0x01, 0x00]);
    for i in 1..=3 {
        let m = s.recv_publish();
        assert_eq!(m.payload, format!("m{i}").as_bytes());
        assert_eq!(m.qos, 1);
        s.send(&ack(PUBACK, m.pid.unwrap()));
    }
    s.expect_quiet(QUIET);
    // A clean session discards it [MQTT-3.1.2-6].
    s.disconnect();
    let mut s = Conn::open(t.mqtt, false);
    s.send(&connect_v4("queue4", true, 60));
    assert_eq!(s.recv().bytes(), [0x20, 0x02, 0x00, 0x00]);
}

// ---------------------------------------------------------------------------
// v5 flow control and aliases towards the client
// ---------------------------------------------------------------------------

/// Client Receive Maximum 2: never more than 2 unacknowledged QoS 1 PUBLISHes
/// outstanding [MQTT-3.3.4-7].
#[test]
fn mqtt_3_3_4_7_broker_respects_client_receive_maximum() {
    let t = Tern::start(&[]);
    let (mut s, _) = v5_client(&t, "rmsub", &p_u16(0x21, 2));
    s.subscribe(1, &[("rmc/t", 1)]);
    let mut c = v4_client(&t, "rmpub");
    for i in 0..6u16 {
        c.pub1("rmc/t", i + 1, format!("m{i}").as_bytes());
    }
    let mut outstanding = std::collections::VecDeque::new();
    let mut got = Vec::new();
    while got.len() < 6 {
        // Read until the window is full or everything arrived.
        while outstanding.len() < 2 && got.len() < 6 {
            let m = s.recv_publish();
            got.push(String::from_utf8(m.payload.clone()).unwrap());
            outstanding.push_back(m.pid.unwrap());
        }
        if got.len() < 6 {
            // Window full: nothing else may arrive.
            s.expect_quiet(QUIET);
        }
        let pid = outstanding.pop_front().unwrap();
        s.send(&ack(PUBACK, pid));
    }
    while let Some(pid) = outstanding.pop_front() {
        s.send(&ack(PUBACK, pid));
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    s.expect_quiet(Duration::from_millis(300));
}

/// Client allows topic aliases: repeated topics are sent as empty topic + alias
/// [MQTT-3.3.2-10..12]; never an alias above the client's maximum.
#[test]
fn mqtt_3_3_2_12_broker_uses_outbound_topic_aliases() {
    let t = Tern::start(&[]);
    let (mut s, _) = v5_client(&t, "tasub5", &p_u16(0x22, 10));
    s.subscribe(1, &[("tao/x", 0)]);
    let mut c = v4_client(&t, "tapub4");
    for i in 0..3 {
        c.pub0("tao/x", format!("m{i}").as_bytes());
    }
    let first = s.recv_publish();
    assert_eq!(first.topic, b"tao/x");
    assert_eq!(first.payload, b"m0");
    let alias = match prop(&first.props, 0x23) {
        Some(PV::U16(a)) => a,
        other => panic!("first PUBLISH should establish an alias, props {other:?} in {first:?}"),
    };
    assert!((1..=10).contains(&alias), "alias {alias} outside 1..=10");
    for i in 1..3 {
        let m = s.recv_publish();
        assert_eq!(m.topic, b"", "PUBLISH {i} should use the alias: {m:?}");
        assert_eq!(prop(&m.props, 0x23), Some(PV::U16(alias)));
        assert_eq!(m.payload, format!("m{i}").as_bytes());
    }
}

/// Client Topic Alias Maximum absent (0): the broker never sends Topic Alias [MQTT-3.3.2-9].
#[test]
fn mqtt_3_3_2_9_no_outbound_alias_when_client_disallows() {
    let t = Tern::start(&[]);
    let (mut s, _) = v5_client(&t, "tanone", &[]);
    s.subscribe(1, &[("tan/x", 0)]);
    let mut c = v4_client(&t, "tanpub");
    for i in 0..3 {
        c.pub0("tan/x", format!("m{i}").as_bytes());
    }
    for _ in 0..3 {
        let m = s.recv_publish();
        assert_eq!(m.topic, b"tan/x");
        assert_eq!(prop(&m.props, 0x23), None);
    }
}

/// Client Maximum Packet Size: a bigger message is not sent to it, others get it
/// [MQTT-3.1.2-25].
#[test]
fn mqtt_3_1_2_25_message_larger_than_client_maximum_not_sent() {
    let t = Tern::start(&[]);
    let (mut small, _) = v5_client(&t, "mpsmall", &p_u32(0x27, 200));
    small.subscribe(1, &[("mp/t", 0)]);
    let (mut big, _) = v5_client(&t, "mpbig", &[]);
    big.subscribe(1, &[("mp/t", 0)]);
    let mut c = v4_client(&t, "mppub");
    c.pub0("mp/t", &[b'x'; 500]);
    c.pub0("mp/t", b"small");
    assert_eq!(big.recv_publish().payload.len(), 500);
    assert_eq!(big.recv_publish().payload, b"small");
    let m = small.recv_publish();
    assert_eq!(
        m.payload, b"small",
        "oversized message must be skipped for this client"
    );
}

/// Will message published on abnormal disconnect, not on DISCONNECT [MQTT-3.1.2-8], [MQTT-3.1.2-10].
#[test]
fn mqtt_v3_3_1_2_8_will_published_on_abnormal_close_only() {
    let t = Tern::start(&[]);
    let mut s = v4_client(&t, "willsub");
    s.subscribe(1, &[("will/#", 0)]);
    let will_connect = |id: &str| {
        let mut body = str16(b"MQTT");
        body.push(4);
        body.push(0x02 | 0x04); // clean, will flag, will QoS 0
        body.extend(60u16.to_be_bytes());
        body.extend(str16(id.as_bytes()));
        body.extend(str16(format!("will/{id}").as_bytes()));
        body.extend(str16(b"gone"));
        packet(0x10, &body)
    };
    let mut w = Conn::open(t.mqtt, false);
    assert_eq!(w.connect(&will_connect("w1")).code, 0);
    w.disconnect();
    s.expect_quiet(QUIET);

    let mut w = Conn::open(t.mqtt, false);
    assert_eq!(w.connect(&will_connect("w2")).code, 0);
    w.drop_abruptly();
    let m = s.recv_publish();
    assert_eq!(m.topic, b"will/w2");
    assert_eq!(m.payload, b"gone");
}

/// Overlapping subscriptions: one copy at the highest QoS carrying both
/// Subscription Identifiers [MQTT-3.3.4-3], [MQTT-3.3.4-5].
#[test]
fn mqtt_3_3_4_5_overlapping_subscriptions_one_copy_with_all_identifiers() {
    let t = Tern::start(&[]);
    let (mut s, _) = v5_client(&t, "ovl5", &[]);
    s.send(&subscribe_raw(
        0x82,
        true,
        1,
        &p_var(0x0B, 1),
        &[(b"ovl/#", 1)],
    ));
    assert_eq!(suback_codes(&s.recv(), true, 1), [1]);
    s.send(&subscribe_raw(
        0x82,
        true,
        2,
        &p_var(0x0B, 300),
        &[(b"ovl/+", 2)],
    ));
    assert_eq!(suback_codes(&s.recv(), true, 2), [2]);
    let mut c = v4_client(&t, "ovlpub");
    c.pub2("ovl/a", 1, b"m");
    let m = s.recv_publish();
    assert_eq!(m.qos, 2);
    let mut ids: Vec<usize> = m
        .props
        .iter()
        .filter_map(|(id, v)| match (id, v) {
            (0x0B, PV::Var(n)) => Some(*n),
            _ => None,
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 300], "{m:?}");
    let pid = m.pid.unwrap();
    s.send(&ack(PUBREC, pid));
    assert_eq!(s.recv().first, 0x62);
    s.send(&ack(PUBCOMP, pid));
    s.expect_quiet(QUIET);
}

// ---------------------------------------------------------------------------
// Queue and window limits
// ---------------------------------------------------------------------------

/// Publishes m0..m{n-1} at QoS 1 to `topic` while `id`'s persistent session is
/// offline, then resumes it and returns the payloads delivered.
fn offline_then_resume(t: &Tern, id: &str, topic: &str, n: u16) -> Vec<String> {
    let mut s = Conn::open(t.mqtt, false);
    assert_eq!(s.connect(&connect_v4(id, false, 60)).code, 0);
    s.subscribe(1, &[(topic, 1)]);
    s.disconnect();
    let mut c = v4_client(t, &format!("{id}-pub"));
    for i in 0..n {
        c.pub1(topic, i + 1, format!("m{i}").as_bytes());
    }
    let mut s = Conn::open(t.mqtt, false);
    s.send(&connect_v4(id, false, 60));
    assert_eq!(s.recv().bytes(), [0x20, 0x02, 0x01, 0x00]);
    let mut got = Vec::new();
    loop {
        match s.read(Duration::from_millis(800)) {
            ReadResult::Pkt(p) if p.first == 0xD0 => {}
            ReadResult::Pkt(p) => {
                let m = parse_publish(&p, false);
                got.push(String::from_utf8(m.payload).unwrap());
                s.send(&ack(PUBACK, m.pid.unwrap()));
            }
            ReadResult::Timeout => return got,
            ReadResult::Closed => panic!("closed while draining the queue; got {got:?}"),
        }
    }
}

/// `--session-queue-max 3` with the default drop-oldest policy keeps the newest 3.
#[test]
fn session_queue_max_drop_oldest_keeps_newest() {
    let t = Tern::start(&["--session-queue-max", "3"]);
    assert_eq!(
        offline_then_resume(&t, "qdo", "qd/t", 5),
        ["m2", "m3", "m4"]
    );
}

/// `--queue-full-policy drop-new` keeps the oldest 3.
#[test]
fn session_queue_max_drop_new_keeps_oldest() {
    let t = Tern::start(&[
        "--session-queue-max",
        "3",
        "--queue-full-policy",
        "drop-new",
    ]);
    assert_eq!(
        offline_then_resume(&t, "qdn", "qd/t", 5),
        ["m0", "m1", "m2"]
    );
}

/// `--inflight-max 2`: at most 2 unacknowledged outbound QoS 1 PUBLISHes, even for
/// a v3.1.1 client; the rest is queued and sent in order as acks come in.
#[test]
fn inflight_max_limits_outbound_window() {
    let t = Tern::start(&["--inflight-max", "2"]);
    let mut s = v4_client(&t, "ifsub");
    s.subscribe(1, &[("if/t", 1)]);
    let mut c = v4_client(&t, "ifpub");
    for i in 0..5u16 {
        c.pub1("if/t", i + 1, format!("m{i}").as_bytes());
    }
    let a = s.recv_publish();
    let b = s.recv_publish();
    assert_eq!(
        (a.payload.as_slice(), b.payload.as_slice()),
        (&b"m0"[..], &b"m1"[..])
    );
    s.expect_quiet(QUIET);
    s.send(&ack(PUBACK, a.pid.unwrap()));
    let m = s.recv_publish();
    assert_eq!(m.payload, b"m2");
    s.expect_quiet(QUIET);
    s.send(&ack(PUBACK, b.pid.unwrap()));
    s.send(&ack(PUBACK, m.pid.unwrap()));
    let d = s.recv_publish();
    let e = s.recv_publish();
    assert_eq!(
        (d.payload.as_slice(), e.payload.as_slice()),
        (&b"m3"[..], &b"m4"[..])
    );
}

/// `--inflight-max 1` and a v5 client with Receive Maximum 5: the outbound
/// window is min(1, 5) = 1.
#[test]
fn inflight_max_caps_client_receive_maximum() {
    let t = Tern::start(&["--inflight-max", "1"]);
    let (mut s, _) = v5_client(&t, "ifsub5", &p_u16(0x21, 5));
    s.subscribe(1, &[("if/t", 1)]);
    let mut c = v4_client(&t, "ifpub5");
    for i in 0..3u16 {
        c.pub1("if/t", i + 1, format!("m{i}").as_bytes());
    }
    for i in 0..3 {
        let m = s.recv_publish();
        assert_eq!(m.payload, format!("m{i}").as_bytes());
        if i < 2 {
            s.expect_quiet(QUIET);
        }
        s.send(&ack(PUBACK, m.pid.unwrap()));
    }
}

/// `--session-expiry-max-secs 60`: a client asking 3600 s is told 60 s in the
/// CONNACK Session Expiry Interval (v5 §3.2.2.3.2).
#[test]
fn mqtt_3_2_2_3_2_session_expiry_capped_and_returned_in_connack() {
    let t = Tern::start(&["--session-expiry-max-secs", "60"]);
    let mut c = Conn::open(t.mqtt, true);
    let ack = c.connect(&connect_v5("sexp", true, 60, &p_u32(0x11, 3600)));
    assert_eq!(ack.code, 0);
    assert_eq!(prop(&ack.props, 0x11), Some(PV::U32(60)), "{ack:?}");
}

/// `--connections-max 2`: a third connection is refused (closed, or a CONNACK
/// with a failure code), the first two keep working, and a slot frees up on close.
#[test]
fn connections_max_refuses_extra_connections() {
    let t = Tern::start(&["--connections-max", "2"]);
    let mut a = v4_client(&t, "cm-a");
    let b = v4_client(&t, "cm-b");
    let mut c = Conn::open(t.mqtt, false);
    c.try_send(&connect_v4("cm-c", true, 60));
    match c.read(WAIT) {
        ReadResult::Closed => {}
        ReadResult::Pkt(p) => {
            assert_eq!(p.first, 0x20, "{:02X?}", p.bytes());
            assert_ne!(
                p.body.get(1).copied(),
                Some(0),
                "third connection accepted: {:02X?}",
                p.bytes()
            );
            c.expect_closed(WAIT);
        }
        ReadResult::Timeout => panic!("third connection neither refused nor accepted"),
    }
    a.send(&PINGREQ);
    assert_eq!(a.recv().bytes(), [0xD0, 0x00]);
    b.disconnect();
    std::thread::sleep(Duration::from_millis(300));
    let mut d = v4_client(&t, "cm-d");
    d.send(&PINGREQ);
    assert_eq!(d.recv().bytes(), [0xD0, 0x00]);
}

/// `--sys-interval-secs 0` turns periodic $SYS publishing off.
#[test]
fn sys_interval_zero_publishes_no_uptime() {
    let t = Tern::start(&["--sys-interval-secs", "0"]);
    let mut c = v4_client(&t, "sysoff");
    assert_eq!(c.subscribe(1, &[("$SYS/broker/uptime", 0)]), [0]);
    c.expect_quiet(Duration::from_millis(2500));
}
