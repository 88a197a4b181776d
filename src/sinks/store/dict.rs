//! The store's dictionaries, as the writer keeps them: `channels` (a
//! channel as one source gives it, in one unit) and `notes` (how a fused
//! value was made: its inputs and those voted out).
//! Rows of `reading_rows` name them by id, and the `readings` view joins
//! them back: a string column in `reading_rows`, even one NULL in nearly
//! every row, costs DuckDB a string append per row and a scan and
//! compression pass at every checkpoint.
//!
//! Each keeps the ids stored so far in memory, hands out the next id for a
//! key it has not met, and appends the keys met since the last commit with
//! the commit that first holds them.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int32Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use crate::model::intern::FxHashMap;
use crate::model::record::{Fusion, Reading};

/// Appends `cols` (Arrow columns named as in `table`) to `table`.
fn append(conn: &Connection, table: &str, fields: Vec<Field>, cols: Vec<ArrayRef>) -> duckdb::Result<()> {
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("columns match the schema");
    super::append(conn, table, batch)
}

/// What names a row of `channels`: a channel as one source gives it, in
/// one unit. Usually one per channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ChannelKey {
    channel: Arc<str>,
    source: Arc<str>,
    unit: Option<Arc<str>>,
}

/// The `channels` table as the writer knows it: ids of the channels stored
/// so far, and those met since the last commit (inserted with it).
#[derive(Default)]
pub(super) struct ChannelIds {
    ids: FxHashMap<ChannelKey, i32>,
    /// Ids by the addresses of a reading's channel, source and unit names
    /// (see [`names_cache_full`]). A reading's names are the parser's
    /// interned ones, so nearly every lookup hashes three words: no strings
    /// hashed and compared, and no key built, whose three `Arc` clones and
    /// drops, on names the parse thread counts too, were the writer's
    /// largest cost on benches/chain.sh.
    by_names: FxHashMap<[usize; 3], (i32, ChannelKey)>,
    next: i32,
    pub(super) new: Vec<(i32, ChannelKey)>,
}

/// Names held by a cache keyed by their addresses.
type Names = Box<[Arc<str>]>;

/// The address of a name: with the name held, no other name has it.
fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>() as usize
}

/// Whether a cache by names' addresses, which holds the names, has grown
/// past what the `known` keys explain: names that are not shared (each
/// reading parsed anew) would grow it without end. It then starts again.
fn names_cache_full(cached: usize, known: usize) -> bool {
    cached >= 4 * known + 1024
}

impl ChannelIds {
    pub(super) fn load(conn: &Connection) -> duckdb::Result<ChannelIds> {
        let mut ids = ChannelIds::default();
        let mut st = conn.prepare("SELECT id, channel, source, unit FROM channels")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i32 = r.get(0)?;
            let key = ChannelKey {
                channel: Arc::from(r.get::<_, String>(1)?),
                source: Arc::from(r.get::<_, Option<String>>(2)?.unwrap_or_default()),
                unit: r.get::<_, Option<String>>(3)?.map(Arc::from),
            };
            ids.next = ids.next.max(id);
            ids.ids.insert(key, id);
        }
        Ok(ids)
    }

    pub(super) fn id(&mut self, r: &Reading) -> i32 {
        let names = [address(&r.channel), address(&r.source), r.unit.as_ref().map_or(0, address)];
        if let Some((id, _)) = self.by_names.get(&names) {
            return *id;
        }
        let key = ChannelKey { channel: r.channel.clone(), source: r.source.clone(), unit: r.unit.clone() };
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None => {
                self.next += 1;
                self.ids.insert(key.clone(), self.next);
                self.new.push((self.next, key.clone()));
                self.next
            }
        };
        if names_cache_full(self.by_names.len(), self.ids.len()) {
            self.by_names.clear();
        }
        self.by_names.insert(names, (id, key));
        id
    }

    /// Appends the channels met since the last commit (in its transaction),
    /// in one Arrow batch: row by row, each insert is planned anew.
    pub(super) fn insert_new(&self, conn: &Connection) -> duckdb::Result<()> {
        if self.new.is_empty() {
            return Ok(());
        }
        let fields = vec![
            Field::new("id", DataType::Int32, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, true),
            Field::new("unit", DataType::Utf8, true),
        ];
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(self.new.iter().map(|(id, _)| *id))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, k)| &*k.channel))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, k)| &*k.source))),
            Arc::new(StringArray::from_iter(self.new.iter().map(|(_, k)| k.unit.as_deref()))),
        ];
        append(conn, "channels", fields, cols)
    }
}

/// The `notes` table as the writer knows it: a fused reading's inputs and
/// the inputs voted out, as the `readings` view gives them (comma-separated,
/// `voted_out` empty when none was), named by id. A fused channel has one
/// note per set of inputs voted out, so the table stays small.
///
/// Notes are keyed by the strings stored, so a note read back from the
/// store is the one a reading makes again, and two rows never hold the same
/// pair.
#[derive(Default)]
pub(super) struct NoteIds {
    /// `inputs` and `voted_out` joined by [`key`], to the note's id.
    ids: FxHashMap<Box<str>, i32>,
    next: i32,
    /// Notes met since the last commit: id, `inputs`, `voted_out`.
    pub(super) new: Vec<(i32, Box<str>, Box<str>)>,
    /// The key of the last reading looked up, built in place.
    buf: String,
    /// Ids by the addresses of a fused reading's names (inputs, 0, voted
    /// out), with the names held (see [`names_cache_full`]): a fusion group
    /// gives its readings the same names every time.
    by_names: FxHashMap<Box<[usize]>, (i32, Names)>,
    /// The addresses of the last reading looked up.
    names: Vec<usize>,
}

/// The key of a note: `inputs`, a line feed (no channel name holds one) and
/// `voted_out`; a carriage return instead when `voted_out` is NULL (a note
/// from before v7 that a reading never makes again).
fn key(buf: &mut String, inputs: &str, voted_out: Option<&str>) {
    buf.clear();
    buf.push_str(inputs);
    match voted_out {
        Some(v) => {
            buf.push('\n');
            buf.push_str(v);
        }
        None => buf.push('\r'),
    }
}

/// Appends `list` to `buf`, comma-separated.
fn join(buf: &mut String, list: &[Arc<str>]) {
    for (i, name) in list.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(name);
    }
}

impl NoteIds {
    pub(super) fn load(conn: &Connection) -> duckdb::Result<NoteIds> {
        let mut notes = NoteIds::default();
        let mut st = conn.prepare("SELECT id, inputs, voted_out FROM notes ORDER BY id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i32 = r.get(0)?;
            let inputs: Option<String> = r.get(1)?;
            let voted_out: Option<String> = r.get(2)?;
            notes.next = notes.next.max(id);
            // A note without inputs (only a hand-made restore holds one) is
            // not a fused reading's: none is ever looked up by it.
            let Some(inputs) = inputs else { continue };
            key(&mut notes.buf, &inputs, voted_out.as_deref());
            notes.ids.entry(Box::from(notes.buf.as_str())).or_insert(id);
        }
        Ok(notes)
    }

    /// The id of fused reading `r`'s note; `None` when it is not fused.
    pub(super) fn id(&mut self, r: &Reading) -> Option<i32> {
        let f = r.fusion.as_deref()?;
        self.names.clear();
        self.names.extend(f.inputs.iter().map(address));
        self.names.push(0);
        self.names.extend(f.voted_out.iter().map(address));
        if let Some((id, _)) = self.by_names.get(&self.names[..]) {
            return Some(*id);
        }
        let id = self.id_by_key(f);
        if names_cache_full(self.by_names.len(), self.ids.len()) {
            self.by_names.clear();
        }
        let held = f.inputs.iter().chain(&f.voted_out).cloned().collect();
        self.by_names.insert(self.names.as_slice().into(), (id, held));
        Some(id)
    }

    /// The id of the note of fusion `f`, by its key, made if new.
    fn id_by_key(&mut self, f: &Fusion) -> i32 {
        self.buf.clear();
        join(&mut self.buf, &f.inputs);
        self.buf.push('\n');
        join(&mut self.buf, &f.voted_out);
        if let Some(id) = self.ids.get(self.buf.as_str()) {
            return *id;
        }
        self.next += 1;
        let (inputs, voted_out) = self.buf.split_once('\n').expect("the key holds a line feed");
        self.new.push((self.next, Box::from(inputs), Box::from(voted_out)));
        self.ids.insert(Box::from(self.buf.as_str()), self.next);
        self.next
    }

    /// Appends the notes met since the last commit (in its transaction).
    pub(super) fn insert_new(&self, conn: &Connection) -> duckdb::Result<()> {
        if self.new.is_empty() {
            return Ok(());
        }
        let fields = vec![
            Field::new("id", DataType::Int32, false),
            Field::new("inputs", DataType::Utf8, true),
            Field::new("voted_out", DataType::Utf8, true),
        ];
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(self.new.iter().map(|(id, _, _)| *id))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, i, _)| &**i))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, _, v)| &**v))),
        ];
        append(conn, "notes", fields, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Record;

    fn reading(fusion: Option<(&[&str], &[&str])>) -> Reading {
        let Record::Reading(mut r) = Reading::sample("c", 0, Some(1.0)) else { unreachable!() };
        let list = |l: &[&str]| l.iter().map(|s| Arc::from(*s)).collect();
        r.fusion = fusion.map(|(i, v)| Box::new(Fusion { inputs: list(i), voted_out: list(v), spread: 0.0 }));
        r
    }

    /// Equal notes share an id, a reading that is not fused has none, and a
    /// writer started anew on the store gives the notes stored the same ids
    /// (so a fused channel does not grow a note per run); a note from
    /// before v7 with `voted_out` NULL is never taken for one with none,
    /// nor a note without inputs (a hand-made restore) for an empty list.
    #[test]
    fn notes_are_named_once_across_commits_and_runs() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn, std::path::Path::new(":memory:")).unwrap();
        conn.execute_batch("INSERT INTO notes VALUES (1, 'a,b', NULL), (5, NULL, '')").unwrap();
        let readings = [
            reading(None),
            reading(Some((&["a", "b"], &[]))),
            reading(Some((&["a", "b"], &["b"]))),
            reading(Some((&[], &[]))),
        ];
        let mut notes = NoteIds::load(&conn).unwrap();
        let ids: Vec<Option<i32>> = readings.iter().map(|r| notes.id(r)).collect();
        assert_eq!(ids, [None, Some(6), Some(7), Some(8)]);
        assert_eq!(readings.iter().map(|r| notes.id(r)).collect::<Vec<_>>(), ids, "met again: the same ids");
        // The same names in other allocations (a reading parsed anew).
        assert_eq!(notes.id(&reading(Some((&["a", "b"], &["b"])))), Some(7));
        notes.insert_new(&conn).unwrap();
        let mut again = NoteIds::load(&conn).unwrap();
        assert_eq!(readings.iter().map(|r| again.id(r)).collect::<Vec<_>>(), ids, "a new run: the same ids");
        assert!(again.new.is_empty());
        let stored: Vec<String> = conn
            .prepare(
                "SELECT concat_ws('|', id, coalesce(inputs, '-'), coalesce(voted_out, '-')) FROM notes ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored, ["1|a,b|-", "5|-|", "6|a,b|", "7|a,b|b", "8||"]);
    }
}
