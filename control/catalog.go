package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/store"
)

// The catalogue is what a mount keeps of every task without holding its
// record: enough to list, count and order tasks and to serve the names and
// sizes of their outputs. Records (with their keys) are read when a task
// is asked for by id or changes; plans when one of its outputs is opened
// (Outputs). docs/scale.md says why.
//
// The catalogue is also persisted in the task store as index shards
// (index/NNN.json), each summary tagged with the ETag of the record it
// was made from. A mount starts from one LIST of tasks/ and the shards:
// only records whose listed ETag differs from their summary's (changed
// since, or never summarised: a store from before the index) are read.
// The shards are a cache of the records: a lost or stale shard costs
// reads at the next start, never a wrong answer.

// Store layout of the index and of the plans.
const (
	indexPrefix = "index/"
	plansPrefix = "plans/"
	indexShards = 1000
)

// planKey is where a task's plan is kept, apart from its record.
func planKey(id string) string { return plansPrefix + id + ".json" }

// summary is one task in the catalogue. Summaries are never changed once
// made (a new one replaces the old), so they can be read outside the lock.
type summary struct {
	ID         string
	ETag       string // of the record it was made from
	Status     Status
	CreateTime string
	EndTime    string
	Created    int64
	OutBucket  string
	OutObject  string
	// SrcDir is the input bucket, "/", and the input folder ("" or ending
	// in "/"): a segment output named N is most likely made from the
	// object SrcDir+N, so its first open can start that GET before the
	// plan says (Outputs.speculate). "" for summaries read from shards
	// written before it was kept.
	SrcDir string
	// Outline is a SUCCEEDED task's outputs in brief: the names are not
	// kept (docs/scale.md).
	Outline outline
}

// outline is what the catalogue keeps of a SUCCEEDED task's outputs:
// how many can be opened and the folders they lie in, not their names.
// Names and sizes are loaded with the task's plan when first needed
// (Outputs.loadFiles): a title of 43 outputs held 2.5 KB of names, sizes and
// inode numbers in every mount, 250 MB at 100,000 tasks, and a title of
// 3,600 segments 100 KB. The folders answer, without the names, whether
// a path below the output folder is a folder of the task, which is what
// walking down to an output (and the checks between tasks) asks.
type outline struct {
	Outs int32 // outputs that can be opened (kinds 'p' and 's')
	// Dirs are the folders below the output folder that hold outputs,
	// each relative to it and ending in "/", sorted, each followed by a
	// NUL byte (no servable name holds one). "" for outputs all at the top.
	Dirs string
}

// hasDir reports whether dir ("" or ending in "/", relative to the
// output folder) holds some output: "" holds them all.
func (ol *outline) hasDir(dir string) bool {
	if dir == "" {
		return ol.Outs > 0
	}
	for rest := ol.Dirs; rest != ""; {
		d, after, _ := strings.Cut(rest, "\x00")
		if d == dir {
			return true
		}
		rest = after
	}
	return false
}

// eachDir calls fn with each of the outline's folders.
func (ol *outline) eachDir(fn func(dir string)) {
	for rest := ol.Dirs; rest != ""; {
		d, after, _ := strings.Cut(rest, "\x00")
		fn(d)
		rest = after
	}
}

// outlineOf outlines a file list.
func outlineOf(fl *fileList) outline {
	return outlineNames(fl.len(), func(i int) (string, bool) { return fl.name(i), fl.kinds[i] != 'x' })
}

// outlineOfPlan outlines a plan's outputs in folder object, as
// outlineOf(filesOf(...)) does without hashing every file's inode number
// (a start over records without shards outlines every plan).
func outlineOfPlan(object string, plan *Plan) outline {
	return outlineNames(len(plan.Files), func(i int) (string, bool) {
		name := plan.Files[i].Name
		return name, validateKeyPath(object+"/"+name) == nil
	})
}

// outlineNames outlines n outputs: nameOf(i) is the i-th one's name and
// whether it can be served.
func outlineNames(n int, nameOf func(i int) (string, bool)) outline {
	var ol outline
	dirs := map[string]bool{}
	for i := range n {
		name, ok := nameOf(i)
		if !ok {
			continue
		}
		ol.Outs++
		for j := strings.LastIndexByte(name, '/'); j > 0; j = strings.LastIndexByte(name[:j], '/') {
			if dirs[name[:j+1]] {
				break // its parents are in too
			}
			dirs[name[:j+1]] = true
		}
	}
	sorted := slices.Sorted(maps.Keys(dirs))
	var b strings.Builder
	for _, d := range sorted {
		b.WriteString(d)
		b.WriteByte(0)
	}
	ol.Dirs = b.String()
	return ol
}

// fileList holds a plan's output files without their content: names,
// exact sizes and inode numbers, in the plan's order, packed. Lists are
// loaded when first needed and kept in a bounded cache (Outputs.loadFiles).
type fileList struct {
	names string   // every name, back to back
	ends  []uint32 // where each name ends in names
	meta  []fileMeta
	// kinds has one byte per file: 'p' served from memory (playlist, MPD,
	// protected init segment), 's' a segment encrypted when read, 'x' a
	// name that could never be opened (a record saved before names were
	// checked): not served.
	kinds string
	// sorted holds, for lists of more than scanFiles files, the indices
	// of the served files sorted by name (smaller lists are scanned).
	sorted []int32
}

type fileMeta struct {
	size int64
	ino  uint64
}

func (fl *fileList) len() int { return len(fl.ends) }

func (fl *fileList) name(i int) string {
	start := uint32(0)
	if i > 0 {
		start = fl.ends[i-1]
	}
	return fl.names[start:fl.ends[i]]
}

// scanFiles is the most files a task's names are scanned for rather than
// searched.
const scanFiles = 32

// find returns the index of the served file named rel, or -1.
func (fl *fileList) find(rel string) int {
	if p := fl.sorted; p != nil {
		k := sort.Search(len(p), func(j int) bool { return fl.name(int(p[j])) >= rel })
		if k < len(p) && fl.name(int(p[k])) == rel {
			return int(p[k])
		}
		return -1
	}
	for i := 0; i < fl.len(); i++ {
		if fl.kinds[i] != 'x' && fl.name(i) == rel {
			return i
		}
	}
	return -1
}

// under calls fn with the served names that start with rel (sorted only
// for lists of many files), until fn returns false.
func (fl *fileList) under(rel string, fn func(name string) bool) {
	if p := fl.sorted; p != nil {
		k := sort.Search(len(p), func(j int) bool { return fl.name(int(p[j])) >= rel })
		for ; k < len(p) && strings.HasPrefix(fl.name(int(p[k])), rel); k++ {
			if !fn(fl.name(int(p[k]))) {
				return
			}
		}
		return
	}
	for i := 0; i < fl.len(); i++ {
		if fl.kinds[i] != 'x' && strings.HasPrefix(fl.name(i), rel) && !fn(fl.name(i)) {
			return
		}
	}
}

// filesOf lists a plan's output files.
func filesOf(id, object string, plan *Plan) *fileList {
	n := len(plan.Files)
	fl := &fileList{ends: make([]uint32, n), meta: make([]fileMeta, n)}
	var names strings.Builder
	kinds := make([]byte, n)
	for i := range plan.Files {
		f := &plan.Files[i]
		switch {
		case validateKeyPath(object+"/"+f.Name) != nil:
			kinds[i] = 'x' // its name is not needed
		case f.Playlist != nil:
			kinds[i] = 'p'
			names.WriteString(f.Name)
		default:
			kinds[i] = 's'
			names.WriteString(f.Name)
		}
		fl.ends[i] = uint32(names.Len())
		fl.meta[i] = fileMeta{f.Size, inoOf(id, f)}
	}
	fl.names, fl.kinds = names.String(), string(kinds)
	if n > scanFiles {
		for i := 0; i < n; i++ {
			if fl.kinds[i] != 'x' {
				fl.sorted = append(fl.sorted, int32(i))
			}
		}
		slices.SortFunc(fl.sorted, func(a, b int32) int { return strings.Compare(fl.name(int(a)), fl.name(int(b))) })
	}
	return fl
}

// summarize makes the summary of a record (ETag etag); ol outlines its
// outputs when it is SUCCEEDED.
func summarize(rec *record, etag string, ol *outline) *summary {
	s := &summary{ID: rec.TaskID, ETag: etag, Status: rec.Status, CreateTime: rec.CreateTime,
		EndTime: rec.EndTime, Created: rec.Created, OutBucket: rec.Output.Bucket, OutObject: rec.Output.Object,
		SrcDir: srcDirOf(rec.Input)}
	if rec.Status == Succeeded && ol != nil {
		s.Outline = *ol
	}
	return s
}

// srcDirOf is SrcDir for a task's input: its bucket and the folder of
// its playlist, the planner's base folder (names of whole-segment outputs
// are their sources' keys below it).
func srcDirOf(in Location) string {
	if in.Bucket == "" {
		return ""
	}
	dir := path.Dir(in.Object)
	if dir == "." {
		return in.Bucket + "/"
	}
	return in.Bucket + "/" + dir + "/"
}

// newer reports whether task a was created after task b: the newer of two
// tasks writing one output path wins.
func (a *summary) newer(b *summary) bool {
	if a.CreateTime != b.CreateTime { // records saved before Created existed have 0
		return a.CreateTime > b.CreateTime
	}
	if a.Created != b.Created {
		return a.Created > b.Created
	}
	return a.ID > b.ID
}

// shardOf is the index shard a task's summary is kept in.
func shardOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % indexShards)
}

func shardKey(n int) string { return fmt.Sprintf("%s%03d.json", indexPrefix, n) }

// shardNumber is the shard a key names.
func shardNumber(key string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(key, indexPrefix), ".json"))
	return n, err == nil && n >= 0 && n < indexShards && shardKey(n) == key
}

// catalog holds the summaries by shard, so a shard is written without
// walking every task. Guarded by Manager.mu.
type catalog struct {
	shards [indexShards]map[string]*summary
	n      int
}

func (c *catalog) get(id string) *summary {
	return c.shards[shardOf(id)][id]
}

func (c *catalog) put(s *summary) {
	sh := &c.shards[shardOf(s.ID)]
	if *sh == nil {
		*sh = map[string]*summary{}
	}
	if _, ok := (*sh)[s.ID]; !ok {
		c.n++
	}
	(*sh)[s.ID] = s
}

func (c *catalog) remove(id string) {
	sh := c.shards[shardOf(id)]
	if _, ok := sh[id]; ok {
		delete(sh, id)
		c.n--
	}
}

func (c *catalog) each(fn func(*summary)) {
	for _, sh := range c.shards {
		for _, s := range sh {
			fn(s)
		}
	}
}

// A shard is stored as text: the line "mpcfs-index 4", then tokens each
// ended by a NUL byte (no task id, ETag, bucket or servable name holds
// one): for each task its id, record ETag, status, create_time,
// end_time, created_unix_nano, output bucket and folder, SrcDir, the
// number of outputs that can be opened, the number of folders and each
// folder (outline). Shards of versions 2 (no SrcDir) and 3 (every
// output's name, size and inode instead of the outline) are still read.
// Decoding copies each task's strings into one string of its own, so a
// mount start over 100,000 tasks is short and compact.
const shardHeader = "mpcfs-index 4\n"

// Headers of shards written by older versions, which listed every file.
const (
	shardHeaderV3 = "mpcfs-index 3\n"
	shardHeaderV2 = "mpcfs-index 2\n"
)

// encodeShard writes a shard. A task with a NUL byte in a field is left
// out: it is read from its record at the next start.
func encodeShard(tasks []*summary) []byte {
	var b strings.Builder
	b.WriteString(shardHeader)
	var tok []string
	for _, s := range tasks {
		tok = append(tok[:0], s.ID, s.ETag, string(s.Status), s.CreateTime, s.EndTime,
			strconv.FormatInt(s.Created, 10), s.OutBucket, s.OutObject, s.SrcDir, strconv.Itoa(int(s.Outline.Outs)))
		n := strings.Count(s.Outline.Dirs, "\x00")
		tok = append(tok, strconv.Itoa(n))
		s.Outline.eachDir(func(d string) { tok = append(tok, d) })
		if slices.ContainsFunc(tok, func(t string) bool { return strings.IndexByte(t, 0) >= 0 }) {
			continue
		}
		for _, t := range tok {
			b.WriteString(t)
			b.WriteByte(0)
		}
	}
	return []byte(b.String())
}

// decodeShard reads a shard written by encodeShard (or an older version).
func decodeShard(data []byte) ([]*summary, error) {
	var str string
	text, version := string(data), 0
	for v, h := range [...]string{2: shardHeaderV2, 3: shardHeaderV3, 4: shardHeader} {
		if rest, ok := strings.CutPrefix(text, h); ok && h != "" {
			str, version = rest, v
		}
	}
	if version == 0 {
		return nil, errors.New("not an index shard of this version")
	}
	next := func() (string, bool) {
		i := strings.IndexByte(str, 0)
		if i < 0 {
			return "", false
		}
		t := str[:i]
		str = str[i+1:]
		return t, true
	}
	bad := errors.New("malformed index shard")
	buckets := map[string]string{} // one copy of each bucket name
	var out []*summary
	var blob strings.Builder
	for str != "" {
		var f [9]string // f[8] SrcDir (from version 3)
		for i := range f {
			if i == 8 && version < 3 {
				continue
			}
			t, ok := next()
			if !ok {
				return nil, bad
			}
			f[i] = t
		}
		created, err := strconv.ParseInt(f[5], 10, 64)
		if err != nil {
			return nil, bad
		}
		var ol outline
		if version == 4 {
			ol, err = decodeOutline(next)
		} else {
			ol, err = outlineOfFiles(next)
		}
		if err != nil {
			return nil, err
		}
		status := knownStatus(f[2])
		bucket, ok := buckets[f[6]]
		if !ok {
			bucket = strings.Clone(f[6])
			buckets[bucket] = bucket
		}
		// One string holds the task's id, ETag, times, folders and
		// outline; every field is a piece of it.
		blob.Reset()
		fields := [...]string{f[0], f[1], f[3], f[4], f[7], f[8], ol.Dirs}
		size := 0
		for _, x := range fields {
			size += len(x)
		}
		blob.Grow(size)
		for _, x := range fields {
			blob.WriteString(x)
		}
		all := blob.String()
		cut := func(k int) string { x := all[:k]; all = all[k:]; return x }
		s := &summary{ID: cut(len(f[0])), ETag: cut(len(f[1])), Status: status, CreateTime: cut(len(f[3])),
			EndTime: cut(len(f[4])), Created: created, OutBucket: bucket, OutObject: cut(len(f[7])), SrcDir: cut(len(f[8]))}
		s.Outline = outline{Outs: ol.Outs, Dirs: all}
		out = append(out, s)
	}
	return out, nil
}

// decodeOutline reads an outline's tokens (version 4). Its Dirs point
// into the shard: decodeShard copies them.
func decodeOutline(next func() (string, bool)) (outline, error) {
	bad := errors.New("malformed index shard")
	outs, ok1 := next()
	nd, ok2 := next()
	n, err1 := strconv.Atoi(outs)
	d, err2 := strconv.Atoi(nd)
	// A folder may hold no file of its own (a/b/ of a/b/c/x.ts): there
	// can be more folders than outputs, never more than the tokens left.
	if !ok1 || !ok2 || err1 != nil || err2 != nil || n < 0 || n > maxOutputFiles || d < 0 || d > maxOutputFiles*8 {
		return outline{}, bad
	}
	var b strings.Builder
	for range d {
		dir, ok := next()
		if !ok || !strings.HasSuffix(dir, "/") {
			return outline{}, bad
		}
		b.WriteString(dir)
		b.WriteByte(0)
	}
	return outline{Outs: int32(n), Dirs: b.String()}, nil
}

// outlineOfFiles outlines the file tokens of a shard of version 2 or 3:
// their number, then each file's kind byte and name, size and inode.
func outlineOfFiles(next func() (string, bool)) (outline, error) {
	bad := errors.New("malformed index shard")
	t, ok := next()
	n, err := strconv.Atoi(t)
	if !ok || err != nil || n < 0 || n > maxOutputFiles {
		return outline{}, bad
	}
	fl := &fileList{ends: make([]uint32, 0, n)}
	var names, kinds strings.Builder
	for range n {
		name, ok1 := next()
		size, ok2 := next()
		ino, ok3 := next()
		if !ok1 || !ok2 || !ok3 || name == "" {
			return outline{}, bad
		}
		if _, err := strconv.ParseInt(size, 10, 64); err != nil {
			return outline{}, bad
		}
		if _, err := strconv.ParseUint(ino, 16, 64); err != nil {
			return outline{}, bad
		}
		kinds.WriteByte(name[0])
		names.WriteString(name[1:])
		fl.ends = append(fl.ends, uint32(names.Len()))
	}
	fl.names, fl.kinds = names.String(), kinds.String()
	return outlineOf(fl), nil
}

// knownStatus returns the Status constant spelt s (no copy of it kept).
func knownStatus(s string) Status {
	for _, st := range []Status{Waiting, Processing, Succeeded, Failed, Canceled} {
		if string(st) == s {
			return st
		}
	}
	return Status(strings.Clone(s))
}

// indexState is the persisting side of the catalogue: which shards
// changed since written, and the ETag of each as last read or written.
type indexState struct {
	mu    sync.Mutex
	dirty map[int]bool
	etags map[int]string
	kick  chan struct{}
}

func (x *indexState) init() {
	x.dirty, x.etags, x.kick = map[int]bool{}, map[int]string{}, make(chan struct{}, 1)
}

// markDirty records that a task's summary changed and wakes the writer.
func (x *indexState) markDirty(id string) { x.markShard(shardOf(id)) }

// markShard records that shard n is to be written and wakes the writer.
func (x *indexState) markShard(n int) {
	x.mu.Lock()
	x.dirty[n] = true
	x.mu.Unlock()
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// readIndex reads every index shard: the summaries by task id, and the
// shards written by an older version. Shards that cannot be read or
// parsed are logged and skipped (their tasks are read from the records).
func (m *Manager) readIndex(ctx context.Context) (map[string]*summary, []int, error) {
	objs, err := m.listAll(ctx, indexPrefix)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*summary{}
	var old []int
	var mu sync.Mutex
	work := make(chan store.ObjectInfo)
	var wg sync.WaitGroup
	for w := 0; w < m.cfg.Tuning.StartupReaders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				n, sh, etag, isOld, err := m.readShard(ctx, o)
				if err != nil {
					m.cfg.Log.Printf("task store: ignoring index shard %s: %v", o.Key, err)
					continue
				}
				m.index.mu.Lock()
				m.index.etags[n] = etag
				m.index.mu.Unlock()
				mu.Lock()
				if isOld {
					old = append(old, n)
				}
				for _, s := range sh {
					if shardOf(s.ID) == n {
						out[s.ID] = s
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	return out, old, ctx.Err()
}

// catchUp reads the current record of each task whose summary in sums
// differs from the catalogue's (another mount changed it), so the
// catalogue and the shards written from it follow the store.
func (m *Manager) catchUp(ctx context.Context, sums []*summary) {
	var stale []store.ObjectInfo
	m.mu.Lock()
	for _, s := range sums {
		if c := m.catalog.get(s.ID); c != nil && c.ETag != s.ETag && validID.MatchString(s.ID) {
			stale = append(stale, store.ObjectInfo{Key: recordKey(s.ID)}) // no ETag: the current version
		}
	}
	m.mu.Unlock()
	m.readChanged(ctx, stale, false)
}

// readShard reads one shard object; isOld tells a shard written by an
// older version.
func (m *Manager) readShard(ctx context.Context, o store.ObjectInfo) (n int, sums []*summary, etag string, isOld bool, err error) {
	n, ok := shardNumber(o.Key)
	if !ok {
		return 0, nil, "", false, errors.New("not an index shard name")
	}
	data, etag, err := m.readVersion(ctx, o.Key, o.ETag)
	if err != nil {
		return 0, nil, "", false, err
	}
	if sums, err = decodeShard(data); err != nil {
		return 0, nil, "", false, err
	}
	return n, sums, etag, !bytes.HasPrefix(data, []byte(shardHeader)), nil
}

// indexWriter writes changed shards, a moment after a change so that a
// burst of creations writes each shard once.
func (m *Manager) indexWriter() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			m.flushIndex() // what changed last is not left to the next start
			return
		case <-m.index.kick:
		}
		select {
		case <-m.ctx.Done():
		case <-time.After(m.cfg.Tuning.IndexDelay):
		}
		m.flushIndex()
	}
}

// flushIndex writes every dirty shard (each write bounded by
// StoreOpTimeout, also while closing).
func (m *Manager) flushIndex() {
	ctx := context.Background()
	m.index.mu.Lock()
	dirty := m.index.dirty
	m.index.dirty = map[int]bool{}
	m.index.mu.Unlock()
	for n := range dirty {
		if err := m.writeShard(ctx, n); err != nil {
			m.cfg.Log.Printf("task store: writing index shard %s: %v (its tasks are read from their records at the next start)", shardKey(n), err)
		}
	}
}

// writeShard saves one shard by compare-and-swap. Another mount may have
// written it meanwhile: its summaries of tasks this mount does not know
// are kept; where both have a task, its record is read again (catchUp)
// and the summary of the current record written.
func (m *Manager) writeShard(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	var theirs []*summary
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		var tasks []*summary
		for _, s := range m.catalog.shards[n] {
			tasks = append(tasks, s)
		}
		for _, s := range theirs {
			if m.catalog.get(s.ID) == nil {
				tasks = append(tasks, s)
			}
		}
		m.mu.Unlock()
		data := encodeShard(tasks)
		m.index.mu.Lock()
		etag := m.index.etags[n]
		m.index.mu.Unlock()
		newETag, err := m.cfg.Store.PutMatch(ctx, m.cfg.SysBucket, shardKey(n), data, etag)
		if err == nil {
			m.index.mu.Lock()
			m.index.etags[n] = newETag
			m.index.mu.Unlock()
			return nil
		}
		if !errors.Is(err, store.ErrChanged) || attempt == maxUpdateAttempts {
			return err
		}
		info, serr := m.cfg.Store.Stat(ctx, m.cfg.SysBucket, shardKey(n))
		theirs = nil
		switch {
		case errors.Is(serr, store.ErrNotExist):
			etag = ""
		case serr != nil:
			return serr
		default:
			_, stored, got, _, rerr := m.readShard(ctx, info)
			if rerr != nil && !errors.Is(rerr, store.ErrChanged) {
				// Unreadable: replace it with ours.
				m.cfg.Log.Printf("task store: replacing index shard %s: %v", shardKey(n), rerr)
				got = info.ETag
			} else {
				theirs = stored
				m.catchUp(ctx, stored)
			}
			etag = got
		}
		m.index.mu.Lock()
		m.index.etags[n] = etag
		m.index.mu.Unlock()
	}
}
