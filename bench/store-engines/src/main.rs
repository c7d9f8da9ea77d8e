//! Tern's store write pattern on two engines: per message, one record
//! (256 B) plus one queue entry (24 B) written, later both deleted; writes
//! grouped into commits of G messages, each commit synced to disk
//! (fdatasync) or only handed to the OS. Prints messages/s per case.

use std::path::Path;
use std::time::Instant;

const MSG: usize = 256;
const TOTAL: u64 = 20_000;

fn fjall_case(dir: &Path, group: u64, sync: bool) -> f64 {
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};
    let _ = std::fs::remove_dir_all(dir);
    let db = Database::builder(dir).manual_journal_persist(true).open().unwrap();
    let msgs = db.keyspace("messages", KeyspaceCreateOptions::default).unwrap();
    let entries = db.keyspace("entries", KeyspaceCreateOptions::default).unwrap();
    let payload = vec![7u8; MSG];
    let t = Instant::now();
    let mut seq = 0u64;
    while seq < TOTAL {
        let mut b = db.batch().durability(None);
        for _ in 0..group {
            seq += 1;
            b.insert(&msgs, seq.to_be_bytes(), payload.clone());
            let mut k = [0u8; 16];
            k[8..].copy_from_slice(&seq.to_be_bytes());
            b.insert(&entries, k, [0u8; 24]);
            if seq > 500 {
                // Acknowledged 500 messages ago: delete.
                let old = seq - 500;
                b.remove(&msgs, old.to_be_bytes());
                let mut k = [0u8; 16];
                k[8..].copy_from_slice(&old.to_be_bytes());
                b.remove(&entries, k);
            }
        }
        b.commit().unwrap();
        db.persist(if sync { PersistMode::SyncData } else { PersistMode::Buffer })
            .unwrap();
    }
    TOTAL as f64 / t.elapsed().as_secs_f64()
}

fn redb_case(dir: &Path, group: u64, sync: bool) -> f64 {
    use redb::{Database, Durability, TableDefinition};
    const MSGS: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
    const ENTRIES: TableDefinition<u128, &[u8]> = TableDefinition::new("entries");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let db = Database::create(dir.join("db.redb")).unwrap();
    let payload = vec![7u8; MSG];
    let t = Instant::now();
    let mut seq = 0u64;
    while seq < TOTAL {
        let mut tx = db.begin_write().unwrap();
        if !sync {
            tx.set_durability(Durability::None).unwrap();
        }
        {
            let mut m = tx.open_table(MSGS).unwrap();
            let mut e = tx.open_table(ENTRIES).unwrap();
            for _ in 0..group {
                seq += 1;
                m.insert(seq, payload.as_slice()).unwrap();
                e.insert(u128::from(seq), [0u8; 24].as_slice()).unwrap();
                if seq > 500 {
                    m.remove(seq - 500).unwrap();
                    e.remove(u128::from(seq - 500)).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    TOTAL as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("store-engines"));
    println!("engine | messages per commit | sync | messages/s");
    println!("---|---|---|---");
    for &group in &[1u64, 10, 100, 1000] {
        for &sync in &[true, false] {
            let f = fjall_case(&base.join("fjall"), group, sync);
            let r = redb_case(&base.join("redb"), group, sync);
            let s = if sync { "fdatasync" } else { "OS only" };
            println!("fjall | {group} | {s} | {f:.0}");
            println!("redb | {group} | {s} | {r:.0}");
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
