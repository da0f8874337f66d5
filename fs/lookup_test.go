package fs_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
)

// pairedStore answers a Stat only once the HasPrefix of the same name's
// folder has been asked (or after a second): if the mount asks the two one
// after the other, the Stat that comes first finds no HasPrefix and says so.
type pairedStore struct {
	store.Store
	mu       sync.Mutex
	asked    map[string]chan struct{} // folder prefix -> closed when HasPrefix was called
	serial   []string                 // Stats that waited in vain
	prefixes int                      // HasPrefix calls
}

func (p *pairedStore) askedChan(prefix string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asked == nil {
		p.asked = map[string]chan struct{}{}
	}
	c, ok := p.asked[prefix]
	if !ok {
		c = make(chan struct{})
		p.asked[prefix] = c
	}
	return c
}

func (p *pairedStore) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	c := p.askedChan(bucket + "/" + prefix)
	p.mu.Lock()
	p.prefixes++
	select {
	case <-c:
	default:
		close(c)
	}
	p.mu.Unlock()
	return p.Store.HasPrefix(ctx, bucket, prefix)
}

func (p *pairedStore) Stat(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	select {
	case <-p.askedChan(bucket + "/" + key + "/"):
	case <-time.After(time.Second):
		p.mu.Lock()
		p.serial = append(p.serial, key)
		p.mu.Unlock()
	}
	return p.Store.Stat(ctx, bucket, key)
}

// TestSourceLookupAsksAtOnce: looking up a name in a bucket folder asks
// the store "is it an object?" and "is it a folder?" at once, so on a
// store far away a folder costs one round trip, not two (cd, ls and the
// first open of a source read through the mount pay it per level). The
// answers stay right: an object, a folder, a missing name.
func TestSourceLookupAsksAtOnce(t *testing.T) {
	st, _ := localStore(t, "media")
	ctx := context.Background()
	for _, k := range []string{"vod/seg_0.ts", "vod/deep/seg_1.ts", "top.ts"} {
		if err := st.Put(ctx, "media", k, []byte("data of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	ps := &pairedStore{Store: st}
	f := newFixture(t, ps, ".mpcfs")

	for _, c := range []struct {
		path string
		dir  bool
	}{
		{"vod", true},
		{"vod/deep", true},
		{"vod/seg_0.ts", false},
		{"top.ts", false},
	} {
		fi, err := os.Stat(f.path("buckets", "media", c.path))
		if err != nil {
			t.Errorf("stat %s: %v", c.path, err)
			continue
		}
		if fi.IsDir() != c.dir {
			t.Errorf("stat %s: folder %v, want %v", c.path, fi.IsDir(), c.dir)
		}
	}
	if _, err := os.Stat(f.path("buckets", "media", "vod", "missing.ts")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of a missing name: %v, want ENOENT", err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.serial) > 0 {
		t.Errorf("lookups asked the store one question after the other for %q: the folder check must go out with the Stat", ps.serial)
	}
	if ps.prefixes == 0 {
		t.Error("no folder check at all")
	}
}
