package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/store"
)

// This file holds what admin commands (mpcfs init, rekey, tasks) do with a
// task store directly, with or without a mount, and the master key check.

// keyCheckObject, in the system bucket, holds the check value of the master
// key the store's tasks are sealed with (keywrap.Master.CheckValue).
const keyCheckObject = "keycheck.json"

type keyCheck struct {
	CheckValue string `json:"master_key_check_value"`
	Created    string `json:"created"`
}

// readSysObject reads a whole small object of the system bucket.
func readSysObject(ctx context.Context, st store.Store, sys, key string) ([]byte, error) {
	rc, err := st.Open(ctx, sys, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 256<<20))
}

// readKeyCheck returns the recorded check value, "" if there is none.
func readKeyCheck(ctx context.Context, st store.Store, sys string) (string, error) {
	data, err := readSysObject(ctx, st, sys, keyCheckObject)
	if errors.Is(err, store.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the master key check value: %w", err)
	}
	var kc keyCheck
	if err := json.Unmarshal(data, &kc); err != nil || kc.CheckValue == "" {
		return "", fmt.Errorf("%s/%s is malformed", sys, keyCheckObject)
	}
	return kc.CheckValue, nil
}

func writeKeyCheck(ctx context.Context, st store.Store, sys string, m *keywrap.Master) error {
	data, _ := json.Marshal(keyCheck{CheckValue: m.CheckValue(), Created: time.Now().UTC().Format(time.RFC3339)})
	if err := st.Put(ctx, sys, keyCheckObject, data); err != nil {
		return fmt.Errorf("recording the master key check value: %w", err)
	}
	return nil
}

// taskObjects lists the task records of the store.
func taskObjects(ctx context.Context, st store.Store, sys string) ([]store.ObjectInfo, error) {
	l, err := st.List(ctx, sys, tasksPrefix)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	var out []store.ObjectInfo
	for _, o := range l.Objects {
		if strings.HasSuffix(o.Key, ".json") {
			out = append(out, o)
		}
	}
	return out, err
}

// MasterKeyResult says how OpenMasterKey found the key.
type MasterKeyResult struct {
	Master  *keywrap.Master
	Created bool // the key file was made now: the admin must back it up
}

// OpenMasterKey loads the master key file and checks it against the task
// store's key check value, so tasks are never served (or silently hidden)
// under another key. A missing file is created only for a store that has
// no tasks and no check value yet (a first start); a store that has them
// needs its key back. A store from before check values is checked against
// its first task's sealed key, then given a check value.
func OpenMasterKey(ctx context.Context, st store.Store, sys, keyFile string) (MasterKeyResult, error) {
	cv, err := readKeyCheck(ctx, st, sys)
	if err != nil {
		return MasterKeyResult{}, err
	}
	// Whether the store holds tasks is one listing of one key: listing
	// them all cost a start one LIST page per 1,000 tasks.
	hasTasks, err := st.HasPrefix(ctx, sys, tasksPrefix)
	if errors.Is(err, store.ErrNotExist) {
		hasTasks, err = false, nil // no system bucket yet
	}
	if err != nil {
		return MasterKeyResult{}, fmt.Errorf("listing the task store: %w", err)
	}
	var res MasterKeyResult
	if !keywrap.Exists(keyFile) {
		if cv != "" || hasTasks {
			return res, fmt.Errorf("master key file %s does not exist, but the task store (bucket %q) holds tasks sealed with a master key: restore %s from its backup, or point --master-key-file at it", keyFile, sys, keyFile)
		}
		res.Master, err = keywrap.Create(keyFile)
		if err != nil {
			return res, fmt.Errorf("creating master key file %s: %w", keyFile, err)
		}
		res.Created = true
	} else if res.Master, err = keywrap.Load(keyFile); err != nil {
		return res, err
	}
	wrong := fmt.Errorf("master key file %s is not the key the task store (bucket %q) is sealed with: restore the right key file from its backup (after `mpcfs rekey OLD NEW`, use NEW)", keyFile, sys)
	if cv != "" {
		if !res.Master.Verify(cv) {
			return res, wrong
		}
		return res, nil
	}
	// A store from before check values (once): its first task's key.
	objs, err := taskObjects(ctx, st, sys)
	if err != nil {
		return res, fmt.Errorf("listing the task store: %w", err)
	}
	if len(objs) > 0 {
		data, err := readSysObject(ctx, st, sys, objs[0].Key)
		if err != nil {
			return res, fmt.Errorf("reading %s: %w", objs[0].Key, err)
		}
		var rec record
		if json.Unmarshal(data, &rec) == nil && rec.SealedKey != "" {
			if _, err := res.Master.Open(rec.SealedKey, rec.TaskID); err != nil {
				return res, wrong
			}
		}
	}
	return res, writeKeyCheck(ctx, st, sys, res.Master)
}

// InitMasterKey is `mpcfs init`: it creates the master key file and records
// its check value in a task store that has neither tasks nor a check value.
func InitMasterKey(ctx context.Context, st store.Store, sys, keyFile string) error {
	if keywrap.Exists(keyFile) {
		return fmt.Errorf("master key file %s already exists: nothing to do (mpcfs rekey rotates a key)", keyFile)
	}
	res, err := OpenMasterKey(ctx, st, sys, keyFile)
	if err != nil {
		return err
	}
	if !res.Created {
		return fmt.Errorf("master key file %s was made by another process meanwhile", keyFile)
	}
	return nil
}

// Rekey re-seals every task's content key from the old master key to the
// new one, then records the new key's check value. Mounts of the store must
// be stopped first: one still running would seal new tasks with the old key.
// It can be run again after an interruption: tasks already sealed with the
// new key are skipped, and the old key stays valid until the last step.
// It returns how many tasks were re-sealed and skipped.
func Rekey(ctx context.Context, st store.Store, sys string, old, new *keywrap.Master) (resealed, skipped int, err error) {
	cv, err := readKeyCheck(ctx, st, sys)
	if err != nil {
		return 0, 0, err
	}
	if cv != "" && !old.Verify(cv) && !new.Verify(cv) {
		return 0, 0, errors.New("the old master key is not the one the task store is sealed with")
	}
	objs, err := taskObjects(ctx, st, sys)
	if err != nil {
		return 0, 0, fmt.Errorf("listing the task store: %w", err)
	}
	for _, o := range objs {
		data, err := readSysObject(ctx, st, sys, o.Key)
		if err != nil {
			return resealed, skipped, fmt.Errorf("reading %s: %w", o.Key, err)
		}
		// Rewrite only sealed_key, keeping every other field as it is.
		var raw map[string]json.RawMessage
		var ids struct {
			TaskID    string `json:"task_id"`
			SealedKey string `json:"sealed_key"`
		}
		if json.Unmarshal(data, &raw) != nil || json.Unmarshal(data, &ids) != nil || ids.SealedKey == "" {
			return resealed, skipped, fmt.Errorf("%s is not a task record", o.Key)
		}
		if _, err := new.Open(ids.SealedKey, ids.TaskID); err == nil {
			skipped++
			continue
		}
		key, err := old.Open(ids.SealedKey, ids.TaskID)
		if err != nil {
			return resealed, skipped, fmt.Errorf("task %s: its key opens with neither master key", ids.TaskID)
		}
		raw["sealed_key"], _ = json.Marshal(new.Seal(key, ids.TaskID))
		out, _ := json.Marshal(raw)
		if err := st.Put(ctx, sys, o.Key, out); err != nil {
			return resealed, skipped, fmt.Errorf("writing %s: %w", o.Key, err)
		}
		resealed++
	}
	return resealed, skipped, writeKeyCheck(ctx, st, sys, new)
}

// TaskFilter selects tasks for ListTasks, like MPC's query parameters.
type TaskFilter struct {
	Status Status    // "" for any
	Since  time.Time // created at or after; zero for any
	Until  time.Time // created before; zero for any
	IDs    []string  // only these; empty for any
}

// ListTasks reads every task of the task store (no mount needed), newest
// first, as control/tasks/<id>.json shows them.
func ListTasks(ctx context.Context, st store.Store, sys string, f TaskFilter) ([]TaskView, error) {
	objs, err := taskObjects(ctx, st, sys)
	if err != nil {
		return nil, fmt.Errorf("listing the task store (bucket %q): %w", sys, err)
	}
	want := map[string]bool{}
	for _, id := range f.IDs {
		want[id] = true
	}
	idx := readIndexShards(ctx, st, sys)
	var out []TaskView
	created := map[string]int64{}
	for _, o := range objs {
		if id, ok := recordID(o.Key); ok {
			// The index summarises the record as listed: a task it rules
			// out is not read.
			if s := idx[id]; s != nil && s.ETag == o.ETag && !f.mayMatch(s) {
				continue
			}
		}
		data, err := readSysObject(ctx, st, sys, o.Key)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", o.Key, err)
		}
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			continue
		}
		v := rec.TaskView
		ct, _ := time.Parse(timeFormat, v.CreateTime)
		switch {
		case f.Status != "" && v.Status != f.Status,
			!f.Since.IsZero() && ct.Before(f.Since),
			!f.Until.IsZero() && !ct.Before(f.Until),
			len(want) > 0 && !want[v.TaskID]:
			continue
		}
		created[v.TaskID] = rec.Created
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreateTime != out[j].CreateTime {
			return out[i].CreateTime > out[j].CreateTime
		}
		return created[out[i].TaskID] > created[out[j].TaskID]
	})
	return out, nil
}

// mayMatch reports whether a task with summary s may pass the filter.
func (f TaskFilter) mayMatch(s *summary) bool {
	if f.Status != "" && s.Status != f.Status {
		return false
	}
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, s.ID) {
		return false
	}
	ct, err := time.Parse(timeFormat, s.CreateTime)
	if err != nil {
		return true // decided on the record
	}
	return (f.Since.IsZero() || !ct.Before(f.Since)) && (f.Until.IsZero() || ct.Before(f.Until))
}

// readIndexShards reads the index shards without a Manager (best effort:
// an unreadable shard only means its tasks' records are read).
func readIndexShards(ctx context.Context, st store.Store, sys string) map[string]*summary {
	out := map[string]*summary{}
	l, err := st.List(ctx, sys, indexPrefix)
	if err != nil {
		return out
	}
	for _, o := range l.Objects {
		n, ok := shardNumber(o.Key)
		if !ok {
			continue
		}
		data, err := readSysObject(ctx, st, sys, o.Key)
		if err != nil {
			continue
		}
		sums, err := decodeShard(data)
		if err != nil {
			continue
		}
		for _, s := range sums {
			if shardOf(s.ID) == n {
				out[s.ID] = s
			}
		}
	}
	return out
}

// RenameResponse moves a control/encryptions response to another name
// (mv a.json b.json, or an editor's rename-to-backup); no task is created.
func (m *Manager) RenameResponse(from, to string) bool {
	if _, ok, err := m.Response(from); !ok || err != nil { // read, if another mount saved it
		if err != nil {
			m.cfg.Log.Printf("renaming %s: %v", from, err)
		}
		return false
	}
	m.mu.Lock()
	r, ok := m.responses[from]
	ok = ok && r.body != nil
	if ok {
		delete(m.responses, from)
		m.responses[to] = r
	}
	m.mu.Unlock()
	if !ok {
		return false
	}
	if err := m.cfg.Store.Put(m.ctx, m.cfg.SysBucket, responsesPrefix+to, r.body); err != nil {
		m.cfg.Log.Printf("saving the response of %s: %v", to, err)
	}
	if err := m.cfg.Store.Delete(m.ctx, m.cfg.SysBucket, responsesPrefix+from); err != nil {
		m.cfg.Log.Printf("removing %s: %v", from, err)
	}
	return true
}

// StatusCounts counts the tasks this mount knows by status (for metrics).
func (m *Manager) StatusCounts() map[Status]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := map[Status]int{Waiting: 0, Processing: 0, Succeeded: 0, Failed: 0, Canceled: 0}
	m.catalog.each(func(s *summary) { n[s.Status]++ })
	return n
}
