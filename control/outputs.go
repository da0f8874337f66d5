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
	"sync/atomic"
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
// which tasks are served (set); the FUSE layer and the HTTP origin ask it
// for outputs (Manager.Outputs).
type Outputs struct {
	st  store.Store
	log *log.Logger
	tun tuning.Tuning
	// loadTask reads a SUCCEEDED task's record and plan, for serving.
	loadTask func(ctx context.Context, id string) (*servedTask, error)
	// saveStale saves a note on a task whose source changed.
	saveStale func(id, note string)

	mu sync.RWMutex // the index: roots, perms
	// roots are the served tasks sorted by their output folder's key
	// (bucket/folder/), newest first within one key. One sorted slice
	// answers lookups, folder listings and "is this a folder" by binary
	// search, for a few bytes per task.
	roots []*summary
	// perms holds, for tasks with many files, their served files'
	// indices sorted by name (smaller ones are scanned).
	perms map[*summary][]int32

	fmu        sync.Mutex
	files      map[uint64]*crypto.File // by inode
	plans      planCache
	stale      map[string]map[string]bool // task id -> sources reported changed
	onWithdraw func(bucket, key string)
	// specs are the source GETs started ahead of their plan, by the
	// output's inode (speculate.go).
	specs                                 map[uint64]*speculation
	specsStarted, specsUsed, specsDropped atomic.Int64
}

// scanFiles is the most files a task's names are scanned for rather than
// searched.
const scanFiles = 32

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

	task *summary
	i    int // in the task's plan
}

// IsPlaylist reports whether the output is served from memory (a
// playlist, an MPD, a protected init segment): read it with Playlist.
func (o *Output) IsPlaylist() bool { return o.task.Files.kinds[o.i] == 'p' }

// Next is the segment after o in its task's plan (playlist order), which a
// player reads next; nil for the last and for playlists.
func (o *Output) Next() *Output {
	if o.IsPlaylist() {
		return nil
	}
	fl := o.task.Files
	for j := o.i + 1; j < fl.len(); j++ {
		if fl.kinds[j] == 's' {
			return outputOf(o.task, j)
		}
	}
	return nil
}

func outputOf(s *summary, i int) *Output {
	m := s.Files.meta[i]
	return &Output{TaskID: s.ID, Bucket: s.OutBucket, Key: s.OutObject + "/" + s.Files.name(i),
		Size: m.size, Ino: m.ino, task: s, i: i}
}

// rootKey is the key the index sorts a task by: bucket/folder/.
func rootKey(s *summary) string { return s.OutBucket + "/" + s.OutObject + "/" }

// cmpRoot compares rootKey(s) with k without making rootKey.
func cmpRoot(s *summary, k string) int {
	for _, piece := range [...]string{s.OutBucket, "/", s.OutObject, "/"} {
		n := min(len(piece), len(k))
		if c := strings.Compare(piece[:n], k[:n]); c != 0 {
			return c
		}
		if len(piece) > n {
			return 1
		}
		k = k[n:]
	}
	if len(k) > 0 {
		return -1
	}
	return 0
}

// search returns the first root whose key is >= k.
func (x *Outputs) search(k string) int {
	return sort.Search(len(x.roots), func(i int) bool { return cmpRoot(x.roots[i], k) >= 0 })
}

// find returns the index of s's served file named rel, or -1.
func (x *Outputs) find(s *summary, rel string) int {
	fl := s.Files
	if p := x.perms[s]; p != nil {
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

// under calls fn with s's served names that start with rel (sorted only
// for tasks with many files), until fn returns false.
func (x *Outputs) under(s *summary, rel string, fn func(name string) bool) {
	fl := s.Files
	if p := x.perms[s]; p != nil {
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

func newOutputs(st store.Store, lg *log.Logger, tun tuning.Tuning) *Outputs {
	return &Outputs{st: st, log: lg, tun: tun, perms: map[*summary][]int32{},
		files: map[uint64]*crypto.File{}, plans: newPlanCache(tun.PlanCache),
		stale: map[string]map[string]bool{}, specs: map[uint64]*speculation{}}
}

// served reports whether a summary's outputs are served: a SUCCEEDED
// task with at least one name that can be opened.
func served(s *summary) bool {
	return s != nil && s.Status == Succeeded && s.Files != nil && strings.ContainsAny(s.Files.kinds, "ps")
}

// withdrawn is an output that went away or changed content.
type withdrawn struct{ bucket, key string }

// set makes the index serve s's outputs (s nil or not served: none) in
// place of prev's, the summary of the same task it was given before. It
// returns the outputs withdrawn or replaced, for notify. Callers may hold
// Manager.mu (Outputs never calls the Manager while locked).
func (x *Outputs) set(prev, s *summary) []withdrawn {
	x.mu.Lock()
	at := x.indexOf(prev)
	if at < 0 && !served(s) {
		x.mu.Unlock()
		return nil
	}
	if at >= 0 && served(s) && prev.Files == s.Files && prev.CreateTime == s.CreateTime && prev.Created == s.Created {
		x.roots[at] = s // same outputs: only the times or the description changed
		if p, ok := x.perms[prev]; ok {
			delete(x.perms, prev)
			x.perms[s] = p
		}
		x.mu.Unlock()
		return nil
	}
	before := map[string]uint64{}
	keys := func(t *summary) {
		for i := 0; i < t.Files.len(); i++ {
			if t.Files.kinds[i] == 'x' {
				continue
			}
			key := t.OutObject + "/" + t.Files.name(i)
			if _, ok := before[key]; !ok {
				before[key] = 0
				if o := x.lookupLocked(t.OutBucket, key); o != nil {
					before[key] = o.Ino
				}
			}
		}
	}
	if at >= 0 {
		keys(prev)
		x.roots = slices.Delete(x.roots, at, at+1)
		delete(x.perms, prev)
	}
	if served(s) {
		keys(s)
		x.addLocked(s)
	}
	bucket := ""
	if s != nil {
		bucket = s.OutBucket
	} else if prev != nil {
		bucket = prev.OutBucket
	}
	var gone []withdrawn
	var goneInos []uint64
	for key, ino := range before {
		if ino == 0 {
			continue
		}
		if now := x.lookupLocked(bucket, key); now == nil || now.Ino != ino {
			gone = append(gone, withdrawn{bucket, key})
			goneInos = append(goneInos, ino)
		}
	}
	x.mu.Unlock()
	x.prune(goneInos)
	if at >= 0 && !served(s) {
		x.fmu.Lock()
		x.plans.drop(prev.ID)
		delete(x.stale, prev.ID)
		x.fmu.Unlock()
	}
	return gone
}

// indexOf returns where s is in roots, or -1.
func (x *Outputs) indexOf(s *summary) int {
	if !served(s) {
		return -1
	}
	k := rootKey(s)
	for i := x.search(k); i < len(x.roots) && cmpRoot(x.roots[i], k) == 0; i++ {
		if x.roots[i] == s {
			return i
		}
	}
	return -1
}

// load fills the index at start from every served summary, in one go
// (no one has looked anything up yet: nothing to withdraw).
func (x *Outputs) load(sums []*summary) {
	type keyed struct {
		key string
		s   *summary
	}
	var ks []keyed
	for _, s := range sums {
		if served(s) {
			ks = append(ks, keyed{rootKey(s), s})
		}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.s.newer(b.s) {
			return -1
		}
		return 1
	})
	x.mu.Lock()
	defer x.mu.Unlock()
	x.roots = make([]*summary, 0, len(ks)+len(ks)/8)
	for _, k := range ks {
		x.roots = append(x.roots, k.s)
		x.addPerm(k.s)
	}
}

func (x *Outputs) addLocked(s *summary) {
	k := rootKey(s)
	i := sort.Search(len(x.roots), func(i int) bool {
		c := cmpRoot(x.roots[i], k)
		return c > 0 || (c == 0 && s.newer(x.roots[i]))
	})
	x.roots = slices.Insert(x.roots, i, s)
	x.addPerm(s)
}

// addPerm sorts the names of a task with many files.
func (x *Outputs) addPerm(s *summary) {
	fl := s.Files
	if fl.len() <= scanFiles {
		return
	}
	var p []int32
	for i := 0; i < fl.len(); i++ {
		if fl.kinds[i] != 'x' {
			p = append(p, int32(i))
		}
	}
	slices.SortFunc(p, func(a, b int32) int { return strings.Compare(fl.name(int(a)), fl.name(int(b))) })
	x.perms[s] = p
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
	var specs []*speculation
	x.fmu.Lock()
	for _, ino := range inos {
		if f := x.files[ino]; f != nil {
			gone = append(gone, f)
			delete(x.files, ino)
		}
		if sp := x.specs[ino]; sp != nil {
			specs = append(specs, sp)
		}
	}
	x.fmu.Unlock()
	for _, sp := range specs {
		x.dropSpec(sp)
	}
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
	var best *summary
	bi := -1
	for root := path.Dir(key); root != "."; root = path.Dir(root) {
		k := bucket + "/" + root + "/"
		for i := x.search(k); i < len(x.roots) && cmpRoot(x.roots[i], k) == 0; i++ {
			s := x.roots[i]
			if best != nil && !s.newer(best) {
				break // newest first: the rest are older still
			}
			if j := x.find(s, key[len(root)+1:]); j >= 0 {
				best, bi = s, j
				break
			}
		}
	}
	if best == nil {
		return nil
	}
	return outputOf(best, bi)
}

// Children lists the outputs directly under a folder of a bucket (prefix
// "" or ending in "/"): names, folders ending in "/".
func (x *Outputs) Children(bucket, prefix string) []string {
	x.mu.RLock()
	set := map[string]bool{}
	x.foldersBelow(bucket, prefix, "", func(child, id string) bool {
		set[child] = true
		return true
	})
	x.eachRootAbove(bucket, prefix, func(s *summary, rel string) bool {
		x.under(s, rel, func(name string) bool {
			child, _, deeper := strings.Cut(name[len(rel):], "/")
			if deeper {
				child += "/"
			}
			set[child] = true
			return true
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

// foldersBelow calls fn with each folder directly under bucket/prefix
// ("" or ending in "/") that leads to the output folder of a task other
// than except (name ending in "/"; one such task's id), until fn returns
// false. Each folder costs one binary search, however many tasks lie
// below it.
func (x *Outputs) foldersBelow(bucket, prefix, except string, fn func(child, id string) bool) {
	base := bucket + "/" + prefix
	for i := x.search(base); i < len(x.roots); {
		s := x.roots[i]
		if s.OutBucket != bucket || !folderUnder(s.OutObject, prefix) {
			return
		}
		if len(s.OutObject)+1 == len(prefix) || s.ID == except {
			i++ // the folder itself, or the task left out
			continue
		}
		comp, _, _ := strings.Cut(s.OutObject[len(prefix):], "/")
		if !fn(comp+"/", s.ID) {
			return
		}
		// Skip every task below that folder: their keys start with
		// base+comp+"/", and '0' follows '/'.
		i = max(i+1, x.search(base+comp+"0"))
	}
}

// folderUnder reports whether folder+"/" starts with prefix.
func folderUnder(folder, prefix string) bool {
	return strings.HasPrefix(folder, prefix) ||
		(len(folder)+1 == len(prefix) && strings.HasPrefix(prefix, folder) && prefix[len(folder)] == '/')
}

// eachRootAbove calls fn for each task whose output folder is prefix
// ("" or ending in "/") or above it, with prefix relative to that folder,
// until fn returns false.
func (x *Outputs) eachRootAbove(bucket, prefix string, fn func(s *summary, rel string) bool) {
	if prefix == "" {
		return
	}
	for root := strings.TrimSuffix(prefix, "/"); root != "."; root = path.Dir(root) {
		rel := prefix[len(root)+1:]
		k := bucket + "/" + root + "/"
		for i := x.search(k); i < len(x.roots) && cmpRoot(x.roots[i], k) == 0; i++ {
			if !fn(x.roots[i], rel) {
				return
			}
		}
	}
}

// HasOutputs reports whether some output lies in bucket.
func (x *Outputs) HasOutputs(bucket string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i := x.search(bucket + "/")
	return i < len(x.roots) && x.roots[i].OutBucket == bucket
}

// IsDir reports whether some output lies under bucket/prefix/.
func (x *Outputs) IsDir(bucket, prefix string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ownerBelow(bucket, strings.TrimSuffix(prefix, "/")+"/", "") != ""
}

// ownerBelow returns a task other than except with an output under
// bucket/prefix (ending in "/"), or "".
func (x *Outputs) ownerBelow(bucket, prefix, except string) string {
	owner := ""
	x.foldersBelow(bucket, prefix, except, func(_, id string) bool {
		owner = id
		return false
	})
	if owner != "" {
		return owner
	}
	x.eachRootAbove(bucket, prefix, func(s *summary, rel string) bool {
		if s.ID != except {
			x.under(s, rel, func(string) bool {
				owner = s.ID
				return false
			})
		}
		return owner == ""
	})
	return owner
}

// ModTime is when the output's task SUCCEEDED (its saved end_time, whole
// seconds), the same after every restart: the HTTP origin's Last-Modified.
func (x *Outputs) ModTime(o *Output) time.Time {
	for _, s := range []string{o.task.EndTime, o.task.CreateTime} {
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
		if other := x.ownerBelow(bucket, key+"/", id); other != "" {
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

// keepPlan caches a served task this mount already holds (it planned
// it), as a first open would have loaded it.
func (x *Outputs) keepPlan(st *servedTask) {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	x.plans.put(st)
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
	// The source's GET need not wait for the plan (speculate.go).
	x.speculate(o)
	st, of, err := x.served(o)
	if err == nil {
		var parts []crypto.Part
		if parts, err = x.parts(st, of, o); err == nil {
			f, err = crypto.NewFile(parts)
		}
	}
	x.settle(o, of, err)
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
		return cenc.Parts(l, x.source(o.Ino, id, bucket, src), cfg)
	}
	parts := make([]crypto.Part, len(f.Parts))
	for i, p := range f.Parts {
		parts[i] = crypto.Part{Src: x.source(o.Ino, id, bucket, p), PlainSize: p.Len}
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

// source reads plaintext of one part of output ino as ranged requests to
// the store, on condition that the object is still the version the task
// planned (recorded ETag): sizes in the playlists and CBC checkpoints come
// from that version, so bytes of another one must never be encrypted. The
// file's first read may take the GET its open started (takeSpec, which
// holds it to the same condition).
func (x *Outputs) source(ino uint64, id, bucket string, p OutPart) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if rc := x.takeSpec(ctx, ino, bucket, p, off, n); rc != nil {
			return rc, nil
		}
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
