//! The full-text index of the read model: one tantivy document per active product, in RAM.
//!
//! Only text lives here (name, description, tags with the category, and the string values of
//! specs, each in every language the product has) plus the product's slot number as a fast
//! field; prices, stock, facets and sorting are answered from the product views next to it
//! (`crate::catalog`), so a stock change never touches the index. Ranking is tantivy's BM25
//! with per-field boosts; each query word must match (in some field), exactly, as a stem, with
//! one or two typos for Latin words of four or more letters, or for a long Chinese word, through
//! all of its parts.
//!
//! Memory: a RAM directory (no files, no mmap) and a writer with one indexing thread and
//! tantivy's smallest arena (15 MB budget; pages are allocated as documents arrive, and the
//! arena is dropped at each commit). Each commit still allocates and frees a few large
//! buffers (a 5 MB document channel, the next segment writer's 4 MB term table): freeing them
//! raises glibc's dynamic mmap threshold, after which such buffers come from the heap and
//! fragment it (see the service README, "Memory").
//!
//! Writers never wait for a commit: [`SearchIndex::upsert`] and [`SearchIndex::remove`] only
//! queue the change (in order, under a short lock), and [`SearchIndex::commit`] hands the
//! queue to tantivy's writer, commits and reloads the reader. Many admin writes and the feed
//! therefore share one commit (group commit): with the writer locked inside every change, 32
//! concurrent product creations queued behind each commit, held the read model's lock while
//! waiting, and starved the feed, whose lag grew without bound while the seed ran.
//!
//! A commit also waits (up to [`GROUP_COMMIT_LINGER`]) for the admin writes already under way
//! ([`SearchIndex::writing`]: they have started but not queued their change yet) before it
//! takes the queue, so that they share it, because a commit's cost
//! is mostly fixed: finishing a segment builds one term dictionary (an FST, whose builder
//! allocates and fills a registry of about a megabyte) per text field, the reader then reopens
//! every segment, and each small segment is merged again later. Profiled while seeding 100,000
//! products (`perf record --call-graph dwarf`), segment finishing took 44% of product-service's
//! CPU (37% in those registries) and merges 13%. A lone write, and the feed, commit at once.
//!
//! Matches are kept (a bounded cache, [`MATCH_CACHE_BYTES`]) per query text and per reader
//! generation: what a text matches, and each match's score, change only when a commit changes
//! the index, so a later search for the same text only filters, tallies facets and sorts (over
//! 100,000 products the term-dictionary walks of the typo-tolerant words were most of a
//! search). Keying by the generation of the searcher the matches came from (clearing at
//! commit alone would not do) means a search that raced a commit can never file old matches
//! under the new index; the commit then drops the older generations' entries. Stock and price changes leave
//! the index alone, and the filters read them live from the rows, so they never wait on this
//! cache. A caller may ask for fresh matches ([`Freshness::Fresh`]), which are computed and
//! then kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contracts::product::ProductSnapshot;
use jieba_rs::TokenizeMode;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

use super::text::{self, INDEX_ANALYZER};
use crate::domain::search::MAX_QUERY_WORDS;

/// At most this many bytes of matches are kept (8 bytes per match plus the text).
pub const MATCH_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Completions kept per typed text, best first: what the largest suggestion list can use.
pub const COMPLETIONS_KEPT: usize = 64;

/// How long a commit waits at most for the writes under way to queue their changes.
const GROUP_COMMIT_LINGER: Duration = Duration::from_millis(20);

/// tantivy's smallest writer arena.
const WRITER_MEMORY_BYTES: usize = 15_000_000;

/// At most this much spec text per product is indexed.
const MAX_SPEC_TEXT_BYTES: usize = 2_048;

/// Searched fields and their weight: a word in the name counts most.
const NAME_BOOST: Score = 3.0;
const TAGS_BOOST: Score = 2.0;
const SPECS_BOOST: Score = 1.5;
const DESCRIPTION_BOOST: Score = 1.0;
/// A typo-tolerant or part-wise match scores below an exact one.
const FUZZY_BOOST: Score = 0.4;
const PARTS_BOOST: Score = 0.8;

const SLOT: &str = "slot";

#[derive(Clone, Copy)]
struct Fields {
    slot: Field,
    name: Field,
    description: Field,
    tags: Field,
    specs: Field,
}

impl Fields {
    fn weighted(&self) -> [(Field, Score); 4] {
        [
            (self.name, NAME_BOOST),
            (self.tags, TAGS_BOOST),
            (self.specs, SPECS_BOOST),
            (self.description, DESCRIPTION_BOOST),
        ]
    }
}

/// Whether a search may use the matches kept for its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Kept matches of the current index generation, else computed (and kept).
    #[default]
    Kept,
    /// Computed afresh (and kept): what `Cache-Control: no-cache` asks for.
    Fresh,
}

/// What kind of matches an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lookup {
    /// Every product matching a search text (unordered).
    Search,
    /// The best [`COMPLETIONS_KEPT`] completions of a typed text, best first.
    Complete,
}

/// Kept matches: (reader generation, kind, text).
type MatchKey = (u64, Lookup, Box<str>);
type Matches = Arc<Vec<(u32, Score)>>;

/// A change waiting for the next commit.
enum Change {
    Upsert(u32, TantivyDocument),
    Remove(u32),
}

/// Counts an admin write from its start until its change is searchable: the writes a commit
/// waits for.
#[derive(Debug)]
pub struct WriteInFlight(Arc<AtomicUsize>);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index, its writer and a reader that sees the last commit.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Changes since the last commit, in the order they were made. Taken by the commit while
    /// it holds the writer lock.
    pending: Mutex<Vec<Change>>,
    /// Signalled when a change is queued, for a lingering commit.
    queued: Condvar,
    /// Admin writes under way ([`WriteInFlight`]).
    writes_in_flight: Arc<AtomicUsize>,
    fields: Fields,
    query_analyzer: TextAnalyzer,
    parts_analyzer: TextAnalyzer,
    prefix_analyzer: TextAnalyzer,
    /// Matches per text and reader generation (see the module documentation).
    matches: moka::sync::Cache<MatchKey, Matches>,
}

impl SearchIndex {
    pub fn new() -> anyhow::Result<Self> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(INDEX_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            slot: schema.add_u64_field(SLOT, INDEXED | FAST),
            name: schema.add_text_field("name", text.clone()),
            description: schema.add_text_field("description", text.clone()),
            tags: schema.add_text_field("tags", text.clone()),
            specs: schema.add_text_field("specs", text),
        };
        let index = Index::create_in_ram(schema.build());
        index
            .tokenizers()
            .register(INDEX_ANALYZER, text::analyzer(TokenizeMode::Search));
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .context("creating the index writer")?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("creating the index reader")?;
        let prefix_analyzer =
            TextAnalyzer::builder(text::JiebaTokenizer::new(TokenizeMode::Default))
                .filter(tantivy::tokenizer::LowerCaser)
                .build();
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            pending: Mutex::new(Vec::new()),
            queued: Condvar::new(),
            writes_in_flight: Arc::new(AtomicUsize::new(0)),
            fields,
            query_analyzer: text::analyzer(TokenizeMode::Default),
            parts_analyzer: text::analyzer(TokenizeMode::Search),
            prefix_analyzer,
            matches: moka::sync::Cache::builder()
                .max_capacity(MATCH_CACHE_BYTES)
                .weigher(|key: &MatchKey, found: &Matches| {
                    let bytes = key.2.len() + found.len() * std::mem::size_of::<(u32, Score)>();
                    u32::try_from(bytes + 64).unwrap_or(u32::MAX)
                })
                .build(),
        })
    }

    /// Marks an admin write as under way until the returned guard is dropped: a commit that
    /// starts meanwhile waits (briefly) for its change.
    pub fn writing(&self) -> WriteInFlight {
        self.writes_in_flight.fetch_add(1, Ordering::Relaxed);
        WriteInFlight(self.writes_in_flight.clone())
    }

    fn writer(&self) -> anyhow::Result<std::sync::MutexGuard<'_, IndexWriter>> {
        self.writer
            .lock()
            .map_err(|_| anyhow::anyhow!("the index writer lock is poisoned"))
    }

    fn queue(&self, change: Change) {
        // A panic elsewhere while holding this lock leaves a valid queue.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(change);
        self.queued.notify_all();
    }

    /// Replaces the document of `slot` (visible after [`Self::commit`]). Never waits for a
    /// commit.
    pub fn upsert(&self, slot: u32, product: &ProductSnapshot) {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.fields.slot, u64::from(slot));
        doc.add_text(self.fields.name, &product.name);
        doc.add_text(self.fields.description, &product.description);
        for translation in product.translations.values() {
            doc.add_text(self.fields.name, &translation.name);
            doc.add_text(self.fields.description, &translation.description);
        }
        for tag in &product.tags {
            doc.add_text(self.fields.tags, tag);
        }
        doc.add_text(self.fields.tags, &product.category);
        doc.add_text(self.fields.specs, spec_text(&product.specs));
        self.queue(Change::Upsert(slot, doc));
    }

    /// Removes the document of `slot` (visible after [`Self::commit`]). Never waits for a
    /// commit.
    pub fn remove(&self, slot: u32) {
        self.queue(Change::Remove(slot));
    }

    /// Makes every change queued so far visible to searches, if there is any. Blocks (call it
    /// off the async workers). The writer lock is held until the reader sees the commit, so
    /// whoever gets the lock next finds every earlier change either searchable or still
    /// queued: an own write whose snapshot the feed queued first is committed here, not left
    /// waiting for the feed's next commit.
    pub fn commit(&self) -> anyhow::Result<()> {
        let mut writer = self.writer()?;
        let changes = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if pending.is_empty() {
                return Ok(());
            }
            // Writes under way that have not queued yet (the queue also holds the feed's
            // changes, so this may stop early: then they wait for the next commit).
            let deadline = Instant::now() + GROUP_COMMIT_LINGER;
            while pending.len() < self.writes_in_flight.load(Ordering::Relaxed) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = self
                    .queued
                    .wait_timeout(pending, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            std::mem::take(&mut *pending)
        };
        let documents = changes.len();
        for change in changes {
            let slot = match &change {
                Change::Upsert(slot, _) | Change::Remove(slot) => *slot,
            };
            writer.delete_term(Term::from_field_u64(self.fields.slot, u64::from(slot)));
            if let Change::Upsert(_, doc) = change {
                writer.add_document(doc).context("indexing a product")?;
            }
        }
        writer.commit().context("committing the index")?;
        self.reader.reload().context("reloading the index reader")?;
        // Matches of older generations can no longer be asked for: free their memory. (A
        // search that raced this commit may still file one under its old generation, where
        // nothing looks it up; the capacity bound evicts it.)
        self.matches.invalidate_all();
        metrics::histogram!("catalog_index_commit_changes").record(documents as f64);
        Ok(())
    }

    /// Merges every segment into one, then shows the result to searches: after the initial
    /// load, which commits a segment every 100 ms, a search would otherwise walk each term
    /// dictionary (and its fuzzy automata) once per segment. Returns how many segments there
    /// were, or `None` when a background merge holds some of them (try again later).
    /// Blocking: call it off the async workers.
    pub fn merge_segments(&self) -> anyhow::Result<Option<usize>> {
        let mut writer = self.writer()?;
        let segments = self
            .index
            .searchable_segment_ids()
            .context("listing the index segments")?;
        if segments.len() <= 1 {
            return Ok(Some(segments.len()));
        }
        match writer.merge(&segments).wait() {
            Ok(_) => {
                self.reader.reload().context("reloading the index reader")?;
                Ok(Some(segments.len()))
            }
            Err(error) => {
                tracing::debug!(%error, "merging the index segments: some are being merged");
                Ok(None)
            }
        }
    }

    /// Every product matching `text`, as (slot, score), in no particular order; `None` when
    /// the text has no word to search for (only punctuation, emoji or English stop words).
    pub fn search(&self, text: &str, freshness: Freshness) -> anyhow::Result<Option<Matches>> {
        let words = text::words(&mut self.query_analyzer.clone(), text);
        if words.is_empty() {
            return Ok(None);
        }
        self.kept_or(Lookup::Search, text, freshness, |searcher| {
            let clauses = words
                .iter()
                .take(MAX_QUERY_WORDS)
                .map(|word| (Occur::Must, self.word_query(word)))
                .collect();
            run(searcher, &BooleanQuery::new(clauses))
        })
        .map(Some)
    }

    /// The best [`COMPLETIONS_KEPT`] products, best first (score, then the higher slot),
    /// whose name or tags hold the words of `text`, the last one possibly unfinished (search
    /// as you type).
    pub fn complete(&self, text: &str, freshness: Freshness) -> anyhow::Result<Matches> {
        self.kept_or(Lookup::Complete, text, freshness, |searcher| {
            let mut found = self.completions(searcher, text)?;
            let order =
                |a: &(u32, Score), b: &(u32, Score)| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0));
            if found.len() > COMPLETIONS_KEPT {
                found.select_nth_unstable_by(COMPLETIONS_KEPT - 1, order);
                found.truncate(COMPLETIONS_KEPT);
            }
            found.sort_by(order);
            Ok(found)
        })
    }

    /// The matches kept for `text` at the current index generation, else `compute`d on that
    /// generation's searcher and kept.
    fn kept_or(
        &self,
        lookup: Lookup,
        text: &str,
        freshness: Freshness,
        compute: impl FnOnce(&Searcher) -> anyhow::Result<Vec<(u32, Score)>>,
    ) -> anyhow::Result<Matches> {
        let searcher = self.reader.searcher();
        let key: MatchKey = (searcher.generation().generation_id(), lookup, text.into());
        if freshness == Freshness::Kept
            && let Some(found) = self.matches.get(&key)
        {
            metrics::counter!("catalog_search_matches_total", "source" => "kept").increment(1);
            return Ok(found);
        }
        let found = Arc::new(compute(&searcher)?);
        metrics::counter!("catalog_search_matches_total", "source" => "computed").increment(1);
        self.matches.insert(key, found.clone());
        Ok(found)
    }

    fn completions(&self, searcher: &Searcher, text: &str) -> anyhow::Result<Vec<(u32, Score)>> {
        let finished = text.ends_with(char::is_whitespace);
        let words = text::words(&mut self.query_analyzer.clone(), text);
        let typed = text::words(&mut self.prefix_analyzer.clone(), text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let (whole, last) = match (finished, typed.last()) {
            (false, Some(last)) => (words.iter().take(words.len().saturating_sub(1)), Some(last)),
            _ => (words.iter().take(words.len()), None),
        };
        for word in whole.take(MAX_QUERY_WORDS) {
            clauses.push((
                Occur::Must,
                self.term_in(word, &[self.fields.name, self.fields.tags]),
            ));
        }
        if let Some(last) = last {
            let mut prefixes: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            // Typed as is (`wirel`), and as the analyser stems it (`sony` -> `soni`).
            let stems = text::words(&mut self.query_analyzer.clone(), last);
            for prefix in std::iter::once(last).chain(stems.last()) {
                for field in [self.fields.name, self.fields.tags] {
                    prefixes.push((
                        Occur::Should,
                        Box::new(FuzzyTermQuery::new_prefix(
                            Term::from_field_text(field, prefix),
                            0,
                            false,
                        )),
                    ));
                }
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(prefixes))));
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        run(searcher, &BooleanQuery::new(clauses))
    }

    /// One query word, matched in any field: exactly, with typos (Latin), or by its parts
    /// (a Chinese word the products only hold in pieces, `无线耳机` in `无线蓝牙耳机`).
    fn word_query(&self, word: &str) -> Box<dyn Query> {
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = self
            .fields
            .weighted()
            .into_iter()
            .map(|(field, boost)| {
                let term = TermQuery::new(
                    Term::from_field_text(field, word),
                    IndexRecordOption::WithFreqs,
                );
                (Occur::Should, boosted(Box::new(term), boost))
            })
            .collect();
        let length = word.chars().count();
        if text::is_latin(word) && word.chars().any(|c| c.is_ascii_alphabetic()) && length >= 4 {
            let distance = if length >= 8 { 2 } else { 1 };
            for (field, boost) in self.fields.weighted() {
                let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, word), distance, true);
                alternatives.push((Occur::Should, boosted(Box::new(fuzzy), boost * FUZZY_BOOST)));
            }
        } else if !text::is_latin(word) && length >= 3 {
            let parts: Vec<String> = text::words(&mut self.parts_analyzer.clone(), word)
                .into_iter()
                .filter(|part| part != word)
                .collect();
            if parts.len() >= 2 {
                let all_fields = [
                    self.fields.name,
                    self.fields.tags,
                    self.fields.specs,
                    self.fields.description,
                ];
                let every_part = parts
                    .iter()
                    .map(|part| (Occur::Must, self.term_in(part, &all_fields)))
                    .collect();
                alternatives.push((
                    Occur::Should,
                    boosted(Box::new(BooleanQuery::new(every_part)), PARTS_BOOST),
                ));
            }
        }
        Box::new(BooleanQuery::new(alternatives))
    }

    /// `word` in any of `fields`.
    fn term_in(&self, word: &str, fields: &[Field]) -> Box<dyn Query> {
        let weights = self.fields.weighted();
        Box::new(BooleanQuery::new(
            fields
                .iter()
                .map(|&field| {
                    let boost = weights
                        .iter()
                        .find(|(f, _)| *f == field)
                        .map_or(1.0, |(_, b)| *b);
                    let term = TermQuery::new(
                        Term::from_field_text(field, word),
                        IndexRecordOption::WithFreqs,
                    );
                    (Occur::Should, boosted(Box::new(term), boost))
                })
                .collect(),
        ))
    }

    /// Documents in the index (for tests and metrics).
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn schema(&self) -> tantivy::schema::Schema {
        self.index.schema()
    }
}

fn run(searcher: &Searcher, query: &dyn Query) -> anyhow::Result<Vec<(u32, Score)>> {
    searcher
        .search(query, &SlotsWithScores)
        .context("searching the index")
}

fn boosted(query: Box<dyn Query>, boost: Score) -> Box<dyn Query> {
    Box::new(BoostQuery::new(query, boost))
}

/// The string values of `specs` (and its numbers, so a model number is found), bounded.
fn spec_text(specs: &serde_json::Value) -> String {
    fn walk(value: &serde_json::Value, out: &mut String, depth: usize) {
        if out.len() >= MAX_SPEC_TEXT_BYTES || depth > 8 {
            return;
        }
        match value {
            serde_json::Value::String(text) => {
                out.push_str(text);
                out.push('\n');
            }
            serde_json::Value::Number(number) => {
                out.push_str(&number.to_string());
                out.push('\n');
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|item| walk(item, out, depth + 1));
            }
            serde_json::Value::Object(map) => {
                map.values().for_each(|item| walk(item, out, depth + 1));
            }
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }
    let mut out = String::new();
    walk(specs, &mut out, 0);
    if out.len() > MAX_SPEC_TEXT_BYTES {
        let mut end = MAX_SPEC_TEXT_BYTES;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Collects every matching document as (slot, score).
struct SlotsWithScores;

struct SegmentSlots {
    slots: Column<u64>,
    found: Vec<(u32, Score)>,
}

impl Collector for SlotsWithScores {
    type Fruit = Vec<(u32, Score)>;
    type Child = SegmentSlots;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentSlots> {
        Ok(SegmentSlots {
            slots: reader.fast_fields().u64(SLOT)?,
            found: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(u32, Score)>>) -> tantivy::Result<Self::Fruit> {
        // In slot order: a search walks the rows of its matches, and ascending addresses let
        // the processor prefetch them (segments come in no particular order).
        let mut found: Vec<(u32, Score)> = fruits.into_iter().flatten().collect();
        found.sort_unstable_by_key(|&(slot, _)| slot);
        Ok(found)
    }
}

impl SegmentCollector for SegmentSlots {
    type Fruit = Vec<(u32, Score)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(slot) = self.slots.first(doc).and_then(|s| u32::try_from(s).ok()) {
            self.found.push((slot, score));
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.found
    }
}
