package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
)

// The catalogue rows (-tasks N) measure mpcfs with N tasks in its task
// store, one per title the way a catalogue grows: mount start, memory,
// lookups of outputs, creation throughput and latency, listing.
//
// The N records are written straight into the task store (making them
// through the control folder at today's speed would take hours): one task
// is created through the mount, its record read back as the template, and
// cloned with a fresh id, its own output folder and its key sealed again
// for the new id (keywrap binds a sealed key to its task id). Cloning the
// real record as JSON keeps the bench in step with control's format
// without importing its unexported types.

const (
	catalogueTitle  = "title/master.m3u8" // in ladderBucket
	catalogueOutDir = "catalogue"         // out/catalogue/tNNNNNNN/
	sysBucket       = "mpcfs-system"      // the S3 task store's default bucket
	tasksPrefix     = "tasks/"
	// catalogueIDBase + i is clone i's id: 16 digits, first not 0, like
	// the ids mpcfs draws (a random one collides by a vanishing chance).
	catalogueIDBase int64 = 7_000_000_000_000_000
	// catalogueTaskWait bounds waiting for one catalogue task: at scale
	// today's planning is slow, and a figure is better than a failed run.
	catalogueTaskWait = 10 * time.Minute
)

// catalogueResult holds the catalogue figures of one run.
type catalogueResult struct {
	tasks         int       // records in the task store when measured
	bulkSecs      float64   // writing the clones straight into the store
	readySecs     []float64 // process start to mounted and an output found, per start
	listedSecs    []float64 // per start: ready to every task listed
	checkSecs     []float64 // per start: ready to the end of its check against the records
	rssMB         []float64 // VmRSS when ready, per start
	rssEndMB      float64   // VmRSS after the lookups, requests and creations
	lookupMs      []float64 // stat of distinct outputs, their tasks' file lists loaded
	firstLookupMs []float64 // the same, each the first of its task (file list loaded from the store)
	createN       int       // tasks created through control/encryptions by the writers
	createSecs    float64   // the time they took (request written to 202 read back)
	doneSecs      float64   // until every one of them was SUCCEEDED
	requestMs     []float64 // one request at a time: open(2) to SUCCEEDED
	// CPU used while those ran, in cores: MinIO's and the daemon's.
	requestMinioCPU, requestDaemonCPU float64
	lsSecs                            []float64 // os.ReadDir(control/tasks)
	lsEntries                         int
	lsTitlesSecs                      []float64 // os.ReadDir of the folder of every title's output folder
	lsTitles                          int
	lsTitlesRSSMB                     [2]float64 // the daemon's VmRSS before and after those listings
	writers                           int
	mountFail                         string // why the mount did not come up, when it did not
}

// daemonLogSummary condenses a daemon log: how many "skipping" lines
// (records it gave up on) and its last line.
func daemonLogSummary(path string) string {
	lines := strings.Split(strings.TrimSpace(readStr(path)), "\n")
	skipped := 0
	for _, l := range lines {
		if strings.Contains(l, "task store: skipping") {
			skipped++
		}
	}
	return fmt.Sprintf("the daemon skipped %d task records, then: %q", skipped, lines[len(lines)-1])
}

func (b *bench) catalogue() error {
	c := &catalogueResult{writers: b.cfg.TaskWriters}
	b.report.cat = c
	ctx, cancel := contextTimeout(30 * time.Minute)
	defer cancel()
	if err := b.uploadLadderAt(ctx, "title/", b.cfg.CatalogueSegs); err != nil {
		return fmt.Errorf("catalogue title: %w", err)
	}
	tmpl, err := b.catalogueTemplate()
	if err != nil {
		return err
	}
	existing, err := b.direct.List(ctx, sysBucket, tasksPrefix)
	if err != nil {
		return err
	}
	clones := b.cfg.Tasks - len(existing.Objects)
	t := time.Now()
	if err := b.writeClones(ctx, tmpl, max(clones, 0)); err != nil {
		return err
	}
	c.bulkSecs = time.Since(t).Seconds()
	c.tasks = len(existing.Objects) + max(clones, 0)
	fmt.Fprintf(os.Stderr, "mpcfsbench: catalogue: %d task records in the store (%d written in %.1f s)\n", c.tasks, clones, c.bulkSecs)

	probe := filepath.Join("buckets", outBucket, catalogueOutDir, cloneName(max(clones, 1)-1), tmpl.segment)
	var m *mpcfsMount
	for i := range b.cfg.Runs {
		if m != nil {
			b.stopMount(m.proc, m.dir)
		}
		b.dropCaches()
		t := time.Now()
		name := fmt.Sprintf("mpcfs-catalogue-%d", i+1)
		logPath := filepath.Join(b.logs, name+".log")
		logFrom := fileSize(logPath) // the log is appended to across bench runs
		m, err = b.mountMpcfsWait(name, probe, 30*time.Minute)
		if err != nil {
			// Not mounting at this scale is the finding, not a bench failure.
			c.readySecs = append(c.readySecs, time.Since(t).Seconds())
			c.mountFail = fmt.Sprintf("%v after %.0f s; %s", err, time.Since(t).Seconds(), daemonLogSummary(filepath.Join(b.logs, name+".log")))
			fmt.Fprintf(os.Stderr, "  catalogue: mount failed: %s\n", c.mountFail)
			return nil
		}
		c.readySecs = append(c.readySecs, time.Since(t).Seconds())
		c.rssMB = append(c.rssMB, vmRSS(m.proc))
		fmt.Fprintf(os.Stderr, "  catalogue: mount ready in %.2f s, RSS %.0f MB\n", c.readySecs[i], c.rssMB[i])
		// A start serves the index shards at once and checks them against
		// the records behind the mount (Tuning.StartupWait): tasks the
		// shards lacked appear as their records are read. Each start is
		// waited for until every task is listed, so the next one finds
		// the shards this one wrote (the clones come without any: the
		// first start reads every record, as over a store from before the
		// index). Lookups are timed once every task is listed.
		t = time.Now()
		for {
			ents, err := os.ReadDir(filepath.Join(m.dir, "control", "tasks"))
			if err == nil && len(ents) >= c.tasks {
				break
			}
			if time.Since(t) > catalogueTaskWait {
				b.stopMount(m.proc, m.dir)
				return fmt.Errorf("catalogue: %d of %d tasks listed after %v", len(ents), c.tasks, catalogueTaskWait)
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.listedSecs = append(c.listedSecs, time.Since(t).Seconds())
		fmt.Fprintf(os.Stderr, "  catalogue: every task listed %.1f s after the mount was ready\n", c.listedSecs[i])
		// The figures below are the steady state: the start's check of
		// the shards against a listing of every record (behind the
		// mount, 20-30 s at 100,000 records on this MinIO) is waited
		// for, as it keeps MinIO and the daemon busy meanwhile.
		if err := waitLogLine(logPath, logFrom, "task store read in", catalogueTaskWait); err != nil {
			b.stopMount(m.proc, m.dir)
			return fmt.Errorf("catalogue: the start's check: %w", err)
		}
		c.checkSecs = append(c.checkSecs, time.Since(t).Seconds())
		fmt.Fprintf(os.Stderr, "  catalogue: the start's check against the records ended %.1f s after the mount was ready\n", c.checkSecs[i])
	}
	defer b.stopMount(m.proc, m.dir)
	m.taskWait = catalogueTaskWait

	// The first lookup of a task's output loads the task's file list (its
	// record and plan: the catalogue holds no names, docs/scale.md); a
	// lookup of another output of the same tasks then finds it loaded.
	c.firstLookupMs, err = lookupTimes(m.dir, tmpl.segment, max(clones, 0), 1000)
	if err != nil {
		return err
	}
	c.lookupMs, err = lookupTimes(m.dir, tmpl.other, max(clones, 0), 1000)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "  catalogue: output lookup p50 %.3f ms p99 %.3f ms (first of its task: p50 %.3f ms p99 %.3f ms)\n",
		percentile(c.lookupMs, 50), percentile(c.lookupMs, 99), percentile(c.firstLookupMs, 50), percentile(c.firstLookupMs, 99))
	for range b.cfg.Runs {
		t := time.Now()
		ents, err := os.ReadDir(filepath.Join(m.dir, "control", "tasks"))
		if err != nil {
			return fmt.Errorf("listing control/tasks: %w", err)
		}
		c.lsSecs = append(c.lsSecs, time.Since(t).Seconds())
		c.lsEntries = len(ents)
	}
	fmt.Fprintf(os.Stderr, "  catalogue: ls control/tasks %.2f s, %d entries\n", median(c.lsSecs), c.lsEntries)
	// The output folder every title's folder lies in: an admin's ls of it
	// must not keep a node per title in the daemon (docs/scale.md).
	c.lsTitlesRSSMB[0] = vmRSS(m.proc)
	for range b.cfg.Runs {
		t := time.Now()
		ents, err := os.ReadDir(filepath.Join(m.dir, "buckets", outBucket, catalogueOutDir))
		if err != nil {
			return fmt.Errorf("listing the catalogue's output folder: %w", err)
		}
		c.lsTitlesSecs = append(c.lsTitlesSecs, time.Since(t).Seconds())
		c.lsTitles = len(ents)
	}
	c.lsTitlesRSSMB[1] = vmRSS(m.proc)
	fmt.Fprintf(os.Stderr, "  catalogue: ls of the %d title folders %.2f s, RSS %.0f -> %.0f MB\n",
		c.lsTitles, median(c.lsTitlesSecs), c.lsTitlesRSSMB[0], c.lsTitlesRSSMB[1])
	// Where the CPU goes while the requests run: MinIO shares the two
	// cores (its background scanner walks every object of the store).
	minio0, daemon0, wall0 := procCPU(b.minio.Pid()), procCPU(m.proc.cmd.Process.Pid), time.Now()
	for i := range max(9, b.cfg.Runs) {
		d, err := m.runTask(ladderBucket+"/"+catalogueTitle, fmt.Sprintf("cat-serial-%d", i), "AES-128-CBC")
		if err != nil {
			return fmt.Errorf("catalogue request: %w", err)
		}
		c.requestMs = append(c.requestMs, float64(d.Microseconds())/1000)
	}
	wall := time.Since(wall0).Seconds()
	c.requestMinioCPU = (procCPU(b.minio.Pid()) - minio0) / wall
	c.requestDaemonCPU = (procCPU(m.proc.cmd.Process.Pid) - daemon0) / wall
	fmt.Fprintf(os.Stderr, "  catalogue: request -> SUCCEEDED p50 %.0f ms (runs: %s); CPU meanwhile: MinIO %.0f%%, daemon %.0f%%\n",
		median(c.requestMs), runList(c.requestMs), 100*c.requestMinioCPU, 100*c.requestDaemonCPU)
	if err := b.creationThroughput(m, c); err != nil {
		return err
	}
	c.rssEndMB = vmRSS(m.proc)
	fmt.Fprintf(os.Stderr, "  catalogue: RSS %.0f MB after the lookups, requests and creations\n", c.rssEndMB)
	return nil
}

// creationThroughput: TaskWriters writers submit requests through
// control/encryptions for 10 s (or until -tasks requests); then the time
// until all of them are SUCCEEDED (planning may trail creation).
func (b *bench) creationThroughput(m *mpcfsMount, c *catalogueResult) error {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		ids   []string
		first error
		wg    sync.WaitGroup
	)
	limit := int64(b.cfg.Tasks)
	stop := time.Now().Add(10 * time.Second)
	if stopPerf := b.perfProc("catalogue-creation", m.proc); stopPerf != nil {
		defer stopPerf()
	}
	t := time.Now()
	for w := range b.cfg.TaskWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				i := next.Add(1)
				if i > limit {
					return
				}
				data := requestJSON(ladderBucket+"/"+catalogueTitle, fmt.Sprintf("cat-w%d-%d", w, i), "AES-128-CBC", nil, "https://keys.example.com/bench", nil)
				id, err := submit(filepath.Join(m.dir, "control/encryptions", fmt.Sprintf("cat-%d.json", i)), data)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					ids = append(ids, id)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	c.createSecs = time.Since(t).Seconds()
	c.createN = len(ids)
	if first != nil {
		return fmt.Errorf("creating tasks with %d writers: %w", b.cfg.TaskWriters, first)
	}
	for _, id := range ids {
		if err := m.waitTask(id); err != nil {
			c.doneSecs = -1 // shown as "not all SUCCEEDED"
			fmt.Fprintf(os.Stderr, "  catalogue: %v\n", err)
			return nil
		}
	}
	c.doneSecs = time.Since(t).Seconds()
	fmt.Fprintf(os.Stderr, "  catalogue: %d writers created %d tasks in %.1f s (%.0f/s); all SUCCEEDED after %.1f s\n",
		c.writers, c.createN, c.createSecs, float64(c.createN)/c.createSecs, c.doneSecs)
	return nil
}

// submit writes a request and returns the task id its response names.
func submit(path string, data []byte) (string, error) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("submitting: %w", err)
	}
	resp, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var r struct {
		TaskID string `json:"task_id"`
	}
	if json.Unmarshal(resp, &r) != nil || r.TaskID == "" {
		return "", fmt.Errorf("request refused: %s", resp)
	}
	return r.TaskID, nil
}

// template is a real task record, as generic JSON, and what the clones
// need from it.
type template struct {
	rec     map[string]json.RawMessage
	plan    []byte // its plan (plans/<id>.json), copied for each clone
	id      string
	segment string // a segment file of its output, relative to the output folder
	other   string // another one
	key     []byte // its content key, unsealed
	master  *keywrap.Master
}

// catalogueTemplate creates one task of the catalogue title through a
// mount and reads its record back from the task store.
func (b *bench) catalogueTemplate() (*template, error) {
	m, err := b.mountMpcfsAs("mpcfs-template")
	if err != nil {
		return nil, err
	}
	defer b.stopMount(m.proc, m.dir)
	data := requestJSON(ladderBucket+"/"+catalogueTitle, "cat-template", "AES-128-CBC", nil, "https://keys.example.com/bench", nil)
	id, err := submit(filepath.Join(m.dir, "control/encryptions", "cat-template.json"), data)
	if err != nil {
		return nil, err
	}
	if err := m.waitTask(id); err != nil {
		return nil, err
	}
	ctx, cancel := contextTimeout(time.Minute)
	defer cancel()
	data, err = b.readSys(ctx, tasksPrefix+id+".json")
	if err != nil {
		return nil, fmt.Errorf("reading the template record: %w", err)
	}
	t := &template{id: id}
	if err := json.Unmarshal(data, &t.rec); err != nil {
		return nil, fmt.Errorf("template record: %w", err)
	}
	var plan struct {
		Files []struct {
			Name  string `json:"name"`
			Parts []any  `json:"parts"`
		} `json:"files"`
	}
	var sealed, planKey string
	if err := json.Unmarshal(t.rec["plan_key"], &planKey); err != nil {
		return nil, fmt.Errorf("template plan_key: %w", err)
	}
	if t.plan, err = b.readSys(ctx, planKey); err != nil {
		return nil, fmt.Errorf("reading the template plan: %w", err)
	}
	if err := json.Unmarshal(t.plan, &plan); err != nil {
		return nil, fmt.Errorf("template plan: %w", err)
	}
	if err := json.Unmarshal(t.rec["sealed_key"], &sealed); err != nil {
		return nil, fmt.Errorf("template sealed_key: %w", err)
	}
	var segs []string
	for _, f := range plan.Files {
		if len(f.Parts) > 0 {
			segs = append(segs, f.Name)
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("template task %s has no segment in its plan", id)
	}
	t.segment = segs[len(segs)/2]
	t.other = segs[len(segs)/2-1]
	t.master, err = keywrap.LoadOrCreate(filepath.Join(b.tmp, "master.key"))
	if err != nil {
		return nil, err
	}
	if t.key, err = t.master.Open(sealed, id); err != nil {
		return nil, err
	}
	return t, nil
}

// readSys reads an object of the task store whole.
func (b *bench) readSys(ctx context.Context, key string) ([]byte, error) {
	rc, err := b.direct.Open(ctx, sysBucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func cloneName(i int) string { return fmt.Sprintf("t%07d", i) }

// clonePlanKey is where clone id's plan is stored (as control does).
func clonePlanKey(id string) string { return "plans/" + id + ".json" }

// cloneRecord is the template with id, output folder and sealed key of
// clone i.
func (t *template) cloneRecord(i int) (string, []byte, error) {
	id := fmt.Sprintf("%d", catalogueIDBase+int64(i))
	rec := make(map[string]json.RawMessage, len(t.rec))
	for k, v := range t.rec {
		rec[k] = v
	}
	var out map[string]any
	if err := json.Unmarshal(t.rec["output"], &out); err != nil {
		return "", nil, err
	}
	out["object"] = catalogueOutDir + "/" + cloneName(i)
	set := func(k string, v any) {
		data, _ := json.Marshal(v)
		rec[k] = data
	}
	set("task_id", id)
	set("plan_key", clonePlanKey(id))
	set("output", out)
	set("sealed_key", t.master.Seal(t.key, id))
	data, err := json.Marshal(rec)
	return id, data, err
}

// writeClones puts n clone records into the task store, 32 at a time.
func (b *bench) writeClones(ctx context.Context, t *template, n int) error {
	var done atomic.Int64
	return parallel(32, n, func(i int) error {
		id, data, err := t.cloneRecord(i)
		if err != nil {
			return err
		}
		// The plan first, as control writes it: whoever reads a
		// SUCCEEDED record finds its plan.
		if err := b.direct.Put(ctx, sysBucket, clonePlanKey(id), t.plan); err != nil {
			return err
		}
		if err := b.direct.Put(ctx, sysBucket, tasksPrefix+id+".json", data); err != nil {
			return err
		}
		if d := done.Add(1); d%10000 == 0 {
			fmt.Fprintf(os.Stderr, "mpcfsbench: catalogue: %d/%d records written\n", d, n)
		}
		return nil
	})
}

// mountMpcfsWait mounts and waits (up to timeout: today's mpcfs reads
// every record before it mounts) until probe exists under the mount.
func (b *bench) mountMpcfsWait(name, probe string, timeout time.Duration) (*mpcfsMount, error) {
	old := mountWait
	mountWait = timeout
	defer func() { mountWait = old }()
	m, err := b.mountMpcfsAs(name)
	if err != nil {
		return nil, err
	}
	if err := waitMounted(m.proc, m.dir, probe); err != nil {
		b.stopMount(m.proc, m.dir)
		return nil, err
	}
	return m, nil
}

// lookupTimes stats the given segment of up to n distinct random clones'
// outputs, each once (so each lookup reaches the daemon: the kernel has
// no entry for it yet), and returns the milliseconds each took.
func lookupTimes(mnt, segment string, clones, n int) ([]float64, error) {
	if clones == 0 {
		return nil, nil
	}
	rng := rand.New(rand.NewSource(1))
	idx := rng.Perm(clones)
	if len(idx) > n {
		idx = idx[:n]
	}
	// The shared parents first, so each timed stat is one output's lookups.
	if _, err := os.Stat(filepath.Join(mnt, "buckets", outBucket, catalogueOutDir)); err != nil {
		return nil, err
	}
	out := make([]float64, 0, len(idx))
	for _, i := range idx {
		p := filepath.Join(mnt, "buckets", outBucket, catalogueOutDir, cloneName(i), segment)
		t := time.Now()
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("lookup of a catalogue output: %w", err)
		}
		out = append(out, float64(time.Since(t).Nanoseconds())/1e6)
	}
	return out, nil
}

// percentile is the p-th percentile (nearest rank) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	k := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// vmRSS is a process's resident set size now, in MB.
func vmRSS(p *proc) float64 {
	for _, l := range strings.Split(readStr(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb / 1024
		}
	}
	return 0
}

func (b *bench) catalogueTable(s *strings.Builder) {
	c := b.report.cat
	if c == nil {
		return
	}
	fmt.Fprintf(s, "\n## Catalogue: %d tasks in the task store\n\n"+
		"Records written straight into the task store (clones of a real 2-variant task, %d segments per variant) in %.1f s. "+
		"Mount ready = process start to mounted with an output of the newest record visible, page cache dropped before. "+
		"Lookup = stat(2) of one segment output of %d distinct random tasks (each reaches the daemon), the mount warm: first the first output "+
		"looked up of each task (its file list is loaded from the task store), then another output of each (the list loaded).\n\n"+
		"| figure | median | runs min-max / p99 |\n|---|---:|---|\n", c.tasks, b.cfg.CatalogueSegs, c.bulkSecs, len(c.lookupMs))
	if c.mountFail != "" {
		fmt.Fprintf(s, "| mount ready | **did not mount** | %s |\n", strings.ReplaceAll(c.mountFail, "|", "/"))
		return
	}
	ready := c.shardStarts()
	fmt.Fprintf(s, "| mount ready, s | %.2f | %s |\n", median(ready), spreadF(ready, 2))
	if len(c.readySecs) > 1 {
		fmt.Fprintf(s, "| first start (the clones come without index shards: every record and plan read), mount ready, s | %.2f | |\n", c.readySecs[0])
	}
	fmt.Fprintf(s, "| RSS when ready, MB | %.0f | %s |\n", median(c.rssMB), spreadF(c.rssMB, 0))
	if c.rssEndMB > 0 {
		fmt.Fprintf(s, "| RSS after the lookups, requests and creations, MB | %.0f | |\n", c.rssEndMB)
	}
	if n := len(c.checkSecs); n > 0 {
		fmt.Fprintf(s, "| the start's check against a listing of the records, ended s after ready | %.1f | per start: %s (behind the mount; the figures below are measured after it) |\n",
			c.checkSecs[n-1], runList(c.checkSecs))
	}
	if n := len(c.listedSecs); n > 0 {
		fmt.Fprintf(s, "| every task listed, s after ready | %.1f | per start: %s (a start without the shards it needs reads the records behind the mount) |\n",
			c.listedSecs[n-1], runList(c.listedSecs))
	}
	fmt.Fprintf(s, "| output lookup, its task's file list loaded, ms (p50 / p99) | %.3f | p99 %.3f |\n", percentile(c.lookupMs, 50), percentile(c.lookupMs, 99))
	if len(c.firstLookupMs) > 0 {
		fmt.Fprintf(s, "| first output lookup of a task (its file list read from the task store), ms (p50 / p99) | %.3f | p99 %.3f |\n",
			percentile(c.firstLookupMs, 50), percentile(c.firstLookupMs, 99))
	}
	fmt.Fprintf(s, "| request -> SUCCEEDED, one at a time, ms | %.0f | %s; CPU meanwhile: MinIO %.0f%%, daemon %.0f%% of a core |\n",
		median(c.requestMs), spreadF(c.requestMs, 0), 100*c.requestMinioCPU, 100*c.requestDaemonCPU)
	if c.createSecs > 0 {
		done := fmt.Sprintf("all SUCCEEDED after %.1f s", c.doneSecs)
		if c.doneSecs < 0 {
			done = fmt.Sprintf("NOT all SUCCEEDED within %v of each other", catalogueTaskWait)
		}
		fmt.Fprintf(s, "| creation with %d writers, tasks/s | %.1f | %d tasks in %.1f s; %s |\n",
			c.writers, float64(c.createN)/c.createSecs, c.createN, c.createSecs, done)
	}
	fmt.Fprintf(s, "| ls control/tasks, s (%d entries) | %.2f | %s |\n", c.lsEntries, median(c.lsSecs), spreadF(c.lsSecs, 2))
	if c.lsTitles > 0 {
		fmt.Fprintf(s, "| ls buckets/%s/%s, s (%d title folders) | %.2f | %s; daemon RSS %.0f MB before, %.0f MB after |\n",
			outBucket, catalogueOutDir, c.lsTitles, median(c.lsTitlesSecs), spreadF(c.lsTitlesSecs, 2), c.lsTitlesRSSMB[0], c.lsTitlesRSSMB[1])
	}
}

func spreadF(xs []float64, prec int) string {
	if len(xs) == 0 {
		return "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return fmt.Sprintf("%.*f-%.*f", prec, s[0], prec, s[len(s)-1])
}

// catalogueTargets: issue 13's goals at catalogue scale.
func (b *bench) catalogueTargets(check func(name string, got, want float64, less bool, unit string)) {
	c := b.report.cat
	if c == nil {
		return
	}
	check(fmt.Sprintf("%d tasks: mount ready < 3 s", c.tasks), median(c.shardStarts()), 3, true, " s")
	if c.mountFail != "" {
		return // nothing else was measured
	}
	check(fmt.Sprintf("%d tasks: RSS < 150 MB (when ready, and after the lookups and creations)", c.tasks), max(median(c.rssMB), c.rssEndMB), 150, true, " MB")
	check(fmt.Sprintf("%d tasks: output lookup p50 < 1 ms warm (its task's file list loaded)", c.tasks), percentile(c.lookupMs, 50), 1, true, " ms")
	check(fmt.Sprintf("%d tasks: request -> SUCCEEDED p50 < 30 ms (2 variants)", c.tasks), median(c.requestMs), 30, true, " ms")
	if c.createSecs > 0 {
		check(fmt.Sprintf("%d tasks: creation >= 100 tasks/s with %d writers", c.tasks, c.writers), float64(c.createN)/c.createSecs, 100, false, "/s")
	}
}

// shardStarts are the ready times of the starts that found the index
// shards: all but the first, which reads the clones' records (as over a
// store from before the index), when there are several.
func (c *catalogueResult) shardStarts() []float64 {
	if len(c.readySecs) > 1 {
		return c.readySecs[1:]
	}
	return c.readySecs
}

// waitLogLine waits until the log at path holds line after offset from.
func waitLogLine(path string, from int64, line string, limit time.Duration) error {
	for t := time.Now(); ; time.Sleep(250 * time.Millisecond) {
		if data, err := os.ReadFile(path); err == nil && int64(len(data)) > from && strings.Contains(string(data[from:]), line) {
			return nil
		}
		if time.Since(t) > limit {
			return fmt.Errorf("no %q in %s after %v", line, path, limit)
		}
	}
}
