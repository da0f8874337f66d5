package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/store"
)

// bucketMaker is implemented by stores that can create the system bucket.
type bucketMaker interface {
	MakeBucket(ctx context.Context, bucket string) error
}

// validID is what a task id looks like; anything else is never looked up
// in the store (no path games with control/tasks/<name>).
var validID = regexp.MustCompile(`^[1-9][0-9]{15}$`)

// load reads the catalogue (the index shards, and the records they do not
// stand for) and the responses from the task store. Tasks left WAITING or
// PROCESSING by a previous run (or a killed daemon) are queued again.
//
// The shards are read first and their finished tasks served at once; the
// check of the shards against the records (a LIST page per 1,000 records:
// seconds at 100,000 on a cold store) then runs for at most
// Tuning.StartupWait before the mount goes ahead, and goes on behind it.
// Until it ends, the mount serves what the shards said (a record changed
// since its shard was written shows its new state a few seconds later,
// as a change made by another mount does), and tasks the shards do not
// hold appear as their records are read.
func (m *Manager) load() error {
	ctx, cancel := context.WithTimeout(m.ctx, 2*time.Minute)
	defer cancel()
	if err := m.ensureSysBucket(ctx); err != nil {
		return err
	}
	began := time.Now()
	idx, old, err := m.readIndex(ctx)
	if err != nil {
		return fmt.Errorf("reading the task store: %w", err)
	}
	served := m.serveIndex(idx)
	idxTook := time.Since(began)
	done := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// Its own bound: a first start over a store from before the index
		// reads every record once (100,000 took nearly two minutes on the
		// bench's MinIO), each read bounded by StoreOpTimeout (syncTask).
		ctx, cancel := context.WithTimeout(m.ctx, startupCheckLimit)
		defer cancel()
		checkBegan := time.Now()
		err := m.sync(ctx, &startupIndex{idx: idx, began: began, took: idxTook})
		m.checkTook = time.Since(checkBegan)
		if err == nil {
			// Shards of an older version are written again in this one
			// (now that the catalogue holds every task), so the next start
			// decodes outlines rather than every file.
			for _, n := range old {
				m.index.markShard(n)
			}
		}
		m.startupErr = err
		close(m.reconciled)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("reading the task store: %w", err)
		}
		return nil
	case <-time.After(m.cfg.Tuning.StartupWait):
		m.cfg.Log.Printf("task store: serving the %d finished tasks of the index; checking them against the records goes on", served)
		go func() {
			if err := <-done; err != nil && m.ctx.Err() == nil {
				m.cfg.Log.Printf("task store: checking the index against the records: %v (the next refresh lists them again)", err)
			}
		}()
		return nil
	}
}

// startupCheckLimit bounds a start's check of the index against the
// records, which may go on behind the mount.
const startupCheckLimit = 30 * time.Minute

// startupIndex is what a start read from the index shards, for its check
// against the records.
type startupIndex struct {
	idx   map[string]*summary
	began time.Time     // the start of the task store's reading
	took  time.Duration // reading the shards
}

// serveIndex puts the index's finished tasks in the catalogue and serves
// their outputs; it returns how many. Unfinished ones wait for their
// records (they are queued again).
func (m *Manager) serveIndex(idx map[string]*summary) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range idx {
		if s.Status.Final() {
			m.catalog.put(s)
		}
	}
	var all []*summary
	m.catalog.each(func(s *summary) { all = append(all, s) })
	m.outs.load(all)
	return len(all)
}

func (m *Manager) ensureSysBucket(ctx context.Context) error {
	ok, err := m.cfg.Store.BucketExists(ctx, m.cfg.SysBucket)
	if err != nil {
		return fmt.Errorf("task store bucket %q: %w", m.cfg.SysBucket, err)
	}
	if ok {
		return nil
	}
	if bm, can := m.cfg.Store.(bucketMaker); can {
		return bm.MakeBucket(ctx, m.cfg.SysBucket)
	}
	return nil // local stores create folders on Put
}

// refresher re-reads the task store every cfg.Refresh until Close.
func (m *Manager) refresher() {
	defer m.wg.Done()
	select { // the start's own check of the index goes first
	case <-m.reconciled:
	case <-m.ctx.Done():
		return
	}
	tick := time.NewTicker(m.cfg.Tuning.Refresh)
	defer tick.Stop()
	failing := false // log when refreshing starts and stops failing, not every tick
	nextFull := time.Now().Add(m.fullRefreshGap(m.checkTook))
	if m.startupErr != nil {
		nextFull = time.Time{} // that check failed: list the records at the first tick
	}
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
			var err error
			if !time.Now().Before(nextFull) {
				began := time.Now()
				err = m.sync(ctx, nil)
				nextFull = time.Now().Add(m.fullRefreshGap(time.Since(began)))
			} else {
				err = m.syncShards(ctx)
			}
			cancel()
			switch {
			case err != nil && !failing && m.ctx.Err() == nil:
				m.cfg.Log.Printf("refreshing the task store: %v (retrying every %v)", err, m.cfg.Tuning.Refresh)
			case err == nil && failing:
				m.cfg.Log.Printf("refreshing the task store works again")
			}
			failing = err != nil
		}
	}
}

// fullRefreshGap is the wait before the next full refresh after one that
// took d: Tuning.FullRefresh, or longer when listing the records takes
// long, so that full refreshes keep the store busy at most
// Tuning.FullRefreshShare of the time (100,000 records took 20-30 s to
// list on the bench's MinIO: every minute, that was the store's and the
// daemon's CPU a third of the time, and requests waited behind it).
func (m *Manager) fullRefreshGap(d time.Duration) time.Duration {
	return max(m.cfg.Tuning.FullRefresh, time.Duration(float64(d)/m.cfg.Tuning.FullRefreshShare))
}

// sync reads the task records that changed in the store since they were
// last read (by ETag) and merges them; at startup (si) the index shards,
// already served, stand for every record whose ETag they hold, and a
// shard summary whose record is gone is withdrawn. One listing of the
// records (in nine parts) plus one GET per changed object: bounded work.
func (m *Manager) sync(ctx context.Context, si *startupIndex) error {
	startup := si != nil
	var idx map[string]*summary
	if startup {
		idx = si.idx
	}
	listStart := time.Now()
	objs, err := m.listRecords(ctx)
	listTook := time.Since(listStart)
	if err != nil {
		return err
	}
	var changed []store.ObjectInfo
	m.mu.Lock()
	listed := make(map[string]bool, len(objs))
	for _, o := range objs {
		id, ok := recordID(o.Key)
		if !ok {
			continue
		}
		listed[id] = true
		if s := m.catalog.get(id); s != nil && s.ETag == o.ETag {
			continue // at startup: also every shard summary still current (serveIndex)
		}
		if m.seen[o.Key] != o.ETag {
			changed = append(changed, o)
			if s := idx[id]; s != nil && s.Status == Succeeded {
				// A plan never changes once its task SUCCEEDED: a record
				// rewritten since (mpcfs rekey, a note) needs no plan read.
				m.filesHint[id] = s
			}
		}
	}
	var gone []withdrawn
	if startup {
		for id, s := range idx {
			if !listed[id] {
				m.index.markDirty(id) // its record is gone: drop it from its shard
				if m.catalog.get(id) == s {
					gone = append(gone, m.dropSummaryLocked(id)...) // served from the index meanwhile
				}
			}
		}
	}
	m.mu.Unlock()
	m.outs.notify(gone)
	readStart := time.Now()
	m.readChanged(ctx, changed, startup)
	m.mu.Lock()
	clear(m.filesHint)
	m.mu.Unlock()
	if startup {
		// Where a slow start goes (the records' listing, the shards, the
		// records the shards did not stand for).
		m.cfg.Log.Printf("task store read in %v: %d index summaries in %v, then %d records listed in %v, %d records read in %v",
			time.Since(si.began).Round(time.Millisecond), len(idx), si.took.Round(time.Millisecond), len(objs), listTook.Round(time.Millisecond),
			len(changed), time.Since(readStart).Round(time.Millisecond))
	}
	return m.syncResponses(ctx)
}

// syncShards is the refresh between full ones: other mounts write the
// index shard of each task they change (Tuning.IndexDelay later), so one
// LIST of the 1,000 shards finds the changed ones, and a summary whose
// record ETag differs from the catalogue's names a record to read. A
// change whose shard was never written (a mount killed in between) is
// found by the next full refresh (Tuning.FullRefresh).
func (m *Manager) syncShards(ctx context.Context) error {
	objs, err := m.listAll(ctx, indexPrefix)
	if err != nil {
		return err
	}
	var changed []store.ObjectInfo
	for _, o := range objs {
		n, ok := shardNumber(o.Key)
		m.index.mu.Lock()
		known := m.index.etags[n]
		m.index.mu.Unlock()
		if !ok || known == o.ETag {
			continue
		}
		_, sums, etag, _, err := m.readShard(ctx, o)
		if err != nil {
			if !errors.Is(err, store.ErrChanged) {
				m.cfg.Log.Printf("task store: ignoring index shard %s: %v", o.Key, err)
			}
			continue
		}
		m.index.mu.Lock()
		m.index.etags[n] = etag
		m.index.mu.Unlock()
		m.mu.Lock()
		for _, s := range sums {
			key := recordKey(s.ID)
			if c := m.catalog.get(s.ID); (c == nil || c.ETag != s.ETag) && m.seen[key] != s.ETag && validID.MatchString(s.ID) {
				// The current version is read: the shard may be older
				// than the record.
				changed = append(changed, store.ObjectInfo{Key: key})
			}
		}
		m.mu.Unlock()
	}
	m.readChanged(ctx, changed, false)
	if time.Now().Before(m.nextResponses) {
		return nil
	}
	return m.syncResponses(ctx)
}

// recordID is the task id of a record's key.
func recordID(key string) (string, bool) {
	id, ok := strings.CutSuffix(strings.TrimPrefix(key, tasksPrefix), ".json")
	return id, ok && validID.MatchString(id) && recordKey(id) == key
}

// readChanged reads the changed records, several at once (a store from
// before the index has every record read once).
func (m *Manager) readChanged(ctx context.Context, objs []store.ObjectInfo, startup bool) {
	work := make(chan store.ObjectInfo)
	var wg sync.WaitGroup
	for w := 0; w < min(m.cfg.Tuning.StartupReaders, len(objs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := m.syncTask(ctx, o, startup); err != nil {
					m.cfg.Log.Printf("task store: skipping %s: %v", o.Key, err)
				}
			}
		}()
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
}

func (m *Manager) markSeen(o store.ObjectInfo) {
	m.mu.Lock()
	m.seen[o.Key] = o.ETag
	m.mu.Unlock()
}

// listRecords lists the task records: nine listings at once, one per
// first digit of the ids (tasks/1 ... tasks/9), so a start pays the pages
// of the largest ninth, not of all (a LIST page holds 1,000 keys: 100
// pages one after another at 100,000 tasks). Keys outside the nine are
// not task records (recordID refuses them).
func (m *Manager) listRecords(ctx context.Context) ([]store.ObjectInfo, error) {
	parts := make([][]store.ObjectInfo, 9)
	errs := make([]error, 9)
	var wg sync.WaitGroup
	for d := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[d], errs[d] = m.listAll(ctx, fmt.Sprintf("%s%d", tasksPrefix, d+1))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(parts...), nil
}

// listAll lists the objects under prefix, one level deep.
func (m *Manager) listAll(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	l, err := m.cfg.Store.List(ctx, m.cfg.SysBucket, prefix)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	return l.Objects, err
}

func (m *Manager) readSys(ctx context.Context, key string) ([]byte, error) {
	rc, err := m.cfg.Store.Open(ctx, m.cfg.SysBucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 256<<20))
}

// readTask reads and checks one task record and unwraps its key (nil,
// logged, if this master key does not open it). It returns the ETag of
// the version read: the one a compare-and-swap update must replace. The
// read is conditioned on etag (from a listing; "": the current one, from
// a Stat), so the bytes are that version's. A SUCCEEDED task's outputs
// are outlined (t.outline) from the catalogue, or else from its plan.
func (m *Manager) readTask(ctx context.Context, key, etag string) (*task, string, error) {
	data, etag, err := m.readVersion(ctx, key, etag)
	if err != nil {
		return nil, "", err
	}
	t := &task{}
	if err := json.Unmarshal(data, &t.rec); err != nil {
		return nil, "", fmt.Errorf("malformed task record: %v", err)
	}
	if !validID.MatchString(t.rec.TaskID) || recordKey(t.rec.TaskID) != key {
		return nil, "", fmt.Errorf("task record does not match its name")
	}
	if t.rec.Status == Succeeded {
		if t.outline, err = m.planOutline(ctx, &t.rec); err != nil {
			return nil, "", err
		}
	}
	t.key, err = m.cfg.Master.Open(t.rec.SealedKey, t.rec.TaskID)
	if err != nil {
		m.cfg.Log.Printf("task %s: %v; its outputs are not served", t.rec.TaskID, err)
	}
	return t, etag, nil
}

// planOutline outlines a SUCCEEDED record's outputs: as the catalogue
// already has them (a plan never changes once SUCCEEDED), from a plan the
// record holds (saved before plans were kept apart), or from its plan
// object.
func (m *Manager) planOutline(ctx context.Context, rec *record) (*outline, error) {
	m.mu.Lock()
	s := m.catalog.get(rec.TaskID)
	m.mu.Unlock()
	// Which names are served depends on the output folder too (a record
	// saved before names were checked): reused only for the same folder.
	same := func(s *summary) bool {
		return s != nil && s.Status == Succeeded && s.OutBucket == rec.Output.Bucket && s.OutObject == rec.Output.Object
	}
	if same(s) {
		return &s.Outline, nil
	}
	m.mu.Lock()
	hint := m.filesHint[rec.TaskID]
	m.mu.Unlock()
	if same(hint) {
		return &hint.Outline, nil
	}
	plan := rec.Plan
	if plan == nil {
		var err error
		if plan, err = m.readPlan(ctx, rec.TaskID); err != nil {
			return nil, err
		}
	}
	ol := outlineOfPlan(rec.Output.Object, plan)
	return &ol, nil
}

// loadServed reads what serving a task's outputs needs (Outputs, on the
// first open of one of them): its record, key and plan. The record and
// the plan are read at once, one plain GET each: the first byte of an
// output waits one store round trip for them, not one per read (no HEAD
// for the record's ETag either: a record read whole is one consistent
// version, and Outputs.served checks the plan against the index).
func (m *Manager) loadServed(ctx context.Context, id string) (*servedTask, error) {
	var plan *Plan
	var planErr error
	planRead := make(chan struct{})
	go func() {
		defer close(planRead)
		plan, planErr = m.readPlan(ctx, id)
	}()
	data, err := m.readObject(ctx, recordKey(id))
	<-planRead
	if err != nil {
		return nil, fmt.Errorf("reading task %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("reading task %s: malformed task record: %v", id, err)
	}
	if rec.TaskID != id {
		return nil, fmt.Errorf("reading task %s: the record does not match its name", id)
	}
	if rec.Status != Succeeded {
		return nil, fmt.Errorf("task %s is %s", id, rec.Status)
	}
	key, err := m.cfg.Master.Open(rec.SealedKey, rec.TaskID)
	if err != nil {
		return nil, fmt.Errorf("task %s: its key does not open with this master key: %v", id, err)
	}
	if rec.Plan != nil { // saved before plans were kept apart
		plan, planErr = rec.Plan, nil
	}
	if planErr != nil {
		return nil, planErr
	}
	return &servedTask{rec: rec, key: key, plan: plan}, nil
}

// readObject reads a whole task-store object with one GET.
func (m *Manager) readObject(ctx context.Context, key string) ([]byte, error) {
	rc, err := m.cfg.Store.Open(ctx, m.cfg.SysBucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 256<<20))
}

// saveStaleByID appends a note to a SUCCEEDED task's description and
// saves it (Outputs found one of its sources changed).
func (m *Manager) saveStaleByID(id, note string) {
	m.mu.Lock()
	t := m.tasks[id]
	m.mu.Unlock()
	if t == nil {
		if t = m.lookupStore(id); t == nil {
			return
		}
	}
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
	m.release(t)
}

// readVersion reads a system object and the ETag of the bytes read.
// With etag "" the current one is found by a Stat; a write landing
// between the Stat and the read makes it look again.
func (m *Manager) readVersion(ctx context.Context, key, etag string) ([]byte, string, error) {
	for attempt := 1; ; attempt++ {
		want := etag
		if want == "" {
			info, err := m.cfg.Store.Stat(ctx, m.cfg.SysBucket, key)
			if err != nil {
				return nil, "", err
			}
			want = info.ETag
		}
		rc, err := m.cfg.Store.OpenMatch(ctx, m.cfg.SysBucket, key, want, 0, -1)
		if errors.Is(err, store.ErrChanged) && etag == "" && attempt < maxUpdateAttempts {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		data, err := io.ReadAll(io.LimitReader(rc, 256<<20))
		rc.Close()
		return data, want, err
	}
}

// syncTask reads one changed record and merges it; at startup an
// unfinished task is loaded and queued again.
func (m *Manager) syncTask(ctx context.Context, o store.ObjectInfo, startup bool) error {
	rctx, cancel := context.WithTimeout(ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	nt, etag, err := m.readTask(rctx, o.Key, o.ETag)
	if errors.Is(err, store.ErrChanged) {
		return nil // written again since the listing: read at the next refresh
	}
	if err != nil {
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			m.markSeen(o) // do not re-read a bad record every refresh; one the store did not give is read again
		}
		return err
	}
	requeue := startup && !nt.rec.Status.Final() && nt.key != nil
	isNew := m.adopt(nt, etag, requeue)
	if requeue && isNew {
		m.mu.Lock()
		nt.rec.Status = Waiting
		m.syncLocked(nt)
		m.mu.Unlock()
		m.queue <- nt.rec.TaskID
	}
	return nil
}

// adopt merges a record read from the store (ETag etag). A task loaded
// here takes the store's state only if that is a step forward (another
// mount finished or canceled it), never back (mergeLocked); one that is
// not has its summary replaced, or is loaded with load. It reports
// whether the task was loaded now.
func (m *Manager) adopt(nt *task, etag string, load bool) (isNew bool) {
	id := nt.rec.TaskID
	m.mu.Lock()
	t := m.tasks[id]
	if t == nil {
		nt.etag = etag
		var gone []withdrawn
		if load {
			m.tasks[id] = nt
			gone = m.syncLocked(nt)
		} else {
			s := summarize(&nt.rec, etag, nt.outline)
			gone = m.setSummaryLocked(s, s)
		}
		m.mu.Unlock()
		m.outs.notify(gone)
		return load
	}
	m.mu.Unlock()
	t.mu.Lock() // after the task's own update, if one is running
	defer t.mu.Unlock()
	m.mu.Lock()
	_, gone := m.mergeLocked(t, nt, etag, false)
	m.mu.Unlock()
	m.outs.notify(gone)
	return false
}

// syncResponses notes the changed control/encryptions/ responses and drops
// the ones another mount deleted (only names once seen in a listing, so a
// response this mount is saving right now is kept).
//
// Responses have no index: each call lists them all, a LIST page per
// 1,000, and a catalogue made through the control folder has one per
// task. Refreshes between full ones (syncShards, every Tuning.Refresh)
// therefore list them only Tuning.FullRefreshShare of the time, as full
// refreshes list the records: a listing of 5 ms still runs at every
// refresh, so a request written on another mount is listed here within a
// refresh or two; one of 100,000 responses taking 10 s runs every 100 s,
// where it ran back to back.
func (m *Manager) syncResponses(ctx context.Context) error {
	began := time.Now()
	objs, err := m.listAll(ctx, responsesPrefix)
	m.nextResponses = time.Now().Add(time.Duration(float64(time.Since(began)) / m.cfg.Tuning.FullRefreshShare))
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, o := range objs {
		listed[o.Key] = true
	}
	// New or changed ones are noted, not read: a catalogue made through
	// control/encryptions has one per task, and reading 100,000 of them
	// at each start would take minutes. Response reads one when it is
	// first asked for.
	for _, o := range m.unseen(objs) {
		m.mu.Lock()
		m.responses[strings.TrimPrefix(o.Key, responsesPrefix)] = response{size: o.Size}
		m.seen[o.Key] = o.ETag
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key := range m.seen {
		if strings.HasPrefix(key, responsesPrefix) && !listed[key] {
			delete(m.seen, key)
			delete(m.responses, strings.TrimPrefix(key, responsesPrefix))
		}
	}
	return nil
}

// lookupStore reads a task this mount has not loaded (created by another
// mount since the last refresh, or only in the catalogue) and loads it,
// so control/tasks/<id>.json and cancels work at once on every mount.
func (m *Manager) lookupStore(id string) *task {
	nt, etag := m.readByID(id)
	if nt == nil {
		return nil
	}
	m.adopt(nt, etag, true)
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tasks[id]; t != nil {
		return t
	}
	// Unloaded again meanwhile (another caller's update of it ended and
	// released it): the record read is still a version to update from;
	// its save is conditioned on etag like any other.
	nt.etag = etag
	return nt
}

// peekStore reads a task's record without loading it.
func (m *Manager) peekStore(id string) *task {
	nt, _ := m.readByID(id)
	return nt
}

func (m *Manager) readByID(id string) (*task, string) {
	if !validID.MatchString(id) {
		return nil, ""
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.LookupTimeout)
	defer cancel()
	nt, etag, err := m.readTask(ctx, recordKey(id), "")
	if err != nil {
		if !errors.Is(err, store.ErrNotExist) {
			m.cfg.Log.Printf("task store: reading task %s: %v", id, err)
		}
		return nil, ""
	}
	return nt, etag
}

// forward reports whether a task may move from status a to b: the order
// is WAITING, PROCESSING, a final state; only SUCCEEDED can still become
// CANCELED.
func forward(a, b Status) bool {
	switch a {
	case Waiting:
		return b != Waiting && b != ""
	case Processing:
		return b.Final()
	case Succeeded:
		return b == Canceled
	}
	return false
}

// unseen returns the listed objects whose ETag differs from the one read.
func (m *Manager) unseen(objs []store.ObjectInfo) []store.ObjectInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.ObjectInfo
	for _, o := range objs {
		if m.seen[o.Key] != o.ETag {
			out = append(out, o)
		}
	}
	return out
}
