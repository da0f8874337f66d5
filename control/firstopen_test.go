package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// sysReadStore counts the task-store requests made through it and how
// many of its GETs were in flight at once. Each task-store GET is held
// for a while (a store's round trip), so GETs made one after another
// never overlap and GETs made together always do.
type sysReadStore struct {
	store.Store
	sys  string
	hold time.Duration

	mu                         sync.Mutex
	stats, gets, inFlight, max int
	answered                   int // task-store GETs that returned
	// srcBeside counts source GETs sent before any task-store GET since
	// the reset returned (not waiting for their answers).
	srcBeside int
}

func (s *sysReadStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats, s.gets, s.inFlight, s.max, s.answered, s.srcBeside = 0, 0, 0, 0, 0, 0
}

func (s *sysReadStore) counts() (stats, gets, maxInFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, s.gets, s.max
}

func (s *sysReadStore) Stat(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	if bucket == s.sys {
		s.mu.Lock()
		s.stats++
		s.mu.Unlock()
	}
	return s.Store.Stat(ctx, bucket, key)
}

func (s *sysReadStore) get(bucket string, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	if bucket != s.sys {
		s.mu.Lock()
		if s.answered == 0 {
			s.srcBeside++
		}
		s.mu.Unlock()
		return open()
	}
	s.mu.Lock()
	s.gets++
	s.inFlight++
	s.max = max(s.max, s.inFlight)
	s.mu.Unlock()
	time.Sleep(s.hold)
	rc, err := open()
	s.mu.Lock()
	s.inFlight--
	s.answered++
	s.mu.Unlock()
	return rc, err
}

func (s *sysReadStore) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	return s.get(bucket, func() (io.ReadCloser, error) { return s.Store.Open(ctx, bucket, key, off, n) })
}

func (s *sysReadStore) OpenMatch(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	return s.get(bucket, func() (io.ReadCloser, error) { return s.Store.OpenMatch(ctx, bucket, key, etag, off, n) })
}

// openFirstSegment looks up, opens and reads the first bytes of the
// segment output bucket/key, as `cat` on a mount does (no listing first).
func openFirstSegment(t *testing.T, x *Outputs, bucket, key string) {
	t.Helper()
	o := x.Lookup(bucket, key)
	if o == nil || o.IsPlaylist() {
		t.Fatalf("%s/%s: %+v, want a segment output", bucket, key, o)
	}
	f, err := x.Open(o)
	if err != nil {
		t.Fatalf("opening %s: %v", o.Key, err)
	}
	r := f.NewReader()
	defer r.Close()
	if _, err := r.ReadAt(context.Background(), make([]byte, 16), 0); err != nil {
		t.Fatalf("reading %s: %v", o.Key, err)
	}
}

// TestFirstOpenTaskStoreReads: the first byte of an output waits for as
// few task-store round trips as can be. On the mount that ran the task,
// none (it keeps the plan it made); on another mount, one: the record and
// the plan are read at once, and the record without a HEAD first, and the
// segment's source GET is sent beside them (speculate.go), not after.
func TestFirstOpenTaskStoreReads(t *testing.T) {
	const hold = 40 * time.Millisecond
	st := &sysReadStore{Store: taskStore(t), sys: ".mpcfs", hold: hold}
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	id := createID(t, a, "a.json")
	waitStatus(t, a, id, Succeeded)

	st.reset()
	openFirstSegment(t, a.Outputs(), "public", "out/a.ts")
	if stats, gets, _ := st.counts(); stats+gets != 0 {
		t.Errorf("first open on the mount that ran the task: %d task-store HEADs and %d GETs, want none (it has the plan)", stats, gets)
	}

	b, _ := newTestManager(t, st, master, -1)
	st.reset()
	openFirstSegment(t, b.Outputs(), "public", "out/a.ts")
	stats, gets, maxInFlight := st.counts()
	if stats != 0 {
		t.Errorf("first open on another mount: %d task-store HEADs, want 0 (a GET gives the record)", stats)
	}
	if gets != 2 || maxInFlight != 2 {
		t.Errorf("first open on another mount: %d task-store GETs, at most %d at once; want the record and the plan read together (2, 2)", gets, maxInFlight)
	}
	st.mu.Lock()
	beside := st.srcBeside
	st.mu.Unlock()
	if beside != 1 {
		t.Errorf("first open on another mount: %d source GETs sent before the record and plan arrived, want 1 (the segment's, speculative)", beside)
	}
	if started, used, _ := b.Outputs().SpeculationCounts(); started != 1 || used != 1 {
		t.Errorf("first open on another mount: speculations started %d, used %d; want 1, 1", started, used)
	}
}

// TestConcurrentStaleNotesAllSaved: sources found changed at about the
// same time (a reader and the warm-ahead of the next segments) each save
// a note on their SUCCEEDED task, which is no longer loaded: every note
// is saved, none lost because another note's save unloaded the task
// while this one was loading it.
func TestConcurrentStaleNotesAllSaved(t *testing.T) {
	st := taskStore(t)
	m, _ := newTestManager(t, st, testMaster(t), -1)
	id := createID(t, m, "a.json")
	waitStatus(t, m, id, Succeeded)
	const notes = 8
	for round := range 5 {
		var wg sync.WaitGroup
		for i := range notes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.saveStaleByID(id, fmt.Sprintf("; note %d.%d", round, i))
			}()
		}
		wg.Wait()
		rc, err := st.Open(context.Background(), ".mpcfs", recordKey(id), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		for i := range notes {
			if note := fmt.Sprintf("; note %d.%d", round, i); !strings.Contains(string(data), note) {
				t.Fatalf("round %d: %q not saved: %s", round, note, data)
			}
		}
	}
}

// readSegment reads the whole output bucket/key through x.
func readSegment(t *testing.T, x *Outputs, bucket, key string) []byte {
	t.Helper()
	o := x.Lookup(bucket, key)
	if o == nil {
		t.Fatalf("no output %s/%s", bucket, key)
	}
	f, err := x.Open(o)
	if err != nil {
		t.Fatalf("opening %s: %v", key, err)
	}
	r := f.NewReader()
	defer r.Close()
	buf := make([]byte, o.Size)
	if _, err := r.ReadAt(context.Background(), buf, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading %s: %v", key, err)
	}
	return buf
}

// TestSpeculationBound: opens of a task not loaded yet, all at once (its
// plan is on its way for each of them), start no more speculative GETs
// than Tuning.Speculations; the others read as without speculation, and
// every output is served byte for byte as on the mount that ran the task.
func TestSpeculationBound(t *testing.T) {
	st := &sysReadStore{Store: taskStore(t), sys: ".mpcfs", hold: 200 * time.Millisecond}
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	id := createID(t, a, "a.json")
	waitStatus(t, a, id, Succeeded)
	keys := []string{"out/a.ts", "out/b.ts"}
	var want [][]byte
	for _, k := range keys {
		want = append(want, readSegment(t, a.Outputs(), "public", k))
	}

	b, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master, Log: log.New(io.Discard, "", 0),
		Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh, t.Speculations = -1, 1 })})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([][]byte, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = readSegment(t, b.Outputs(), "public", k)
		}()
	}
	wg.Wait()
	for i := range keys {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s: other bytes than the mount that ran the task serves", keys[i])
		}
	}
	if started, _, _ := b.Outputs().SpeculationCounts(); started != 1 {
		t.Errorf("%d opens at once with Speculations 1: %d speculative GETs started, want 1", len(keys), started)
	}
}

// openBodies counts the bodies of unconditional GETs (speculative ones:
// every other source read is If-Match) not closed yet.
type openBodies struct {
	store.Store
	open atomic.Int64
}

func (s *openBodies) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.Open(ctx, bucket, key, off, n)
	if err != nil {
		return rc, err
	}
	return testutil.Count(rc, &s.open), nil
}

// TestSpeculationNotWantedIsClosed: a first read that does not start at
// the segment's start (CTR or clear bytes seek without reading from the
// start) does not take the speculative GET: it is closed then, not at
// the end of Tuning.SpeculationHold, and the read gets the right bytes by
// its own GET.
func TestSpeculationNotWantedIsClosed(t *testing.T) {
	st := &openBodies{Store: taskStore(t)}
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	id := createID(t, a, "a.json")
	waitStatus(t, a, id, Succeeded)
	want := readSegment(t, a.Outputs(), "public", "out/b.ts")

	b, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master, Log: log.New(io.Discard, "", 0),
		Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh, t.SpeculationHold = -1, time.Hour })})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	x := b.Outputs()
	o := x.Lookup("public", "out/b.ts")
	f, err := x.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	r := f.NewReader()
	defer r.Close()
	mid := o.Size / 2
	got := make([]byte, 16)
	if _, err := r.ReadAt(context.Background(), got, mid); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[mid:mid+16]) {
		t.Errorf("read in the middle: other bytes than the mount that ran the task serves")
	}
	if started, used, dropped := x.SpeculationCounts(); started != 1 || used != 0 || dropped != 1 {
		t.Errorf("a first read in the middle of a CTR or clear segment: speculations started %d, used %d, dropped %d; want 1, 0, 1", started, used, dropped)
	}
	// Closed at once (a GET still on its way is closed as it arrives),
	// long before the hour of SpeculationHold.
	testutil.Eventually(t, 2*time.Second, "the speculative body the first read did not want closed", func() bool { return st.open.Load() == 0 })
}
