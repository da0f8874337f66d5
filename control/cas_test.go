package control

import (
	"encoding/json"
	"io"
	"log"
	"math/rand"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
	"github.com/mpcfs/mpcfs/tuning"
)

// storedStatus reads a task's status straight from the task store.
func storedStatus(t *testing.T, st store.Store, sys, id string) Status {
	t.Helper()
	rc, err := st.Open(t.Context(), sys, recordKey(id), 0, -1)
	if err != nil {
		t.Fatalf("reading the record of %s: %v", id, err)
	}
	defer rc.Close()
	var rec record
	data, _ := io.ReadAll(rc)
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	return rec.Status
}

// TestCancelRacesCompletion: two Managers over one MinIO (two mounts);
// the first processes each task while the second cancels it at a random
// moment around its completion, 100 times. Every cancel is answered
// success (a SUCCEEDED task can be canceled too), and a cancel answered
// success is never lost: the store, both Managers and the first's
// outputs all end CANCELED, whichever write came first (record updates
// are compare-and-swap, store.PutMatch).
func TestCancelRacesCompletion(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.MakeBucket(t, "public")
	srv.PutFile(t, "media", "vod/master.m3u8", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n#EXT-X-ENDLIST\n"))
	srv.PutFile(t, "media", "vod/a.ts", make([]byte, 1000))
	srv.PutFile(t, "media", "vod/b.ts", make([]byte, 2000))
	const sys = "mpcfs-system"
	master := testMaster(t)
	open := func() *Manager {
		m, err := NewManager(Config{Store: srv.Store(), Region: "region1", SysBucket: sys, Master: master,
			Log: log.New(io.Discard, "", 0), Tuning: tuningWith(func(t *tuning.Tuning) { t.Refresh = 50 * time.Millisecond })})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	a, b := open(), open()
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	const rounds = 100
	ids := make([]string, 0, rounds)
	before, after := 0, 0 // cancels that landed before / after the outcome was saved
	for i := 0; i < rounds; i++ {
		id := createID(t, a, "race.json")
		time.Sleep(time.Duration(rnd.Intn(15000)) * time.Microsecond)
		seen := a.Status(id)
		if err := b.Cancel(id); err != nil {
			t.Fatalf("round %d: cancel of %s (%s on the processing mount): %v", i, id, seen, err)
		}
		if seen.Final() {
			after++
		} else {
			before++
		}
		ids = append(ids, id)
	}
	t.Logf("cancels before the outcome: %d, after: %d", before, after)
	for _, id := range ids {
		waitStatus(t, b, id, Canceled)
		waitStatus(t, a, id, Canceled)
		if st := storedStatus(t, srv.Store(), sys, id); st != Canceled {
			t.Errorf("task %s: the store holds %s after a cancel answered success", id, st)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); a.Outputs().Lookup("public", "out/a.ts") != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the processing mount still serves outputs of canceled tasks")
		}
	}
}
