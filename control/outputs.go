package control

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// Outputs serves the output files of SUCCEEDED tasks: it owns the output
// index (names, sizes, inodes, from the catalogue's summaries), the plans
// loaded on first open (a bounded LRU), the crypto.File of each open
// output (shared by its readers), warm-ahead of the next segments and the
// detection of sources changed since their task ran. The Manager tells it
// which tasks are served (add, remove); the FUSE layer and the HTTP origin
// ask it for outputs (Manager.Outputs).
type Outputs struct {
	st  store.Store
	log *log.Logger
	tun tuning.Tuning
	// loadTask reads a SUCCEEDED task's record and plan, for serving.
	loadTask func(ctx context.Context, id string) (*servedTask, error)
	// saveStale saves a note on a task whose source changed.
	saveStale func(id, note string)

	mu sync.RWMutex // the index: roots, dirs
	// roots maps bucket + "/" + output folder to the tasks writing
	// there, newest first.
	roots map[string][]*outTask
	// dirs maps bucket + "/" + folder ("" or ending in "/") to the
	// folders leading to task output folders below it (names ending in
	// "/"), each with how many tasks lie below it.
	dirs map[string]map[string]int
	byID map[string]*outTask

	fmu        sync.Mutex
	files      map[uint64]*crypto.File // by inode
	plans      planCache
	stale      map[string]map[string]bool // task id -> sources reported changed
	onWithdraw func(bucket, key string)
}

// outTask is one served task in the index.
type outTask struct {
	sum    *summary
	sorted []int32 // served files' indices, by name
}

// Output is one output file of a SUCCEEDED task, as the FUSE layer and
// the HTTP origin see it. Values are made per lookup: compare Ino, not
// pointers.
type Output struct {
	TaskID string
	Bucket string
	Key    string // full key in the output bucket
	Size   int64  // exact, before any byte is encrypted
	// Ino identifies the content: it changes with the task and the source
	// ETags, so the kernel page cache kept across opens is never stale.
	Ino uint64

	task *outTask
	i    int // in the task's plan
}

// IsPlaylist reports whether the output is served from memory (a
// playlist, an MPD, a protected init segment): read it with Playlist.
func (o *Output) IsPlaylist() bool { return o.task.sum.Files.Kinds[o.i] == 'p' }

// Next is the segment after o in its task's plan (playlist order), which a
// player reads next; nil for the last and for playlists.
func (o *Output) Next() *Output {
	if o.IsPlaylist() {
		return nil
	}
	fl := o.task.sum.Files
	for j := o.i + 1; j < len(fl.Names); j++ {
		if fl.Kinds[j] == 's' {
			return o.task.output(j)
		}
	}
	return nil
}

func (ot *outTask) output(i int) *Output {
	s := ot.sum
	return &Output{TaskID: s.ID, Bucket: s.OutBucket, Key: s.OutObject + "/" + s.Files.Names[i],
		Size: s.Files.Sizes[i], Ino: s.Files.Inos[i], task: ot, i: i}
}

// find returns the index of the served file named rel, or -1.
func (ot *outTask) find(rel string) int {
	names := ot.sum.Files.Names
	k := sort.Search(len(ot.sorted), func(j int) bool { return names[ot.sorted[j]] >= rel })
	if k < len(ot.sorted) && names[ot.sorted[k]] == rel {
		return int(ot.sorted[k])
	}
	return -1
}

// under calls fn with the served names that start with rel, in order.
func (ot *outTask) under(rel string, fn func(name string)) {
	names := ot.sum.Files.Names
	k := sort.Search(len(ot.sorted), func(j int) bool { return names[ot.sorted[j]] >= rel })
	for ; k < len(ot.sorted) && strings.HasPrefix(names[ot.sorted[k]], rel); k++ {
		fn(names[ot.sorted[k]])
	}
}

func newOutputs(st store.Store, lg *log.Logger, tun tuning.Tuning) *Outputs {
	return &Outputs{st: st, log: lg, tun: tun, roots: map[string][]*outTask{}, dirs: map[string]map[string]int{},
		byID: map[string]*outTask{}, files: map[uint64]*crypto.File{}, plans: newPlanCache(tun.PlanCache),
		stale: map[string]map[string]bool{}}
}

// served reports whether a summary's outputs are served.
func served(s *summary) bool {
	return s != nil && s.Status == Succeeded && s.Files != nil
}

// withdrawn is an output that went away or changed content.
type withdrawn struct{ bucket, key string }

// set makes the index serve s's outputs in place of those of any earlier
// summary of the same task (s nil, or not SUCCEEDED: serve none). It
// returns the outputs withdrawn or replaced, for notify. Callers may hold
// Manager.mu (Outputs never calls the Manager while locked).
func (x *Outputs) set(id string, s *summary) []withdrawn {
	x.mu.Lock()
	old := x.byID[id]
	if old == nil && !served(s) {
		x.mu.Unlock()
		return nil
	}
	if old != nil && served(s) && old.sum.Files == s.Files {
		old.sum = s // same outputs: only the times or the description changed
		x.mu.Unlock()
		return nil
	}
	var before map[string]uint64
	keys := func(ot *outTask) {
		for _, i := range ot.sorted {
			k := ot.sum.OutBucket + "/" + ot.sum.OutObject + "/" + ot.sum.Files.Names[i]
			if _, ok := before[k]; !ok {
				if o := x.lookupLocked(ot.sum.OutBucket, ot.sum.OutObject+"/"+ot.sum.Files.Names[i]); o != nil {
					before[k] = o.Ino
				} else {
					before[k] = 0
				}
			}
		}
	}
	before = map[string]uint64{}
	var nt *outTask
	if old != nil {
		keys(old)
		x.removeLocked(old)
	}
	if served(s) {
		nt = newOutTask(s)
		keys(nt)
		x.addLocked(nt)
	}
	var gone []withdrawn
	var goneInos []uint64
	for k, ino := range before {
		if ino == 0 {
			continue
		}
		bucket, key, _ := strings.Cut(k, "/")
		if now := x.lookupLocked(bucket, key); now == nil || now.Ino != ino {
			gone = append(gone, withdrawn{bucket, key})
			goneInos = append(goneInos, ino)
		}
	}
	x.mu.Unlock()
	x.prune(goneInos)
	if old != nil && nt == nil {
		x.fmu.Lock()
		x.plans.drop(id)
		delete(x.stale, id)
		x.fmu.Unlock()
	}
	return gone
}

// load fills the index at start from every served summary, in one go
// (no one has looked anything up yet: nothing to withdraw).
func (x *Outputs) load(sums []*summary) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, s := range sums {
		if served(s) && x.byID[s.ID] == nil {
			x.addLocked(newOutTask(s))
		}
	}
}

func newOutTask(s *summary) *outTask {
	ot := &outTask{sum: s}
	for i, k := range []byte(s.Files.Kinds) {
		if k != 'x' {
			ot.sorted = append(ot.sorted, int32(i))
		}
	}
	names := s.Files.Names
	slices.SortFunc(ot.sorted, func(a, b int32) int { return strings.Compare(names[a], names[b]) })
	return ot
}

func (x *Outputs) addLocked(ot *outTask) {
	s := ot.sum
	if len(ot.sorted) == 0 {
		return
	}
	x.byID[s.ID] = ot
	root := s.OutBucket + "/" + s.OutObject
	ts := x.roots[root]
	i := sort.Search(len(ts), func(i int) bool { return s.newer(ts[i].sum) })
	ts = append(ts, nil)
	copy(ts[i+1:], ts[i:])
	ts[i] = ot
	x.roots[root] = ts
	x.walkParents(s.OutBucket, s.OutObject, 1)
}

func (x *Outputs) removeLocked(ot *outTask) {
	s := ot.sum
	if x.byID[s.ID] != ot {
		return
	}
	delete(x.byID, s.ID)
	root := s.OutBucket + "/" + s.OutObject
	ts := x.roots[root]
	for i := range ts {
		if ts[i] == ot {
			ts = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(x.roots, root)
	} else {
		x.roots[root] = ts
	}
	x.walkParents(s.OutBucket, s.OutObject, -1)
}

// walkParents counts (delta 1) or uncounts (-1) an output folder with
// every folder above it.
func (x *Outputs) walkParents(bucket, folder string, delta int) {
	child := path.Base(folder) + "/"
	for dir := path.Dir(folder); ; dir = path.Dir(dir) {
		prefix := ""
		if dir != "." {
			prefix = dir + "/"
		}
		k := bucket + "/" + prefix
		set := x.dirs[k]
		if set == nil {
			set = map[string]int{}
			x.dirs[k] = set
		}
		if set[child] += delta; set[child] <= 0 {
			delete(set, child)
			if len(set) == 0 {
				delete(x.dirs, k)
			}
		}
		if dir == "." {
			return
		}
		child = path.Base(dir) + "/"
	}
}

// OnWithdraw registers fn to be told of every output path that went away
// or changed content (a task canceled or replaced), so the FUSE layer can
// drop the kernel's cached names at once. fn must not call the Manager.
func (x *Outputs) OnWithdraw(fn func(bucket, key string)) {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	x.onWithdraw = fn
}

// notify runs the OnWithdraw callback. Called without Manager.mu:
// invalidating a kernel name may wait for lookups.
func (x *Outputs) notify(gone []withdrawn) {
	x.fmu.Lock()
	fn := x.onWithdraw
	x.fmu.Unlock()
	if fn == nil {
		return
	}
	for _, w := range gone {
		fn(w.bucket, w.key)
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
func (x *Outputs) prune(inos []uint64) {
	var gone []*crypto.File
	x.fmu.Lock()
	for _, ino := range inos {
		if f := x.files[ino]; f != nil {
			gone = append(gone, f)
			delete(x.files, ino)
		}
	}
	x.fmu.Unlock()
	// No reading ahead for outputs nobody can open any more (outside the
	// lock: stopping a stream waits for its source read to end).
	for _, f := range gone {
		f.StopWarm()
	}
}

// Lookup returns the output at bucket/key, or nil. Of two tasks writing
// one path, the newer wins.
func (x *Outputs) Lookup(bucket, key string) *Output {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lookupLocked(bucket, key)
}

func (x *Outputs) lookupLocked(bucket, key string) *Output {
	var best *outTask
	bi := -1
	for root := path.Dir(key); root != "."; root = path.Dir(root) {
		for _, ot := range x.roots[bucket+"/"+root] {
			if best != nil && !ot.sum.newer(best.sum) {
				break // newest first: the rest are older still
			}
			if i := ot.find(key[len(root)+1:]); i >= 0 {
				best, bi = ot, i
				break
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.output(bi)
}

// Children lists the outputs directly under a folder of a bucket (prefix
// "" or ending in "/"): names, folders ending in "/".
func (x *Outputs) Children(bucket, prefix string) []string {
	x.mu.RLock()
	set := map[string]bool{}
	for n := range x.dirs[bucket+"/"+prefix] {
		set[n] = true
	}
	x.eachRootAbove(bucket, prefix, func(ot *outTask, rel string) bool {
		ot.under(rel, func(name string) {
			child, _, deeper := strings.Cut(name[len(rel):], "/")
			if deeper {
				child += "/"
			}
			set[child] = true
		})
		return true
	})
	x.mu.RUnlock()
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// eachRootAbove calls fn for each task whose output folder is prefix
// ("" or ending in "/") or above it, with prefix relative to that folder,
// until fn returns false.
func (x *Outputs) eachRootAbove(bucket, prefix string, fn func(ot *outTask, rel string) bool) {
	if prefix == "" {
		return
	}
	for root := strings.TrimSuffix(prefix, "/"); root != "."; root = path.Dir(root) {
		rel := prefix[len(root)+1:]
		for _, ot := range x.roots[bucket+"/"+root] {
			if !fn(ot, rel) {
				return
			}
		}
	}
}

// HasOutputs reports whether some output lies in bucket.
func (x *Outputs) HasOutputs(bucket string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.dirs[bucket+"/"]) > 0
}

// IsDir reports whether some output lies under bucket/prefix/.
func (x *Outputs) IsDir(bucket, prefix string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.isDirLocked(bucket, strings.TrimSuffix(prefix, "/")+"/", "")
}

// isDirLocked reports whether an output of a task other than except lies
// under bucket/prefix (ending in "/").
func (x *Outputs) isDirLocked(bucket, prefix, except string) bool {
	if x.someTaskBelow(bucket, prefix, except) != "" {
		return true
	}
	found := false
	x.eachRootAbove(bucket, prefix, func(ot *outTask, rel string) bool {
		if ot.sum.ID != except {
			ot.under(rel, func(string) { found = true })
		}
		return !found
	})
	return found
}

// someTaskBelow returns a task (other than except) whose output folder is
// bucket/prefix (ending in "/") or below it, or "".
func (x *Outputs) someTaskBelow(bucket, prefix, except string) string {
	for _, ot := range x.roots[bucket+"/"+strings.TrimSuffix(prefix, "/")] {
		if ot.sum.ID != except {
			return ot.sum.ID
		}
	}
	for child := range x.dirs[bucket+"/"+prefix] {
		if id := x.someTaskBelow(bucket, prefix+child, except); id != "" {
			return id
		}
	}
	return ""
}

// ModTime is when the output's task SUCCEEDED (its saved end_time, whole
// seconds), the same after every restart: the HTTP origin's Last-Modified.
func (x *Outputs) ModTime(o *Output) time.Time {
	for _, s := range []string{o.task.sum.EndTime, o.task.sum.CreateTime} {
		if t, err := time.Parse(timeFormat, s); err == nil {
			return t
		}
	}
	return time.Unix(0, 0).UTC()
}

// clash reports an output of plan that cannot be reached because another
// task's outputs use its path the other way round: a folder of this task
// is an output file of another, or an output file of this task is a folder
// of another's outputs. (The same path as a file in both is fine: the
// newer task wins.)
func (x *Outputs) clash(rec *record, plan *Plan) *taskError {
	x.mu.RLock()
	defer x.mu.RUnlock()
	bucket, id := rec.Output.Bucket, rec.TaskID
	for _, f := range plan.Files {
		key := rec.Output.Object + "/" + f.Name
		if x.isDirLocked(bucket, key+"/", id) {
			other := x.someTaskBelow(bucket, key+"/", id)
			if other == "" {
				x.eachRootAbove(bucket, key+"/", func(ot *outTask, rel string) bool {
					if ot.sum.ID != id {
						ot.under(rel, func(string) { other = ot.sum.ID })
					}
					return other == ""
				})
			}
			return failf(CodeBadRequest, "output %q is a folder of task %s's outputs: choose another output.object", bucket+"/"+key, other)
		}
		for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
			if o := x.lookupLocked(bucket, dir); o != nil && o.TaskID != id {
				return failf(CodeBadRequest, "output folder %q is an output file of task %s: choose another output.object", bucket+"/"+dir, o.TaskID)
			}
		}
	}
	return nil
}

// servedTask is what serving a task's outputs needs: its record, clear
// key and plan.
type servedTask struct {
	rec  record
	key  []byte
	plan *Plan
}

// planCache keeps the most recently used servedTasks. Guarded by fmu.
type planCache struct {
	max   int
	order *list.List // of *servedTask, most recent first
	byID  map[string]*list.Element
}

func newPlanCache(max int) planCache {
	return planCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *planCache) get(id string) *servedTask {
	if e := c.byID[id]; e != nil {
		c.order.MoveToFront(e)
		return e.Value.(*servedTask)
	}
	return nil
}

func (c *planCache) put(t *servedTask) {
	if e := c.byID[t.rec.TaskID]; e != nil {
		e.Value = t
		c.order.MoveToFront(e)
		return
	}
	c.byID[t.rec.TaskID] = c.order.PushFront(t)
	for c.order.Len() > c.max {
		e := c.order.Back()
		c.order.Remove(e)
		delete(c.byID, e.Value.(*servedTask).rec.TaskID)
	}
}

func (c *planCache) drop(id string) {
	if e := c.byID[id]; e != nil {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}

// LoadedPlans is how many plans are held loaded (for tests and metrics).
func (x *Outputs) LoadedPlans() int {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	return x.plans.order.Len()
}

// served returns o's task ready to serve, loading its plan if needed, and
// o's file in it. The file must be the one the index named (same inode):
// a record that changed since is not served from.
func (x *Outputs) served(o *Output) (*servedTask, *OutFile, error) {
	x.fmu.Lock()
	st := x.plans.get(o.TaskID)
	x.fmu.Unlock()
	if st == nil {
		ctx, cancel := context.WithTimeout(context.Background(), x.tun.LookupTimeout)
		defer cancel()
		var err error
		if st, err = x.loadTask(ctx, o.TaskID); err != nil {
			return nil, nil, err
		}
		x.fmu.Lock()
		x.plans.put(st)
		x.fmu.Unlock()
	}
	if o.i >= len(st.plan.Files) || inoOf(o.TaskID, &st.plan.Files[o.i]) != o.Ino {
		x.fmu.Lock()
		x.plans.drop(o.TaskID)
		x.fmu.Unlock()
		return nil, nil, fmt.Errorf("output %s/%s: task %s's plan does not match the index", o.Bucket, o.Key, o.TaskID)
	}
	return st, &st.plan.Files[o.i], nil
}

// Playlist returns the content of an output served from memory.
func (x *Outputs) Playlist(o *Output) ([]byte, error) {
	_, f, err := x.served(o)
	if err != nil {
		return nil, err
	}
	if f.Playlist == nil {
		return nil, fmt.Errorf("output %s/%s is not a playlist", o.Bucket, o.Key)
	}
	return f.Playlist, nil
}

// Open returns the shared random-access view of a segment output.
func (x *Outputs) Open(o *Output) (*crypto.File, error) {
	x.fmu.Lock()
	f := x.files[o.Ino]
	x.fmu.Unlock()
	if f != nil {
		return f, nil
	}
	st, of, err := x.served(o)
	if err != nil {
		return nil, err
	}
	parts, err := x.parts(st, of, o)
	if err != nil {
		return nil, err
	}
	f, err = crypto.NewFile(parts)
	if err != nil {
		return nil, err
	}
	x.fmu.Lock()
	defer x.fmu.Unlock()
	if prev := x.files[o.Ino]; prev != nil {
		return prev, nil // another opener was first: share its checkpoints
	}
	x.files[o.Ino] = f
	return f, nil
}

// parts builds a segment output's crypto parts. A Common Encryption
// segment's parts come from its layout (cenc.Parts).
func (x *Outputs) parts(st *servedTask, f *OutFile, o *Output) ([]crypto.Part, error) {
	id, bucket := st.rec.TaskID, st.rec.Input.Bucket
	if l := f.CENC; l != nil {
		info := st.plan.CENC
		if info == nil || len(f.Parts) != 1 {
			return nil, fmt.Errorf("output %s: Common Encryption layout without its task's scheme", o.Key)
		}
		src := f.Parts[0]
		src.Off = 0
		cfg := &cenc.Config{Scheme: info.Scheme, Key: st.key, ConstantIV: info.ConstantIV}
		return cenc.Parts(l, x.source(id, bucket, src), cfg)
	}
	parts := make([]crypto.Part, len(f.Parts))
	for i, p := range f.Parts {
		parts[i] = crypto.Part{Src: x.source(id, bucket, p), PlainSize: p.Len}
		if p.Encrypt {
			parts[i].Alg, parts[i].Key, parts[i].IV = st.rec.Algorithm, st.key, p.IV
		}
	}
	return parts, nil
}

// WarmNext starts reading the Tuning.WarmNext segments after o ahead of
// their reader (see crypto.File.Warm), those still published: four by
// default, so that the lane engine has up to four CBC chains to
// interleave while the reader is served what was made ahead, and four
// GETs overlap their latency (the README's bench section has the figures).
func (x *Outputs) WarmNext(o *Output) {
	for n, i := o.Next(), 0; n != nil && i < x.tun.WarmNext; n, i = n.Next(), i+1 {
		if cur := x.Lookup(n.Bucket, n.Key); cur == nil || cur.Ino != n.Ino {
			return
		}
		if f, err := x.Open(n); err == nil {
			f.Warm()
		}
	}
}

// source reads plaintext of one part as ranged requests to the store, on
// condition that the object is still the version the task planned
// (recorded ETag): sizes in the playlists and CBC checkpoints come from
// that version, so bytes of another one must never be encrypted.
func (x *Outputs) source(id, bucket string, p OutPart) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		rc, err := x.st.OpenMatch(ctx, bucket, p.Key, p.ETag, p.Off+off, n)
		if errors.Is(err, store.ErrChanged) || errors.Is(err, store.ErrNotExist) {
			x.noteStale(id, bucket+"/"+p.Key, errors.Is(err, store.ErrNotExist))
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
func (x *Outputs) noteStale(id, src string, deleted bool) {
	x.fmu.Lock()
	if x.stale[id][src] {
		x.fmu.Unlock()
		return
	}
	if x.stale[id] == nil {
		x.stale[id] = map[string]bool{}
	}
	x.stale[id][src] = true
	x.fmu.Unlock()
	what := "changed"
	if deleted {
		what = "deleted"
	}
	x.log.Printf("task %s: source %s was %s after the task ran; outputs made from it fail with EIO until the task is created again", id, src, what)
	if x.saveStale != nil {
		go x.saveStale(id, fmt.Sprintf("; source %s was %s after the task ran: outputs made from it fail with EIO, create the task again", src, what))
	}
}
