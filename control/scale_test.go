package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// countingStore counts the reads (GETs) and listings made through it.
type countingStore struct {
	store.Store
	gets, lists, planGets atomic.Int64
}

func (c *countingStore) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	if strings.HasPrefix(key, plansPrefix) {
		c.planGets.Add(1)
	}
	return c.Store.Open(ctx, bucket, key, off, n)
}

func (c *countingStore) OpenMatch(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Store.OpenMatch(ctx, bucket, key, etag, off, n)
}

func (c *countingStore) List(ctx context.Context, bucket, prefix string) (store.Listing, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, bucket, prefix)
}

// catalogueStore is a local store in a temporary folder holding n tasks
// made by MakeCatalogue (system bucket .mpcfs) as o says.
func catalogueStore(tb testing.TB, master *keywrap.Master, n int, o CatalogueOptions) (string, *store.Local) {
	tb.Helper()
	dir := tb.TempDir()
	if err := MakeCatalogue(dir, ".mpcfs", master, n, o); err != nil {
		tb.Fatal(err)
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, st
}

// startupFigures is what one mount start over a catalogue measured.
type startupFigures struct {
	tasks         int
	ready         time.Duration
	heapPerTask   float64 // bytes of live heap per task after the start
	rssDelta      int64   // bytes
	gets          int64   // store reads the start made
	lookup        time.Duration
	playlistFirst time.Duration // first open of an output: its plan loaded
}

func (f startupFigures) String() string {
	return fmt.Sprintf("%d tasks: ready in %v, %.0f B heap/task, RSS +%.1f MB, %d reads, lookup %v warm, first playlist open %v",
		f.tasks, f.ready.Round(time.Millisecond), f.heapPerTask, float64(f.rssDelta)/(1<<20), f.gets, f.lookup, f.playlistFirst.Round(time.Microsecond))
}

// check compares the figures with the targets for 100,000 tasks, scaled
// to f.tasks: ready in 3 s (slack times that, the machine is shared),
// 150 MB of memory, 1 ms a lookup, and reads bounded by the index shards
// rather than one per record.
func (f startupFigures) check(slack float64) error {
	scale := float64(f.tasks) / 100000
	var errs []string
	if limit := time.Duration(3 * float64(time.Second) * scale * slack * raceSlack); f.ready > limit {
		errs = append(errs, fmt.Sprintf("ready in %v, over %v", f.ready, limit))
	}
	if f.heapPerTask > 150e6/100000 {
		errs = append(errs, fmt.Sprintf("%.0f B of heap per task, over 1500", f.heapPerTask))
	}
	if limit := int64(150e6 * scale * slack * raceSlack); f.rssDelta > limit {
		errs = append(errs, fmt.Sprintf("RSS grew %d B, over %d", f.rssDelta, limit))
	}
	if f.gets > indexShards+16 {
		errs = append(errs, fmt.Sprintf("%d reads at start, over the %d index shards", f.gets, indexShards))
	}
	if f.lookup > time.Millisecond*raceSlack {
		errs = append(errs, fmt.Sprintf("lookup %v, over 1ms", f.lookup))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func rssBytes() int64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureStartup mounts (NewManager) the catalogue of n tasks in st and
// measures the start, memory, lookups and a first open.
func measureStartup(tb testing.TB, st store.Store, master *keywrap.Master, n int) (startupFigures, *Manager) {
	tb.Helper()
	cs := &countingStore{Store: st}
	heap0, rss0 := liveHeap(), rssBytes()
	start := time.Now()
	m, err := NewManager(Config{Store: cs, Region: "region1", SysBucket: ".mpcfs", Master: master,
		Log: log.New(io.Discard, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh = -1 })})
	if err != nil {
		tb.Fatal(err)
	}
	f := startupFigures{tasks: n, ready: time.Since(start)}
	// What the start read in all: its check of the index against the
	// records may go on after it is ready (Tuning.StartupWait).
	<-m.reconciled
	f.gets = cs.gets.Load()
	heap1 := liveHeap()
	f.heapPerTask = (float64(heap1) - float64(heap0)) / float64(n)
	f.rssDelta = rssBytes() - rss0
	if got := len(m.TaskIDs()); got != n {
		tb.Fatalf("%d tasks listed, want %d", got, n)
	}
	rnd := rand.New(rand.NewSource(1))
	keys := make([]string, 1000)
	for i := range keys {
		_, object, plan := CatalogueTask(rnd.Intn(n))
		keys[i] = object + "/" + plan.Files[rnd.Intn(len(plan.Files))].Name
		if m.Outputs().Lookup("public", keys[i]) == nil {
			tb.Fatalf("output public/%s not found", keys[i])
		}
	}
	const rounds = 20
	t0 := time.Now()
	for r := 0; r < rounds; r++ {
		for _, k := range keys {
			m.Outputs().Lookup("public", k)
		}
	}
	f.lookup = time.Since(t0) / time.Duration(rounds*len(keys))
	// A task none of whose outputs was looked up yet: its first lookup
	// reads its record and plan (its file list is not in the catalogue),
	// and its first open reads nothing more.
	listed := func(i int) bool {
		id, _, _ := CatalogueTask(i)
		x := m.Outputs()
		x.lmu.Lock()
		defer x.lmu.Unlock()
		return x.lists.byID[id] != nil
	}
	i := n / 2
	for j := 1; listed(i); j++ {
		i = (n/2 + j) % n
	}
	_, object, plan := CatalogueTask(i)
	before := cs.gets.Load()
	t0 = time.Now()
	o := m.Outputs().Lookup("public", object+"/master.m3u8")
	data, err := m.Outputs().Playlist(o)
	f.playlistFirst = time.Since(t0)
	if err != nil || string(data) != string(plan.Files[0].Playlist) {
		tb.Fatalf("master playlist of task %d: %q, %v", i, data, err)
	}
	if got := cs.gets.Load() - before; got != 2 {
		tb.Fatalf("the first lookup and open of an output read %d task-store objects, want 2 (its task's record and plan)", got)
	}
	return f, m
}

// scaleTasks is the catalogue size of TestStartupAtScale: 20,000 keeps
// make test quick; MPCFS_SCALE_TASKS=100000 checks the target itself.
func scaleTasks() int {
	if n, err := strconv.Atoi(os.Getenv("MPCFS_SCALE_TASKS")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// TestStartupAtScale: a mount over a catalogue of scaleTasks() tasks
// starts from one LIST and the index shards (no record or plan read), in
// time and memory scaled from the 100,000-task targets, and finds any
// output in well under a millisecond; the first open of an output loads
// that task's plan alone. The negative control is the same catalogue
// without its index (a store from before it): every record is read, and
// check fails on the reads.
func TestStartupAtScale(t *testing.T) {
	n := scaleTasks()
	master := testMaster(t)
	dir, st := catalogueStore(t, master, n, CatalogueOptions{})
	f, m := measureStartup(t, st, master, n)
	m.Close()
	t.Logf("with the index: %v", f)
	if err := f.check(2); err != nil {
		t.Errorf("with the index: %v", err)
	}

	// Negative control: no index shards.
	if err := os.RemoveAll(filepath.Join(dir, ".mpcfs", "index")); err != nil {
		t.Fatal(err)
	}
	nf, m2 := measureStartup(t, st, master, n)
	t.Logf("without the index: %v", nf)
	if err := nf.check(2); err == nil || nf.gets < int64(n) {
		t.Errorf("without the index the start read %d objects and passed the checks (%v): the check cannot fail", nf.gets, err)
	}
	// That start wrote the index again: the next one reads no record.
	m2.Close()
	again, m3 := measureStartup(t, st, master, n)
	m3.Close()
	if again.gets > indexShards+16 {
		t.Errorf("after a start without the index, the next start still read %d objects", again.gets)
	}
}

// TestLegacyRecords: records saved before plans were kept apart (the plan
// inside the record) serve their outputs; the start writes the index, and
// an update (cancel) moves nothing it should not: the task is CANCELED
// and its outputs gone.
func TestLegacyRecords(t *testing.T) {
	master := testMaster(t)
	const n = 20
	dir, st := catalogueStore(t, master, n, CatalogueOptions{NoIndex: true, Legacy: true})
	m, _ := newTestManager(t, st, master, -1)
	id, object, plan := CatalogueTask(3)
	o := m.Outputs().Lookup("public", object+"/v2/index.m3u8")
	if o == nil {
		t.Fatal("an output of a legacy record is not served")
	}
	if data, err := m.Outputs().Playlist(o); err != nil || string(data) != string(plan.Files[6].Playlist) {
		t.Fatalf("playlist of a legacy record: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".mpcfs", planKey(id))); !os.IsNotExist(err) {
		t.Fatalf("a plan object exists before any update: %v", err)
	}
	if apiErr := m.Cancel(id); apiErr != nil {
		t.Fatal(apiErr)
	}
	if m.Outputs().Lookup("public", object+"/v2/index.m3u8") != nil {
		t.Error("a canceled legacy task's output is still served")
	}
	// Another legacy task updated (a stale-source note) keeps its plan,
	// moved to its own object.
	id2, object2, _ := CatalogueTask(4)
	m.saveStaleByID(id2, "; note")
	if _, err := os.Stat(filepath.Join(dir, ".mpcfs", planKey(id2))); err != nil {
		t.Fatalf("the plan of an updated legacy record was not moved: %v", err)
	}
	m.Close()
	cs := &countingStore{Store: st}
	m2, err := NewManager(Config{Store: cs, Region: "region1", SysBucket: ".mpcfs", Master: master,
		Log: log.New(io.Discard, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh = -1 })})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if got := cs.gets.Load(); got > indexShards {
		t.Errorf("the second start read %d objects: the first did not write the index", got)
	}
	if m2.Status(id) != Canceled || m2.Status(id2) != Succeeded {
		t.Errorf("after a restart: %s %s", m2.Status(id), m2.Status(id2))
	}
	o2 := m2.Outputs().Lookup("public", object2+"/v1/index.m3u8")
	if o2 == nil {
		t.Fatal("the updated legacy task's output is gone after a restart")
	}
	if _, err := m2.Outputs().Playlist(o2); err != nil {
		t.Fatal(err)
	}
	if b, _ := m2.TaskJSON(id2); !strings.Contains(string(b), "; note") {
		t.Errorf("task view: %s", b)
	}
}

// BenchmarkStartup100k: a mount start over 100,000 tasks (made once per
// run by catalogueStore). Reports the start time and memory per op.
func BenchmarkStartup100k(b *testing.B) {
	n := 100000
	if v := scaleTasks(); os.Getenv("MPCFS_SCALE_TASKS") != "" {
		n = v
	}
	master := keywrapMaster(b)
	_, st := catalogueStore(b, master, n, CatalogueOptions{})
	b.ResetTimer()
	var last startupFigures
	for i := 0; i < b.N; i++ {
		f, m := measureStartup(b, st, master, n)
		m.Close()
		last = f
	}
	b.StopTimer()
	b.ReportMetric(last.ready.Seconds(), "s-ready")
	b.ReportMetric(float64(last.rssDelta)/(1<<20), "MB-rss")
	b.ReportMetric(last.heapPerTask, "B-heap/task")
	b.ReportMetric(float64(last.lookup.Nanoseconds()), "ns/lookup")
	b.ReportMetric(float64(last.gets), "reads")
	b.Logf("%v; check: %v", last, last.check(1))
}

func keywrapMaster(tb testing.TB) *keywrap.Master {
	m, err := keywrap.LoadOrCreate(filepath.Join(tb.TempDir(), "master.key"))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestRefreshByShards: between full refreshes a mount learns of other
// mounts' changes from the index shards they write; a change whose shard
// is not written yet (the negative control: a writer holding its shards
// back) is found by the next full refresh only.
func TestRefreshByShards(t *testing.T) {
	st := taskStore(t)
	master := testMaster(t)
	mount := func(change func(*tuning.Tuning)) *Manager {
		m, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master,
			Log: log.New(io.Discard, "", 0), Tuning: tuningWith(change)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	writer := mount(func(t *tuning.Tuning) { t.Refresh = -1 })
	held := mount(func(t *tuning.Tuning) { t.Refresh = -1; t.IndexDelay = time.Hour })
	shardsOnly := mount(func(t *tuning.Tuning) { t.Refresh = 20 * time.Millisecond; t.FullRefresh = time.Hour })
	// full holds its shards back too: what it reads must not reach
	// shardsOnly through a shard it writes.
	full := mount(func(t *tuning.Tuning) {
		t.Refresh, t.FullRefresh, t.IndexDelay = 20*time.Millisecond, 200*time.Millisecond, time.Hour
	})

	id := createID(t, writer, "a.json")
	waitStatus(t, writer, id, Succeeded)
	waitStatus(t, shardsOnly, id, Succeeded)
	if shardsOnly.Outputs().Lookup("public", "out/a.ts") == nil {
		t.Fatal("the task's outputs are not served on the mount refreshing by shards")
	}

	body := held.Create("b.json", []byte(strings.Replace(goodRequest, `"object":"out/"`, `"object":"out2/"`, 1)))
	var r struct {
		TaskID string `json:"task_id"`
	}
	if json.Unmarshal(body, &r) != nil || r.TaskID == "" {
		t.Fatalf("create: %s", body)
	}
	waitStatus(t, held, r.TaskID, Succeeded)
	waitStatus(t, full, r.TaskID, Succeeded)
	time.Sleep(300 * time.Millisecond) // many shard refreshes
	if got := shardsOnly.Status(r.TaskID); got == Succeeded {
		t.Errorf("a change whose shard was never written was seen by the shard refresh (%s): the check cannot fail", got)
	}
}

// TestShardRoundTrip: a shard decodes to the summaries it was made from;
// a task with a NUL byte in a field is left out (read from its record
// instead); a cut or foreign shard is refused; shards of versions 2 and 3
// (every file listed) decode to the same outlines.
func TestShardRoundTrip(t *testing.T) {
	var sums []*summary
	var lists []*fileList
	for i := 0; i < 5; i++ {
		id, object, plan := CatalogueTask(i)
		rec := record{TaskView: TaskView{TaskID: id, Status: Succeeded, CreateTime: "20260101000000", EndTime: "20260101000001",
			Input: Location{Bucket: "media", Object: fmt.Sprintf("in/%d/master.m3u8", i)}, Output: Location{Bucket: "public", Object: object}}, Created: int64(i)}
		fl := filesOf(id, object, plan)
		ol := outlineOf(fl)
		sums = append(sums, summarize(&rec, fmt.Sprintf("etag-%d", i), &ol))
		lists = append(lists, fl)
	}
	if ol := sums[0].Outline; ol.Outs != 7 || ol.Dirs != "v1/\x00v2/\x00" {
		t.Fatalf("outline of a catalogue task: %+v, want 7 outputs in v1/ and v2/", ol)
	}
	// More folders than outputs: a/, a/b/, a/b/c/ for one file.
	deep := &Plan{Files: []OutFile{{Name: "a/b/c/x.ts", Size: 1, Parts: []OutPart{{Key: "in/x.ts", Len: 1}}}}}
	deepOl := outlineOf(filesOf("1000000000000097", "deep", deep))
	deepRec := record{TaskView: TaskView{TaskID: "1000000000000097", Status: Succeeded, Output: Location{Bucket: "public", Object: "deep"}}}
	sums = append(sums, summarize(&deepRec, "d", &deepOl))
	lists = append(lists, filesOf("1000000000000097", "deep", deep))
	if deepOl.Outs != 1 || deepOl.Dirs != "a/\x00a/b/\x00a/b/c/\x00" {
		t.Fatalf("outline of a/b/c/x.ts: %+v", deepOl)
	}
	// A plan is outlined as its file list is, names that could never be
	// opened left out.
	_, object, plan := CatalogueTask(3)
	plan.Files = append(plan.Files, OutFile{Name: "p//q", Playlist: []byte("#EXTM3U\n")})
	for _, c := range []struct {
		object string
		plan   *Plan
	}{{object, plan}, {"deep", deep}} {
		if got, want := outlineOfPlan(c.object, c.plan), outlineOf(filesOf("1000000000000096", c.object, c.plan)); got != want || got.Outs == 0 {
			t.Errorf("outline of a plan in %s: %+v, its file list's: %+v", c.object, got, want)
		}
	}
	waiting := &summary{ID: "1000000000000099", ETag: "w", Status: Waiting, CreateTime: "20260101000000", OutBucket: "public", OutObject: "w"}
	bad := &summary{ID: "1000000000000098", ETag: "a\x00b", Status: Failed, OutBucket: "public", OutObject: "x"}
	data := encodeShard(append(append(sums, waiting), bad))
	got, err := decodeShard(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sums)+1 {
		t.Fatalf("%d summaries decoded, want %d (the one with a NUL left out)", len(got), len(sums)+1)
	}
	same := func(g, s *summary) bool {
		return g.ID == s.ID && g.ETag == s.ETag && g.Status == s.Status && g.EndTime == s.EndTime && g.Created == s.Created &&
			g.OutObject == s.OutObject && g.Outline == s.Outline
	}
	for i, s := range sums {
		if g := got[i]; !same(g, s) || g.SrcDir != s.SrcDir || (i < 5 && g.SrcDir != fmt.Sprintf("media/in/%d/", i)) {
			t.Fatalf("summary %d: %+v, want %+v", i, g, s)
		}
	}
	if w := got[len(got)-1]; w.Status != Waiting || w.Outline != (outline{}) {
		t.Errorf("a WAITING task decodes as %+v", w)
	}
	// Shards written before outlines (version 3: every file's kind and
	// name, size and inode) and before SrcDir (version 2) still decode.
	v3 := encodeShardV3(sums, lists)
	if old, err := decodeShard(v3); err != nil || len(old) != len(sums) || !same(old[0], sums[0]) || old[0].SrcDir != sums[0].SrcDir {
		t.Errorf("a version 3 shard: %v, %+v", err, old)
	}
	v2 := strings.Replace(string(encodeShardV3(sums[:1], lists[:1])), shardHeaderV3, shardHeaderV2, 1)
	v2 = strings.Replace(v2, "\x00"+sums[0].SrcDir+"\x00", "\x00", 1)
	if old, err := decodeShard([]byte(v2)); err != nil || len(old) != 1 || old[0].SrcDir != "" || !same(old[0], sums[0]) {
		t.Errorf("a version 2 shard: %v, %+v", err, old)
	}
	for _, broken := range [][]byte{data[:len(data)-3], v3[:len(v3)-3], []byte("mpcfs-index 1\n"), append([]byte(shardHeader), "x\x00y\x00"...)} {
		if _, err := decodeShard(broken); err == nil {
			t.Errorf("a broken shard (%q...) decodes", broken[:min(len(broken), 20)])
		}
	}
}

// encodeShardV3 writes a shard as versions before outlines did.
func encodeShardV3(sums []*summary, lists []*fileList) []byte {
	var b strings.Builder
	b.WriteString(shardHeaderV3)
	for i, s := range sums {
		tok := []string{s.ID, s.ETag, string(s.Status), s.CreateTime, s.EndTime, strconv.FormatInt(s.Created, 10), s.OutBucket, s.OutObject, s.SrcDir}
		fl := lists[i]
		tok = append(tok, strconv.Itoa(fl.len()))
		for j := 0; j < fl.len(); j++ {
			tok = append(tok, string(fl.kinds[j])+fl.name(j), strconv.FormatInt(fl.meta[j].size, 10), strconv.FormatUint(fl.meta[j].ino, 16))
		}
		for _, t := range tok {
			b.WriteString(t)
			b.WriteByte(0)
		}
	}
	return []byte(b.String())
}

// TestRekeyReadsNoPlan: after mpcfs rekey rewrote every record, the next
// start reads the records (their ETags changed) but no plan: the index
// still has their output files. The negative control is the same start
// without the index, which reads every plan.
func TestRekeyReadsNoPlan(t *testing.T) {
	const n = 50
	old := testMaster(t)
	dir, st := catalogueStore(t, old, n, CatalogueOptions{})
	nw := testMaster(t)
	if _, _, err := Rekey(context.Background(), st, ".mpcfs", old, nw); err != nil {
		t.Fatal(err)
	}
	start := func() *countingStore {
		cs := &countingStore{Store: st}
		m, err := NewManager(Config{Store: cs, Region: "region1", SysBucket: ".mpcfs", Master: nw,
			Log: log.New(io.Discard, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh, t.IndexDelay = -1, time.Hour })})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		<-m.reconciled
		started := &countingStore{}
		started.planGets.Store(cs.planGets.Load())
		_, object, _ := CatalogueTask(7)
		if o := m.Outputs().Lookup("public", object+"/v1/seg1.ts"); o == nil {
			t.Fatal("an output is not served after the rekey")
		}
		return started
	}
	// IndexDelay holds the shards back until Close: the second start
	// below finds them as the rekey left them.
	if cs := start(); cs.planGets.Load() != 0 {
		t.Errorf("the start after a rekey read %d plans, want none", cs.planGets.Load())
	}
	if err := os.RemoveAll(filepath.Join(dir, ".mpcfs", "index")); err != nil {
		t.Fatal(err)
	}
	if cs := start(); cs.planGets.Load() != n {
		t.Errorf("without the index the start read %d plans, want %d: the check cannot fail", cs.planGets.Load(), n)
	}
}

// TestListTasksUsesIndex: mpcfs tasks with a filter reads only the
// records the index does not rule out; without the index (the negative
// control) it reads them all.
func TestListTasksUsesIndex(t *testing.T) {
	const n = 200
	master := testMaster(t)
	dir, st := catalogueStore(t, master, n, CatalogueOptions{})
	id, _, _ := CatalogueTask(42)
	list := func(f TaskFilter) ([]TaskView, int64) {
		cs := &countingStore{Store: st}
		views, err := ListTasks(context.Background(), cs, ".mpcfs", f)
		if err != nil {
			t.Fatal(err)
		}
		return views, cs.gets.Load()
	}
	shards, _ := os.ReadDir(filepath.Join(dir, ".mpcfs", "index"))
	if views, reads := list(TaskFilter{IDs: []string{id}}); len(views) != 1 || views[0].TaskID != id || reads != int64(len(shards))+1 {
		t.Errorf("one task by id: %d views, %d reads (want 1 record besides %d shards)", len(views), reads, len(shards))
	}
	if views, reads := list(TaskFilter{Status: Failed}); len(views) != 0 || reads != int64(len(shards)) {
		t.Errorf("FAILED tasks: %d views, %d reads, want no record read", len(views), reads)
	}
	if views, _ := list(TaskFilter{Status: Succeeded}); len(views) != n {
		t.Errorf("SUCCEEDED tasks: %d views, want %d", len(views), n)
	}
	os.RemoveAll(filepath.Join(dir, ".mpcfs", "index"))
	if _, reads := list(TaskFilter{IDs: []string{id}}); reads != n {
		t.Errorf("without the index: %d reads, want every record (%d): the check cannot fail", reads, n)
	}
}

// TestOldShardsRewritten: shards written by an older version (every file
// listed) are served as they are and written again in this version once
// the start's check is done; a start over current shards writes none
// (the control).
func TestOldShardsRewritten(t *testing.T) {
	const n = 60
	master := testMaster(t)
	dir, st := catalogueStore(t, master, n, CatalogueOptions{})
	// Rewrite every shard as version 3 from the same tasks.
	shards := map[int][]int{}
	for i := range n {
		id, _, _ := CatalogueTask(i)
		shards[shardOf(id)] = append(shards[shardOf(id)], i)
	}
	path := func(k int) string { return filepath.Join(dir, ".mpcfs", shardKey(k)) }
	for k := range shards {
		cur, err := decodeShard(testutil.ReadFile(t, path(k)))
		if err != nil {
			t.Fatal(err)
		}
		var lists []*fileList
		for _, s := range cur {
			i, _ := strconv.Atoi(s.ID)
			_, object, plan := CatalogueTask(i - 1e15)
			lists = append(lists, filesOf(s.ID, object, plan))
		}
		if err := os.WriteFile(path(k), encodeShardV3(cur, lists), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func() {
		m, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master,
			Log: log.New(io.Discard, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh = -1 })})
		if err != nil {
			t.Fatal(err)
		}
		<-m.reconciled
		_, object, _ := CatalogueTask(n - 1)
		if m.Outputs().Lookup("public", object+"/v1/seg1.ts") == nil {
			t.Fatal("an output of a version 3 shard's task is not served")
		}
		m.Close() // writes what is due
	}
	start()
	for k := range shards {
		if data := testutil.ReadFile(t, path(k)); !strings.HasPrefix(string(data), shardHeader) {
			t.Fatalf("shard %d still starts %q after a start", k, data[:14])
		}
	}
	mtimes := map[int]time.Time{}
	for k := range shards {
		fi, _ := os.Stat(path(k))
		mtimes[k] = fi.ModTime()
	}
	start()
	for k := range shards {
		if fi, _ := os.Stat(path(k)); !fi.ModTime().Equal(mtimes[k]) {
			t.Errorf("a start over current shards wrote shard %d again", k)
		}
	}
}

// slowList holds each listing under prefix (of a large catalogue's task
// records, or of its responses) and counts them.
type slowList struct {
	store.Store
	prefix string // the listings slowed: tasksPrefix, responsesPrefix
	hold   time.Duration
	lists  atomic.Int64
}

func (s *slowList) List(ctx context.Context, bucket, prefix string) (store.Listing, error) {
	if strings.HasPrefix(prefix, s.prefix) {
		s.lists.Add(1)
		time.Sleep(s.hold)
	}
	return s.Store.List(ctx, bucket, prefix)
}

// listingsInASecond runs a Manager refreshing every 5 ms over a store
// whose listings under prefix take 40 ms, and counts those listings in
// the second after its start's check.
func listingsInASecond(t *testing.T, prefix string, fullRefresh time.Duration, share float64) int64 {
	st := &slowList{Store: taskStore(t), prefix: prefix, hold: 40 * time.Millisecond}
	m, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: testMaster(t), Log: log.New(io.Discard, "", 0),
		Tuning: tuningWith(func(t *tuning.Tuning) {
			t.Refresh, t.FullRefresh, t.FullRefreshShare = 5*time.Millisecond, fullRefresh, share
		})})
	if err != nil {
		t.Fatal(err)
	}
	<-m.reconciled
	before := st.lists.Load()
	time.Sleep(time.Second)
	m.Close()
	return st.lists.Load() - before
}

// TestFullRefreshSpaced: when listing the records takes long (a large
// catalogue), full refreshes are spaced so that they take at most
// Tuning.FullRefreshShare of the time, however short Tuning.FullRefresh
// is. The control is a share of 1 (back to back).
func TestFullRefreshSpaced(t *testing.T) {
	count := func(share float64) int64 {
		return listingsInASecond(t, tasksPrefix, 10*time.Millisecond, share) / 9 // nine listings a full refresh
	}
	// A full refresh takes ~40 ms: at most a tenth of the time is one
	// every 400 ms or more.
	if n := count(0.1); n > 3 {
		t.Errorf("%d full refreshes in 1 s with FullRefreshShare 0.1 and listings of 40 ms, want at most 3", n)
	}
	n1 := count(1)
	t.Logf("full refreshes in 1 s: %d at share 1", n1)
	if n := n1; n < 6 {
		t.Errorf("%d full refreshes in 1 s with FullRefreshShare 1: the check cannot fail", n)
	}
}

// TestResponseListingSpaced: the refreshes between full ones list the
// control/encryptions/ responses (there is no index of them) at most
// Tuning.FullRefreshShare of the time: a catalogue made through the
// control folder has one response per task, and 100,000 of them were
// listed at every refresh, every 2 s. The control is a share of 1 (a
// listing at every refresh, as before).
func TestResponseListingSpaced(t *testing.T) {
	count := func(share float64) int64 {
		return listingsInASecond(t, responsesPrefix, time.Hour, share)
	}
	// A listing takes ~40 ms: at most a tenth of the time is one every
	// 400 ms or more.
	if n := count(0.1); n > 3 {
		t.Errorf("%d response listings in 1 s with FullRefreshShare 0.1 and listings of 40 ms, want at most 3", n)
	}
	n1 := count(1)
	t.Logf("response listings in 1 s: %d at share 1", n1)
	if n1 < 6 {
		t.Errorf("%d response listings in 1 s with FullRefreshShare 1: the check cannot fail", n1)
	}
}
