package control

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/store"
)

// Output is one output file of a SUCCEEDED task, as the FUSE layer sees it.
type Output struct {
	TaskID string
	Bucket string
	Key    string // full key in the output bucket
	File   *OutFile
	// Ino identifies the content: it changes with the task and the source
	// ETags, so the kernel page cache kept across opens is never stale.
	Ino uint64
	// Next is the segment file after this one in the task's plan (playlist
	// order), which a player reads next; nil for the last and for playlists.
	Next *Output

	task *task
}

// outIndex maps output buckets and folders to outputs. It is rebuilt whole
// on every task change and swapped in atomically: readers never lock.
type outIndex struct {
	files map[string]*Output         // bucket + "/" + key
	dirs  map[string]map[string]bool // bucket + "/" + folder ("" or "a/") -> child names, folders ending in "/"
}

type outputs struct {
	idx   atomic.Pointer[outIndex]
	mu    sync.Mutex
	files map[uint64]*crypto.File // shared by every reader of an output

	onWithdraw func(bucket, key string)
}

func (o *outputs) init() {
	o.idx.Store(&outIndex{files: map[string]*Output{}, dirs: map[string]map[string]bool{}})
	o.files = map[uint64]*crypto.File{}
}

// reindex rebuilds the output index from the SUCCEEDED tasks.
func (m *Manager) reindex() {
	m.mu.Lock()
	old, cur := m.reindexLocked()
	m.mu.Unlock()
	m.notifyWithdrawn(old, cur)
}

// reindexLocked swaps in a new output index built from the SUCCEEDED tasks
// and returns the old and new ones. It runs under m.mu so a task's status
// and its outputs change together. When two tasks write the same output
// path, the newer task wins.
func (m *Manager) reindexLocked() (old, cur *outIndex) {
	var done []*task
	for _, t := range m.tasks {
		if t.rec.Status == Succeeded && t.rec.Plan != nil && t.key != nil && !t.withdrawn {
			done = append(done, t)
		}
	}
	sort.Slice(done, func(i, j int) bool {
		a, b := done[i].rec, done[j].rec
		if a.CreateTime != b.CreateTime { // records saved before Created existed have 0
			return a.CreateTime < b.CreateTime
		}
		return a.Created < b.Created || (a.Created == b.Created && a.TaskID < b.TaskID)
	})
	cur = &outIndex{files: map[string]*Output{}, dirs: map[string]map[string]bool{}}
	for _, t := range done {
		cur.addTask(t)
	}
	old = m.outputs.idx.Swap(cur)
	m.outputs.prune(cur)
	return old, cur
}

// OnWithdraw registers fn to be told of every output path that went away
// or changed content (a task canceled or replaced), so the FUSE layer can
// drop the kernel's cached names at once. fn must not call the Manager.
func (m *Manager) OnWithdraw(fn func(bucket, key string)) {
	m.outputs.mu.Lock()
	defer m.outputs.mu.Unlock()
	m.outputs.onWithdraw = fn
}

// notifyWithdrawn runs the OnWithdraw callback for outputs in old but not
// (or no longer the same) in cur. Called without m.mu: invalidating a
// kernel name may wait for lookups, which read the index.
func (m *Manager) notifyWithdrawn(old, cur *outIndex) {
	m.outputs.mu.Lock()
	fn := m.outputs.onWithdraw
	m.outputs.mu.Unlock()
	if fn == nil || old == nil {
		return
	}
	for k, o := range old.files {
		if n := cur.files[k]; n == nil || n.Ino != o.Ino {
			fn(o.Bucket, o.Key)
		}
	}
}

func (idx *outIndex) addTask(t *task) {
	var prev *Output
	for i := range t.rec.Plan.Files {
		f := &t.rec.Plan.Files[i]
		key := t.rec.Output.Object + "/" + f.Name
		if validateKeyPath(key) != nil {
			// A record saved before names were checked ("p//q", a name
			// over 255 bytes): such a path can be listed but never
			// opened, so it is not served.
			continue
		}
		o := &Output{TaskID: t.rec.TaskID, Bucket: t.rec.Output.Bucket, Key: key, File: f, task: t, Ino: inoOf(t.rec.TaskID, f)}
		idx.files[o.Bucket+"/"+key] = o
		idx.addParents(o.Bucket, key)
		if f.Playlist == nil {
			if prev != nil {
				prev.Next = o
			}
			prev = o
		}
	}
}

// addParents registers key and every folder above it with its parent.
func (idx *outIndex) addParents(bucket, key string) {
	child := path.Base(key)
	for dir := path.Dir(key); ; dir = path.Dir(dir) {
		prefix := ""
		if dir != "." {
			prefix = dir + "/"
		}
		set := idx.dirs[bucket+"/"+prefix]
		if set == nil {
			set = map[string]bool{}
			idx.dirs[bucket+"/"+prefix] = set
		}
		set[child] = true
		if dir == "." {
			return
		}
		child = path.Base(dir) + "/"
	}
}

// inoOf hashes what determines an output's bytes.
func inoOf(taskID string, f *OutFile) uint64 {
	h := fnv.New64a()
	io.WriteString(h, taskID+"\x00"+f.Name)
	for _, p := range f.Parts {
		io.WriteString(h, "\x00"+p.Key+"\x00"+p.ETag)
	}
	return h.Sum64() | 1<<63 // keep clear of small inode numbers
}

// prune drops shared crypto state of outputs no longer served.
func (o *outputs) prune(idx *outIndex) {
	live := map[uint64]bool{}
	for _, out := range idx.files {
		live[out.Ino] = true
	}
	var gone []*crypto.File
	o.mu.Lock()
	for ino, f := range o.files {
		if !live[ino] {
			gone = append(gone, f)
			delete(o.files, ino)
		}
	}
	o.mu.Unlock()
	// No reading ahead for outputs nobody can open any more (outside the
	// lock: stopping a stream waits for its source read to end).
	for _, f := range gone {
		f.StopWarm()
	}
}

// Output returns the output at bucket/key, or nil.
func (m *Manager) Output(bucket, key string) *Output {
	return m.outputs.idx.Load().files[bucket+"/"+key]
}

// WarmNext starts reading the Tuning.WarmNext segments after o ahead of
// their reader (see crypto.File.Warm), those still published: four by
// default, so that the lane engine has up to four CBC chains to
// interleave while the reader is served what was made ahead, and four
// GETs overlap their latency (the README's bench section has the figures).
func (m *Manager) WarmNext(o *Output) {
	for n, i := o.Next, 0; n != nil && i < m.cfg.Tuning.WarmNext; n, i = n.Next, i+1 {
		if m.Output(n.Bucket, n.Key) != n {
			return
		}
		if f, err := m.Open(n); err == nil {
			f.Warm()
		}
	}
}

// OutputChildren lists the outputs directly under a folder of a bucket
// (prefix "" or ending in "/"): names, folders ending in "/".
func (m *Manager) OutputChildren(bucket, prefix string) []string {
	set := m.outputs.idx.Load().dirs[bucket+"/"+prefix]
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasOutputs reports whether some output lies in bucket.
func (m *Manager) HasOutputs(bucket string) bool {
	return len(m.outputs.idx.Load().dirs[bucket+"/"]) > 0
}

// IsOutputDir reports whether some output lies under bucket/prefix/.
func (m *Manager) IsOutputDir(bucket, prefix string) bool {
	return len(m.outputs.idx.Load().dirs[bucket+"/"+strings.TrimSuffix(prefix, "/")+"/"]) > 0
}

// Open returns the shared random-access view of a segment output.
func (m *Manager) Open(o *Output) (*crypto.File, error) {
	m.outputs.mu.Lock()
	f := m.outputs.files[o.Ino]
	m.outputs.mu.Unlock()
	if f != nil {
		return f, nil
	}
	// The task's fields are read under m.mu, which is never taken while
	// holding outputs.mu (reindexLocked takes them the other way round).
	m.mu.Lock()
	parts, err := m.parts(o)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	f, err = crypto.NewFile(parts)
	if err != nil {
		return nil, err
	}
	m.outputs.mu.Lock()
	defer m.outputs.mu.Unlock()
	if prev := m.outputs.files[o.Ino]; prev != nil {
		return prev, nil // another opener was first: share its checkpoints
	}
	m.outputs.files[o.Ino] = f
	return f, nil
}

// parts builds a segment output's crypto parts; called under m.mu. A
// Common Encryption segment's parts come from its layout (cenc.Parts).
func (m *Manager) parts(o *Output) ([]crypto.Part, error) {
	t := o.task
	if l := o.File.CENC; l != nil {
		info := t.rec.Plan.CENC
		if info == nil || len(o.File.Parts) != 1 {
			return nil, fmt.Errorf("output %s: Common Encryption layout without its task's scheme", o.Key)
		}
		src := o.File.Parts[0]
		src.Off = 0
		cfg := &cenc.Config{Scheme: info.Scheme, Key: t.key, ConstantIV: info.ConstantIV}
		return cenc.Parts(l, m.source(t, t.rec.TaskID, t.rec.Input.Bucket, src), cfg)
	}
	parts := make([]crypto.Part, len(o.File.Parts))
	for i, p := range o.File.Parts {
		parts[i] = crypto.Part{Src: m.source(t, t.rec.TaskID, t.rec.Input.Bucket, p), PlainSize: p.Len}
		if p.Encrypt {
			parts[i].Alg, parts[i].Key, parts[i].IV = t.rec.Algorithm, t.key, p.IV
		}
	}
	return parts, nil
}

// source reads plaintext of one part as ranged requests to the store, on
// condition that the object is still the version the task planned
// (recorded ETag): sizes in the playlists and CBC checkpoints come from
// that version, so bytes of another one must never be encrypted.
func (m *Manager) source(t *task, id, bucket string, p OutPart) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		rc, err := m.cfg.Store.OpenMatch(ctx, bucket, p.Key, p.ETag, p.Off+off, n)
		if errors.Is(err, store.ErrChanged) || errors.Is(err, store.ErrNotExist) {
			m.noteStale(t, id, bucket+"/"+p.Key, errors.Is(err, store.ErrNotExist))
			what := "changed"
			if errors.Is(err, store.ErrNotExist) {
				what = "deleted"
			}
			// Not ErrNotExist: the reader gets EIO, the output's name stays.
			return nil, fmt.Errorf("%w: source %s/%s was %s after task %s ran", store.ErrChanged, bucket, p.Key, what, id)
		}
		return rc, err
	}
}

// noteStale records, once per source, that a SUCCEEDED task's source
// changed or was deleted: the log says so and the task's description
// (saved, so every mount shows it) tells to create the task again. The
// task stays SUCCEEDED; outputs that need the source fail with EIO,
// others (playlists, untouched segments) are still served.
func (m *Manager) noteStale(t *task, id, src string, deleted bool) {
	m.mu.Lock()
	if t.stale[src] {
		m.mu.Unlock()
		return
	}
	if t.stale == nil {
		t.stale = map[string]bool{}
	}
	t.stale[src] = true
	m.mu.Unlock()
	what := "changed"
	if deleted {
		what = "deleted"
	}
	m.cfg.Log.Printf("task %s: source %s was %s after the task ran; outputs made from it fail with EIO until the task is created again", id, src, what)
	go m.saveStale(t, id, fmt.Sprintf("; source %s was %s after the task ran: outputs made from it fail with EIO, create the task again", src, what))
}

// saveStale appends a note to a SUCCEEDED task's description and saves it.
func (m *Manager) saveStale(t *task, id, note string) {
	_, err := m.update(t, func(r *record) bool {
		if r.Status != Succeeded || strings.Contains(r.Description, note) || len(r.Description) > 4096 {
			return false
		}
		r.Description += note
		return true
	})
	if err != nil {
		m.cfg.Log.Printf("task %s: saving the note on its source: %v", id, err)
	}
}

// outputClash reports an output of plan that cannot be reached because
// another task's outputs use its path the other way round: a folder of
// this task is an output file of another, or an output file of this task
// is a folder of another's outputs. (The same path as a file in both is
// fine: the newer task wins.)
func (m *Manager) outputClash(rec *record, plan *Plan) *taskError {
	idx := m.outputs.idx.Load()
	bucket := rec.Output.Bucket
	for _, f := range plan.Files {
		key := rec.Output.Object + "/" + f.Name
		if set := idx.dirs[bucket+"/"+key+"/"]; len(set) > 0 {
			for child := range set {
				if o := m.outputUnder(idx, bucket, key+"/"+child); o != nil && o.TaskID != rec.TaskID {
					return failf(CodeBadRequest, "output %q is a folder of task %s's outputs (e.g. %q): choose another output.object", bucket+"/"+key, o.TaskID, bucket+"/"+o.Key)
				}
			}
		}
		for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
			if o := idx.files[bucket+"/"+dir]; o != nil && o.TaskID != rec.TaskID {
				return failf(CodeBadRequest, "output folder %q is an output file of task %s: choose another output.object", bucket+"/"+dir, o.TaskID)
			}
		}
	}
	return nil
}

// outputUnder returns some output at or below bucket/key (a name from an
// index folder: folders end in "/").
func (m *Manager) outputUnder(idx *outIndex, bucket, key string) *Output {
	for {
		if o := idx.files[bucket+"/"+key]; o != nil {
			return o
		}
		set := idx.dirs[bucket+"/"+key]
		if len(set) == 0 {
			return nil
		}
		for child := range set {
			key += child
			break
		}
	}
}
