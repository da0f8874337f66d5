package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// syncBuffer is a log sink safe for concurrent writers (internal/testutil).
type syncBuffer = testutil.SyncBuffer

// taskStore is a local store holding a tiny VOD playlist (planning reads
// playlists and sizes only, so the segments need not be media).
func taskStore(t *testing.T) *store.Local {
	return planStore(t, map[string]string{
		"vod/master.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n#EXT-X-ENDLIST\n",
		"vod/a.ts":        strings.Repeat("a", 1000),
		"vod/b.ts":        strings.Repeat("b", 2000),
	})
}

func newTestManager(t *testing.T, st store.Store, master *keywrap.Master, refresh time.Duration) (*Manager, *syncBuffer) {
	t.Helper()
	lb := &syncBuffer{}
	m, err := NewManager(Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master,
		Log: log.New(lb, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh = refresh })})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, lb
}

// tuningWith is the default tuning with change applied.
func tuningWith(change func(*tuning.Tuning)) tuning.Tuning {
	t := tuning.Default()
	change(&t)
	return t
}

func testMaster(t *testing.T) *keywrap.Master {
	m, err := keywrap.LoadOrCreate(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func createID(t *testing.T, m *Manager, name string) string {
	t.Helper()
	var r struct {
		TaskID string `json:"task_id"`
	}
	body := m.Create(name, []byte(goodRequest))
	if json.Unmarshal(body, &r) != nil || !validID.MatchString(r.TaskID) {
		t.Fatalf("create: %s", body)
	}
	return r.TaskID
}

func waitStatus(t *testing.T, m *Manager, id string, want Status) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.Status(id) != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s, want %s", id, m.Status(id), want)
		}
	}
}

func TestForward(t *testing.T) {
	all := []Status{Waiting, Processing, Succeeded, Failed, Canceled}
	allowed := map[[2]Status]bool{
		{Waiting, Processing}: true, {Waiting, Succeeded}: true, {Waiting, Failed}: true, {Waiting, Canceled}: true,
		{Processing, Succeeded}: true, {Processing, Failed}: true, {Processing, Canceled}: true,
		{Succeeded, Canceled}: true,
	}
	for _, a := range all {
		for _, b := range all {
			if got := forward(a, b); got != allowed[[2]Status{a, b}] {
				t.Errorf("forward(%s, %s) = %v", a, b, got)
			}
		}
	}
}

// TestRequeueOnLoad: a record left WAITING or PROCESSING (a killed daemon)
// is processed on the next start; a malformed record is skipped with a log
// line and does not stop the load.
func TestRequeueOnLoad(t *testing.T) {
	st := taskStore(t)
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, -1)
	id := createID(t, a, "a.json")
	waitStatus(t, a, id, Succeeded)
	a.Close()

	ctx := context.Background()
	rc, err := st.Open(ctx, ".mpcfs", tasksPrefix+id+".json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	var rec record
	json.Unmarshal(data, &rec)
	rec.Status, rec.Plan, rec.EndTime = Processing, nil, ""
	data, _ = json.Marshal(rec)
	st.Put(ctx, ".mpcfs", tasksPrefix+id+".json", data)
	st.Put(ctx, ".mpcfs", tasksPrefix+"1000000000000000.json", []byte("{not json"))

	b, lb := newTestManager(t, st, master, -1)
	waitStatus(t, b, id, Succeeded)
	if !strings.Contains(lb.String(), "1000000000000000.json") {
		t.Errorf("the malformed record is not named in the log:\n%s", lb.String())
	}
	if b.Outputs().Lookup("public", "out/a.ts") == nil {
		t.Error("the requeued task serves no output")
	}
}

// TestTwoManagers: a second Manager over the same store finds a new task
// at once by id, sees it finish and be canceled within its refresh period.
func TestTwoManagers(t *testing.T) {
	st := taskStore(t)
	master := testMaster(t)
	a, _ := newTestManager(t, st, master, 20*time.Millisecond)
	b, _ := newTestManager(t, st, master, 20*time.Millisecond)
	id := createID(t, a, "a.json")
	if _, ok := b.TaskJSON(id); !ok {
		t.Fatal("the second manager does not find a task created on the first")
	}
	waitStatus(t, a, id, Succeeded)
	waitStatus(t, b, id, Succeeded)
	for deadline := time.Now().Add(5 * time.Second); b.Outputs().Lookup("public", "out/b.ts") == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("outputs never appear on the second manager")
		}
	}
	if _, ok, _ := b.Response("a.json"); !ok {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, ok, _ := b.Response("a.json"); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the response never appears on the second manager")
			}
		}
	}
	if err := b.Cancel(id); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, id, Canceled)
	if a.Outputs().Lookup("public", "out/b.ts") != nil {
		t.Error("the first manager still serves a task canceled on the second")
	}
	// An unknown id is not found (and costs one read of the store).
	if _, ok := a.TaskJSON("9999999999999999"); ok {
		t.Error("an unknown id was found")
	}
}

// flakyStore fails the first `fails` reads of the media bucket as an
// unreachable store would.
type flakyStore struct {
	store.Store
	mu    sync.Mutex
	fails int
}

func (f *flakyStore) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	f.mu.Lock()
	fail := bucket == "media" && f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("test: connection refused: %w", store.ErrUnavailable)
	}
	return f.Store.Open(ctx, bucket, key, off, n)
}

// TestPlanRetriesStoreFailures: a store that is briefly unreachable while
// a task is planned is retried; one that stays down fails the task with
// MPC.10212 and the store's reason, never leaving it PROCESSING.
func TestPlanRetriesStoreFailures(t *testing.T) {
	fs := &flakyStore{Store: taskStore(t)}
	lb := &syncBuffer{}
	m, err := NewManager(Config{Store: fs, Region: "region1", SysBucket: ".mpcfs", Master: testMaster(t),
		Log: log.New(lb, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) {
			t.Refresh = -1
			t.PlanRetries = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)

	fs.mu.Lock()
	fs.fails = 2
	fs.mu.Unlock()
	id := createID(t, m, "flaky.json")
	waitStatus(t, m, id, Succeeded)
	if strings.Count(lb.String(), "retrying") != 2 {
		t.Errorf("want two retries in the log:\n%s", lb.String())
	}

	fs.mu.Lock()
	fs.fails = 100
	fs.mu.Unlock()
	id = createID(t, m, "down.json")
	waitStatus(t, m, id, Failed)
	view, _ := m.TaskJSON(id)
	var v TaskView
	json.Unmarshal(view, &v)
	if !strings.HasPrefix(v.Description, CodeOperationFailed) || !strings.Contains(v.Description, "unavailable") || !strings.Contains(v.Description, "vod/master.m3u8") {
		t.Errorf("description %q: want %s naming the playlist and the store's reason", v.Description, CodeOperationFailed)
	}
}

// takenIDStore plays another mount that made the same task id a moment
// ago: the first create-only save of a task record finds it taken.
type takenIDStore struct {
	store.Store
	mu    sync.Mutex
	taken []string // record keys refused
}

func (s *takenIDStore) PutMatch(ctx context.Context, bucket, key string, data []byte, etag string) (string, error) {
	s.mu.Lock()
	first := etag == "" && strings.HasPrefix(key, tasksPrefix) && len(s.taken) == 0
	if first {
		s.taken = append(s.taken, key)
	}
	s.mu.Unlock()
	if first {
		return "", fmt.Errorf("test: another mount's record: %w", store.ErrChanged)
	}
	return s.Store.PutMatch(ctx, bucket, key, data, etag)
}

// TestCreateDrawsAgainOnTakenID: an id another mount saved first is never
// overwritten (the save is create-only) and never shown: the task gets a
// fresh id and is created once (negative control: the refused save).
func TestCreateDrawsAgainOnTakenID(t *testing.T) {
	st := &takenIDStore{Store: taskStore(t)}
	m, _ := newTestManager(t, st, testMaster(t), -1)
	id := createID(t, m, "taken.json")
	if len(st.taken) != 1 {
		t.Fatalf("the store refused %d saves, want the first", len(st.taken))
	}
	if tasksPrefix+id+".json" == st.taken[0] {
		t.Fatalf("the task kept the id another mount had taken (%s)", id)
	}
	if _, ok := m.TaskJSON(strings.TrimSuffix(strings.TrimPrefix(st.taken[0], tasksPrefix), ".json")); ok {
		t.Fatalf("the refused id %s is still a task of this mount", st.taken[0])
	}
	if len(m.TaskIDs()) != 1 {
		t.Fatalf("%d tasks, want 1", len(m.TaskIDs()))
	}
}
