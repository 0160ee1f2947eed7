//! Replaying the write-ahead log into the memory table when a store opens.

use crate::error::{Result, StoreError};
use crate::wal::record::{read_record, Record, Rows};
use crate::wal::{self, PinnedLog, ReplayReport};
use std::sync::mpsc::sync_channel;

use super::coded::Coded;
use super::state::Inner;

/// A log record made ready to apply by a decoder.
enum Decoded {
    /// Touchpoints coded against the dictionaries, with the frame that holds them.
    Rows(Box<Coded>, Vec<u8>),
    Other(Record),
}

/// Frames queued for and from each decoder. A frame is one appended batch, usually tens to
/// hundreds of rows but up to a bulk import's whole batch, so the queues stay short.
const QUEUED_FRAMES: usize = 4;

/// Most threads decoding the log.
const MAX_DECODERS: usize = 8;

impl Inner {
    /// Replays the log into the memory table as the writer applied it. Decoding a record
    /// (decompressing it, reading its touchpoints, deriving their properties from the
    /// messages, coding their strings against the dictionaries) is most of a replay and runs
    /// on every core, frame `k` on decoder `k mod n`; one thread applies the records in log
    /// order, entering the strings the dictionaries did not hold yet. A store whose flushes
    /// fell behind holds millions of rows in its log, and a server restarting or a CLI query
    /// opening it beside the server waits for all of them.
    pub(super) fn replay(&self, pinned: PinnedLog) -> Result<ReplayReport> {
        let decoders = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_DECODERS);
        let cut_torn_tail = !self.config.read_only;
        std::thread::scope(|s| {
            let mut inputs = Vec::with_capacity(decoders);
            let mut outputs = Vec::with_capacity(decoders);
            for _ in 0..decoders {
                let (to_decoder, frames) = sync_channel::<Vec<u8>>(QUEUED_FRAMES);
                let (decoded, from_decoder) = sync_channel::<Result<Decoded>>(QUEUED_FRAMES);
                s.spawn(move || {
                    for frame in frames {
                        let record = read_record(frame).map(|record| match record {
                            Record::Touchpoints(Rows {
                                touchpoints,
                                hashes,
                                framed,
                            }) => {
                                // released before the send below: a decoder waiting on a
                                // full queue must not keep the applier from the dictionaries
                                let dicts = self.dicts.read();
                                Decoded::Rows(
                                    Box::new(Coded::code(&dicts, &touchpoints, hashes)),
                                    framed,
                                )
                            }
                            other => Decoded::Other(other),
                        });
                        // the applier stopped at an error: so does every decoder
                        if decoded.send(record).is_err() {
                            break;
                        }
                    }
                });
                inputs.push(to_decoder);
                outputs.push(from_decoder);
            }
            let applier = s.spawn(move || -> Result<()> {
                // frame k comes from decoder k mod n; the first decoder with nothing left is
                // the one the frame after the last would have gone to
                for k in 0.. {
                    match outputs[k % decoders].recv() {
                        Ok(record) => match record? {
                            Decoded::Rows(coded, framed) => {
                                self.enter_rows(self.dicts.write(), *coded, framed, true)
                            }
                            Decoded::Other(record) => self.apply(record, true),
                        },
                        Err(_) => break,
                    }
                }
                Ok(())
            });
            let mut next = 0usize;
            let read = wal::replay_pinned(pinned, cut_torn_tail, |frame| {
                inputs[next % decoders]
                    .send(frame.to_vec())
                    .map_err(|_| StoreError::Invalid("log replay stopped".into()))?;
                next += 1;
                Ok(())
            });
            drop(inputs);
            let applied = applier.join().expect("the log's applying thread");
            // an error applying stopped the reading: it is the one to report
            applied?;
            read
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::columns::NO_GROUP;
    use crate::wal::record::bodies_of;
    use itinera_core::MessageType;

    /// One memory row in strings, as queries and flushes read it.
    type Row = (
        String,
        i64,
        String,
        String,
        String,
        u8,
        String,
        u64,
        u64,
        i64,
    );

    /// The memory table of `s`: every row with its properties and message, and every id with
    /// the ids linked to it and its erasure.
    #[allow(clippy::type_complexity)]
    fn memory_table(
        s: &Store,
    ) -> (
        Vec<(Row, Vec<(String, String)>, String)>,
        Vec<(String, Vec<String>, Option<i64>)>,
    ) {
        let st = s.inner.state.read();
        let d = s.inner.dicts.read();
        let mut rows = Vec::new();
        for chunk in st.mem.iter().chain(&st.frozen) {
            let c = &chunk.cols;
            let bodies = bodies_of(&chunk.record).unwrap();
            for i in 0..c.len() {
                let group = match c.group[i] {
                    NO_GROUP => String::new(),
                    g => d.groups().name(g).to_string(),
                };
                let row = (
                    d.ids().name(c.did[i]).to_string(),
                    c.ts[i],
                    d.events().name(c.event[i]).to_string(),
                    d.channels().name(c.channel[i]).to_string(),
                    d.touchpoints().name(c.touchpoint[i]).to_string(),
                    c.kind[i],
                    group,
                    c.revenue[i].to_bits(),
                    c.msg_hash[i],
                    c.received_at[i],
                );
                let props = c
                    .prop_range(i)
                    .map(|p| {
                        let key = d.prop_keys().name(c.prop_key[p]).to_string();
                        (key, d.prop_values().name(c.prop_val[p]).to_string())
                    })
                    .collect();
                rows.push((row, props, bodies.get(i).to_string()));
            }
        }
        let ids = (0..d.ids().len() as u32)
            .map(|id| {
                let root = st.identity.root(id);
                let mut linked: Vec<String> = (0..d.ids().len() as u32)
                    .filter(|o| st.identity.root(*o) == root)
                    .map(|o| d.ids().name(o).to_string())
                    .collect();
                linked.sort();
                let erased = st.erased.get(&id).copied();
                (d.ids().name(id).to_string(), linked, erased)
            })
            .collect();
        (rows, ids)
    }

    fn touchpoint(batch: usize, i: usize) -> Touchpoint {
        let person = (batch * 7 + i * 3) % 23;
        let kind = match i % 9 {
            0 => MessageType::Identify,
            4 => MessageType::Alias,
            _ => MessageType::Track,
        };
        // as ingestion derives them: typed properties from the message
        let props: String = (0..i % 4)
            .map(|k| format!(r#","k{k}":"v{}""#, (i + k) % 7))
            .collect();
        let body = format!(
            r#"{{"type":"track","messageId":"m{batch}-{i}","properties":{{"n":"{i}ü"{props}}}}}"#
        );
        Touchpoint {
            kind,
            message_id: format!("m{batch}-{i}"),
            timestamp_ms: 1_700_000_000_000 + (batch * 100 + i) as i64,
            received_at_ms: 1_700_000_000_000,
            user_id: (!person.is_multiple_of(3)).then(|| format!("user-{person}")),
            anonymous_id: Some(format!("anon-{}", (person + batch) % 31)),
            previous_id: (kind == MessageType::Alias).then(|| format!("old-{person}")),
            group_id: i.is_multiple_of(4).then(|| format!("acct-{}", person % 5)),
            event: format!("event {}", i % 6),
            channel: ["search", "email", "direct"][i % 3].into(),
            touchpoint: format!("tp {}", i % 4),
            revenue: i.is_multiple_of(5).then_some(i as f64 * 1.5),
            props: Touchpoint::props_from_body(&body),
            body,
        }
    }

    /// A reader replaying the log builds the memory table the writer holds: the same rows in
    /// the same order, with their properties, messages, linked ids and erasures. Its frames
    /// (more than the decoders and their queues hold, of unequal sizes) are decoded on several
    /// threads and applied in order.
    #[test]
    fn a_replay_builds_the_memory_table_the_writer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        for batch in 0..60 {
            s.append((0..1 + batch % 17).map(|i| touchpoint(batch, i)).collect())
                .unwrap();
            if batch == 30 {
                s.erase_person("user-4").unwrap();
            }
        }
        let written = memory_table(&s);
        assert_eq!(written.0.len(), (0..60).map(|b| 1 + b % 17).sum::<usize>());
        assert!(written.1.iter().any(|(_, _, erased)| erased.is_some()));
        assert!(written.0.iter().any(|(_, props, _)| props.len() == 4));
        let read_only = StoreConfig {
            read_only: true,
            ..Default::default()
        };
        let replayed = Store::open(dir.path(), read_only).unwrap();
        let read = memory_table(&replayed);
        assert_eq!(read.0, written.0);
        assert_eq!(read.1, written.1);
    }
}
