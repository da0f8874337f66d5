package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// servedPlan is a SUCCEEDED task's summary and what serving it needs.
func servedPlan(id string, created int64, object string, plan *Plan) (*summary, *servedTask) {
	rec := record{TaskView: TaskView{TaskID: id, Status: Succeeded, CreateTime: "20261125090000",
		Input: Location{Bucket: "media"}, Output: Location{Bucket: "public", Object: object}},
		Algorithm: "AES-128-CBC", Created: created}
	ol := outlineOf(filesOf(id, object, plan))
	return summarize(&rec, "etag", &ol), &servedTask{rec: rec, key: make([]byte, 16), plan: plan}
}

// testIndex is an Outputs over st serving the tasks given to serve: their
// file lists and plans are loaded from there, as from a task store.
type testIndex struct {
	*Outputs
	mu    sync.Mutex
	tasks map[string]*servedTask
	loads int   // of tasks, for their lists or plans
	fail  error // what loading a task gives, if set
}

func testOutputs(st store.Store) *testIndex {
	tun := tuning.Default()
	if st == nil {
		tun.Speculations = 0 // no store to GET sources from
	}
	ti := &testIndex{Outputs: newOutputs(st, log.New(io.Discard, "", 0), tun), tasks: map[string]*servedTask{}}
	ti.loadTask = func(ctx context.Context, id string) (*servedTask, error) {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.loads++
		if ti.fail != nil {
			return nil, ti.fail
		}
		if st := ti.tasks[id]; st != nil {
			return st, nil
		}
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotExist)
	}
	return ti
}

// serve makes a SUCCEEDED task of plan and serves its outputs.
func (ti *testIndex) serve(id string, created int64, object string, plan *Plan) *summary {
	s, st := servedPlan(id, created, object, plan)
	ti.mu.Lock()
	ti.tasks[id] = st
	ti.mu.Unlock()
	ti.set(nil, s)
	return s
}

// children is Children for a test.
func (ti *testIndex) children(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	names, err := ti.Children(context.Background(), bucket, prefix)
	if err != nil {
		t.Fatalf("children of %s/%s: %v", bucket, prefix, err)
	}
	return names
}

// TestNewerTaskWinsWithinASecond: CreateTime has whole seconds only, so two
// tasks writing one output path in the same second are ordered by their
// creation instant, never by their random ids.
func TestNewerTaskWinsWithinASecond(t *testing.T) {
	x := testOutputs(nil)
	plan := &Plan{Files: []OutFile{{Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}}}
	newer := x.serve("1000000000000000", 2, "out", plan)
	x.serve("9000000000000000", 1, "out", plan) // older, but the larger id
	if o := x.Lookup("public", "out/index.m3u8"); o == nil || o.TaskID != "1000000000000000" {
		t.Fatalf("output served by %+v, want the newer task 1000000000000000", o)
	}
	// Withdrawing the newer serves the older one again, and says so (its
	// output folder: the kernel forgets what it held below it).
	if gone := x.set(newer, nil); len(gone) != 1 || gone[0].key != "out" {
		t.Errorf("withdrawn %v, want out", gone)
	}
	if o := x.Lookup("public", "out/index.m3u8"); o == nil || o.TaskID != "9000000000000000" {
		t.Fatalf("after a withdraw, output served by %+v, want 9000000000000000", o)
	}
}

// TestNextSegment: each segment output links to the next segment of the
// plan (playlist order), skipping playlists, so a reader of one can warm
// the next; the last links nowhere.
func TestNextSegment(t *testing.T) {
	x := testOutputs(nil)
	seg := func(name string) OutFile {
		return OutFile{Name: name, Parts: []OutPart{{Key: "in/" + name, Len: 100}}, Size: 100}
	}
	x.serve("1", 0, "out", &Plan{Files: []OutFile{seg("a.ts"), seg("b.ts"), {Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}, seg("c.ts")}})
	for _, c := range []struct{ from, next string }{{"a.ts", "out/b.ts"}, {"b.ts", "out/c.ts"}, {"c.ts", ""}, {"index.m3u8", ""}} {
		o := x.Lookup("public", "out/"+c.from)
		got := ""
		if n := o.Next(); n != nil {
			got = n.Key
		}
		if got != c.next {
			t.Errorf("%s: next %q, want %q", c.from, got, c.next)
		}
	}
}

// TestOutputFolders: folders of outputs are listed from the task output
// folders and the names below them, nested tasks included; names that
// could never be opened are not served.
func TestOutputFolders(t *testing.T) {
	x := testOutputs(nil)
	pl := func(names ...string) *Plan {
		p := &Plan{}
		for _, n := range names {
			p.Files = append(p.Files, OutFile{Name: n, Playlist: []byte("#EXTM3U\n")})
		}
		return p
	}
	a := x.serve("1", 1, "vod/a", pl("master.m3u8", "v1/index.m3u8", "v2/index.m3u8", "p//q"))
	b := x.serve("2", 2, "vod/a/v1/extra", pl("x.m3u8"))
	for _, c := range []struct {
		prefix string
		want   []string
	}{{"", []string{"vod/"}}, {"vod/", []string{"a/"}}, {"vod/a/", []string{"master.m3u8", "v1/", "v2/"}},
		{"vod/a/v1/", []string{"extra/", "index.m3u8"}}, {"vod/a/v1/extra/", []string{"x.m3u8"}}, {"vod/b/", []string{}}} {
		got := x.children(t, "public", c.prefix)
		if len(got) != len(c.want) || (len(got) > 0 && !equalStrings(got, c.want)) {
			t.Errorf("children of %q: %q, want %q", c.prefix, got, c.want)
		}
	}
	for dir, want := range map[string]bool{"vod": true, "vod/a": true, "vod/a/v2": true, "vod/a/v1/extra": true, "vod/a/master.m3u8": false, "vod/c": false, "vod/a/p": false} {
		if got := x.IsDir("public", dir); got != want {
			t.Errorf("IsDir(%q) = %v, want %v", dir, got, want)
		}
	}
	if o := x.Lookup("public", "vod/a/p//q"); o != nil {
		t.Errorf("an unopenable name is served: %+v", o)
	}
	if !x.HasOutputs("public") || x.HasOutputs("media") {
		t.Error("HasOutputs is wrong")
	}
	x.set(a, nil)
	x.set(b, nil)
	if x.HasOutputs("public") || len(x.roots) != 0 {
		t.Errorf("withdrawing every task leaves %v", x.roots)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWithdrawStopsWarm: reading a segment warms the ones after it; when
// the task's outputs are withdrawn (cancel), their warm streams stop,
// rather than reading a source nobody can open any more.
// servedSegments serves task "1" with one encrypted 3 MiB segment
// output per name, in public/out/, each read from a local store.
func servedSegments(t *testing.T, names ...string) (*testIndex, *summary) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "media", "in"), 0o755)
	var files []OutFile
	for _, name := range names {
		data := make([]byte, 3<<20)
		if err := os.WriteFile(filepath.Join(dir, "media", "in", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, OutFile{Name: name, Parts: []OutPart{{Key: "in/" + name, Len: int64(len(data)), Encrypt: true, IV: make([]byte, 16)}},
			Size: int64(len(data)) + 16})
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	x := testOutputs(st)
	return x, x.serve("1", 0, "out", &Plan{Files: files})
}

func TestWithdrawStopsWarm(t *testing.T) {
	x, s := servedSegments(t, "a.ts", "b.ts", "c.ts")
	a := x.Lookup("public", "out/a.ts")
	x.WarmNext(a)
	var warm []interface{ Warming() bool }
	for _, name := range []string{"b.ts", "c.ts"} {
		f, err := x.Open(x.Lookup("public", "out/"+name))
		if err != nil {
			t.Fatal(err)
		}
		if !f.Warming() {
			t.Fatalf("%s not warmed by a read of a.ts", name)
		}
		warm = append(warm, f)
	}
	if x.LoadedPlans() != 1 {
		t.Errorf("%d plans loaded, want 1", x.LoadedPlans())
	}
	x.set(s, nil)
	for i, f := range warm {
		if f.Warming() {
			t.Errorf("segment %d still warm after its task's outputs were withdrawn", i+1)
		}
	}
	if x.LoadedPlans() != 0 {
		t.Errorf("a withdrawn task's plan is kept loaded")
	}
}

// TestWarmNextKeepsOwnStreams: with the warm budget full, a reader whose
// warm window has a gap (a stream stopped for its place) fills it without
// stopping its own streams further on, which are still told of the
// segment it has closed. The negative control is the gap filled before
// those streams are told of the segment now read: they are stopped.
func TestWarmNextKeepsOwnStreams(t *testing.T) {
	old := crypto.Tuning()
	tu := old
	tu.WarmBudget, tu.WarmEvictAfter = 2<<20, 20*time.Millisecond // four chunks: full at once
	if err := crypto.SetTuning(tu); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { crypto.SetTuning(old) })
	var names []string
	for i := range 7 {
		names = append(names, fmt.Sprintf("s%d.ts", i))
	}
	x, s := servedSegments(t, names...)
	t.Cleanup(func() { x.set(s, nil) })
	seg := func(i int) (*Output, *crypto.File) {
		o := x.Lookup("public", fmt.Sprintf("out/s%d.ts", i))
		f, err := x.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		return o, f
	}
	run := func(fillFirst bool) (stopped int64) {
		o0, f0 := seg(0)
		rd0 := f0.NewReader()
		x.WarmNext(o0) // s1-s4, told of s0
		_, f2 := seg(2)
		f2.StopWarm() // the gap
		time.Sleep(100 * time.Millisecond)
		rd0.Close()
		o1, f1 := seg(1)
		rd1 := f1.NewReader() // adopts s1's stream
		defer rd1.Close()
		time.Sleep(2 * tu.WarmEvictAfter)
		before := crypto.WarmEvictions()
		if fillFirst {
			f2.WarmFor(f1) // the control: the gap first, as WarmNext did
		}
		x.WarmNext(o1)
		stopped = crypto.WarmEvictions() - before
		for i := 2; i < 7; i++ {
			_, f := seg(i)
			f.StopWarm()
		}
		return stopped
	}
	if n := run(false); n != 0 {
		t.Errorf("%d of the reader's own streams (s3, s4) stopped when it filled a gap before them, want none", n)
	}
	if n := run(true); n != 2 {
		t.Errorf("control: with the gap filled first, %d streams stopped, want s3 and s4 (told of the closed s0)", n)
	}
}

// TestSearchedNames: a task with more files than are scanned has its
// names searched; folders of many tasks list each folder once; folders
// whose names sort around "/" ("a-b", "a.b") are told apart.
func TestSearchedNames(t *testing.T) {
	x := testOutputs(nil)
	big := &Plan{}
	for i := 0; i < 3*scanFiles; i++ {
		big.Files = append(big.Files, OutFile{Name: fmt.Sprintf("v%d/s%03d.ts", i%3, i), Size: int64(i), Parts: []OutPart{{Key: "in", Len: int64(i)}}})
	}
	x.serve("1", 1, "big", big)
	for i := 0; i < 3*scanFiles; i++ {
		o := x.Lookup("public", fmt.Sprintf("big/v%d/s%03d.ts", i%3, i))
		if o == nil || o.Size != int64(i) {
			t.Fatalf("file %d: %+v", i, o)
		}
	}
	if got := x.children(t, "public", "big/"); !equalStrings(got, []string{"v0/", "v1/", "v2/"}) {
		t.Errorf("children of big/: %q", got)
	}
	if x.Lookup("public", "big/v0/s001.ts") != nil {
		t.Error("a name of another folder is found")
	}
	for i, name := range []string{"a", "a-b", "a.b", "a/x", "a/y/z", "ab"} {
		x.serve(fmt.Sprint(10+i), int64(10+i), "cat/"+name, &Plan{Files: []OutFile{{Name: "m.m3u8", Playlist: []byte("#EXTM3U\n")}}})
	}
	if got := x.children(t, "public", "cat/"); !equalStrings(got, []string{"a-b/", "a.b/", "a/", "ab/"}) {
		t.Errorf("children of cat/: %q", got)
	}
	if got := x.children(t, "public", "cat/a/"); !equalStrings(got, []string{"m.m3u8", "x/", "y/"}) {
		t.Errorf("children of cat/a/: %q", got)
	}
	if got := x.children(t, "public", ""); !equalStrings(got, []string{"big/", "cat/"}) {
		t.Errorf("children of the bucket: %q", got)
	}
	if !x.IsDir("public", "cat/a/y") || x.IsDir("public", "cat/a/q") || x.IsDir("public", "cat/a-") {
		t.Error("IsDir is wrong")
	}
}

func (ti *testIndex) loaded() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.loads
}

// TestFileListsLoadedWhenNeeded: the catalogue holds no output names. A
// task's file list is loaded (with its record and plan) when a lookup
// of one of its outputs or a listing of one of its folders first needs
// it, once however many ask at once, and kept within
// Tuning.FileListCache files; questions its outline answers (is this a
// folder of the task, can this folder hold its outputs) load nothing.
// A list the store cannot give fails the lookup: it is not "no such
// output".
func TestFileListsLoadedWhenNeeded(t *testing.T) {
	x := testOutputs(nil)
	seg := func(name string) OutFile {
		return OutFile{Name: name, Parts: []OutPart{{Key: "in/" + name, Len: 100}}, Size: 100}
	}
	plan := func() *Plan {
		return &Plan{Files: []OutFile{{Name: "master.m3u8", Playlist: []byte("#EXTM3U\n")}, seg("v1/a.ts"), seg("v1/b.ts")}}
	}
	x.serve("1", 1, "vod/t1", plan())
	x.serve("2", 2, "vod/t2", plan())
	x.serve("3", 3, "vod/t3", plan())
	if !x.IsDir("public", "vod/t1/v1") || x.IsDir("public", "vod/t1/v2") || x.Lookup("public", "vod/t1/v1") != nil ||
		x.Lookup("public", "vod/t1/v2/a.ts") != nil || x.Lookup("public", "vod/a.ts") != nil {
		t.Fatal("folders of a task told wrong from its outline")
	}
	if n := x.loaded(); n != 0 || x.LoadedLists() != 0 {
		t.Fatalf("questions the outline answers loaded %d tasks (%d lists), want none", n, x.LoadedLists())
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o := x.Lookup("public", "vod/t1/v1/b.ts"); o == nil || o.Size != 100 || o.TaskID != "1" {
				t.Errorf("vod/t1/v1/b.ts: %+v", o)
			}
		}()
	}
	wg.Wait()
	if got := x.children(t, "public", "vod/t1/"); !equalStrings(got, []string{"master.m3u8", "v1/"}) {
		t.Errorf("children of vod/t1/: %q", got)
	}
	if n := x.loaded(); n != 1 {
		t.Errorf("16 lookups at once and a listing of one task loaded it %d times, want once", n)
	}
	// The cache holds 5 files: one list of 3 at a time (and one plan, from
	// which a list is made again without a read).
	x.lists.max, x.plans.max = 5, 1
	x.Lookup("public", "vod/t2/v1/a.ts")
	x.Lookup("public", "vod/t3/v1/a.ts")
	if x.LoadedLists() != 1 {
		t.Errorf("%d lists held within 5 files, want 1", x.LoadedLists())
	}
	before := x.loaded()
	if x.Lookup("public", "vod/t2/master.m3u8") == nil || x.loaded() != before+1 {
		t.Errorf("a list dropped from the cache was not loaded again (%d loads, want %d)", x.loaded(), before+1)
	}
	x.mu.Lock()
	x.fail = fmt.Errorf("store down: %w", store.ErrUnavailable)
	x.mu.Unlock()
	if o, err := x.Find(context.Background(), "public", "vod/t1/v1/a.ts"); err == nil || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a list the store cannot give: %+v, %v; want the store's error", o, err)
	}
}

// TestOpenedOutputsBounded: opened segment outputs keep their shared
// state between opens only up to Tuning.OutputsKept; beyond it, those
// nobody reads are dropped, and one with a reader is kept (its readers
// and the next opener share it). The control is the same opens under a
// bound they do not reach: all are kept.
func TestOpenedOutputsBounded(t *testing.T) {
	run := func(kept int) (*testIndex, *crypto.File) {
		x := testOutputs(nil)
		x.tun.OutputsKept, x.sweepAt = kept, kept
		plan := &Plan{}
		for i := range 40 {
			plan.Files = append(plan.Files, OutFile{Name: fmt.Sprintf("s%02d.ts", i), Size: 100, Parts: []OutPart{{Key: "in", Len: 100}}})
		}
		x.serve("1", 1, "out", plan)
		var busy *crypto.File
		for i := range 40 {
			f, err := x.Open(x.Lookup("public", fmt.Sprintf("out/s%02d.ts", i)))
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				busy = f
				r := f.NewReader()
				t.Cleanup(func() { r.Close() })
			}
		}
		return x, busy
	}
	x, busy := run(4)
	testutil.Eventually(t, 2*time.Second, "idle opened outputs dropped beyond OutputsKept", func() bool { return x.KeptOutputs() < 20 })
	if f, err := x.Open(x.Lookup("public", "out/s00.ts")); err != nil || f != busy {
		t.Errorf("the output being read was dropped: a new open got %p, want %p (%v)", f, busy, err)
	}
	if x, _ := run(1000); x.KeptOutputs() != 40 {
		t.Errorf("under a bound of 1000, %d of 40 opened outputs kept", x.KeptOutputs())
	}
}
