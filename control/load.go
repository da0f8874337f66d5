package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/fs/store"
)

// bucketMaker is implemented by stores that can create the system bucket.
type bucketMaker interface {
	MakeBucket(ctx context.Context, bucket string) error
}

// load reads every task and response from the task store. A task whose key
// does not open with this master key is kept (its record is not touched)
// but serves no outputs; the log says why.
func (m *Manager) load() error {
	ctx, cancel := context.WithTimeout(m.ctx, 2*time.Minute)
	defer cancel()
	if err := m.ensureSysBucket(ctx); err != nil {
		return err
	}
	names, err := m.listAll(ctx, tasksPrefix)
	if err != nil {
		return fmt.Errorf("reading the task store: %w", err)
	}
	for _, key := range names {
		if err := m.loadTask(ctx, key); err != nil {
			m.cfg.Log.Printf("task store: skipping %s: %v", key, err)
		}
	}
	if err := m.loadResponses(ctx); err != nil {
		return err
	}
	m.reindex()
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

// listAll lists the objects under prefix, one level deep.
func (m *Manager) listAll(ctx context.Context, prefix string) ([]string, error) {
	l, err := m.cfg.Store.List(ctx, m.cfg.SysBucket, prefix)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(l.Objects))
	for _, o := range l.Objects {
		keys = append(keys, o.Key)
	}
	return keys, nil
}

func (m *Manager) readSys(ctx context.Context, key string) ([]byte, error) {
	rc, err := m.cfg.Store.Open(ctx, m.cfg.SysBucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 256<<20))
}

func (m *Manager) loadTask(ctx context.Context, key string) error {
	data, err := m.readSys(ctx, key)
	if err != nil {
		return err
	}
	t := &task{}
	if err := json.Unmarshal(data, &t.rec); err != nil {
		return fmt.Errorf("malformed task record: %v", err)
	}
	if t.rec.TaskID == "" || tasksPrefix+t.rec.TaskID+".json" != key {
		return fmt.Errorf("task record does not match its name")
	}
	t.key, err = m.cfg.Master.Open(t.rec.SealedKey, t.rec.TaskID)
	if err != nil {
		m.cfg.Log.Printf("task %s: %v; its outputs are not served", t.rec.TaskID, err)
	}
	m.tasks[t.rec.TaskID] = t
	if !t.rec.Status.Final() && t.key != nil {
		t.rec.Status = Waiting
		m.queue <- t.rec.TaskID
	}
	return nil
}

func (m *Manager) loadResponses(ctx context.Context) error {
	keys, err := m.listAll(ctx, responsesPrefix)
	if err != nil {
		return fmt.Errorf("reading the task store: %w", err)
	}
	for _, key := range keys {
		data, err := m.readSys(ctx, key)
		if err != nil {
			m.cfg.Log.Printf("task store: skipping %s: %v", key, err)
			continue
		}
		m.responses[strings.TrimPrefix(key, responsesPrefix)] = data
	}
	return nil
}
