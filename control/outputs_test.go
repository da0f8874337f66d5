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
