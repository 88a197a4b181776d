//! The store's dictionaries, as the writer keeps them: `channels` (a
//! channel as one source gives it, in one unit) and `notes` (what a few
//! readings carry besides a value: a text, or how a fused value was made).
//! Rows of `reading_rows` name them by id, and the `readings` view joins
//! them back: a string column in `reading_rows`, even one NULL in nearly
//! every row, costs DuckDB a string append per row and a scan and
//! compression pass at every checkpoint.
//!
//! Each keeps the ids stored so far in memory, hands out the next id for a
//! key it has not met, and appends the keys met since the last commit with
//! the commit that first holds them.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int32Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use crate::model::intern::FxHashMap;
use crate::model::record::Reading;

/// Appends `cols` (Arrow columns named as in `table`) to `table`.
fn append(conn: &Connection, table: &str, fields: Vec<Field>, cols: Vec<ArrayRef>) -> duckdb::Result<()> {
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("columns match the schema");
    let mut app = conn.appender(table)?;
    app.append_record_batch(batch)?;
    app.flush()
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
    /// The key of the last reading and its id: readings of one channel
    /// often come in runs, and the pointers compare in one step.
    last: Option<(ChannelKey, i32)>,
    next: i32,
    pub(super) new: Vec<(i32, ChannelKey)>,
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
        if let Some((k, id)) = &self.last {
            let same_unit = match (&k.unit, &r.unit) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if Arc::ptr_eq(&k.channel, &r.channel) && Arc::ptr_eq(&k.source, &r.source) && same_unit {
                return *id;
            }
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
        self.last = Some((key, id));
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

/// The lists of a fused reading: its inputs and those voted out.
type Lists<T> = (T, T);

/// What names a row of `notes`: a reading's text, or the inputs and the
/// voted-out inputs of a fused reading. Few per channel: a fused channel
/// has one for each set of inputs voted out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    text: Option<Arc<str>>,
    fusion: Option<Lists<Vec<Arc<str>>>>,
}

/// A reading's note, borrowed: looked up without building a [`Note`].
#[derive(Hash)]
struct NoteRef<'a> {
    text: Option<&'a str>,
    fusion: Option<Lists<&'a [Arc<str>]>>,
}

impl<'a> NoteRef<'a> {
    /// The note of reading `r`, `None` when it has nothing to note.
    fn of(r: &'a Reading) -> Option<NoteRef<'a>> {
        let fusion = r.fusion.as_deref().map(|f| (&f.inputs[..], &f.voted_out[..]));
        (r.text.is_some() || fusion.is_some()).then_some(NoteRef { text: r.text.as_deref(), fusion })
    }

    fn of_note(n: &'a Note) -> NoteRef<'a> {
        NoteRef { text: n.text.as_deref(), fusion: n.fusion.as_ref().map(|(i, v)| (&i[..], &v[..])) }
    }

    fn hash(&self) -> u64 {
        let mut h = crate::model::intern::FxBuild::default().build_hasher();
        Hash::hash(self, &mut h);
        h.finish()
    }

    fn is(&self, n: &Note) -> bool {
        let same = |a: &[Arc<str>], b: &[Arc<str>]| a.iter().map(|s| &**s).eq(b.iter().map(|s| &**s));
        n.text.as_deref() == self.text
            && match (&n.fusion, self.fusion) {
                (Some((i, v)), Some((ri, rv))) => same(i, ri) && same(v, rv),
                (None, None) => true,
                _ => false,
            }
    }

    fn to_note(&self) -> Note {
        Note { text: self.text.map(Arc::from), fusion: self.fusion.map(|(i, v)| (i.to_vec(), v.to_vec())) }
    }
}

/// The `notes` table as the writer knows it: ids by the hash of their note
/// (see [`NoteRef::hash`]), and those met since the last commit.
#[derive(Default)]
pub(super) struct NoteIds {
    ids: FxHashMap<u64, Vec<(i32, Note)>>,
    next: i32,
    pub(super) new: Vec<(i32, Note)>,
}

impl NoteIds {
    pub(super) fn load(conn: &Connection) -> duckdb::Result<NoteIds> {
        let mut notes = NoteIds::default();
        let mut st = conn.prepare("SELECT id, text, inputs, voted_out FROM notes")?;
        let mut rows = st.query([])?;
        let list = |s: String| -> Vec<Arc<str>> { s.split(',').filter(|x| !x.is_empty()).map(Arc::from).collect() };
        while let Some(r) = rows.next()? {
            let id: i32 = r.get(0)?;
            let inputs: Option<String> = r.get(2)?;
            let voted_out: Option<String> = r.get(3)?;
            let fusion = inputs.map(|i| (list(i), list(voted_out.unwrap_or_default())));
            let note = Note { text: r.get::<_, Option<String>>(1)?.map(Arc::from), fusion };
            notes.next = notes.next.max(id);
            notes.ids.entry(NoteRef::of_note(&note).hash()).or_default().push((id, note));
        }
        Ok(notes)
    }

    /// The id of reading `r`'s note, `None` when it has none.
    pub(super) fn id(&mut self, r: &Reading) -> Option<i32> {
        let note = NoteRef::of(r)?;
        let bucket = self.ids.entry(note.hash()).or_default();
        if let Some((id, _)) = bucket.iter().find(|(_, n)| note.is(n)) {
            return Some(*id);
        }
        self.next += 1;
        bucket.push((self.next, note.to_note()));
        self.new.push((self.next, note.to_note()));
        Some(self.next)
    }

    /// Appends the notes met since the last commit (in its transaction).
    /// A fused reading's lists go in comma-separated, empty when nothing
    /// was voted out, as the `readings` view has always shown them.
    pub(super) fn insert_new(&self, conn: &Connection) -> duckdb::Result<()> {
        if self.new.is_empty() {
            return Ok(());
        }
        let fields = vec![
            Field::new("id", DataType::Int32, false),
            Field::new("text", DataType::Utf8, true),
            Field::new("inputs", DataType::Utf8, true),
            Field::new("voted_out", DataType::Utf8, true),
        ];
        let join = |second: bool| -> ArrayRef {
            let list = |l: &Lists<Vec<Arc<str>>>| if second { l.1.join(",") } else { l.0.join(",") };
            Arc::new(StringArray::from_iter(self.new.iter().map(|(_, n)| n.fusion.as_ref().map(list))))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(self.new.iter().map(|(id, _)| *id))),
            Arc::new(StringArray::from_iter(self.new.iter().map(|(_, n)| n.text.as_deref()))),
            join(false),
            join(true),
        ];
        append(conn, "notes", fields, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{Fusion, Record};

    fn reading(text: Option<&str>, fusion: Option<(&[&str], &[&str])>) -> Reading {
        let Record::Reading(mut r) = Reading::sample("c", 0, Some(1.0)) else { unreachable!() };
        r.text = text.map(Arc::from);
        let list = |l: &[&str]| l.iter().map(|s| Arc::from(*s)).collect();
        r.fusion = fusion.map(|(i, v)| Box::new(Fusion { inputs: list(i), voted_out: list(v), spread: 0.0 }));
        r
    }

    /// Equal notes share an id, a reading with nothing to note has none,
    /// and a writer started anew on the store gives the notes stored the
    /// same ids (so a fused channel does not grow a note per run).
    #[test]
    fn notes_are_named_once_across_commits_and_runs() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn, std::path::Path::new(":memory:")).unwrap();
        let readings = [
            reading(None, None),
            reading(Some("v1.2"), None),
            reading(None, Some((&["a", "b"], &[]))),
            reading(None, Some((&["a", "b"], &["b"]))),
            reading(Some(""), None),
            reading(None, Some((&[], &[]))),
        ];
        let mut notes = NoteIds::load(&conn).unwrap();
        let ids: Vec<Option<i32>> = readings.iter().map(|r| notes.id(r)).collect();
        assert_eq!(ids, [None, Some(1), Some(2), Some(3), Some(4), Some(5)]);
        assert_eq!(readings.iter().map(|r| notes.id(r)).collect::<Vec<_>>(), ids, "met again: the same ids");
        notes.insert_new(&conn).unwrap();
        let mut again = NoteIds::load(&conn).unwrap();
        assert_eq!(readings.iter().map(|r| again.id(r)).collect::<Vec<_>>(), ids, "a new run: the same ids");
        assert!(again.new.is_empty());
        let stored: Vec<String> = conn
            .prepare("SELECT concat_ws('|', id, coalesce(text, '-'), coalesce(inputs, '-'), coalesce(voted_out, '-')) FROM notes ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored, ["1|v1.2|-|-", "2|-|a,b|", "3|-|a,b|b", "4||-|-", "5|-||"]);
    }
}
