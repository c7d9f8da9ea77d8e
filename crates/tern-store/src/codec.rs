//! Byte layouts of stored records. Each value starts with a format byte
//! so a later release can read what this one wrote. Keys are big-endian
//! so that the engine's ordering is numeric ordering.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_hub::{
    EntryRecord, Message, MessageProps, OutState, SessionRecord, StoredWill, SubOptions,
};

const FORMAT: u8 = 1;

/// A stored value could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {what} record: {why}")]
pub struct Corrupt {
    pub what: &'static str,
    pub why: &'static str,
}

pub fn key8(a: u64) -> [u8; 8] {
    a.to_be_bytes()
}

pub fn key16(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

pub fn key10(a: u64, b: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

/// Reads a big-endian u64 at `at` of a key.
pub fn read_u64(k: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a big-endian u16 at `at` of a key.
pub fn read_u16(k: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(k.get(at..at + 2)?.try_into().ok()?))
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Values are bounded far below 4 GiB by the packet size limit.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> R<'a> {
    fn err(&self, why: &'static str) -> Corrupt {
        Corrupt {
            what: self.what,
            why,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.b.len() < n {
            return Err(self.err("truncated"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, Corrupt> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }
    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(self.err("bad option tag")),
        }
    }
    fn opt_string(&mut self) -> Result<Option<String>, Corrupt> {
        match self.opt_bytes()? {
            None => Ok(None),
            Some(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|_| self.err("invalid UTF-8")),
        }
    }
    fn format(&mut self) -> Result<(), Corrupt> {
        if self.u8()? != FORMAT {
            return Err(self.err("unknown format"));
        }
        Ok(())
    }
    /// Counts are bounded by what is left, so a corrupt count cannot ask
    /// for a huge allocation.
    fn count(&mut self, min_item: usize) -> Result<usize, Corrupt> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.b.len() {
            return Err(self.err("count exceeds record"));
        }
        Ok(n)
    }
}

const M_RETAIN: u8 = 1;
const M_ORIGIN: u8 = 2;
const M_PROPS: u8 = 4;
const M_EXPIRY: u8 = 8;
/// The message was written to its channel's history.
pub const M_HISTORY: u8 = 16;

/// The flags byte of an encoded message, without decoding the rest.
pub fn message_flags(b: &[u8]) -> Option<u8> {
    (b.first() == Some(&FORMAT)).then(|| b.get(1).copied())?
}

/// Turns the monotonic clock into wall-clock milliseconds and back, from
/// one anchor (the hub's start): the same computation as
/// `Hub::wall_ms`, so a stored receive time, the history index and the
/// timestamp clients see agree to the millisecond.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub at: Instant,
    pub ms: u64,
}

impl Clock {
    /// Anchored now.
    pub fn now() -> Clock {
        Clock {
            at: Instant::now(),
            ms: tern_hub::unix_ms(),
        }
    }

    /// Wall-clock ms of `t`.
    pub fn ms_of(&self, t: Instant) -> u64 {
        if t >= self.at {
            self.ms + t.duration_since(self.at).as_millis() as u64
        } else {
            self.ms
                .saturating_sub(self.at.duration_since(t).as_millis() as u64)
        }
    }

    /// The instant of wall-clock `ms` (clamped to what `Instant` can hold).
    pub fn instant_of(&self, ms: u64) -> Instant {
        if ms >= self.ms {
            self.at + Duration::from_millis(ms - self.ms)
        } else {
            self.at
                .checked_sub(Duration::from_millis(self.ms - ms))
                .unwrap_or(self.at)
        }
    }
}

/// Encodes a message with its receive time as wall-clock milliseconds.
pub fn encode_message(m: &Message, clock: &Clock) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(32 + m.topic.len() + m.payload.len()));
    w.u8(FORMAT);
    let mut flags = 0;
    if m.retain {
        flags |= M_RETAIN;
    }
    if m.origin.is_some() {
        flags |= M_ORIGIN;
    }
    if m.props.is_some() {
        flags |= M_PROPS;
    }
    if m.expiry.is_some() {
        flags |= M_EXPIRY;
    }
    if m.stored.get().is_some_and(|s| s.history) {
        flags |= M_HISTORY;
    }
    w.u8(flags);
    w.u8(m.qos);
    w.u64(m.seq);
    w.u64(clock.ms_of(m.received_at));
    if let Some(e) = m.expiry {
        w.u64(e.as_millis() as u64);
    }
    w.bytes(m.topic.as_bytes());
    w.bytes(&m.payload);
    if let Some(o) = &m.origin {
        w.bytes(o.as_bytes());
    }
    if let Some(p) = &m.props {
        w.u8(p.payload_format.unwrap_or(0xFF));
        w.opt_bytes(p.content_type.as_deref().map(str::as_bytes));
        w.opt_bytes(p.response_topic.as_deref().map(str::as_bytes));
        w.opt_bytes(p.correlation_data.as_deref());
        w.u32(p.user_properties.len() as u32);
        for (k, v) in &p.user_properties {
            w.bytes(k.as_bytes());
            w.bytes(v.as_bytes());
        }
        for f in [
            &p.name,
            &p.encoding,
            &p.id,
            &p.extras,
            &p.client_id,
            &p.connection_id,
        ] {
            w.opt_bytes(f.as_deref().map(str::as_bytes));
        }
    }
    w.0
}

/// Decodes a message; its receive time is placed on the monotonic clock
/// so that expiry keeps counting from when it was first received.
pub fn decode_message(b: &[u8], clock: &Clock) -> Result<Message, Corrupt> {
    let mut r = R { b, what: "message" };
    r.format()?;
    let flags = r.u8()?;
    let qos = r.u8()?;
    if qos > 2 {
        return Err(r.err("bad QoS"));
    }
    let seq = r.u64()?;
    let received_ms = r.u64()?;
    let expiry = if flags & M_EXPIRY != 0 {
        Some(Duration::from_millis(r.u64()?))
    } else {
        None
    };
    let topic = r.string()?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let origin = if flags & M_ORIGIN != 0 {
        Some(Arc::from(r.string()?.as_str()))
    } else {
        None
    };
    let props = if flags & M_PROPS != 0 {
        let pf = r.u8()?;
        let content_type = r.opt_string()?;
        let response_topic = r.opt_string()?;
        let correlation_data = r.opt_bytes()?.map(Bytes::copy_from_slice);
        let n = r.count(8)?;
        let mut user_properties = Vec::with_capacity(n);
        for _ in 0..n {
            user_properties.push((r.string()?, r.string()?));
        }
        Some(Box::new(MessageProps {
            payload_format: (pf != 0xFF).then_some(pf),
            content_type,
            response_topic,
            correlation_data,
            user_properties,
            name: r.opt_string()?,
            encoding: r.opt_string()?,
            id: r.opt_string()?,
            extras: r.opt_string()?,
            client_id: r.opt_string()?,
            connection_id: r.opt_string()?,
        }))
    } else {
        None
    };
    let stored = OnceLock::new();
    if flags & M_HISTORY != 0 {
        let _ = stored.set(tern_hub::Stored { history: true });
    }
    Ok(Message {
        topic: topic.into(),
        payload,
        qos,
        retain: flags & M_RETAIN != 0,
        origin,
        props,
        received_at: clock.instant_of(received_ms),
        expiry,
        stored,
        seq,
    })
}

pub fn encode_session(s: &SessionRecord, clock: &Clock) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(32 + s.client_id.len()));
    w.u8(FORMAT);
    w.bytes(s.client_id.as_bytes());
    w.u32(s.expiry_secs);
    match s.disconnected_at_ms {
        Some(t) => {
            w.u8(1);
            w.u64(t);
        }
        None => w.u8(0),
    }
    w.u32(s.subscriptions.len() as u32);
    for (f, o) in &s.subscriptions {
        w.bytes(f.as_bytes());
        w.u8(o.qos);
        w.u8(u8::from(o.no_local) | (u8::from(o.retain_as_published) << 1));
        match o.sub_id {
            Some(id) => {
                w.u8(1);
                w.u32(id);
            }
            None => w.u8(0),
        }
    }
    match &s.will {
        Some(will) => {
            w.u8(1);
            w.bytes(&encode_message(&will.msg, clock));
            w.u32(will.delay_secs);
            match will.due_ms {
                Some(t) => {
                    w.u8(1);
                    w.u64(t);
                }
                None => w.u8(0),
            }
        }
        None => w.u8(0),
    }
    w.0
}

pub fn decode_session(sid: u64, b: &[u8], clock: &Clock) -> Result<SessionRecord, Corrupt> {
    let mut r = R { b, what: "session" };
    r.format()?;
    let client_id = r.string()?;
    let expiry_secs = r.u32()?;
    let disconnected_at_ms = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return Err(r.err("bad option tag")),
    };
    let n = r.count(7)?;
    let mut subscriptions = Vec::with_capacity(n);
    for _ in 0..n {
        let f = r.string()?;
        let qos = r.u8()?;
        let flags = r.u8()?;
        let sub_id = match r.u8()? {
            0 => None,
            1 => Some(r.u32()?),
            _ => return Err(r.err("bad option tag")),
        };
        subscriptions.push((
            f,
            SubOptions {
                qos: qos.min(2),
                no_local: flags & 1 != 0,
                retain_as_published: flags & 2 != 0,
                sub_id,
            },
        ));
    }
    let will = match r.u8()? {
        0 => None,
        1 => {
            let msg = decode_message(r.bytes()?, clock)?;
            let delay_secs = r.u32()?;
            let due_ms = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(r.err("bad option tag")),
            };
            Some(StoredWill {
                msg,
                delay_secs,
                due_ms,
            })
        }
        _ => return Err(r.err("bad option tag")),
    };
    Ok(SessionRecord {
        sid,
        client_id,
        expiry_secs,
        disconnected_at_ms,
        subscriptions,
        will,
    })
}

pub fn encode_entry(e: &EntryRecord) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(24 + 4 * e.sub_ids.len()));
    w.u8(FORMAT);
    w.u64(e.msg_seq);
    w.u8(e.qos);
    w.u8(u8::from(e.retain));
    w.u32(e.sub_ids.len() as u32);
    for id in &e.sub_ids {
        w.u32(*id);
    }
    match e.inflight {
        Some((pid, st)) => {
            w.u8(1);
            w.u16(pid);
            w.u8(match st {
                OutState::AwaitAck => 0,
                OutState::AwaitRec => 1,
                OutState::AwaitComp => 2,
            });
        }
        None => w.u8(0),
    }
    w.0
}

pub fn decode_entry(sid: u64, qkey: u64, b: &[u8]) -> Result<EntryRecord, Corrupt> {
    let mut r = R {
        b,
        what: "queue entry",
    };
    r.format()?;
    let msg_seq = r.u64()?;
    let qos = r.u8()?;
    if qos > 2 {
        return Err(r.err("bad QoS"));
    }
    let retain = r.u8()? != 0;
    let n = r.count(4)?;
    let mut sub_ids = Vec::with_capacity(n);
    for _ in 0..n {
        sub_ids.push(r.u32()?);
    }
    let inflight = match r.u8()? {
        0 => None,
        1 => {
            let pid = r.u16()?;
            let st = match r.u8()? {
                0 => OutState::AwaitAck,
                1 => OutState::AwaitRec,
                2 => OutState::AwaitComp,
                _ => return Err(r.err("bad in-flight state")),
            };
            Some((pid, st))
        }
        _ => return Err(r.err("bad option tag")),
    };
    Ok(EntryRecord {
        sid,
        qkey,
        msg_seq,
        qos,
        retain,
        sub_ids,
        inflight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            "[a-z/]{1,20}",
            proptest::collection::vec(any::<u8>(), 0..64),
            0u8..3,
            any::<bool>(),
            proptest::option::of("[a-z0-9]{1,10}"),
            proptest::option::of(0u64..100_000),
            proptest::option::of((
                proptest::option::of(0u8..2),
                proptest::option::of("[a-z/]{0,10}"),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                proptest::collection::vec(("[a-z]{0,5}", "[a-z]{0,5}"), 0..3),
            )),
        )
            .prop_map(|(t, p, qos, retain, origin, expiry, props)| {
                let mut m = Message::new(t, p, qos);
                m.retain = retain;
                m.origin = origin.map(|o| Arc::from(o.as_str()));
                m.expiry = expiry.map(Duration::from_millis);
                m.props = props.map(|(pf, ct, cd, up)| {
                    Box::new(MessageProps {
                        payload_format: pf,
                        content_type: ct.clone(),
                        response_topic: ct.clone(),
                        correlation_data: cd.map(Bytes::from),
                        user_properties: up,
                        name: ct.clone(),
                        encoding: ct.clone().map(|c| c + "/json"),
                        id: ct.clone().map(|c| c + ":0"),
                        extras: ct.clone().map(|c| format!("{{\"ref\":\"{c}\"}}")),
                        client_id: ct.clone(),
                        connection_id: ct,
                    })
                });
                m
            })
    }

    proptest! {
        #[test]
        fn message_round_trips(m in arb_message()) {
            let clock = Clock { at: Instant::now(), ms: 1_000_000 };
            let b = encode_message(&m, &clock);
            let d = decode_message(&b, &clock).unwrap();
            prop_assert_eq!(&d.topic, &m.topic);
            prop_assert_eq!(&d.payload, &m.payload);
            prop_assert_eq!(d.qos, m.qos);
            prop_assert_eq!(d.retain, m.retain);
            prop_assert_eq!(&d.origin, &m.origin);
            prop_assert_eq!(&d.props, &m.props);
            prop_assert_eq!(d.expiry, m.expiry);
            prop_assert_eq!(d.seq, m.seq);
            // Every strict prefix is refused, never a panic.
            for n in 0..b.len() {
                prop_assert!(decode_message(&b[..n], &clock).is_err());
            }
        }

        #[test]
        fn entry_round_trips(
            msg_seq in any::<u64>(), qos in 0u8..3, retain in any::<bool>(),
            sub_ids in proptest::collection::vec(any::<u32>(), 0..4),
            inflight in proptest::option::of((any::<u16>(), 0u8..3)),
        ) {
            let e = EntryRecord {
                sid: 3, qkey: 9, msg_seq, qos, retain, sub_ids,
                inflight: inflight.map(|(p, s)| (p, match s { 0 => OutState::AwaitAck, 1 => OutState::AwaitRec, _ => OutState::AwaitComp })),
            };
            let b = encode_entry(&e);
            prop_assert_eq!(decode_entry(3, 9, &b).unwrap(), e);
            for n in 0..b.len() {
                prop_assert!(decode_entry(3, 9, &b[..n]).is_err());
            }
        }

        #[test]
        fn session_round_trips(
            client_id in "[a-z0-9]{0,12}", expiry_secs in any::<u32>(),
            at in proptest::option::of(any::<u64>()),
            will in proptest::option::of((arb_message(), any::<u32>(), proptest::option::of(any::<u64>()))),
            subs in proptest::collection::vec(("[a-z/+#]{1,10}", 0u8..3, any::<bool>(), any::<bool>(), proptest::option::of(1u32..1000)), 0..4),
        ) {
            let s = SessionRecord {
                sid: 5, client_id, expiry_secs, disconnected_at_ms: at,
                subscriptions: subs.into_iter().map(|(f, qos, nl, rap, id)| (f, SubOptions { qos, no_local: nl, retain_as_published: rap, sub_id: id })).collect(),
                will: will.map(|(msg, delay_secs, due_ms)| StoredWill { msg, delay_secs, due_ms }),
            };
            let clock = Clock { at: Instant::now(), ms: 1_000_000 };
            let b = encode_session(&s, &clock);
            prop_assert_eq!(decode_session(5, &b, &clock).unwrap(), s);
            for n in 0..b.len() {
                prop_assert!(decode_session(5, &b[..n], &clock).is_err());
            }
        }
    }

    #[test]
    fn age_is_kept_across_the_clock_change() {
        let now = Instant::now();
        let mut m = Message::new("t", "x", 1);
        m.received_at = now - Duration::from_secs(5);
        m.expiry = Some(Duration::from_secs(60));
        let b = encode_message(
            &m,
            &Clock {
                at: now,
                ms: 10_000_000,
            },
        );
        // Read back 3 s later (wall clock), on a new monotonic clock.
        let later = Instant::now();
        let d = decode_message(
            &b,
            &Clock {
                at: later,
                ms: 10_003_000,
            },
        )
        .unwrap();
        let age = later.duration_since(d.received_at);
        assert!(
            age >= Duration::from_secs(8) && age < Duration::from_secs(9),
            "{age:?}"
        );
        assert_eq!(d.remaining_expiry_secs(later), Some(52));
    }
}
