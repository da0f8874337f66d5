package control

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mpcfs/mpcfs/store"
)

// responseReads counts GETs of control/encryptions responses.
type responseReads struct {
	store.Store
	mu   sync.Mutex
	gets int
}

func (s *responseReads) Open(ctx context.Context, b, k string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(k, responsesPrefix) {
		s.mu.Lock()
		s.gets++
		s.mu.Unlock()
	}
	return s.Store.Open(ctx, b, k, off, n)
}

func (s *responseReads) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// TestResponsesReadWhenAsked: a mount start reads no control/encryptions
// response (a catalogue made through the control folder has one per
// task: reading them all made each start take minutes at 100,000); their
// names and sizes come from the listing, and a body is read once, when
// first asked for, the same as the mount that saved it.
func TestResponsesReadWhenAsked(t *testing.T) {
	st := &responseReads{Store: taskStore(t)}
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	const n = 20
	bodies := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("r%02d.json", i)
		bodies[name] = a.Create(name, []byte(goodRequest))
	}

	before := st.count()
	b, _ := newTestManager(t, st, master, -1)
	if got := st.count() - before; got != 0 {
		t.Errorf("a mount start read %d responses, want none", got)
	}
	if names := b.ResponseNames(); len(names) != n {
		t.Fatalf("%d responses listed, want %d", len(names), n)
	}
	for name, want := range bodies {
		if size, ok := b.ResponseSize(name); !ok || size != int64(len(want)) {
			t.Errorf("%s: size %d, %v; want %d", name, size, ok, len(want))
		}
	}
	if got := st.count() - before; got != 0 {
		t.Errorf("sizes of the responses read %d of them, want none", got)
	}
	for range 2 {
		body, ok, err := b.Response("r07.json")
		if err != nil || !ok || string(body) != string(bodies["r07.json"]) {
			t.Fatalf("r07.json on the other mount: %q, %v, %v; want %q", body, ok, err, bodies["r07.json"])
		}
	}
	if got := st.count() - before; got != 1 {
		t.Errorf("reading one response twice made %d store reads, want 1", got)
	}
	if _, ok, err := b.Response("none.json"); ok || err != nil {
		t.Errorf("a missing response: ok %v, %v", ok, err)
	}
}

// failOnce fails the first GET of one key as an unreachable store does.
type failOnce struct {
	store.Store
	key    string
	failed atomic.Bool
}

func (s *failOnce) Open(ctx context.Context, b, k string, off, n int64) (io.ReadCloser, error) {
	if k == s.key && s.failed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("GET %s: %w", k, store.ErrUnavailable)
	}
	return s.Store.Open(ctx, b, k, off, n)
}

// TestRecordNotGivenIsReadAgain: a record the store did not give (down,
// timed out) is read again at the next refresh; only a record that could
// not be used (malformed) is left alone until it changes.
func TestRecordNotGivenIsReadAgain(t *testing.T) {
	base := taskStore(t)
	master := testMaster(t)
	a, _ := newTestManager(t, base, master, -1)
	id := createID(t, a, "a.json")
	waitStatus(t, a, id, Succeeded)
	a.Close()
	// No index: the record must be read (a store from before the index).
	ctx := context.Background()
	l, err := base.List(ctx, ".mpcfs", indexPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range l.Objects {
		base.Delete(ctx, ".mpcfs", o.Key)
	}
	st := &failOnce{Store: base, key: recordKey(id)}
	b, _ := newTestManager(t, st, master, -1)
	<-b.reconciled
	if got := b.Status(id); got != "" {
		t.Fatalf("the record the store did not give: status %q, want unknown for now", got)
	}
	if err := b.sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.Status(id); got != Succeeded {
		t.Errorf("after the next refresh: status %q, want %s (the record read again)", got, Succeeded)
	}
}

func (s *failOnce) OpenMatch(ctx context.Context, b, k, etag string, off, n int64) (io.ReadCloser, error) {
	if k == s.key && s.failed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("GET %s: %w", k, store.ErrUnavailable)
	}
	return s.Store.OpenMatch(ctx, b, k, etag, off, n)
}
