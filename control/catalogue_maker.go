package control

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/store"
)

// This file makes large task catalogues for tests and benchmarks (a mount
// over 100,000 tasks): records, plans and index shards in the formats a
// mount writes them.

// CatalogueOptions changes what MakeCatalogue writes.
type CatalogueOptions struct {
	// NoIndex leaves the index shards out (a store from before them).
	NoIndex bool
	// Legacy writes each plan inside its record, as mpcfs did before
	// plans were kept apart (implies NoIndex).
	Legacy bool
}

// CatalogueTask is task i of a made catalogue: its id, output folder (in
// bucket "public") and plan, a 2-variant HLS title of seven files.
func CatalogueTask(i int) (id, object string, plan *Plan) {
	id = strconv.FormatInt(1e15+int64(i), 10)
	object = fmt.Sprintf("cat/%06d", i)
	seg := func(name string) OutFile {
		src := fmt.Sprintf("titles/%06d/%s", i, name)
		return OutFile{Name: name, Size: 1000016, Parts: []OutPart{{Key: src, ETag: "e" + id, Len: 1000000, Encrypt: true, IV: make([]byte, 16)}}}
	}
	pl := func(name, body string) OutFile {
		return OutFile{Name: name, Playlist: []byte(body), Size: int64(len(body))}
	}
	media := "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k\"\n#EXTINF:10,\nseg0.ts\n#EXTINF:10,\nseg1.ts\n#EXT-X-ENDLIST\n"
	plan = &Plan{Files: []OutFile{
		pl("master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv1/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1600000\nv2/index.m3u8\n"),
		seg("v1/seg0.ts"), seg("v1/seg1.ts"), pl("v1/index.m3u8", media),
		seg("v2/seg0.ts"), seg("v2/seg1.ts"), pl("v2/index.m3u8", media),
	}}
	return id, object, plan
}

// MakeCatalogue writes n SUCCEEDED tasks (CatalogueTask) into the
// local-directory store at dir, system bucket sys, sealed with master.
// Files are written directly, without the store's fsync per object, so
// that 100,000 tasks take seconds; the ETags are the store's own.
func MakeCatalogue(dir, sys string, master *keywrap.Master, n int, o CatalogueOptions) error {
	st, err := store.NewLocal(dir)
	if err != nil {
		return err
	}
	for _, sub := range []string{sys + "/tasks", sys + "/plans", sys + "/index", "public", "media"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	shards := map[int][]*summary{}
	var failed atomic.Value
	var wg sync.WaitGroup
	const writers = 8
	key := make([]byte, 16)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if err := makeTask(st, dir, sys, master, key, i, o, &mu, shards); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	for n, tasks := range shards {
		if err := os.WriteFile(filepath.Join(dir, sys, shardKey(n)), encodeShard(tasks), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func makeTask(st *store.Local, dir, sys string, master *keywrap.Master, key []byte, i int, o CatalogueOptions, mu *sync.Mutex, shards map[int][]*summary) error {
	id, object, plan := CatalogueTask(i)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	rec := record{TaskView: TaskView{TaskID: id, Status: Succeeded, CreateTime: mpcTime(created), EndTime: mpcTime(created.Add(time.Second)),
		Input:  Location{Bucket: "media", Location: "region1", Object: fmt.Sprintf("titles/%06d/master.m3u8", i)},
		Output: Location{Bucket: "public", Location: "region1", Object: object}, Description: "7 output files"},
		Algorithm: "AES-128-CBC", KeyURL: "https://keys.example.com/k", Created: created.UnixNano(),
		SealedKey: master.Seal(key, id)}
	if o.Legacy {
		rec.Plan = plan
	} else {
		rec.PlanKey = planKey(id)
		data, _ := json.Marshal(plan)
		if err := os.WriteFile(filepath.Join(dir, sys, planKey(id)), data, 0o644); err != nil {
			return err
		}
	}
	data, _ := json.Marshal(&rec)
	if err := os.WriteFile(filepath.Join(dir, sys, recordKey(id)), data, 0o644); err != nil {
		return err
	}
	if o.NoIndex || o.Legacy {
		return nil
	}
	info, err := st.Stat(context.Background(), sys, recordKey(id))
	if err != nil {
		return err
	}
	ol := outlineOfPlan(object, plan)
	s := summarize(&rec, info.ETag, &ol)
	mu.Lock()
	shards[shardOf(id)] = append(shards[shardOf(id)], s)
	mu.Unlock()
	return nil
}
