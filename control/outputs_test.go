package control

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// TestNewerTaskWinsWithinASecond: CreateTime has whole seconds only, so two
// tasks writing one output path in the same second are ordered by their
// creation instant, never by their random ids.
func TestNewerTaskWinsWithinASecond(t *testing.T) {
	m := &Manager{tasks: map[string]*task{}}
	m.outputs.init()
	add := func(id string, created int64) {
		m.tasks[id] = &task{key: make([]byte, 16), rec: record{
			TaskView: TaskView{TaskID: id, Status: Succeeded, CreateTime: "20261125090000",
				Output: Location{Bucket: "public", Object: "out"}},
			Created: created,
			Plan:    &Plan{Files: []OutFile{{Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}}},
		}}
	}
	add("9000000000000000", 1) // older, but the larger id
	add("1000000000000000", 2) // newer
	m.reindex()
	if o := m.Output("public", "out/index.m3u8"); o == nil || o.TaskID != "1000000000000000" {
		t.Fatalf("output served by %+v, want the newer task 1000000000000000", o)
	}
}

// TestNextSegment: each segment output links to the next segment of the
// plan (playlist order), skipping playlists, so a reader of one can warm
// the next; the last links nowhere.
func TestNextSegment(t *testing.T) {
	m := &Manager{tasks: map[string]*task{}}
	m.outputs.init()
	seg := func(name string) OutFile {
		return OutFile{Name: name, Parts: []OutPart{{Key: "in/" + name, Len: 100}}, Size: 100}
	}
	m.tasks["1"] = &task{key: make([]byte, 16), rec: record{
		TaskView: TaskView{TaskID: "1", Status: Succeeded, CreateTime: "20261125090000",
			Output: Location{Bucket: "public", Object: "out"}},
		Plan: &Plan{Files: []OutFile{seg("a.ts"), seg("b.ts"), {Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}, seg("c.ts")}},
	}}
	m.reindex()
	for _, c := range []struct{ from, next string }{{"a.ts", "out/b.ts"}, {"b.ts", "out/c.ts"}, {"c.ts", ""}, {"index.m3u8", ""}} {
		o := m.Output("public", "out/"+c.from)
		got := ""
		if o.Next != nil {
			got = o.Next.Key
		}
		if got != c.next {
			t.Errorf("%s: next %q, want %q", c.from, got, c.next)
		}
	}
}

// TestWithdrawStopsWarm: reading a segment warms the ones after it; when
// the task's outputs are withdrawn (cancel), their warm streams stop,
// rather than reading a source nobody can open any more.
func TestWithdrawStopsWarm(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "media", "in"), 0o755)
	var files []OutFile
	for _, name := range []string{"a.ts", "b.ts", "c.ts"} {
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
	m := &Manager{tasks: map[string]*task{}, cfg: Config{Store: st, Log: log.New(io.Discard, "", 0), Tuning: tuning.Default()}}
	m.outputs.init()
	tk := &task{key: make([]byte, 16), rec: record{
		TaskView:  TaskView{TaskID: "1", Status: Succeeded, CreateTime: "20261201090000", Input: Location{Bucket: "media"}, Output: Location{Bucket: "public", Object: "out"}},
		Algorithm: "AES-128-CBC",
		Plan:      &Plan{Files: files},
	}}
	m.tasks["1"] = tk
	m.reindex()
	a := m.Output("public", "out/a.ts")
	m.WarmNext(a)
	var warm []interface{ Warming() bool }
	for _, name := range []string{"b.ts", "c.ts"} {
		f, err := m.Open(m.Output("public", "out/"+name))
		if err != nil {
			t.Fatal(err)
		}
		if !f.Warming() {
			t.Fatalf("%s not warmed by a read of a.ts", name)
		}
		warm = append(warm, f)
	}
	m.mu.Lock()
	tk.withdrawn = true
	m.mu.Unlock()
	m.reindex()
	for i, f := range warm {
		if f.Warming() {
			t.Errorf("segment %d still warm after its task's outputs were withdrawn", i+1)
		}
	}
}
