// The local MongoDB-wire server of `cargo xtask up`: mongo-java-server (Maven Central,
// de.bwaldvogel) with its H2 MVStore backend, so data survives restarts.
//
// Why a launcher at all:
// - mongo-java-server reports MongoDB 3.6 to 5.0 with wire versions 6 to 8, and the Rust
//   driver 3.x refuses servers below wire version 9. The server answers the commands the
//   services use the way MongoDB 6.0 does, so it reports 6.0 (wire version 17).
// - H2's MVStore commits on a background timer (about once a second), so a SIGKILL would
//   lose the last second of acknowledged writes. This launcher commits the store before it
//   answers every write command, so an acknowledged write survives a killed process (the
//   page cache keeps it; like MongoDB with w:1, a power cut may lose the newest writes).
// - mongo-java-server applies an update to the very object its store holds, and hands that
//   object (not a copy) to queries and to findAndModify's answer, which are encoded after
//   the collection's lock is released. A concurrent update could then change a document
//   while it is being sent: a findAndModify with `new: true` answered another writer's state
//   (the conformance suite's guarded findOneAndUpdate test caught it), and a find could see
//   a document half-way through an update. Every query result is therefore copied while the
//   lock is held; updates then change the copy and store it, so no stored object is ever
//   changed in place.
// - mongo-java-server uses an index only for a query whose fields are exactly the index's
//   keys, and ignores non-unique indexes. A guarded update such as
//   `{_id: 42, version: 7}` therefore scanned the whole collection (the checkout profile
//   showed more than half of this server's CPU in those scans, growing with every order
//   stored). MongoDB answers any query with an `_id` equality from the `_id` index and checks
//   the rest of the filter on that one document; this launcher does the same.
// - Non-unique indexes are kept too, in memory (MemorySecondaryIndex, rebuilt from the data
//   when a collection opens): a filter with an equality on every key of such an index reads
//   only the documents with that value and checks the rest of the filter on them. Without it
//   the outbox relays' poll (`{outbox_pending: true, ...}`, indexed in MongoDB) decoded the
//   whole collection every second: with 12,000 products this server spent most of a core in
//   Java deserialisation, and seeding 100,000 products did not finish.
// - Committing once per write command made the commit (serialising changed pages) this
//   server's largest cost under concurrent writers. Writes now share commits (group commit):
//   a write is still answered only after a commit that started after it finished, but one
//   commit covers every write that completed while the previous one ran. Pages are stored
//   uncompressed: LZF compression cost CPU on every commit to save disk nobody needs here.
// - The unique indexes (`_id` and the services' unique keys) are kept in memory too
//   (MemoryUniqueIndex, rebuilt from the data when a collection opens), not in H2 maps. H2
//   stores mongo-java-server's index keys with Java serialisation, so every comparison of a
//   lookup's binary search deserialised two keys: a checkout profile (JFR) showed a fifth of
//   this server's CPU there. A hash lookup compares nothing.
// - Both kinds of in-memory index are kept lean, since they grow with the data (CompactKeys,
//   MemorySecondaryIndex): at 97,000 orders they were most of a 556 MB live heap, the library's
//   key wrappers and copies of every `_id` more than the values; 337 MB after.
// - The store's page cache is an eighth of the heap (128 MB under `cargo xtask up`) instead of H2's 16 MB: with the checkout's collections
//   larger than that, most reads missed it and deserialised a whole page of documents
//   (another fifth of the CPU in the same profile).
// - Documents are stored as BSON (BsonDocumentType), not with Java serialisation, H2's default
//   for objects it does not know: every commit rewrites the changed pages, and serialising
//   their documents the Java way (reflection, class descriptors, a handle table per value) was
//   a third of this server's CPU under the checkout. A data file written by an earlier
//   launcher is converted once when it opens (`migrateToBson`).
// - No data-size bookkeeping (collStats' `size`): the library encoded the old and the new
//   document of every write to BSON only to measure them, and kept the running total in a
//   second map that every commit then serialised; collStats and dbStats report the size as
//   of the last launcher that kept it. Documents are encoded for the store into a buffer
//   kept per thread instead of a fresh 256-byte one that grew several times per document.
//   Together with Netty's per-byte release check turned off (xtask's command line):
//   mongo-bench's guarded updates from 8 clients 2,556 -> 3,164 a second, 0.68 -> 0.56 ms of
//   this server's CPU per write (docs/ARCHITECTURE.md).
// - It binds to the given address only and stops cleanly on SIGTERM (closing the store).
//
// Run: java -cp "<libs>/*:<classes>" MongoWireServer <host> <port> <data file>
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.AbstractUniqueIndex;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;
import de.bwaldvogel.mongo.backend.Missing;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.wire.bson.BsonDecoder;
import de.bwaldvogel.mongo.wire.bson.BsonEncoder;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import java.nio.ByteBuffer;
import java.util.AbstractMap;
import java.util.Collection;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map.Entry;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.h2.mvstore.MVMap;
import org.h2.mvstore.DataUtils;
import org.h2.mvstore.MVStore;
import org.h2.mvstore.WriteBuffer;
import org.h2.mvstore.type.BasicDataType;

public final class MongoWireServer {
    /** MongoDB 6.0: wire version 17. */
    enum ReportedVersion implements MongoVersion {
        MONGO_6_0;

        @Override
        public List<Integer> getVersionArray() {
            return List.of(6, 0, 0);
        }

        @Override
        public int getWireVersion() {
            return 17;
        }
    }

    /** The store's page cache in MB (H2's default is 16; see the header): an eighth of the
     *  heap, at most 128. The rest of the heap holds the in-memory indexes and the documents in
     *  flight: with a third of a 384 MB heap as cache and about 100,000 products, the heap
     *  filled and the server spent its time in full collections. */
    private static int pageCacheMb() {
        long eighthOfHeapMb = Runtime.getRuntime().maxMemory() / (8L << 20);
        return (int) Math.max(16, Math.min(128, eighthOfHeapMb));
    }

    /** Commands that change data: the store is committed before they are answered. */
    private static final Set<String> WRITES = Set.of(
            "insert", "update", "delete", "findandmodify", "create", "drop", "dropdatabase",
            "createindexes", "dropindexes", "renamecollection");

    /** The one store of this process (the database's constructor opens collections before
     *  a subclass could keep a field of its own). */
    private static MVStore store;

    /** Write commands finished so far; a write's number is taken after its change is made. */
    private static final AtomicLong writesFinished = new AtomicLong();

    /** Held while committing; writes waiting for it find out whether the commit that just ran
     *  covered them. */
    private static final Object COMMIT_LOCK = new Object();

    /** Full collection scans per namespace (`serverStatus.ferroshop.collectionScans`): the
     *  conformance suite checks that indexed filters do not scan. */
    private static final Map<String, AtomicLong> collectionScans = new ConcurrentHashMap<>();

    /** Documents read through an index to answer queries, per namespace
     *  (`serverStatus.ferroshop.documentsExamined`, after MongoDB's `totalDocsExamined`; a scan
     *  counts in collectionScans instead): the conformance suite checks that a filter two
     *  indexes can serve reads through the one that holds fewer documents. */
    private static final Map<String, AtomicLong> documentsExamined = new ConcurrentHashMap<>();

    /** Write commands per namespace (`serverStatus.ferroshop.writesByNamespace`): where the
     *  writes an order costs go. */
    private static final Map<String, AtomicLong> writesByNamespace = new ConcurrentHashMap<>();

    /** Every command by name and namespace (`serverStatus.ferroshop.commands`, keys such as
     *  `find payments.orders`): the reads an order costs as well as its writes, since every
     *  command, read or write, costs this server a round of decoding, matching and encoding. */
    private static final Map<String, AtomicLong> commandsByNamespace = new ConcurrentHashMap<>();

    /** Every write numbered up to this is in a committed version (guarded by COMMIT_LOCK). */
    private static long committedThrough;

    /** Commits made so far (guarded by COMMIT_LOCK); `serverStatus` reports it. */
    private static long commits;

    /** Returns once the write numbered {@code write} is committed: by a commit that started
     *  after it finished, run here or by another thread meanwhile. */
    static void awaitCommitted(long write) {
        synchronized (COMMIT_LOCK) {
            if (committedThrough >= write) {
                return;
            }
            // Every write numbered up to `covered` made its change before this commit starts.
            long covered = writesFinished.get();
            store.commit();
            committedThrough = covered;
            commits++;
        }
    }

    /** How the in-memory indexes key their maps: a single-key index's value itself (with a
     *  stand-in for null, which a ConcurrentHashMap cannot hold) instead of the library's
     *  `KeyValue`, a list wrapper that cost three objects (64 bytes) per indexed document. A
     *  `KeyValue` is equal to another exactly when their value lists are, so two one-value
     *  keys are equal exactly when their values are; a compound index keeps its `KeyValue`s. */
    static final class CompactKeys {
        private static final Object NULL_VALUE = new Object();

        private CompactKeys() {
        }

        static Object of(KeyValue keyValue) {
            if (keyValue.size() != 1) {
                return keyValue;
            }
            Object value = keyValue.get(0);
            return value == null ? NULL_VALUE : value;
        }

        static KeyValue expand(Object key) {
            if (key instanceof KeyValue keyValue) {
                return keyValue;
            }
            return new KeyValue(new Object[] {key == NULL_VALUE ? null : key});
        }
    }

    /** A non-unique index, in memory: value -> the positions of the documents holding it (a
     *  document with an array under a key is listed under each element, as in MongoDB).
     *  mongo-java-server has no secondary indexes of its own (it ignores them); the
     *  collection keeps this one current through the same calls as its unique indexes, under
     *  the collection's lock, and builds it from the stored documents when it opens. Only
     *  plain equalities on every key use it; any other filter goes the library's way. Positions
     *  are the H2 map's keys, the documents' `_id` values.
     *
     *  Its size grows with the data, so it is kept lean (a heap histogram of a stack after
     *  88,000 orders: these indexes held 692,000 documents): a value held by one document maps
     *  to that position itself, a set is made only for a value that two or more hold, and a
     *  removal finds the values from the document being removed (the library passes the stored
     *  document) instead of a second map from position to values. */
    static final class MemorySecondaryIndex extends Index<Object> {
        /** Compact key -> one position, or a {@link Positions} of two or more. */
        private final Map<Object, Object> positionsByValue = new HashMap<>();
        private long documents;

        /** Two or more positions, in the order they were added (a plain set can never be a
         *  position: `_id` values are not sets). */
        private static final class Positions extends LinkedHashSet<Object> {
            private static final long serialVersionUID = 1L;
        }

        MemorySecondaryIndex(String name, List<IndexKey> keys, boolean sparse) {
            super(name, keys, sparse);
        }

        private static Object positionOf(Document document) {
            return Missing.ofNullable(document.get("_id"));
        }

        private boolean skipsAsSparse(Set<KeyValue> values) {
            return isSparse() && values.stream().allMatch(v -> v.stream().allMatch(Missing::isNullOrMissing));
        }

        /** Never decides a document's position: the `_id` index does. */
        @Override
        public synchronized Object getPosition(Document document) {
            return null;
        }

        @Override
        public void checkAdd(Document document, MongoCollection<Object> collection) {
            // Not unique: every document may be added.
        }

        @Override
        public synchronized void add(Document document, Object position, MongoCollection<Object> collection) {
            Set<KeyValue> values = getKeyValues(document);
            if (skipsAsSparse(values)) {
                return;
            }
            // The `_id` index's own copy of the position: the library reads the collection once
            // per index when it opens, so each index was given an `_id` object of its own.
            Object shared = collection instanceof SnapshotH2Collection snapshots
                    ? snapshots.sharedPosition(position) : position;
            for (KeyValue value : values) {
                positionsByValue.merge(CompactKeys.of(value), shared, (held, added) -> {
                    if (held instanceof Positions positions) {
                        positions.add(added);
                        return positions;
                    }
                    Positions positions = new Positions();
                    positions.add(held);
                    positions.add(added);
                    return positions;
                });
            }
            documents++;
        }

        @Override
        public synchronized Object remove(Document document) {
            Object position = positionOf(document);
            Set<KeyValue> values = getKeyValues(document);
            if (skipsAsSparse(values)) {
                return null;
            }
            boolean removed = false;
            for (KeyValue value : values) {
                Object key = CompactKeys.of(value);
                Object held = positionsByValue.get(key);
                if (held instanceof Positions positions) {
                    removed |= positions.remove(position);
                    if (positions.size() == 1) {
                        positionsByValue.put(key, positions.iterator().next());
                    }
                } else if (held != null && held.equals(position)) {
                    positionsByValue.remove(key);
                    removed = true;
                }
            }
            if (!removed) {
                return null;
            }
            documents--;
            return position;
        }

        /** Every key of the index compared for equality with a plain value (not null, not an
         *  operator document, not an array, whose equality MongoDB defines differently). */
        @Override
        public synchronized boolean canHandle(Document query) {
            for (String key : keys()) {
                // A dotted key names a nested field, which this index does not look up.
                if (key.contains(".") || !query.containsKey(key)) {
                    return false;
                }
                Object value = query.get(key);
                if (value == null || value instanceof Missing || value instanceof Document
                        || value instanceof java.util.Collection
                        || value instanceof java.util.regex.Pattern
                        || value.getClass().getSimpleName().contains("RegularExpression")) {
                    return false;
                }
            }
            return true;
        }

        /** A copy: the caller reads the documents after this returns. */
        @Override
        public synchronized Iterable<Object> getPositions(Document query) {
            // The queried values, normalised the way stored documents' values are.
            Document queried = new Document();
            for (String key : keys()) {
                queried.put(key, query.get(key));
            }
            List<Object> positions = new ArrayList<>();
            for (KeyValue value : getKeyValues(queried)) {
                Object held = positionsByValue.get(CompactKeys.of(value));
                if (held instanceof Positions several) {
                    positions.addAll(several);
                } else if (held != null) {
                    positions.add(held);
                }
            }
            return positions;
        }

        /** How many documents {@link #getPositions} would return for {@code query}, without
         *  copying them: what choosing among indexes compares. */
        synchronized long countPositions(Document query) {
            Document queried = new Document();
            for (String key : keys()) {
                queried.put(key, query.get(key));
            }
            long count = 0;
            for (KeyValue value : getKeyValues(queried)) {
                Object held = positionsByValue.get(CompactKeys.of(value));
                if (held instanceof Positions several) {
                    count += several.size();
                } else if (held != null) {
                    count++;
                }
            }
            return count;
        }

        @Override
        public synchronized long getCount() {
            return documents;
        }

        @Override
        public long getDataSize() {
            return 0;
        }

        @Override
        public void checkUpdate(Document oldDocument, Document newDocument, MongoCollection<Object> collection) {
            // Not unique: every update may be applied.
        }

        @Override
        public synchronized void updateInPlace(Document oldDocument, Document newDocument, Object position,
                MongoCollection<Object> collection) {
            if (!nullAwareEqualsKeys(oldDocument, newDocument)) {
                remove(oldDocument);
                add(newDocument, position, collection);
            }
        }

        @Override
        public synchronized void drop() {
            positionsByValue.clear();
            documents = 0;
        }
    }

    /** A unique index, in memory: value -> the position (`_id`) of the one document holding
     *  it, keyed by {@link CompactKeys} (for the `_id` index key and position are then one
     *  object). Filled from the stored documents when its collection opens (the library adds
     *  every document to an empty index), then kept current by the library under the
     *  collection's lock, exactly as it keeps H2's index maps. */
    static final class MemoryUniqueIndex extends AbstractUniqueIndex<Object> {
        private final Map<Object, Object> positions = new ConcurrentHashMap<>();
        /** Whether this is the collection's `_id` index, whose keys are the positions. */
        private final boolean idIndex;

        MemoryUniqueIndex(String name, List<IndexKey> keys, boolean sparse) {
            super(name, keys, sparse);
            idIndex = keys().equals(List.of("_id"));
        }

        @Override
        protected Object removeDocument(KeyValue keyValue) {
            return positions.remove(CompactKeys.of(keyValue));
        }

        @Override
        protected boolean putKeyPosition(KeyValue keyValue, Object position) {
            return positions.putIfAbsent(CompactKeys.of(keyValue), Missing.ofNullable(position)) == null;
        }

        /** Only the library's regular-expression lookups walk the whole index. */
        @Override
        protected Iterable<Entry<KeyValue, Object>> getIterable() {
            List<Entry<KeyValue, Object>> entries = new ArrayList<>(positions.size());
            for (Entry<Object, Object> entry : positions.entrySet()) {
                entries.add(new AbstractMap.SimpleImmutableEntry<>(CompactKeys.expand(entry.getKey()),
                        entry.getValue()));
            }
            return entries;
        }

        @Override
        protected Object getPosition(KeyValue keyValue) {
            return positions.get(CompactKeys.of(keyValue));
        }

        @Override
        public long getCount() {
            return positions.size();
        }

        @Override
        public boolean isEmpty() {
            return positions.isEmpty();
        }

        @Override
        public long getDataSize() {
            return getCount();
        }

        @Override
        public void drop() {
            positions.clear();
        }
    }

    /** A collection's documents as BSON, length-prefixed, in H2's pages. */
    static final class BsonDocumentType extends BasicDataType<Document> {
        static final BsonDocumentType INSTANCE = new BsonDocumentType();

        @Override
        public int getMemory(Document document) {
            return estimatedMemory(document);
        }

        /** What H2's cache accounts for a value: a rough size of the Java objects. */
        private static int estimatedMemory(Object value) {
            if (value instanceof Document document) {
                int bytes = 64;
                for (Map.Entry<String, Object> entry : document.entrySet()) {
                    bytes += 48 + 2 * entry.getKey().length() + estimatedMemory(entry.getValue());
                }
                return bytes;
            }
            if (value instanceof Collection<?> items) {
                int bytes = 48;
                for (Object item : items) {
                    bytes += 8 + estimatedMemory(item);
                }
                return bytes;
            }
            if (value instanceof String text) {
                return 48 + 2 * text.length();
            }
            return 24;
        }

        /** Each serialising thread encodes into one buffer of its own, kept between
         *  documents: a fresh 256-byte buffer per document was allocated, grown (and copied)
         *  three or four times for a product, and copied once more into a byte array. */
        private static final int SCRATCH_BYTES = 16 * 1024;
        private static final ThreadLocal<ByteBuf> SCRATCH =
                ThreadLocal.withInitial(() -> Unpooled.buffer(SCRATCH_BYTES));
        /** A buffer grown past this by one large document is not kept. */
        private static final int SCRATCH_KEPT_BYTES = 1024 * 1024;

        @Override
        public void write(WriteBuffer buffer, Document document) {
            ByteBuf encoded = SCRATCH.get();
            encoded.clear();
            BsonEncoder.encodeDocument(document, encoded);
            int length = encoded.readableBytes();
            buffer.putVarInt(length).put(encoded.array(), encoded.arrayOffset() + encoded.readerIndex(), length);
            if (encoded.capacity() > SCRATCH_KEPT_BYTES) {
                SCRATCH.remove();
            }
        }

        @Override
        public Document read(ByteBuffer buffer) {
            byte[] bytes = new byte[DataUtils.readVarInt(buffer)];
            buffer.get(bytes);
            return BsonDecoder.decodeBson(Unpooled.wrappedBuffer(bytes));
        }

        @Override
        public Document[] createStorage(int size) {
            return new Document[size];
        }
    }

    /** How a collection's data map is opened: `_id` keys as H2 stores them, BSON values. */
    static MVMap.Builder<Object, Document> documentsMap() {
        return new MVMap.Builder<Object, Document>().valueType(BsonDocumentType.INSTANCE);
    }

    /** Marks a store whose documents are BSON (a "$" keeps the name apart from every
     *  database's maps: database names cannot hold one). */
    private static final String FORMAT_MAP = "$ferroshop.format";

    /** Converts the data maps of a store written by an earlier launcher (Java-serialised
     *  documents) to BSON, once, before the server listens. Each map is copied to a new one,
     *  which then takes the old one's name and is recorded as converted in the same commit
     *  (auto-commit is off meanwhile), so a conversion killed half-way is redone from the
     *  untouched original the next time. */
    static void migrateToBson() {
        MVMap<String, String> format = store.openMap(FORMAT_MAP);
        if ("bson".equals(format.get("documents"))) {
            return;
        }
        store.setAutoCommitDelay(0);
        for (String name : new ArrayList<>(store.getMapNames())) {
            if (name.startsWith("$converting.")) {
                store.removeMap(name);
            }
        }
        int converted = 0;
        for (String name : new ArrayList<>(store.getMapNames())) {
            if (!name.startsWith("databases.") || "bson".equals(format.get("map:" + name))) {
                continue;
            }
            MVMap<Object, Object> original = store.openMap(name);
            MVMap<Object, Document> copy = store.openMap("$converting." + name, documentsMap());
            for (Map.Entry<Object, Object> entry : original.entrySet()) {
                copy.put(entry.getKey(), (Document) entry.getValue());
            }
            store.removeMap(original);
            store.renameMap(copy, name);
            format.put("map:" + name, "bson");
            store.commit();
            converted++;
        }
        format.put("documents", "bson");
        store.commit();
        store.setAutoCommitDelay(1000);
        if (converted > 0) {
            System.out.println("mongo-wire: converted " + converted + " collections to BSON");
        }
    }

    /** A collection whose query results are copies, taken under the collection's lock. */
    static final class SnapshotH2Collection extends H2Collection {
        SnapshotH2Collection(MongoDatabase database, String name, CollectionOptions options,
                MVMap<Object, Document> data, MVMap<String, Object> meta, CursorRegistry cursors) {
            super(database, name, options, data, meta, cursors);
        }

        /** No data-size bookkeeping: for collStats' `size` alone, the library encoded the old
         *  and the new document of every insert, update and delete to BSON just to measure
         *  them, and wrote the running total into the collection's meta map, a second map
         *  changed (and serialised) in every commit. Nothing here reads the figure; collStats
         *  and dbStats report the size as of the last launcher that kept it (0 for a new
         *  collection). */
        @Override
        protected boolean tracksDataSize() {
            return false;
        }

        /** A filter with an `_id` equality reads that one document through the `_id` index and
         *  checks the rest of the filter on it, as MongoDB does. Any other filter reads through
         *  the index, among those that can serve it, that holds the fewest documents for the
         *  filter's values, and checks the rest of the filter on those; with none, it scans.
         *  The library took the first index that could serve the filter, in the order the
         *  indexes were created: payment-service's reconciler asks every second for
         *  `{refund_check: true, status: "succeeded", ...}`, and the `status` index, created
         *  first, made it read every succeeded payment ever stored (24 ms of this server's CPU
         *  a second with 13,000 payments, growing with each one) to find the few still
         *  flagged. MongoDB's planner picks the index that finds the fewest too. */
        @Override
        protected QueryResult queryDocuments(Document query, Document orderBy, int numberToSkip,
                int limit, int batchSize, Document fieldSelector) {
            if (query.size() > 1 && query.containsKey("_id")) {
                Document byId = new Document("_id", query.get("_id"));
                for (Index<Object> index : getIndexes()) {
                    if (index.canHandle(byId)) {
                        return matchExamined(query, index.getPositions(byId), orderBy, numberToSkip,
                                limit, batchSize, fieldSelector);
                    }
                }
            }
            // The chosen index: a secondary one is only counted while choosing (its positions
            // are copied once chosen); another kind (unique) answers its positions at once.
            MemorySecondaryIndex fewestSecondary = null;
            Iterable<Object> fewestPositions = null;
            long fewest = Long.MAX_VALUE;
            for (Index<Object> index : getIndexes()) {
                if (!index.canHandle(query)) {
                    continue;
                }
                if (index instanceof MemorySecondaryIndex secondary) {
                    long count = secondary.countPositions(query);
                    if (count < fewest) {
                        fewest = count;
                        fewestSecondary = secondary;
                        fewestPositions = null;
                    }
                } else {
                    Iterable<Object> positions = index.getPositions(query);
                    long count = sizeOf(positions);
                    if (count < fewest) {
                        fewest = count;
                        fewestSecondary = null;
                        fewestPositions = positions;
                    }
                }
            }
            if (fewestSecondary != null) {
                fewestPositions = fewestSecondary.getPositions(query);
            }
            if (fewestPositions == null) {
                return super.queryDocuments(query, orderBy, numberToSkip, limit, batchSize, fieldSelector);
            }
            return matchExamined(query, fewestPositions, orderBy, numberToSkip, limit, batchSize, fieldSelector);
        }

        /** Matches the documents at {@code positions}, counted in documentsExamined. */
        private QueryResult matchExamined(Document query, Iterable<Object> positions, Document orderBy,
                int numberToSkip, int limit, int batchSize, Document fieldSelector) {
            documentsExamined.computeIfAbsent(getFullName(), ns -> new AtomicLong()).addAndGet(sizeOf(positions));
            return matchDocuments(query, positions, orderBy, numberToSkip, limit, batchSize, fieldSelector);
        }

        /** How many documents an index answered (its answers are lists; anything else is
         *  counted as the one position a unique lookup gives). */
        private static long sizeOf(Iterable<Object> positions) {
            return positions instanceof Collection<?> listed ? listed.size() : 1;
        }

        /** The object the `_id` index holds for a position equal to {@code position} (or
         *  {@code position} itself), so the secondary indexes share it instead of holding
         *  copies of every `_id` (measured: a fifth of their memory). */
        Object sharedPosition(Object position) {
            for (Index<Object> index : getIndexes()) {
                if (index instanceof MemoryUniqueIndex unique && unique.idIndex) {
                    Object held = unique.positions.get(position);
                    return held != null ? held : position;
                }
            }
            return position;
        }

        /** The scan the library falls back to without a usable index: counted. */
        @Override
        protected QueryResult matchDocuments(Document query, Document orderBy, int numberToSkip,
                int limit, int batchSize, Document fieldSelector) {
            collectionScans.computeIfAbsent(getFullName(), ns -> new AtomicLong()).incrementAndGet();
            return super.matchDocuments(query, orderBy, numberToSkip, limit, batchSize, fieldSelector);
        }

        @Override
        protected QueryResult createQueryResult(List<Document> matched, int batchSize) {
            List<Document> copies = new ArrayList<>(matched.size());
            for (Document document : matched) {
                copies.add(document == null ? null : document.cloneDeeply());
            }
            return super.createQueryResult(copies, batchSize);
        }
    }

    /** H2's database with {@link SnapshotH2Collection}s (same map names as H2Database). */
    static final class SnapshotH2Database extends H2Database {
        SnapshotH2Database(String name, CursorRegistry cursors) {
            super(name, store, cursors);
        }

        @Override
        protected MongoCollection<Object> openOrCreateCollection(String name, CollectionOptions options) {
            String namespace = getFullCollectionNamespace(name);
            MVMap<Object, Document> data = store.openMap("databases." + namespace, documentsMap());
            MVMap<String, Object> meta = store.openMap("meta." + namespace);
            return new SnapshotH2Collection(this, name, options, data, meta, cursorRegistry);
        }

        /** Kept in memory (see MemoryUniqueIndex). The H2 map an earlier launcher kept the
         *  index in is removed: nothing would keep it current. */
        @Override
        protected Index<Object> openOrCreateUniqueIndex(String collectionName, String indexName,
                List<IndexKey> keys, boolean sparse) {
            String stale = getFullCollectionNamespace(collectionName) + "._index_" + indexName;
            if (store.hasMap(stale)) {
                store.removeMap(stale);
            }
            return new MemoryUniqueIndex(indexName, keys, sparse);
        }

        /** Kept in memory (see MemorySecondaryIndex) instead of ignored. */
        @Override
        protected Index<Object> openOrCreateSecondaryIndex(String collectionName, String indexName,
                List<IndexKey> keys, boolean sparse) {
            return new MemorySecondaryIndex(indexName, keys, sparse);
        }
    }

    static final class DurableH2Backend extends H2Backend {
        DurableH2Backend(MVStore store) {
            super(store);
        }

        @Override
        protected MongoDatabase openOrCreateDatabase(String name) {
            return new SnapshotH2Database(name, getCursorRegistry());
        }

        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            Document answer = super.handleCommand(channel, database, command, query);
            Object target = query.get(command);
            String commandKey = command.toLowerCase(Locale.ROOT) + " "
                    + (target instanceof String name ? database + "." + name : database);
            commandsByNamespace.computeIfAbsent(commandKey, key -> new AtomicLong()).incrementAndGet();
            if (command.equalsIgnoreCase("serverStatus")) {
                // The benchmark counts the writes an order costs from these.
                Document counters = new Document();
                counters.put("writeCommands", writesFinished.get());
                synchronized (COMMIT_LOCK) {
                    counters.put("commits", commits);
                }
                Document scans = new Document();
                collectionScans.forEach((namespace, count) -> scans.put(namespace, count.get()));
                counters.put("collectionScans", scans);
                Document examined = new Document();
                documentsExamined.forEach((namespace, count) -> examined.put(namespace, count.get()));
                counters.put("documentsExamined", examined);
                Document writes = new Document();
                writesByNamespace.forEach((namespace, count) -> writes.put(namespace, count.get()));
                counters.put("writesByNamespace", writes);
                Document commands = new Document();
                commandsByNamespace.forEach((key, count) -> commands.put(key, count.get()));
                counters.put("commands", commands);
                answer.put("ferroshop", counters);
            }
            if (WRITES.contains(command.toLowerCase(Locale.ROOT))) {
                Object collection = query.get(command);
                String namespace = collection instanceof String name ? database + "." + name : database;
                writesByNamespace.computeIfAbsent(namespace, ns -> new AtomicLong()).incrementAndGet();
                awaitCommitted(writesFinished.incrementAndGet());
            }
            return answer;
        }
    }

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: MongoWireServer <host> <port> <data file>");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        store = new MVStore.Builder().fileName(args[2]).cacheSize(pageCacheMb()).open();
        migrateToBson();
        H2Backend backend = new DurableH2Backend(store);
        backend.version(ReportedVersion.MONGO_6_0);
        MongoServer server = new MongoServer(backend);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("mongo-wire: shutting down");
            server.shutdown();
        }));
        server.bind(host, port);
        System.out.println("mongo-wire: listening on " + host + ":" + port + ", data in " + args[2]);
    }
}
