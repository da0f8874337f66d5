package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
// next update or a restart saves it) and the error returned. The
// catalogue and the output index follow: a task's status and its outputs
// change together, after the save, so whoever reads SUCCEEDED can open
// them.
func (m *Manager) update(t *task, change func(r *record) bool) (changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []withdrawn // outputs a merged record withdrew
	defer func() { m.outs.notify(gone) }()
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		rec, etag := t.rec, t.etag
		m.mu.Unlock()
		if !change(&rec) {
			return false, nil
		}
		newETag, err := m.putRec(&rec, etag)
		if errors.Is(err, store.ErrChanged) {
			if attempt == maxUpdateAttempts {
				return false, fmt.Errorf("task %s: the record kept changing in the store: %w", rec.TaskID, err)
			}
			g, rerr := m.reload(t, rec.TaskID)
			gone = append(gone, g...)
			if rerr == nil {
				continue
			}
			err = rerr // unreadable: keep the change in memory, as for a failed write
		}
		m.mu.Lock()
		t.rec = rec
		if err == nil {
			t.etag = newETag
		}
		gone = append(gone, m.syncLocked(t)...)
		m.mu.Unlock()
		return true, err
	}
}

// putRec writes a record (with the sealed key only) to the task store on
// condition that the stored one has ETag etag ("": that there is none).
// A record from before plans were kept apart has its plan moved to its
// own object first (rec then names it).
func (m *Manager) putRec(rec *record, etag string) (string, error) {
	if rec.Plan != nil {
		if err := m.putPlan(rec.TaskID, rec.Plan); err != nil {
			return "", err
		}
		rec.PlanKey, rec.Plan = planKey(rec.TaskID), nil
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	return m.cfg.Store.PutMatch(ctx, m.cfg.SysBucket, recordKey(rec.TaskID), data, etag)
}

// putPlan saves a task's plan in its own object. A plan never changes
// once its task SUCCEEDED, so a plain Put will do.
func (m *Manager) putPlan(id string, plan *Plan) error {
	data, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	return m.cfg.Store.Put(ctx, m.cfg.SysBucket, planKey(id), data)
}

// readPlan reads a task's plan object.
func (m *Manager) readPlan(ctx context.Context, id string) (*Plan, error) {
	rc, err := m.cfg.Store.Open(ctx, m.cfg.SysBucket, planKey(id), 0, -1)
	if err != nil {
		return nil, fmt.Errorf("reading the plan of task %s: %w", id, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("reading the plan of task %s: %w", id, err)
	}
	plan := &Plan{}
	if err := json.Unmarshal(data, plan); err != nil {
		return nil, fmt.Errorf("the plan of task %s is malformed: %v", id, err)
	}
	return plan, nil
}

// deletePlan removes a canceled task's plan (best effort: an orphan plan
// is never read).
func (m *Manager) deletePlan(id string) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	if err := m.cfg.Store.Delete(ctx, m.cfg.SysBucket, planKey(id)); err != nil {
		m.cfg.Log.Printf("task %s: removing its plan: %v", id, err)
	}
}

// reload reads t's record from the store and merges it, taking its ETag
// whatever it holds (it is the version the next write must replace).
// Called with t.mu held.
func (m *Manager) reload(t *task, id string) ([]withdrawn, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	nt, etag, err := m.readTask(ctx, recordKey(id), "")
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, gone := m.mergeLocked(t, nt, etag, true)
	return gone, nil
}

// mergeLocked takes a record read from the store (ETag etag) into t: the
// store's version replaces memory unless its status is a step back (a
// mount only moves a task forward; see forward). A CANCELED record
// withdraws the outputs and stops processing here. The ETag is taken when
// the record is, or always with takeETag (the store's current version,
// read by reload). Called with t.mu and m.mu held; it returns whether the
// status changed and the outputs withdrawn, for Outputs.notify.
func (m *Manager) mergeLocked(t, nt *task, etag string, takeETag bool) (bool, []withdrawn) {
	id := t.rec.TaskID
	if nt.rec.Status != t.rec.Status && !forward(t.rec.Status, nt.rec.Status) {
		if takeETag {
			t.etag = etag
		}
		return false, nil
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
	if nt.outline != nil {
		t.outline = nt.outline
	}
	if t.key == nil {
		t.key = nt.key
	}
	return changed, m.syncLocked(t)
}

// syncLocked puts a loaded task's summary in the catalogue and its
// outputs in the index (none while it is being withdrawn). Called with
// m.mu held; it returns the outputs withdrawn, for Outputs.notify.
func (m *Manager) syncLocked(t *task) []withdrawn {
	s := summarize(&t.rec, t.etag, t.outline)
	show := s
	if t.withdrawn {
		show = nil
	}
	return m.setSummaryLocked(s, show)
}

// dropSummaryLocked forgets a task whose record is gone from the store,
// and its outputs. Called with m.mu held.
func (m *Manager) dropSummaryLocked(id string) []withdrawn {
	prev := m.catalog.get(id)
	if prev == nil {
		return nil
	}
	m.catalog.remove(id)
	return m.outs.set(prev, nil)
}

// setSummaryLocked replaces a task's summary and serves show's outputs
// (nil: none). Called with m.mu held.
func (m *Manager) setSummaryLocked(s, show *summary) []withdrawn {
	prev := m.catalog.get(s.ID)
	if prev == nil || *prev != *s {
		m.index.markDirty(s.ID)
	}
	m.catalog.put(s)
	return m.outs.set(prev, show)
}
