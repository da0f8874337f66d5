package fs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
)

// latencyStore is a store whose task-store GETs take hold (once slow is
// set): a round trip to a distant store, so what is sent while the
// record and plan are on their way shows. It records when each GET was
// sent and when its response came, and counts the unconditional GETs of
// sources (speculative ones: Outputs.source uses If-Match) whose bodies
// are still open.
type latencyStore struct {
	store.Store
	sys  string
	hold time.Duration
	slow atomic.Bool

	mu     sync.Mutex
	start  time.Time
	events []getEvent

	specOpen atomic.Int64 // unconditional source bodies not closed yet
}

type getEvent struct {
	what       string // "task" or "source", then bucket/key; "source" GETs say "(unconditional)" or "(If-Match)"
	sent, came time.Duration
}

func (l *latencyStore) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start, l.events = time.Now(), nil
}

func (l *latencyStore) log() []getEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]getEvent(nil), l.events...)
}

func (l *latencyStore) get(bucket, key, how string, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	l.mu.Lock()
	sent := time.Since(l.start)
	l.mu.Unlock()
	what := "source " + bucket + "/" + key + " " + how
	if bucket == l.sys {
		what = "task " + bucket + "/" + key
		if l.slow.Load() {
			time.Sleep(l.hold)
		}
	}
	rc, err := open()
	l.mu.Lock()
	l.events = append(l.events, getEvent{what, sent, time.Since(l.start)})
	l.mu.Unlock()
	if err == nil && bucket != l.sys && how == "(unconditional)" {
		rc = testutil.Count(rc, &l.specOpen)
	}
	return rc, err
}

func (l *latencyStore) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	return l.get(bucket, key, "(unconditional)", func() (io.ReadCloser, error) { return l.Store.Open(ctx, bucket, key, off, n) })
}

func (l *latencyStore) OpenMatch(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	how := "(If-Match)"
	if etag == "" {
		how = "(unconditional)"
	}
	return l.get(bucket, key, how, func() (io.ReadCloser, error) { return l.Store.OpenMatch(ctx, bucket, key, etag, off, n) })
}

// speculationSetup makes a CBC task on a mount over MinIO (through a
// latencyStore) and returns the store, the first segment's path below a
// mount, its source key and its ciphertext as the mount that ran the
// task serves it.
func speculationSetup(t *testing.T) (*latencyStore, *fixture, string, string, []byte) {
	srv, srcDir := minioLadder(t)
	_, l := ladder(t)
	srv.MakeBucket(t, "mpcfs-system") // the wrapper hides S3.MakeBucket from the Manager
	ls := &latencyStore{Store: srv.Store(), sys: "mpcfs-system", hold: 400 * time.Millisecond}
	ls.reset()
	f := newFixture(t, ls, "mpcfs-system")
	id := f.create("cbc.json", request("AES-128-CBC", newSecret(t), nil, "enc/cbc"))
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("task %s: %s: %s", id, v.Status, v.Description)
	}
	pl, err := os.ReadFile(filepath.Join(srcDir, l.Variants[0]))
	if err != nil {
		t.Fatal(err)
	}
	seg := filepath.ToSlash(filepath.Join(filepath.Dir(l.Variants[0]), segmentsOf(pl)[0]))
	rel := filepath.Join("buckets", "public", "enc", "cbc", filepath.FromSlash(seg))
	want, err := os.ReadFile(f.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return ls, f, rel, "vod/" + seg, want
}

// TestSpeculativeSourceGET: on a mount that did not run the task, the
// first open of a segment output sends its source's GET while the task's
// record and plan are still on their way (each takes 400 ms here), not
// after them; the bytes it brings are used (the source is read once) and
// the ciphertext is byte for byte what the mount that ran the task serves.
func TestSpeculativeSourceGET(t *testing.T) {
	ls, f, rel, srcKey, want := speculationSetup(t)
	g := newFixtureOpts(t, ls, "mpcfs-system", mountOpts{masterKey: f.masterKey})
	ls.slow.Store(true)
	ls.reset()
	got, err := os.ReadFile(g.path(rel))
	ls.slow.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fresh mount served %d bytes that differ from the %d the mount that ran the task serves", len(got), len(want))
	}
	events := ls.log()
	firstTaskAnswer, sourceSent, sourceGETs := time.Duration(-1), time.Duration(-1), 0
	for _, e := range events {
		switch {
		case strings.HasPrefix(e.what, "task "):
			if firstTaskAnswer < 0 || e.came < firstTaskAnswer {
				firstTaskAnswer = e.came
			}
		case strings.HasPrefix(e.what, "source media/"+srcKey+" "):
			sourceGETs++
			if sourceSent < 0 || e.sent < sourceSent {
				sourceSent = e.sent
			}
		}
	}
	if firstTaskAnswer < 0 || sourceSent < 0 {
		t.Fatalf("want task-store GETs and the source's GET, got %+v", events)
	}
	if sourceSent >= firstTaskAnswer {
		t.Errorf("source GET sent at %v, after the first task-store answer (%v): the first byte waits two round trips (GETs: %+v)",
			sourceSent, firstTaskAnswer, events)
	}
	if sourceGETs != 1 {
		t.Errorf("source %s read %d times, want once (the speculative GET used): %+v", srcKey, sourceGETs, events)
	}
	if started, used, _ := g.mgr.Outputs().SpeculationCounts(); started != 1 || used != 1 {
		t.Errorf("speculations started %d, used %d; want 1, 1", started, used)
	}
	testutil.Eventually(t, 5*time.Second, "speculative source bodies closed", func() bool { return ls.specOpen.Load() == 0 })
}

// TestSpeculationChangedSource (negative control of the above): the
// source was replaced after the task was planned, so the speculative
// GET brings another version. Its bytes must not be served: the read
// fails with EIO as it does without speculation (the If-Match GET finds
// the change), and no byte of ciphertext is returned.
func TestSpeculationChangedSource(t *testing.T) {
	ls, f, rel, srcKey, _ := speculationSetup(t)
	rc, err := ls.Store.Open(t.Context(), "media", srcKey, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := io.ReadAll(rc)
	rc.Close()
	changed := bytes.Clone(src)
	changed[0] ^= 0xff // same size, other content: another ETag
	if err := ls.Store.Put(t.Context(), "media", srcKey, changed); err != nil {
		t.Fatal(err)
	}
	g := newFixtureOpts(t, ls, "mpcfs-system", mountOpts{masterKey: f.masterKey})
	ls.slow.Store(true)
	ls.reset()
	fd, err := os.Open(g.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	n, err := fd.Read(make([]byte, 64<<10))
	fd.Close()
	ls.slow.Store(false)
	if n != 0 || !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of an output whose source changed: %d bytes, %v; want 0 bytes and EIO", n, err)
	}
	spec := false
	for _, e := range ls.log() {
		spec = spec || e.what == "source media/"+srcKey+" (unconditional)"
	}
	if !spec {
		t.Fatalf("no speculative GET of %s was made, so this control checks nothing: %+v", srcKey, ls.log())
	}
	if started, used, dropped := g.mgr.Outputs().SpeculationCounts(); started != 1 || used != 0 || dropped != 1 {
		t.Errorf("speculations started %d, used %d, dropped %d; want 1, 0, 1", started, used, dropped)
	}
	testutil.Eventually(t, 5*time.Second, "speculative source body closed", func() bool { return ls.specOpen.Load() == 0 })
}

// TestSpeculationUnusedIsClosed: a speculative GET nobody reads is
// closed after Tuning.SpeculationHold when its file is never read; one a
// reader took is closed with the file. A listing with every name stat'ed
// (ls -l) starts none, nor an open after it (the listing loaded the plan).
func TestSpeculationUnusedIsClosed(t *testing.T) {
	ls, f, rel, _, want := speculationSetup(t)
	mid := int64(len(want)/2) &^ 4095
	if mid == 0 {
		t.Fatalf("first segment of %d bytes: too small to read from its middle", len(want))
	}

	g := newFixtureOpts(t, ls, "mpcfs-system", mountOpts{masterKey: f.masterKey})
	dir := g.path(filepath.Dir(rel))
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := os.Lstat(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// The listing loaded the task's file list with its record and plan:
	// an open then knows its source and needs no speculation.
	fd, err := os.Open(g.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	fd.Close()
	if started, _, _ := g.mgr.Outputs().SpeculationCounts(); started != 0 {
		t.Errorf("ls -l of %d outputs and an open started %d speculative GETs, want none", len(ents), started)
	}

	// A mount whose first question is the open (its lookup): one
	// speculation, never read.
	g2 := newFixtureOpts(t, ls, "mpcfs-system", mountOpts{masterKey: f.masterKey})
	fd, err = os.Open(g2.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	fd.Close()
	if started, _, _ := g2.mgr.Outputs().SpeculationCounts(); started != 1 {
		t.Fatalf("an open started %d speculative GETs, want 1", started)
	}
	// SpeculationHold (1 s by default) and a loaded machine's slack.
	testutil.Eventually(t, 10*time.Second, "a speculative GET whose file was never read closed", func() bool {
		return ls.specOpen.Load() == 0
	})

	// CBC: a first read in the middle encrypts the segment from its start
	// (no checkpoints yet), so it takes the speculative GET; the body is
	// the reader's and is closed with the file.
	h := newFixtureOpts(t, ls, "mpcfs-system", mountOpts{masterKey: f.masterKey})
	fd, err = os.Open(h.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := fd.ReadAt(got, mid); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[mid:mid+4096]) {
		t.Errorf("a first read in the middle returned other bytes than the mount that ran the task serves")
	}
	if started, used, _ := h.mgr.Outputs().SpeculationCounts(); started != 1 || used != 1 {
		t.Errorf("a first read in the middle: speculations started %d, used %d; want 1, 1", started, used)
	}
	fd.Close()
	testutil.Eventually(t, 2*time.Second, "the speculative body a reader took closed with its file", func() bool {
		return ls.specOpen.Load() == 0
	})
}
