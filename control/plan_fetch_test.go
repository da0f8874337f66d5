package control

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/store"
)

// roundTripStore holds every request for a round trip and records how
// many were in flight at once. With processingGate set, the write of a
// PROCESSING record waits (up to 5 s) until a read of the input has
// started: it is let go at once if planning reads beside it, and only
// after the wait if planning waits for it.
type roundTripStore struct {
	store.Store
	hold time.Duration

	mu             sync.Mutex
	inFlight, max  int
	processingGate bool
	inputRead      chan struct{} // closed at the first read of the input
	readBeside     bool          // a PROCESSING write was let go by a read
}

func (s *roundTripStore) enter(read bool) func() {
	s.mu.Lock()
	s.inFlight++
	s.max = max(s.max, s.inFlight)
	if read && s.inputRead != nil {
		select {
		case <-s.inputRead:
		default:
			close(s.inputRead)
		}
	}
	s.mu.Unlock()
	time.Sleep(s.hold)
	return func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}
}

// most is the most requests that were in flight at once.
func (s *roundTripStore) most() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func (s *roundTripStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = 0
	if s.processingGate {
		s.inputRead, s.readBeside = make(chan struct{}), false
	}
}

func (s *roundTripStore) List(ctx context.Context, b, p string) (store.Listing, error) {
	defer s.enter(b == "media")()
	return s.Store.List(ctx, b, p)
}

func (s *roundTripStore) Open(ctx context.Context, b, k string, off, n int64) (io.ReadCloser, error) {
	defer s.enter(b == "media")()
	return s.Store.Open(ctx, b, k, off, n)
}

func (s *roundTripStore) PutMatch(ctx context.Context, b, k string, data []byte, etag string) (string, error) {
	s.mu.Lock()
	gate := s.inputRead
	s.mu.Unlock()
	if gate != nil && strings.Contains(string(data), `"status":"PROCESSING"`) {
		select {
		case <-gate:
			s.mu.Lock()
			s.readBeside = true
			s.mu.Unlock()
		case <-time.After(5 * time.Second):
		}
	}
	time.Sleep(s.hold)
	return s.Store.PutMatch(ctx, b, k, data, etag)
}

// fourVariants is a master of four variants, each in its own folder.
func fourVariants() map[string]string {
	files := map[string]string{"vod/master.m3u8": "#EXTM3U\n"}
	for _, v := range []string{"a", "b", "c", "d"} {
		files["vod/master.m3u8"] += "#EXT-X-STREAM-INF:BANDWIDTH=100000\n" + v + "/index.m3u8\n"
		files["vod/"+v+"/index.m3u8"] = threeSegments
		for _, seg := range []string{"a.ts", "b.ts", "c.ts"} {
			files["vod/"+v+"/"+seg] = strings.Repeat(v, 100)
		}
	}
	return files
}

// TestPlanReadsVariantsAtOnce: a master's variant playlists and the
// listings of their folders are asked for together, not one variant
// after the other; the plan is the same as when reading one at a time
// (PlanReadsAtOnce 0, the negative control, never has two in flight).
func TestPlanReadsVariantsAtOnce(t *testing.T) {
	st := &roundTripStore{Store: planStore(t, fourVariants()), hold: 100 * time.Millisecond}
	rec := planRecord("vod/master.m3u8", crypto.AES128CBC)
	serial, terr := buildPlan(context.Background(), st, rec, 0)
	if terr != nil {
		t.Fatal(terr)
	}
	if most := st.most(); most != 1 {
		t.Errorf("PlanReadsAtOnce 0: %d reads in flight at once, want 1", most)
	}
	st.reset()
	together, terr := buildPlan(context.Background(), st, rec, planReads)
	if terr != nil {
		t.Fatal(terr)
	}
	// All eight go out within microseconds and each is held 100 ms; a
	// loaded machine may still start one late, so more than two variants'
	// worth is the proof (one at a time never has two).
	if most := st.most(); most < 5 {
		t.Errorf("%d reads in flight at once, want the 4 variants and their 4 folders (8) together", most)
	}
	if !reflect.DeepEqual(serial, together) {
		t.Error("the plan made with reads at once differs from the one made one read at a time")
	}
}

// TestPlanningBesidePROCESSING: the task's planning reads start while its
// PROCESSING record is being written, not after: a store round trip less
// between a request and SUCCEEDED.
func TestPlanningBesidePROCESSING(t *testing.T) {
	st := &roundTripStore{Store: taskStore(t), processingGate: true}
	m, _ := newTestManager(t, st, testMaster(t), -1)
	st.reset()
	id := createID(t, m, "a.json")
	waitStatus(t, m, id, Succeeded)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.readBeside {
		t.Error("no planning read was sent while the PROCESSING record was being written")
	}
}

// TestStartupListsRecordsInParts: a mount start lists the task records in
// nine parts at once (by the ids' first digit), not page after page of
// one listing, and still finds every task.
func TestStartupListsRecordsInParts(t *testing.T) {
	st := &roundTripStore{Store: taskStore(t), hold: 100 * time.Millisecond}
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	var ids []string
	for i := range 5 {
		ids = append(ids, createID(t, a, fmt.Sprintf("r%d.json", i)))
	}
	for _, id := range ids { // a's planning must not count as b's start
		waitStatus(t, a, id, Succeeded)
	}
	st.reset()
	b, _ := newTestManager(t, st, master, -1)
	<-b.reconciled // the check against the records may end after the start
	if most := st.most(); most < 6 {
		t.Errorf("a start had at most %d store requests in flight, want the nine record listings at once", most)
	}
	for _, id := range ids {
		if b.Status(id) == "" {
			t.Errorf("task %s not found by the start", id)
		}
	}
}
