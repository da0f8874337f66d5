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
// index (the served tasks by output folder, from the catalogue's
// summaries), their file lists and plans loaded when first needed (each a
// bounded LRU), the crypto.File of each open output (shared by its
// readers), warm-ahead of the next segments and the detection of sources
// changed since their task ran. The Manager tells it which tasks are
// served (set); the FUSE layer and the HTTP origin ask it for outputs
// (Manager.Outputs).
type Outputs struct {
	st  store.Store
	log *log.Logger
	tun tuning.Tuning
	// loadTask reads a SUCCEEDED task's record and plan, for serving.
	loadTask func(ctx context.Context, id string) (*servedTask, error)
	// readPlan reads a task's plan alone: its file list when its record
	// cannot be served (a key this master key does not open).
	readPlan func(ctx context.Context, id string) (*Plan, error)
	// saveStale saves a note on a task whose source changed.
	saveStale func(id, note string)

	mu sync.RWMutex // the index: roots
	// roots are the served tasks sorted by their output folder's key
	// (bucket/folder/), newest first within one key. One sorted slice
	// answers lookups, folder listings and "is this a folder" by binary
	// search, for a few bytes per task.
	roots []*summary

	lmu     sync.Mutex // lists, loading
	lists   listCache
	loading map[string]*listLoad

	fmu        sync.Mutex
	files      map[uint64]openOutput // by inode
	sweepAt    int                   // len(files) at which idle ones are dropped (Tuning.OutputsKept)
	plans      planCache
	stale      map[string]map[string]bool // task id -> sources reported changed
	onWithdraw func(bucket, key string)
	// specs are the source GETs started ahead of their plan, by the
	// output's bucket/key (speculate.go).
	specs                                 map[string]*speculation
	specsStarted, specsUsed, specsDropped atomic.Int64
}

// openOutput is the shared state of an opened segment output.
type openOutput struct {
	f    *crypto.File
	task string
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

	task  *summary
	files *fileList
	i     int // in the task's plan
}

// IsPlaylist reports whether the output is served from memory (a
// playlist, an MPD, a protected init segment): read it with Playlist.
func (o *Output) IsPlaylist() bool { return o.files.kinds[o.i] == 'p' }

// Next is the segment after o in its task's plan (playlist order), which a
// player reads next; nil for the last and for playlists.
func (o *Output) Next() *Output {
	if o.IsPlaylist() {
		return nil
	}
	fl := o.files
	for j := o.i + 1; j < fl.len(); j++ {
		if fl.kinds[j] == 's' {
			return outputOf(o.task, fl, j)
		}
	}
	return nil
}

func outputOf(s *summary, fl *fileList, i int) *Output {
	m := fl.meta[i]
	return &Output{TaskID: s.ID, Bucket: s.OutBucket, Key: s.OutObject + "/" + fl.name(i),
		Size: m.size, Ino: m.ino, task: s, files: fl, i: i}
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

func newOutputs(st store.Store, lg *log.Logger, tun tuning.Tuning) *Outputs {
	return &Outputs{st: st, log: lg, tun: tun, lists: newListCache(tun.FileListCache), loading: map[string]*listLoad{},
		files: map[uint64]openOutput{}, sweepAt: tun.OutputsKept, plans: newPlanCache(tun.PlanCache),
		stale: map[string]map[string]bool{}, specs: map[string]*speculation{}}
}

// served reports whether a summary's outputs are served: a SUCCEEDED
// task with at least one name that can be opened.
func served(s *summary) bool {
	return s != nil && s.Status == Succeeded && s.Outline.Outs > 0
}

// sameOutputs reports whether two summaries of one task serve the same
// outputs (a SUCCEEDED task's never change: only its description or
// ETag did).
func sameOutputs(a, b *summary) bool {
	return a.ID == b.ID && a.OutBucket == b.OutBucket && a.OutObject == b.OutObject && a.Outline == b.Outline &&
		a.CreateTime == b.CreateTime && a.Created == b.Created
}

// withdrawn is a path whose outputs went away or changed content: an
// output folder, everything below it included.
type withdrawn struct{ bucket, key string }

// set makes the index serve s's outputs (s nil or not served: none) in
// place of prev's, the summary of the same task it was given before. It
// returns the output folders withdrawn or changed, for notify: prev's,
// and s's if other tasks' outputs lie in, above or below it (s may now
// win some of their names). Callers may hold Manager.mu (Outputs never
// calls the Manager while locked).
func (x *Outputs) set(prev, s *summary) []withdrawn {
	x.mu.Lock()
	at := x.indexOf(prev)
	if at < 0 && !served(s) {
		x.mu.Unlock()
		return nil
	}
	if at >= 0 && served(s) && sameOutputs(prev, s) {
		x.roots[at] = s // same outputs: only the record's ETag or description changed
		x.mu.Unlock()
		return nil
	}
	var gone []withdrawn
	if at >= 0 {
		x.roots = slices.Delete(x.roots, at, at+1)
		gone = append(gone, withdrawn{prev.OutBucket, prev.OutObject})
	}
	if served(s) {
		if x.sharedLocked(s) && (at < 0 || prev.OutBucket != s.OutBucket || prev.OutObject != s.OutObject) {
			gone = append(gone, withdrawn{s.OutBucket, s.OutObject})
		}
		x.addLocked(s)
	}
	x.mu.Unlock()
	if at >= 0 {
		// prev's outputs are gone or not the same: nothing loaded for
		// them may serve s (lists and plans are kept by task id).
		x.prune(prev)
		x.fmu.Lock()
		x.plans.drop(prev.ID)
		if !served(s) {
			delete(x.stale, prev.ID)
		}
		x.fmu.Unlock()
		x.lmu.Lock()
		x.lists.drop(prev.ID)
		x.lmu.Unlock()
	}
	return gone
}

// sharedLocked reports whether another served task's output folder is
// s's, above it or below it (s not yet in roots).
func (x *Outputs) sharedLocked(s *summary) bool {
	for root := s.OutObject; root != "." && root != "/"; root = path.Dir(root) {
		k := s.OutBucket + "/" + root + "/"
		if i := x.search(k); i < len(x.roots) && cmpRoot(x.roots[i], k) == 0 {
			return true
		}
	}
	k := rootKey(s)
	i := x.search(k)
	return i < len(x.roots) && x.roots[i].OutBucket == s.OutBucket && strings.HasPrefix(x.roots[i].OutObject+"/", s.OutObject+"/")
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
	}
}

func (x *Outputs) addLocked(s *summary) {
	k := rootKey(s)
	i := sort.Search(len(x.roots), func(i int) bool {
		c := cmpRoot(x.roots[i], k)
		return c > 0 || (c == 0 && s.newer(x.roots[i]))
	})
	x.roots = slices.Insert(x.roots, i, s)
}

// OnWithdraw registers fn to be told of every output path that went away
// or changed content (a task canceled or replaced: its output folder), so
// the FUSE layer can drop the kernel's cached names at once. fn must not
// call the Manager.
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

// prune drops the shared crypto state and the speculations of a task's
// outputs, no longer served (or replaced).
func (x *Outputs) prune(s *summary) {
	var gone []*crypto.File
	var specs []*speculation
	below := rootKey(s)
	x.fmu.Lock()
	for ino, of := range x.files {
		if of.task == s.ID {
			gone = append(gone, of.f)
			delete(x.files, ino)
		}
	}
	for k, sp := range x.specs {
		if strings.HasPrefix(k, below) {
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

// A task's file list (names, sizes, inodes of its outputs) is not in the
// catalogue: it is loaded from the task's plan when a walk of the index
// first needs it (a lookup of one of its outputs, a listing of one of its
// folders), and kept in a cache bounded by Tuning.FileListCache files.
// The catalogue's outline (outputs count, folders) answers the rest
// without it: whether a path is a folder of a task, whether a task may
// hold a name at all.

// view is one walk of the index under its read lock. files returns a
// task's file list if loaded, and otherwise notes the task: walk loads
// the lists it lacked and walks again.
type view struct {
	x       *Outputs
	pass    int
	got     map[string]*fileList // loaded for this walk
	missing []*summary
}

func (v *view) files(s *summary) *fileList {
	if fl := v.got[s.ID]; fl != nil {
		return fl
	}
	v.x.lmu.Lock()
	fl := v.x.lists.get(s.ID)
	v.x.lmu.Unlock()
	if fl == nil && !slices.Contains(v.missing, s) {
		v.missing = append(v.missing, s)
	}
	return fl
}

// maxWalks bounds the walks of one question: each loads every list the
// one before lacked, so two suffice unless tasks change meanwhile.
const maxWalks = 4

// walk runs fn under the index's read lock until it ran with every file
// list it asked for. fn must start afresh each time.
func (x *Outputs) walk(ctx context.Context, fn func(v *view)) error {
	v := &view{x: x}
	for v.pass = 1; ; v.pass++ {
		v.missing = v.missing[:0]
		x.mu.RLock()
		fn(v)
		x.mu.RUnlock()
		if len(v.missing) == 0 {
			return nil
		}
		if v.pass == maxWalks {
			return fmt.Errorf("the outputs of task %s changed while being looked up", v.missing[0].ID)
		}
		loads := make([]*listLoad, len(v.missing))
		for i, s := range v.missing { // all at once
			loads[i] = x.loadFiles(s)
		}
		if v.got == nil {
			v.got = map[string]*fileList{}
		}
		for i, ld := range loads {
			select {
			case <-ld.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if ld.err != nil {
				return ld.err
			}
			v.got[v.missing[i].ID] = ld.fl
		}
	}
}

// listLoad is one load of a file list that others may wait for.
type listLoad struct {
	done chan struct{}
	fl   *fileList
	err  error
}

// loadFiles starts the load of a task's file list, or joins the one
// under way (however many ask at the same time, it is read once); a list
// held comes back loaded. The load is bounded by Tuning.LookupTimeout, not
// by an asker's context (others may be waiting for it).
func (x *Outputs) loadFiles(s *summary) *listLoad {
	x.lmu.Lock()
	defer x.lmu.Unlock()
	if fl := x.lists.get(s.ID); fl != nil {
		ld := &listLoad{done: make(chan struct{}), fl: fl}
		close(ld.done)
		return ld
	}
	if ld := x.loading[s.ID]; ld != nil {
		return ld
	}
	ld := &listLoad{done: make(chan struct{})}
	x.loading[s.ID] = ld
	go func() {
		lctx, cancel := context.WithTimeout(context.Background(), x.tun.LookupTimeout)
		defer cancel()
		fl, err := x.readFiles(lctx, s)
		x.lmu.Lock()
		delete(x.loading, s.ID)
		if err == nil {
			x.lists.put(s.ID, fl)
		}
		ld.fl, ld.err = fl, err
		x.lmu.Unlock()
		close(ld.done)
	}()
	return ld
}

// readFiles lists a task's outputs from its plan: the one held for
// serving, or else the task is loaded for serving (record and plan at
// once: the open that follows a lookup then reads nothing), or, if it
// cannot be served, its plan alone (its names are still shown). A plan
// that is gone (the task canceled meanwhile) lists nothing.
func (x *Outputs) readFiles(ctx context.Context, s *summary) (*fileList, error) {
	x.fmu.Lock()
	st := x.plans.get(s.ID)
	x.fmu.Unlock()
	if st != nil {
		return filesOf(s.ID, s.OutObject, st.plan), nil
	}
	st, err := x.loadTask(ctx, s.ID)
	if err == nil {
		x.fmu.Lock()
		x.plans.put(st)
		x.fmu.Unlock()
		return filesOf(s.ID, s.OutObject, st.plan), nil
	}
	if x.readPlan == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	plan, perr := x.readPlan(ctx, s.ID)
	switch {
	case errors.Is(perr, store.ErrNotExist):
		return &fileList{}, nil
	case perr != nil:
		return nil, err
	}
	return filesOf(s.ID, s.OutObject, plan), nil
}

// LoadedLists is how many tasks' file lists are held (for tests).
func (x *Outputs) LoadedLists() int {
	x.lmu.Lock()
	defer x.lmu.Unlock()
	return x.lists.order.Len()
}

// Find returns the output at bucket/key, or nil. Of two tasks writing one
// path, the newer wins. It may load a task's file list: an error is then
// the store's (the path may be an output).
func (x *Outputs) Find(ctx context.Context, bucket, key string) (*Output, error) {
	var o *Output
	err := x.walk(ctx, func(v *view) {
		o = x.lookupIn(v, bucket, key)
		if v.pass == 1 && len(v.missing) > 0 {
			// The source's GET need not wait for the list either.
			x.speculateAt(v.missing[0], bucket, key)
		}
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Lookup is Find bounded by Tuning.LookupTimeout, nil on an error
// (logged): for callers that can only act on "there" or "not there".
func (x *Outputs) Lookup(bucket, key string) *Output {
	ctx, cancel := context.WithTimeout(context.Background(), x.tun.LookupTimeout)
	defer cancel()
	o, err := x.Find(ctx, bucket, key)
	if err != nil {
		x.log.Printf("looking up output %s/%s: %v", bucket, key, err)
	}
	return o
}

// lookupIn finds bucket/key in one walk.
func (x *Outputs) lookupIn(v *view, bucket, key string) *Output {
	var best *summary
	var bfl *fileList
	bi := -1
	for root := path.Dir(key); root != "." && root != "/"; root = path.Dir(root) {
		rel := key[len(root)+1:]
		k := bucket + "/" + root + "/"
		for i := x.search(k); i < len(x.roots) && cmpRoot(x.roots[i], k) == 0; i++ {
			s := x.roots[i]
			if best != nil && !s.newer(best) {
				break // newest first: the rest are older still
			}
			if !mayHold(s, rel) {
				continue
			}
			fl := v.files(s)
			if fl == nil {
				continue // loaded before the next walk
			}
			if j := fl.find(rel); j >= 0 {
				best, bfl, bi = s, fl, j
				break
			}
		}
	}
	if best == nil {
		return nil
	}
	return outputOf(best, bfl, bi)
}

// mayHold reports whether s may have an output file named rel (relative
// to its output folder), by its outline: rel's folder holds outputs of
// s, and rel is not itself one of those folders.
func mayHold(s *summary, rel string) bool {
	return s.Outline.hasDir(rel[:strings.LastIndexByte(rel, '/')+1]) && !s.Outline.hasDir(rel+"/")
}

// Children lists the outputs directly under a folder of a bucket (prefix
// "" or ending in "/"): names, folders ending in "/". It may load the file
// lists of the tasks with outputs in that folder.
func (x *Outputs) Children(ctx context.Context, bucket, prefix string) ([]string, error) {
	var set map[string]bool
	err := x.walk(ctx, func(v *view) {
		set = map[string]bool{}
		x.foldersBelow(bucket, prefix, "", func(child, id string) bool {
			set[child] = true
			return true
		})
		x.eachRootAbove(bucket, prefix, func(s *summary, rel string) bool {
			if !s.Outline.hasDir(rel) {
				return true
			}
			if fl := v.files(s); fl != nil {
				fl.under(rel, func(name string) bool {
					child, _, deeper := strings.Cut(name[len(rel):], "/")
					if deeper {
						child += "/"
					}
					set[child] = true
					return true
				})
			}
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
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
	for root := strings.TrimSuffix(prefix, "/"); root != "." && root != "/"; root = path.Dir(root) {
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

// IsDir reports whether some output lies under bucket/prefix/ (from the
// outlines: no file list is loaded).
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
		if s.ID != except && s.Outline.hasDir(rel) {
			owner = s.ID
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
// newer task wins.) It may load other tasks' file lists.
func (x *Outputs) clash(ctx context.Context, rec *record, plan *Plan) *taskError {
	bucket, id := rec.Output.Bucket, rec.TaskID
	var terr *taskError
	err := x.walk(ctx, func(v *view) {
		terr = nil
		dirs := map[string]bool{}
		for _, f := range plan.Files {
			key := rec.Output.Object + "/" + f.Name
			if other := x.ownerBelow(bucket, key+"/", id); other != "" {
				terr = failf(CodeBadRequest, "output %q is a folder of task %s's outputs: choose another output.object", bucket+"/"+key, other)
				return
			}
			for dir := path.Dir(key); dir != "." && dir != "/" && !dirs[dir]; dir = path.Dir(dir) {
				dirs[dir] = true
				if o := x.lookupIn(v, bucket, dir); o != nil && o.TaskID != id {
					terr = failf(CodeBadRequest, "output folder %q is an output file of task %s: choose another output.object", bucket+"/"+dir, o.TaskID)
					return
				}
			}
		}
	})
	if err != nil {
		return failf(CodeOperationFailed, "checking the outputs against other tasks': %v", err)
	}
	return terr
}

// listCache keeps the most recently used file lists, bounded by their
// files in all (the newest is kept whatever its size). Guarded by lmu.
type listCache struct {
	max, files int
	order      *list.List // of *cachedList, most recent first
	byID       map[string]*list.Element
}

type cachedList struct {
	id string
	fl *fileList
}

func newListCache(max int) listCache {
	return listCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *listCache) get(id string) *fileList {
	if e := c.byID[id]; e != nil {
		c.order.MoveToFront(e)
		return e.Value.(*cachedList).fl
	}
	return nil
}

func (c *listCache) put(id string, fl *fileList) {
	c.drop(id)
	c.byID[id] = c.order.PushFront(&cachedList{id, fl})
	c.files += fl.len()
	for c.files > c.max && c.order.Len() > 1 {
		c.drop(c.order.Back().Value.(*cachedList).id)
	}
}

func (c *listCache) drop(id string) {
	if e := c.byID[id]; e != nil {
		c.order.Remove(e)
		delete(c.byID, id)
		c.files -= e.Value.(*cachedList).fl.len()
	}
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
	of := x.files[o.Ino]
	x.fmu.Unlock()
	if of.f != nil {
		return of.f, nil
	}
	// The source's GET need not wait for the plan (speculate.go).
	x.speculate(o)
	var f *crypto.File
	st, out, err := x.served(o)
	if err == nil {
		var parts []crypto.Part
		if parts, err = x.parts(st, out, o); err == nil {
			f, err = crypto.NewFile(parts)
		}
	}
	x.settle(o, out, err)
	if err != nil {
		return nil, err
	}
	x.fmu.Lock()
	defer x.fmu.Unlock()
	if prev := x.files[o.Ino]; prev.f != nil {
		return prev.f, nil // another opener was first: share its checkpoints
	}
	x.files[o.Ino] = openOutput{f, o.TaskID}
	if len(x.files) >= x.sweepAt {
		go x.sweep(o.Ino)
		x.sweepAt = 2 * len(x.files) // one sweep at a time
	}
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
		return cenc.Parts(l, x.source(o, id, bucket, src), cfg)
	}
	parts := make([]crypto.Part, len(f.Parts))
	for i, p := range f.Parts {
		parts[i] = crypto.Part{Src: x.source(o, id, bucket, p), PlainSize: p.Len}
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
//
// Each warm stream is told o's File: the reader of o asked for it, and
// while o is read the stream is not stopped to free the ahead budget for
// another reader's (crypto.File.WarmFor). The streams already warm are
// told first, then the missing ones started: a reader whose window has
// a gap (a stream stopped for its place) would otherwise look like a new
// reader when starting it, and stop its own streams further on, still
// told of the segment it has closed.
func (x *Outputs) WarmNext(o *Output) {
	by, err := x.Open(o)
	if err != nil {
		by = nil
	}
	var next []*crypto.File
	for n, i := o.Next(), 0; n != nil && i < x.tun.WarmNext; n, i = n.Next(), i+1 {
		if cur := x.Lookup(n.Bucket, n.Key); cur == nil || cur.Ino != n.Ino {
			break
		}
		if f, err := x.Open(n); err == nil {
			next = append(next, f)
		}
	}
	for _, f := range next {
		if f.Warming() {
			f.WarmFor(by) // only tells it by
		}
	}
	for _, f := range next {
		f.WarmFor(by)
	}
}

// source reads plaintext of one part of output ino as ranged requests to
// the store, on condition that the object is still the version the task
// planned (recorded ETag): sizes in the playlists and CBC checkpoints come
// from that version, so bytes of another one must never be encrypted. The
// file's first read may take the GET its open started (takeSpec, which
// holds it to the same condition).
func (x *Outputs) source(o *Output, id, bucket string, p OutPart) crypto.RangeSource {
	spec := specKey(o.Bucket, o.Key)
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if rc := x.takeSpec(ctx, spec, bucket, p, off, n); rc != nil {
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

// keepFiles caches the file list of a task this mount planned.
func (x *Outputs) keepFiles(id string, fl *fileList) {
	x.lmu.Lock()
	defer x.lmu.Unlock()
	x.lists.put(id, fl)
}

// sweep drops the shared state of opened outputs nobody reads or warms
// (but the one just opened, ino, whose reader is on its way), and sets
// the size at which to sweep again: twice what is left, at least
// Tuning.OutputsKept, so sweeps cost O(1) an open.
func (x *Outputs) sweep(ino uint64) {
	x.fmu.Lock()
	held := make(map[uint64]*crypto.File, len(x.files))
	for i, of := range x.files {
		held[i] = of.f
	}
	x.fmu.Unlock()
	var idle []uint64
	for i, f := range held { // outside fmu: Idle takes the File's locks
		if i != ino && f.Idle() {
			idle = append(idle, i)
		}
	}
	x.fmu.Lock()
	defer x.fmu.Unlock()
	for _, i := range idle {
		if x.files[i].f == held[i] {
			delete(x.files, i)
		}
	}
	x.sweepAt = max(x.tun.OutputsKept, 2*len(x.files))
}

// KeptOutputs is how many opened outputs keep their shared state (for
// tests).
func (x *Outputs) KeptOutputs() int {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	return len(x.files)
}
