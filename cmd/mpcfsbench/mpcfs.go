package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/fs"
)

// mpcfsMount is bin/mpcfs mounted as its own process, so its RSS is its own.
type mpcfsMount struct {
	dir  string
	proc *proc
	seq  int    // request file counter
	http string // http://ADDR of its --listen (origin.go)
	// taskWait bounds waiting for one task to be SUCCEEDED (0: 2 minutes;
	// the catalogue rows raise it).
	taskWait time.Duration
}

func (b *bench) mountMpcfs() (*mpcfsMount, error) { return b.mountMpcfsAs("mpcfs") }

// mountMpcfsAs mounts at mnt-NAME with extra mount flags, logging to
// logs/NAME.log. Every mount of a run shares the store, the task store and
// the master key, so they all serve the same tasks.
func (b *bench) mountMpcfsAs(name string, extra ...string) (*mpcfsMount, error) {
	return b.mountMpcfsAt(name, b.ep, extra...)
}

// mountMpcfsAt is mountMpcfsAs with the store endpoint given.
func (b *bench) mountMpcfsAt(name, endpoint string, extra ...string) (*mpcfsMount, error) {
	dir, err := b.mountDir("mnt-" + name)
	if err != nil {
		return nil, err
	}
	mpcfs, err := filepath.Abs(b.cfg.Mpcfs)
	if err != nil {
		return nil, err
	}
	env := append(b.awsEnv(), strings.Fields(b.cfg.MpcfsEnv)...)
	addr, httpArgs, err := b.httpArgs()
	if err != nil {
		return nil, err
	}
	args := append([]string{mpcfs, "mount", "--endpoint", endpoint, "--master-key-file", filepath.Join(b.tmp, "master.key")}, httpArgs...)
	args = append(args, extra...)
	p, err := b.start(name, env, append(args, dir)...)
	if err != nil {
		return nil, err
	}
	if err := waitMounted(p, dir, "control/encryptions"); err != nil {
		return nil, err
	}
	if b.cfg.FuseRA > 0 {
		if err := fs.SetReadAhead(dir, b.cfg.FuseRA); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "mpcfsbench: %s read_ahead_kb = %d\n", dir, b.cfg.FuseRA)
	}
	return &mpcfsMount{dir: dir, proc: p, http: "http://" + addr}, nil
}

// task is what control/tasks/<id>.json says (the fields we need).
type task struct {
	TaskID      string `json:"task_id"`
	Status      string `json:"status"`
	Description string `json:"description"`
}

// runTask submits a request through control/encryptions and waits until
// the task is SUCCEEDED; it returns the time from open(2) of the request
// to the first read that shows SUCCEEDED.
func (m *mpcfsMount) runTask(input, output, alg string) (time.Duration, error) {
	return m.runTaskKey(input, output, alg, nil, "https://keys.example.com/bench")
}

// runTaskDRM is runTask with a multidrm block.
func (m *mpcfsMount) runTaskDRM(input, output, alg string, multidrm map[string]any) (time.Duration, error) {
	return m.submit(requestJSON(input, output, alg, nil, "https://keys.example.com/bench", multidrm))
}

// requestJSON is an encryption request with a fresh random key (or key)
// and a multidrm block (nil: none).
func requestJSON(input, output, alg string, key []byte, keyURL string, multidrm map[string]any) []byte {
	if key == nil {
		key = make([]byte, 16)
		rand.Read(key)
	}
	enc := map[string]any{"hls_encrypt": map[string]string{
		"key": base64.StdEncoding.EncodeToString(key), "url": keyURL, "algorithm": alg}}
	if multidrm != nil {
		enc["multidrm"] = multidrm
	}
	req := map[string]any{
		"input":      map[string]string{"bucket": inputBucket(input), "location": "region1", "object": inputObject(input)},
		"output":     map[string]string{"bucket": outBucket, "location": "region1", "object": output},
		"encryption": enc,
	}
	data, _ := json.Marshal(req)
	return data
}

// runTaskKey is runTask with the content key and the key URL the output
// playlists name (the bench's key server, for players that decrypt).
func (m *mpcfsMount) runTaskKey(input, output, alg string, key []byte, keyURL string) (time.Duration, error) {
	return m.submit(requestJSON(input, output, alg, key, keyURL, nil))
}

// submit writes a request through control/encryptions and waits until the
// task is SUCCEEDED; it returns the time from the request's write to then.
func (m *mpcfsMount) submit(data []byte) (time.Duration, error) {
	m.seq++
	path := filepath.Join(m.dir, "control/encryptions", fmt.Sprintf("bench-%d.json", m.seq))
	t := time.Now()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return 0, fmt.Errorf("submitting: %w", err)
	}
	resp, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var r struct {
		TaskID string `json:"task_id"`
	}
	if json.Unmarshal(resp, &r) != nil || r.TaskID == "" {
		return 0, fmt.Errorf("request refused: %s", resp)
	}
	if err := m.waitTask(r.TaskID); err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

func inputBucket(s string) string { b, _, _ := strings.Cut(s, "/"); return b }
func inputObject(s string) string { _, o, _ := strings.Cut(s, "/"); return o }

// waitTask polls the task file every millisecond for up to taskWait.
func (m *mpcfsMount) waitTask(id string) error {
	path := filepath.Join(m.dir, "control/tasks", id+".json")
	wait := m.taskWait
	if wait == 0 {
		wait = 2 * time.Minute
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var t task
		if json.Unmarshal(data, &t) != nil {
			continue
		}
		switch t.Status {
		case "SUCCEEDED":
			return nil
		case "FAILED", "CANCELED":
			return fmt.Errorf("task %s %s: %s", id, t.Status, t.Description)
		}
	}
	return fmt.Errorf("task %s not SUCCEEDED within %v", id, wait)
}

// mpcfsRows measures plaintext, CBC and CTR sequentially, then random
// reads, concurrent readers and task creation on the same mount.
func (b *bench) mpcfsRows(m *mpcfsMount) error {
	outputs := []struct {
		name, dir string
		segs      []string
		src       mediaSet // the local files the output is made of: the warm figure's paired reference
	}{
		{"mpcfs plaintext passthrough", filepath.Join(m.dir, "buckets", mediaBucket, mediaPrefix), b.media.segs, b.media},
		{"mpcfs AES-128-CBC output", filepath.Join(m.dir, "buckets", outBucket, "cbc"), b.media.segs, b.media},
		{"mpcfs AES-128-CTR output", filepath.Join(m.dir, "buckets", outBucket, "ctr"), b.media.segs, b.media},
		{"mpcfs CENC cenc output (fMP4)", filepath.Join(m.dir, "buckets", outBucket, "cenc"), b.fmp4.segs, b.fmp4},
		{"mpcfs CENC cbcs output (fMP4)", filepath.Join(m.dir, "buckets", outBucket, "cbcs"), b.fmp4.segs, b.fmp4},
	}
	for _, o := range outputs {
		paths := joinAll(o.dir, o.segs)
		r := &row{name: o.name, daemon: m.proc, paths: paths, pairWith: o.src.localPaths()}
		m.proc.resetHWM()
		if err := b.seqRows(r, func() (int64, error) { return readFiles(paths) }); err != nil {
			return err
		}
		r.rss = m.proc.hwmMB()
		b.report.seq = append(b.report.seq, r)
	}
	for _, o := range outputs {
		if err := b.randomRow(o.name, m.proc, joinAll(o.dir, o.segs)); err != nil {
			return err
		}
	}
	for _, o := range outputs {
		if err := b.concRow(o.name, m.proc, joinAll(o.dir, o.segs)); err != nil {
			return err
		}
	}
	// Task creation before the HTTP rows: their API load leaves hundreds
	// of tasks queued for planning, and a task made then waits its turn.
	if err := b.taskRows(m); err != nil {
		return err
	}
	if err := b.originRows(m); err != nil {
		fmt.Fprintf(os.Stderr, "mpcfsbench: HTTP rows: %v\n", err)
		b.report.notes = append(b.report.notes, "HTTP rows: "+err.Error())
	}
	return nil
}

// mpcfsTasks makes the CBC and CTR outputs of the media the rows read;
// their playlists name the bench's key server, so ffmpeg can decrypt.
func (b *bench) mpcfsTasks(m *mpcfsMount) error {
	if err := b.hlsTasks(m); err != nil {
		return err
	}
	return b.drmTasks(m)
}

// hlsTasks makes the CBC and CTR outputs.
func (b *bench) hlsTasks(m *mpcfsMount) error {
	for _, t := range []struct{ out, alg string }{{"cbc", "AES-128-CBC"}, {"ctr", "AES-128-CTR"}} {
		key := make([]byte, 16)
		rand.Read(key)
		u, err := b.keys.add(t.out, key)
		if err != nil {
			return err
		}
		if _, err := m.runTaskKey(mediaBucket+"/"+mediaPrefix+"index.m3u8", t.out, t.alg, key, u); err != nil {
			return fmt.Errorf("%s task: %w", t.alg, err)
		}
	}
	return nil
}

// drmTasks makes the Common Encryption outputs of the fMP4 remux (planning
// reads every segment once: its time is the CENC planning row).
func (b *bench) drmTasks(m *mpcfsMount) error {
	for _, t := range []struct {
		out string
		emi int
	}{{"cenc", 16420}, {"cbcs", 16418}} {
		d, err := m.runTaskDRM(mediaBucket+"/"+fmp4Prefix+"index.m3u8", t.out, "", map[string]any{
			"emi": t.emi, "streaming_mode": "HLS", "drm_list": []string{"WIDEVINE", "PLAYREADY"}})
		if err != nil {
			return fmt.Errorf("multidrm %s task: %w", t.out, err)
		}
		mbs := float64(b.fmp4.bytes) / 1e6 / d.Seconds()
		b.report.notes = append(b.report.notes, fmt.Sprintf("multidrm %s task over the fMP4 remux (%d segments, %.0f MB): request to SUCCEEDED %v, "+
			"planning reads every segment once: %.0f MB/s", t.out, len(b.fmp4.segs), float64(b.fmp4.bytes)/1e6, d.Round(time.Millisecond), mbs))
		fmt.Fprintf(os.Stderr, "  multidrm %s task: %v (%.0f MB/s planning)\n", t.out, d.Round(time.Millisecond), mbs)
	}
	return nil
}

// randomRow: single reader, cold cache before each run.
func (b *bench) randomRow(name string, p *proc, paths []string) error {
	readAt, sizes, closeAll, err := fileReadAt(paths)
	if err != nil {
		return err
	}
	defer closeAll()
	r := &row{name: name}
	p.resetHWM()
	for i := range b.cfg.Runs {
		b.dropCaches()
		rps, err := randomReads(int64(i+1), b.cfg.RandDur, sizes, readAt)
		if err != nil {
			return fmt.Errorf("%s random reads: %w", name, err)
		}
		r.cold = append(r.cold, rps)
	}
	r.rss = p.hwmMB()
	fmt.Fprintf(os.Stderr, "  %-34s random 64 KiB %8.0f reads/s\n", name, median(r.cold))
	b.report.random = append(b.report.random, r)
	return nil
}

// concRow: Readers readers over all segments, cold cache before each run.
func (b *bench) concRow(name string, p *proc, paths []string) error {
	r := &row{name: name}
	p.resetHWM()
	for range b.cfg.Runs {
		b.dropCaches()
		mbs, err := concurrent(b.cfg.Readers, len(paths), func(i int, buf []byte) (int64, error) { return readFile(paths[i], buf) })
		if err != nil {
			return fmt.Errorf("%s with %d readers: %w", name, b.cfg.Readers, err)
		}
		r.cold = append(r.cold, mbs)
	}
	r.rss = p.hwmMB()
	fmt.Fprintf(os.Stderr, "  %-34s %d readers %8.0f MB/s, peak RSS %.0f MB\n", name, b.cfg.Readers, median(r.cold), r.rss)
	b.report.conc = append(b.report.conc, r)
	return nil
}

// taskRows times creation to SUCCEEDED of the 2-variant ladder, CBC.
func (b *bench) taskRows(m *mpcfsMount) error {
	m.proc.resetHWM()
	for i := range b.cfg.Runs {
		d, err := m.runTask(ladderBucket+"/master.m3u8", fmt.Sprintf("ladder-%d", i), "AES-128-CBC")
		if err != nil {
			return fmt.Errorf("ladder task: %w", err)
		}
		b.report.taskMs = append(b.report.taskMs, float64(d.Microseconds())/1000)
	}
	b.report.taskRSS = m.proc.hwmMB()
	fmt.Fprintf(os.Stderr, "  task creation, 2 x %d segments: median %.0f ms\n", b.cfg.Ladder, median(b.report.taskMs))
	return nil
}

// stopMount unmounts and stops a FUSE daemon by its PID.
func (b *bench) stopMount(p *proc, dir string) {
	unmount(dir)
	p.stop()
}
