package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
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

// load reads every task and response from the task store. A task whose key
// does not open with this master key is kept (its record is not touched)
// but serves no outputs; the log says why. Tasks left WAITING or PROCESSING
// by a previous run (or a killed daemon) are queued again.
func (m *Manager) load() error {
	ctx, cancel := context.WithTimeout(m.ctx, 2*time.Minute)
	defer cancel()
	if err := m.ensureSysBucket(ctx); err != nil {
		return err
	}
	if err := m.sync(ctx, true); err != nil {
		return fmt.Errorf("reading the task store: %w", err)
	}
	return nil
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
	tick := time.NewTicker(m.cfg.Tuning.Refresh)
	defer tick.Stop()
	failing := false // log when refreshing starts and stops failing, not every tick
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
			err := m.sync(ctx, false)
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

// sync reads the task records and responses that changed in the store
// since they were last read (by ETag) and merges them. One LIST per prefix
// plus one GET per changed object: bounded work per refresh.
func (m *Manager) sync(ctx context.Context, startup bool) error {
	objs, err := m.listAll(ctx, tasksPrefix)
	if err != nil {
		return err
	}
	changed := false
	for _, o := range m.unseen(objs) {
		ok, err := m.syncTask(ctx, o, startup)
		if err != nil {
			m.cfg.Log.Printf("task store: skipping %s: %v", o.Key, err)
		}
		changed = changed || ok
	}
	if changed {
		m.reindex()
	}
	return m.syncResponses(ctx)
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

func (m *Manager) markSeen(o store.ObjectInfo) {
	m.mu.Lock()
	m.seen[o.Key] = o.ETag
	m.mu.Unlock()
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
// a Stat), so the bytes are that version's.
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
	t.key, err = m.cfg.Master.Open(t.rec.SealedKey, t.rec.TaskID)
	if err != nil {
		m.cfg.Log.Printf("task %s: %v; its outputs are not served", t.rec.TaskID, err)
	}
	return t, etag, nil
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
// unfinished task is queued again.
func (m *Manager) syncTask(ctx context.Context, o store.ObjectInfo, startup bool) (bool, error) {
	nt, etag, err := m.readTask(ctx, o.Key, o.ETag)
	if errors.Is(err, store.ErrChanged) {
		return false, nil // written again since the listing: read at the next refresh
	}
	if err != nil {
		m.markSeen(o) // do not re-read a bad record every refresh
		return false, err
	}
	m.markSeen(o)
	changed, isNew := m.adopt(nt, etag)
	if startup && isNew && !nt.rec.Status.Final() && nt.key != nil {
		m.mu.Lock()
		nt.rec.Status = Waiting
		m.mu.Unlock()
		m.queue <- nt.rec.TaskID
	}
	return changed, nil
}

// adopt merges a record read from the store (ETag etag): an unknown task
// is added; a known one takes the store's state only if that is a step
// forward (another mount finished or canceled it), never back
// (mergeLocked). It reports whether the outputs may have changed and
// whether the task was new.
func (m *Manager) adopt(nt *task, etag string) (changed, isNew bool) {
	id := nt.rec.TaskID
	m.mu.Lock()
	t := m.tasks[id]
	if t == nil {
		nt.etag = etag
		m.tasks[id] = nt
		succeeded := nt.rec.Status == Succeeded // nt is shared from here on
		m.mu.Unlock()
		return succeeded, true
	}
	m.mu.Unlock()
	t.mu.Lock() // after the task's own update, if one is running
	defer t.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mergeLocked(t, nt, etag, false), false
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

// syncResponses reads the changed control/encryptions/ responses and drops
// the ones another mount deleted (only names once seen in a listing, so a
// response this mount is saving right now is kept).
func (m *Manager) syncResponses(ctx context.Context) error {
	objs, err := m.listAll(ctx, responsesPrefix)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, o := range objs {
		listed[o.Key] = true
	}
	for _, o := range m.unseen(objs) {
		data, err := m.readSys(ctx, o.Key)
		if err != nil {
			m.cfg.Log.Printf("task store: skipping %s: %v", o.Key, err)
			continue
		}
		m.mu.Lock()
		m.responses[strings.TrimPrefix(o.Key, responsesPrefix)] = data
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

// lookupStore reads a task this mount does not know yet (created by
// another mount since the last refresh), so control/tasks/<id>.json works
// at once on every mount.
func (m *Manager) lookupStore(id string) *task {
	if !validID.MatchString(id) {
		return nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.LookupTimeout)
	defer cancel()
	nt, etag, err := m.readTask(ctx, recordKey(id), "")
	if err != nil {
		if !errors.Is(err, store.ErrNotExist) {
			m.cfg.Log.Printf("task store: reading task %s: %v", id, err)
		}
		return nil
	}
	if changed, _ := m.adopt(nt, etag); changed {
		m.reindex()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tasks[id]
}
