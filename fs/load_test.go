package fs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
)

// TestLoad creates 50 tasks at once through the mount (50 goroutines, one
// request file each) while 16 readers stream outputs of an earlier task.
// Every task must end SUCCEEDED with a unique id, every read must return
// the output's full size, and nothing may deadlock (bounded waits). The
// suite runs with -race.
func TestLoad(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	first := f.create("first.json", validRequest())
	if v := f.wait(first); v.Status != control.Succeeded {
		t.Fatalf("first task: %s %s", v.Status, v.Description)
	}
	outDir := f.path("buckets", "public", "out")
	segs, _ := filepath.Glob(filepath.Join(outDir, "v*", "*.ts"))
	if len(segs) < 4 {
		t.Fatalf("only %d output segments under %s", len(segs), outDir)
	}

	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads atomic.Int64
	for r := 0; r < 16; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := r; i < 10000; i++ { // bounded; stop ends it sooner
				select {
				case <-stop:
					return
				default:
				}
				p := segs[i%len(segs)]
				st, err := os.Stat(p)
				data, rerr := os.ReadFile(p)
				if err != nil || rerr != nil || int64(len(data)) != st.Size() {
					t.Errorf("reader %d: %s: %v %v (%d bytes)", r, p, err, rerr, len(data))
					return
				}
				reads.Add(1)
			}
		}()
	}

	ids := make([]string, 50)
	var creators sync.WaitGroup
	for i := range ids {
		creators.Add(1)
		go func() {
			defer creators.Done()
			ids[i] = createNoFatal(t, f, i)
		}()
	}
	creators.Wait()
	seen := map[string]bool{}
	for i, id := range ids {
		if id == "" {
			t.Fatalf("request %d got no task id", i)
		}
		if seen[id] {
			t.Fatalf("task id %s given twice", id)
		}
		seen[id] = true
	}
	for _, id := range ids {
		if v := f.wait(id); v.Status != control.Succeeded {
			t.Errorf("task %s: %s %s", id, v.Status, v.Description)
		}
	}
	close(stop)
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("readers did not finish within 60s of the stop")
	}
	if reads.Load() < 16 {
		t.Fatalf("only %d reads made while tasks ran", reads.Load())
	}
	if _, err := os.Stat(f.path("buckets", "public", "load", "49", "v1", "index.m3u8")); err != nil {
		t.Fatalf("output of the last task: %v", err)
	}
}

// createNoFatal submits request i from a goroutine (no t.Fatal there).
func createNoFatal(t *testing.T, f *fixture, i int) string {
	req := validRequest()
	req["output"].(map[string]any)["object"] = fmt.Sprintf("load/%d", i)
	body, _ := json.Marshal(req)
	p := f.path("control", "encryptions", fmt.Sprintf("load-%d.json", i))
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Errorf("request %d: %v", i, err)
		return ""
	}
	resp, err := os.ReadFile(p)
	var r struct {
		TaskID string `json:"task_id"`
	}
	if err != nil || json.Unmarshal(resp, &r) != nil {
		t.Errorf("request %d: response %s, %v", i, resp, err)
	}
	return r.TaskID
}
