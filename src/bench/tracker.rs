//! Per-stream accounting on the receiving side: which sequence numbers of
//! one publisher a subscriber has seen, from which losses, duplicates and
//! reorderings follow; and the publisher's window of unacknowledged
//! packet identifiers.

use std::collections::BTreeMap;

/// Most gap ranges remembered per stream. Beyond this the oldest gaps are
/// forgotten: they still count as lost, but a very late arrival from one of
/// them is then counted as a duplicate instead of a reordering.
const MAX_GAPS: usize = 65_536;

/// What [`SeqTracker::record`] made of one arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected number, or one past a gap.
    New,
    /// Filled an earlier gap: delivered out of order.
    Late,
    /// Already seen.
    Dup,
}

/// The sequence numbers of one publisher seen by one subscriber.
///
/// Every stream starts at 0 (subscriptions exist before the first
/// publish), so a first arrival above 0 opens a gap at once.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// One past the highest number seen.
    next: u64,
    /// Numbers below `next` not seen yet, as `start -> end` (exclusive).
    gaps: BTreeMap<u64, u64>,
    /// Numbers in `gaps` now.
    gap_count: u64,
    /// Numbers dropped from `gaps` to bound memory (never seen).
    forgotten: u64,
    /// Distinct numbers seen.
    pub unique: u64,
    /// Arrivals of a number already seen.
    pub dup: u64,
    /// Arrivals that filled a gap.
    pub out_of_order: u64,
}

impl SeqTracker {
    /// Accounts for the arrival of `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            if seq > self.next {
                self.gaps.insert(self.next, seq);
                self.gap_count += seq - self.next;
                if self.gaps.len() > MAX_GAPS
                    && let Some((s, e)) = self.gaps.pop_first()
                {
                    self.gap_count -= e - s;
                    self.forgotten += e - s;
                }
            }
            self.next = seq + 1;
            self.unique += 1;
            return Arrival::New;
        }
        let Some((&start, &end)) = self.gaps.range(..=seq).next_back() else {
            self.dup += 1;
            return Arrival::Dup;
        };
        if seq >= end {
            self.dup += 1;
            return Arrival::Dup;
        }
        self.gaps.remove(&start);
        if start < seq {
            self.gaps.insert(start, seq);
        }
        if seq + 1 < end {
            self.gaps.insert(seq + 1, end);
        }
        self.gap_count -= 1;
        self.unique += 1;
        self.out_of_order += 1;
        Arrival::Late
    }

    /// Whether `seq` has been seen (forgotten gaps aside).
    pub fn has(&self, seq: u64) -> bool {
        if seq >= self.next {
            return false;
        }
        match self.gaps.range(..=seq).next_back() {
            Some((_, &end)) => seq >= end,
            None => true,
        }
    }

    /// True when every number below `sent` has been seen.
    pub fn complete(&self, sent: u64) -> bool {
        self.next >= sent && self.gap_count == 0 && self.forgotten == 0
    }

    /// Numbers in `0..sent` never seen, not counting the `excused` ones
    /// (sent but not acknowledged to the publisher, or refused by the
    /// broker) that were not seen either: those were never owed.
    pub fn lost(&self, sent: u64, excused: &[u64]) -> u64 {
        let below = sent.min(self.next);
        // Gaps are all below `next`; those reaching past `sent` are cut.
        let mut missing = self.forgotten;
        for (&s, &e) in self.gaps.range(..below) {
            missing += e.min(below) - s;
        }
        missing += sent - below;
        let excused_missing = excused
            .iter()
            .filter(|&&s| s < sent && !self.has(s))
            .count() as u64;
        missing.saturating_sub(excused_missing)
    }
}

/// Where a publisher's QoS 1/2 message is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREC received, PUBREL sent: waiting for PUBCOMP.
    Released,
}

/// What an acknowledgement did to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The broker accepted message `seq`.
    Accepted(u64),
    /// The broker refused message `seq` with an error reason code.
    Refused(u64),
    /// The packet identifier was not in the expected stage (ignored).
    Unknown,
    /// PUBCOMP freed the slot of an already accepted message.
    Completed,
}

/// Packet identifiers in flight for one publisher, at most `cap` at once.
/// Identifiers are handed out in turn; a slot table indexed by identifier
/// modulo its size (at least twice `cap`) keeps lookups O(1) and small.
#[derive(Debug)]
pub struct Window {
    slots: Vec<Option<(u16, u64, Stage)>>,
    in_use: usize,
    cap: usize,
    next_id: u16,
}

impl Window {
    /// A window of `cap` (1..=65535) identifiers.
    pub fn new(cap: usize) -> Window {
        let cap = cap.clamp(1, 65_535);
        let size = (cap * 2).next_power_of_two().min(65_536);
        Window {
            slots: vec![None; size],
            in_use: 0,
            cap,
            next_id: 1,
        }
    }

    /// Identifiers in use.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether another message may be sent now.
    pub fn has_room(&self) -> bool {
        self.in_use < self.cap
    }

    /// Takes an identifier for message `seq`, or `None` if the window is full.
    pub fn alloc(&mut self, seq: u64) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        // At most half the slots are taken, so a free one comes quickly.
        for _ in 0..=65_535u32 {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            let idx = usize::from(id) % self.slots.len();
            if self.slots[idx].is_none() {
                self.slots[idx] = Some((id, seq, Stage::Sent));
                self.in_use += 1;
                return Some(id);
            }
        }
        None
    }

    fn slot(&mut self, id: u16) -> Option<&mut Option<(u16, u64, Stage)>> {
        let len = self.slots.len();
        let s = &mut self.slots[usize::from(id) % len];
        matches!(s, Some((i, _, _)) if *i == id).then_some(s)
    }

    /// PUBACK for `id` with `reason` (QoS 1): frees the slot.
    pub fn puback(&mut self, id: u16, reason: u8) -> Ack {
        match self.slot(id) {
            Some(s @ Some((_, _, Stage::Sent))) => {
                let seq = s.map_or(0, |(_, q, _)| q);
                *s = None;
                self.in_use -= 1;
                if reason >= 0x80 {
                    Ack::Refused(seq)
                } else {
                    Ack::Accepted(seq)
                }
            }
            _ => Ack::Unknown,
        }
    }

    /// PUBREC for `id` with `reason` (QoS 2): on success the message is
    /// accepted and the slot waits for PUBCOMP; on error it is freed.
    pub fn pubrec(&mut self, id: u16, reason: u8) -> Ack {
        match self.slot(id) {
            Some(s @ Some((_, _, Stage::Sent))) => {
                let seq = s.map_or(0, |(_, q, _)| q);
                if reason >= 0x80 {
                    *s = None;
                    self.in_use -= 1;
                    Ack::Refused(seq)
                } else {
                    *s = Some((id, seq, Stage::Released));
                    Ack::Accepted(seq)
                }
            }
            // A repeated PUBREC after PUBREL: answer it again, nothing changes.
            Some(Some((_, _, Stage::Released))) => Ack::Completed,
            _ => Ack::Unknown,
        }
    }

    /// PUBCOMP for `id` (QoS 2): frees the slot.
    pub fn pubcomp(&mut self, id: u16) -> Ack {
        match self.slot(id) {
            Some(s @ Some((_, _, Stage::Released))) => {
                *s = None;
                self.in_use -= 1;
                Ack::Completed
            }
            _ => Ack::Unknown,
        }
    }

    /// Sequence numbers sent but never accepted nor refused.
    pub fn unacked(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Some((_, seq, Stage::Sent)) => Some(*seq),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_stream_is_complete() {
        let t = feed(&[0, 1, 2, 3, 4]);
        assert_eq!((t.unique, t.dup, t.out_of_order), (5, 0, 0));
        assert!(t.complete(5));
        assert!(!t.complete(6));
        assert_eq!(t.lost(5, &[]), 0);
        // Sent 7, saw 5: the tail is lost.
        assert_eq!(t.lost(7, &[]), 2);
    }

    #[test]
    fn gaps_count_as_losses() {
        let t = feed(&[0, 1, 4, 5, 9]);
        assert_eq!(t.unique, 5);
        assert_eq!(t.lost(10, &[]), 5); // 2, 3, 6, 7, 8
        assert!(t.has(4) && !t.has(3) && !t.has(8) && t.has(9) && !t.has(10));
        assert!(!t.complete(10));
    }

    #[test]
    fn first_arrival_above_zero_is_a_gap() {
        let t = feed(&[3, 4]);
        assert_eq!(t.lost(5, &[]), 3);
        assert!(!t.has(0));
    }

    #[test]
    fn late_arrivals_fill_gaps() {
        let mut t = feed(&[0, 3]);
        assert_eq!(t.record(1), Arrival::Late);
        assert_eq!(t.record(2), Arrival::Late);
        assert_eq!((t.unique, t.dup, t.out_of_order), (4, 0, 2));
        assert!(t.complete(4));
        assert_eq!(t.lost(4, &[]), 0);
        // Splitting a gap in the middle.
        let mut t = feed(&[0, 10]);
        assert_eq!(t.record(5), Arrival::Late);
        assert_eq!(t.lost(11, &[]), 8);
        assert!(t.has(5) && !t.has(4) && !t.has(6));
    }

    #[test]
    fn duplicates() {
        let mut t = feed(&[0, 1, 2]);
        assert_eq!(t.record(1), Arrival::Dup);
        assert_eq!(t.record(2), Arrival::Dup);
        assert_eq!(t.record(3), Arrival::New);
        // A gap filled once, then repeated: the repeat is a duplicate.
        let mut t = feed(&[0, 2]);
        assert_eq!(t.record(1), Arrival::Late);
        assert_eq!(t.record(1), Arrival::Dup);
        assert_eq!((t.unique, t.dup, t.out_of_order), (3, 1, 1));
        assert_eq!(t.lost(3, &[]), 0);
    }

    #[test]
    fn excused_numbers_are_not_owed() {
        // 0..10 sent; 8 and 9 never acknowledged; 9 arrived anyway.
        let t = feed(&[0, 1, 2, 3, 4, 5, 6, 7, 9]);
        assert_eq!(t.lost(10, &[]), 1);
        assert_eq!(t.lost(10, &[8, 9]), 0);
        // 5 was refused by the broker and did not arrive: not lost either.
        let t = feed(&[0, 1, 2, 3, 4, 6]);
        assert_eq!(t.lost(7, &[5]), 0);
        assert_eq!(t.lost(7, &[]), 1);
    }

    #[test]
    fn memory_is_bounded_and_losses_still_counted() {
        let mut t = SeqTracker::default();
        let n = (MAX_GAPS as u64 + 10) * 2;
        for s in (1..n).step_by(2) {
            t.record(s); // every even number is missing
        }
        assert!(t.gaps.len() <= MAX_GAPS);
        assert_eq!(t.lost(n, &[]), n / 2);
        assert!(!t.complete(n));
    }

    #[test]
    fn window_qos1() {
        let mut w = Window::new(2);
        let a = w.alloc(0).expect("id");
        let b = w.alloc(1).expect("id");
        assert_ne!(a, b);
        assert_eq!(w.alloc(2), None);
        assert_eq!(w.unacked(), vec![0, 1]);
        assert_eq!(w.puback(b, 0), Ack::Accepted(1));
        assert_eq!(w.puback(b, 0), Ack::Unknown);
        assert_eq!(w.puback(999, 0), Ack::Unknown);
        let c = w.alloc(2).expect("id");
        assert_eq!(w.puback(c, 0x97), Ack::Refused(2));
        assert_eq!(w.unacked(), vec![0]);
        assert_eq!(w.in_use(), 1);
    }

    #[test]
    fn window_qos2() {
        let mut w = Window::new(1);
        let a = w.alloc(7).expect("id");
        assert_eq!(w.pubcomp(a), Ack::Unknown);
        assert_eq!(w.pubrec(a, 0), Ack::Accepted(7));
        assert!(w.unacked().is_empty());
        assert!(!w.has_room());
        assert_eq!(w.pubrec(a, 0), Ack::Completed);
        assert_eq!(w.pubcomp(a), Ack::Completed);
        assert!(w.has_room());
        let b = w.alloc(8).expect("id");
        assert_eq!(w.pubrec(b, 0x80), Ack::Refused(8));
        assert_eq!(w.in_use(), 0);
    }

    #[test]
    fn window_ids_wrap_and_skip_zero() {
        let mut w = Window::new(64);
        let mut seen = std::collections::HashSet::new();
        for seq in 0..200_000u64 {
            let id = w.alloc(seq).expect("room");
            assert_ne!(id, 0);
            seen.insert(id);
            assert_eq!(w.puback(id, 0), Ack::Accepted(seq));
        }
        assert_eq!(seen.len(), 65_535);
        // Out-of-order acks with a full window.
        let ids: Vec<u16> = (0..64).map(|s| w.alloc(s).expect("room")).collect();
        assert!(w.alloc(64).is_none());
        for id in ids.iter().rev() {
            assert!(matches!(w.puback(*id, 0), Ack::Accepted(_)));
        }
        assert_eq!(w.in_use(), 0);
    }
}
