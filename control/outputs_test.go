package control

import "testing"

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
