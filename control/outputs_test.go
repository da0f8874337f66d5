package control

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// servedPlan is a SUCCEEDED task's summary and what serving it needs.
func servedPlan(id string, created int64, object string, plan *Plan) (*summary, *servedTask) {
	rec := record{TaskView: TaskView{TaskID: id, Status: Succeeded, CreateTime: "20261125090000",
		Input: Location{Bucket: "media"}, Output: Location{Bucket: "public", Object: object}},
		Algorithm: "AES-128-CBC", Created: created}
	return summarize(&rec, "etag", filesOf(id, object, plan)), &servedTask{rec: rec, key: make([]byte, 16), plan: plan}
}

// testOutputs is an Outputs over st whose tasks are served from tasks.
func testOutputs(st store.Store, tasks map[string]*servedTask) *Outputs {
	x := newOutputs(st, log.New(io.Discard, "", 0), tuning.Default())
	x.loadTask = func(ctx context.Context, id string) (*servedTask, error) { return tasks[id], nil }
	return x
}

// TestNewerTaskWinsWithinASecond: CreateTime has whole seconds only, so two
// tasks writing one output path in the same second are ordered by their
// creation instant, never by their random ids.
func TestNewerTaskWinsWithinASecond(t *testing.T) {
	x := testOutputs(nil, nil)
	plan := &Plan{Files: []OutFile{{Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}}}
	older, _ := servedPlan("9000000000000000", 1, "out", plan) // older, but the larger id
	newer, _ := servedPlan("1000000000000000", 2, "out", plan)
	x.set(nil, newer)
	x.set(nil, older)
	if o := x.Lookup("public", "out/index.m3u8"); o == nil || o.TaskID != "1000000000000000" {
		t.Fatalf("output served by %+v, want the newer task 1000000000000000", o)
	}
	// Withdrawing the newer serves the older one again, and says so.
	if gone := x.set(newer, nil); len(gone) != 1 || gone[0].key != "out/index.m3u8" {
		t.Errorf("withdrawn %v, want out/index.m3u8", gone)
	}
	if o := x.Lookup("public", "out/index.m3u8"); o == nil || o.TaskID != "9000000000000000" {
		t.Fatalf("after a withdraw, output served by %+v, want 9000000000000000", o)
	}
}

// TestNextSegment: each segment output links to the next segment of the
// plan (playlist order), skipping playlists, so a reader of one can warm
// the next; the last links nowhere.
func TestNextSegment(t *testing.T) {
	x := testOutputs(nil, nil)
	seg := func(name string) OutFile {
		return OutFile{Name: name, Parts: []OutPart{{Key: "in/" + name, Len: 100}}, Size: 100}
	}
	s, _ := servedPlan("1", 0, "out", &Plan{Files: []OutFile{seg("a.ts"), seg("b.ts"), {Name: "index.m3u8", Playlist: []byte("#EXTM3U\n")}, seg("c.ts")}})
	x.set(nil, s)
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
	x := testOutputs(nil, nil)
	pl := func(names ...string) *Plan {
		p := &Plan{}
		for _, n := range names {
			p.Files = append(p.Files, OutFile{Name: n, Playlist: []byte("#EXTM3U\n")})
		}
		return p
	}
	a, _ := servedPlan("1", 1, "vod/a", pl("master.m3u8", "v1/index.m3u8", "v2/index.m3u8", "p//q"))
	b, _ := servedPlan("2", 2, "vod/a/v1/extra", pl("x.m3u8"))
	x.set(nil, a)
	x.set(nil, b)
	for _, c := range []struct {
		prefix string
		want   []string
	}{{"", []string{"vod/"}}, {"vod/", []string{"a/"}}, {"vod/a/", []string{"master.m3u8", "v1/", "v2/"}},
		{"vod/a/v1/", []string{"extra/", "index.m3u8"}}, {"vod/a/v1/extra/", []string{"x.m3u8"}}, {"vod/b/", []string{}}} {
		got := x.Children("public", c.prefix)
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
	s, served := servedPlan("1", 0, "out", &Plan{Files: files})
	x := testOutputs(st, map[string]*servedTask{"1": served})
	x.set(nil, s)
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

// TestSearchedNames: a task with more files than are scanned has its
// names searched; folders of many tasks list each folder once; folders
// whose names sort around "/" ("a-b", "a.b") are told apart.
func TestSearchedNames(t *testing.T) {
	x := testOutputs(nil, nil)
	big := &Plan{}
	for i := 0; i < 3*scanFiles; i++ {
		big.Files = append(big.Files, OutFile{Name: fmt.Sprintf("v%d/s%03d.ts", i%3, i), Size: int64(i), Parts: []OutPart{{Key: "in", Len: int64(i)}}})
	}
	s, _ := servedPlan("1", 1, "big", big)
	x.set(nil, s)
	for i := 0; i < 3*scanFiles; i++ {
		o := x.Lookup("public", fmt.Sprintf("big/v%d/s%03d.ts", i%3, i))
		if o == nil || o.Size != int64(i) {
			t.Fatalf("file %d: %+v", i, o)
		}
	}
	if got := x.Children("public", "big/"); !equalStrings(got, []string{"v0/", "v1/", "v2/"}) {
		t.Errorf("children of big/: %q", got)
	}
	if x.Lookup("public", "big/v0/s001.ts") != nil {
		t.Error("a name of another folder is found")
	}
	for i, name := range []string{"a", "a-b", "a.b", "a/x", "a/y/z", "ab"} {
		s, _ := servedPlan(fmt.Sprint(10+i), int64(10+i), "cat/"+name, &Plan{Files: []OutFile{{Name: "m.m3u8", Playlist: []byte("#EXTM3U\n")}}})
		x.set(nil, s)
	}
	if got := x.Children("public", "cat/"); !equalStrings(got, []string{"a-b/", "a.b/", "a/", "ab/"}) {
		t.Errorf("children of cat/: %q", got)
	}
	if got := x.Children("public", "cat/a/"); !equalStrings(got, []string{"m.m3u8", "x/", "y/"}) {
		t.Errorf("children of cat/a/: %q", got)
	}
	if got := x.Children("public", ""); !equalStrings(got, []string{"big/", "cat/"}) {
		t.Errorf("children of the bucket: %q", got)
	}
	if !x.IsDir("public", "cat/a/y") || x.IsDir("public", "cat/a/q") || x.IsDir("public", "cat/a-") {
		t.Error("IsDir is wrong")
	}
}
