package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mpcfs/mpcfs/store"
)

// maxUpdateAttempts bounds how often update retries after another mount
// wrote the same record between its read and its write.
const maxUpdateAttempts = 8

// recordKey is where a task's record lives in the system bucket.
func recordKey(id string) string { return tasksPrefix + id + ".json" }

// update is the one way a task's record changes and is saved. change is
// applied to a copy of the current record; when it reports a change, the
// copy is saved on condition that the store still holds the version this
// mount last read or wrote (compare-and-swap, store.PutMatch). If another
// mount wrote the record meanwhile, its version is read and merged
// (mergeLocked) and change decides again on that: a cancel saved by one
// mount is never overwritten by another mount's outcome, and an outcome
// saved first is canceled, not lost.
//
// If the store cannot be reached, the change is kept in memory only (the
// next update or a restart saves it) and the error returned. The output
// index follows: a task's status and its outputs change together, after
// the save, so whoever reads SUCCEEDED can open them.
func (m *Manager) update(t *task, change func(r *record) bool) (changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	reindex := false // a merged record changed the status
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		rec, etag := t.rec, t.etag
		m.mu.Unlock()
		if !change(&rec) {
			if reindex {
				m.reindex()
			}
			return false, nil
		}
		newETag, err := m.putRec(&rec, etag)
		if errors.Is(err, store.ErrChanged) {
			if attempt == maxUpdateAttempts {
				if reindex {
					m.reindex()
				}
				return false, fmt.Errorf("task %s: the record kept changing in the store: %w", rec.TaskID, err)
			}
			merged, rerr := m.reload(t, rec.TaskID)
			reindex = reindex || merged
			if rerr == nil {
				continue
			}
			err = rerr // unreadable: keep the change in memory, as for a failed write
		}
		m.mu.Lock()
		reindex = reindex || t.rec.Status != rec.Status
		t.rec = rec
		if err == nil {
			t.etag = newETag
			m.seen[recordKey(rec.TaskID)] = newETag // our own write: no need to read it back
		}
		var old, cur *outIndex
		if reindex {
			old, cur = m.reindexLocked()
		}
		m.mu.Unlock()
		m.notifyWithdrawn(old, cur)
		return true, err
	}
}

// putRec writes a record (with the sealed key only) to the task store on
// condition that the stored one has ETag etag ("": that there is none).
func (m *Manager) putRec(rec *record, etag string) (string, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	return m.cfg.Store.PutMatch(ctx, m.cfg.SysBucket, recordKey(rec.TaskID), data, etag)
}

// reload reads t's record from the store and merges it, taking its ETag
// whatever it holds (it is the version the next write must replace).
// Called with t.mu held.
func (m *Manager) reload(t *task, id string) (merged bool, err error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	nt, etag, err := m.readTask(ctx, recordKey(id), "")
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mergeLocked(t, nt, etag, true), nil
}

// mergeLocked takes a record read from the store (ETag etag) into t: the
// store's version replaces memory unless its status is a step back (a
// mount only moves a task forward; see forward). A CANCELED record
// withdraws the outputs and stops processing here. The ETag is taken when
// the record is, or always with takeETag (the store's current version,
// read by reload). Called with t.mu and m.mu held.
func (m *Manager) mergeLocked(t, nt *task, etag string, takeETag bool) bool {
	id := t.rec.TaskID
	if nt.rec.Status != t.rec.Status && !forward(t.rec.Status, nt.rec.Status) {
		if takeETag {
			t.etag = etag
		}
		return false
	}
	t.etag = etag
	if nt.rec.Status == Canceled {
		t.withdrawn = true
		if fn := m.cancelFns[id]; fn != nil {
			fn() // another mount canceled what this one is processing
		}
	}
	changed := nt.rec.Status != t.rec.Status
	t.rec = nt.rec
	if t.key == nil {
		t.key = nt.key
	}
	return changed
}
