package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
)

// A go-fuse --debug excerpt: two READs overlap (the second arrives before
// the first is answered), then one alone; other opcodes and replies to
// them must not count.
const debugLog = `mpcfs: 2026/12/01 14:00:00 rx 10: LOOKUP n1 ["seg_0000.ts"] 12b p77
mpcfs: 2026/12/01 14:00:00 tx 10:     OK, {n5 g1 tE=1h0m0s tA=1h0m0s {M0100444 SZ=10000}}
mpcfs: 2026/12/01 14:00:00 rx 12: READ n5 {Fh 1 [0 +131072)  L 0 RDONLY} p77
mpcfs: 2026/12/01 14:00:00 rx 14: READ n5 {Fh 1 [131072 +1048576)  L 0 RDONLY} p77
mpcfs: 2026/12/01 14:00:00 tx 12:     OK,  131072b data
mpcfs: 2026/12/01 14:00:00 tx 14:     OK,  1048576b data
mpcfs: 2026/12/01 14:00:00 rx 16: READ n5 {Fh 1 [1179648 +1048576)  L 0 RDONLY} p77
mpcfs: 2026/12/01 14:00:00 tx 16:     OK,  1048576b data
mpcfs: 2026/12/01 14:00:00 rx 18: WRITE n7 {Fh 2 [0 +1048576)  0x0 L 0 RDONLY} p77
`

func TestParseReads(t *testing.T) {
	st, err := parseReads(strings.NewReader(debugLog))
	if err != nil {
		t.Fatal(err)
	}
	if st.count != 3 || st.bytes != 131072+2*1048576 {
		t.Fatalf("count %d bytes %d, want 3 and %d", st.count, st.bytes, 131072+2*1048576)
	}
	if st.sizes[1048576] != 2 || st.sizes[131072] != 1 {
		t.Fatalf("sizes %v", st.sizes)
	}
	if st.inFlight != 1 {
		t.Fatalf("in flight %d, want 1 (only the second READ found another open)", st.inFlight)
	}
	want := "3 reads, mean 725 KiB: 1024 KiB 67%, 128 KiB 33%; 0.3 already in flight at each"
	if got := st.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	// Negative control: the same log without READ lines counts nothing.
	var none strings.Builder
	for _, l := range strings.Split(debugLog, "\n") {
		if !strings.Contains(l, "READ") {
			none.WriteString(l + "\n")
		}
	}
	if st, _ := parseReads(strings.NewReader(none.String())); st.count != 0 || st.String() != "-" {
		t.Fatalf("log without READs gave %v", st)
	}
}

func TestMountDev(t *testing.T) {
	info := "36 35 98:0 / /mnt1 rw - ext3 /dev/root rw\n" +
		"60 22 0:52 / /tmp/b\\040c rw,nosuid - fuse.mpcfs mpcfs rw\n" +
		"61 22 0:53 / /tmp/b\\040c rw,nosuid - fuse.mpcfs mpcfs rw\n"
	if got := mountDev(info, "/tmp/b c"); got != "0:53" {
		t.Fatalf("mountDev = %q, want the last mount, 0:53", got)
	}
	if got := mountDev(info, "/tmp/b"); got != "" {
		t.Fatalf("mountDev of a non-mount = %q", got)
	}
}

func TestPercentileAndSpread(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
	if got := spread([]float64{300, 100, 200}); got != "100-300" {
		t.Errorf("spread = %q", got)
	}
	if got := spread([]float64{7}); got != "7" {
		t.Errorf("spread of one = %q", got)
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		got, want float64
		less      bool
		v         string
	}{{0.6, 0.6, true, "yes"}, {0.61, 0.6, true, "**no**"}, {1.5, 1.5, false, "yes"}, {1.49, 1.5, false, "**no**"}, {0, 1, false, "n/a"}} {
		if v := verdict(c.got, c.want, c.less); v != c.v {
			t.Errorf("verdict(%v, %v, %v) = %s, want %s", c.got, c.want, c.less, v, c.v)
		}
	}
}

// TestStyleTargets: each style is held to the faster raw GET of the run
// and to s3fs read the same way; the concurrent style to the concurrent
// raw GETs.
func TestStyleTargets(t *testing.T) {
	b := newBench(&config{Runs: 1, Readers: 16})
	sr := func(style, target string, mbs, daemonCPU float64) *styleRow {
		return &styleRow{style: style, target: target, mbs: []float64{mbs}, cpu: cpuUse{daemon: daemonCPU}}
	}
	cat, conc := "cat (128 KiB reads)", "16 concurrent readers (1 MiB reads)"
	b.report.styles = []*styleRow{
		sr("raw GET", rawCurlName, 800, 0),
		sr("raw GET", rawInProName, 1000, 0), // the faster: the reference
		sr(cat, cbcTarget, 900, 0.5),
		sr(cat, "s3fs", 500, 1),
		sr(conc, rawConcName, 2000, 0),
		sr(conc, cbcTarget, 1500, 0.7),
		sr(conc, "s3fs", 1000, 1),
	}
	var s strings.Builder
	b.targets(&s)
	for _, want := range []string{
		"| cat (128 KiB reads): CBC cold >= 0.9x raw GET | 0.90x | yes |",
		"| cat (128 KiB reads): CBC cold >= 1.5x s3fs | 1.80x | yes |",
		"| cat (128 KiB reads): daemon CPU <= 0.6 s/GB, CBC cold | 0.50 s/GB | yes |",
		"| 16 concurrent readers (1 MiB reads): CBC >= 0.8x raw aggregate | 0.75x | **no** |",
		"| 16 concurrent readers (1 MiB reads): CBC cold >= 1.5x s3fs | 1.50x | yes |",
		"| 16 concurrent readers (1 MiB reads): daemon CPU <= 0.6 s/GB, CBC cold | 0.70 s/GB | **no** |",
	} {
		if !strings.Contains(s.String(), want) {
			t.Errorf("targets lack %q:\n%s", want, s.String())
		}
	}
	// The table shows ratios only for mount rows, against the same refs.
	var tbl strings.Builder
	b.stylesTable(&tbl)
	if !strings.Contains(tbl.String(), "| cat (128 KiB reads) | mpcfs AES-128-CBC | 900 | 900 | 0.90 | 1.80 |") {
		t.Errorf("styles table:\n%s", tbl.String())
	}
	if !strings.Contains(tbl.String(), "| raw GET | "+rawCurlName+" | 800 | 800 | - | - |") {
		t.Errorf("raw rows must carry no ratio:\n%s", tbl.String())
	}
}

// TestCloneRecord: a clone keeps the template's plan and fields, takes a
// new id and output folder, and its key opens only under its own id.
func TestCloneRecord(t *testing.T) {
	master, err := keywrap.New(make([]byte, keywrap.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef")
	tmplID := "1234567890123456"
	rec := map[string]any{"task_id": tmplID, "status": "SUCCEEDED", "algorithm": "AES-128-CBC",
		"output":     map[string]string{"bucket": "out", "location": "region1", "object": "cat-template"},
		"sealed_key": master.Seal(key, tmplID), "plan": map[string]any{"files": []any{map[string]any{"name": "v0/s00001.ts", "size": 376}}}}
	raw, _ := json.Marshal(rec)
	tm := &template{id: tmplID, key: key, master: master}
	if err := json.Unmarshal(raw, &tm.rec); err != nil {
		t.Fatal(err)
	}
	id, data, err := tm.cloneRecord(42)
	if err != nil {
		t.Fatal(err)
	}
	if id != "7000000000000042" || !validTaskID(id) {
		t.Fatalf("clone id %q", id)
	}
	var got struct {
		TaskID    string            `json:"task_id"`
		Status    string            `json:"status"`
		Output    map[string]string `json:"output"`
		SealedKey string            `json:"sealed_key"`
		Plan      json.RawMessage   `json:"plan"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.TaskID != id || got.Status != "SUCCEEDED" || got.Output["object"] != "catalogue/t0000042" || got.Output["bucket"] != "out" {
		t.Fatalf("clone %s", data)
	}
	if string(got.Plan) != string(tm.rec["plan"]) {
		t.Fatalf("plan changed: %s", got.Plan)
	}
	if k, err := master.Open(got.SealedKey, id); err != nil || string(k) != string(key) {
		t.Fatalf("clone key does not open under its id: %v", err)
	}
	if _, err := master.Open(got.SealedKey, tmplID); err == nil {
		t.Fatal("clone key opens under the template's id")
	}
}

// validTaskID is control's rule for ids (control/load.go validID).
func validTaskID(id string) bool {
	if len(id) != 16 || id[0] < '1' || id[0] > '9' {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func TestCatalogueTargets(t *testing.T) {
	b := newBench(&config{Runs: 1})
	b.report.cat = &catalogueResult{tasks: 100000, writers: 8, readySecs: []float64{4}, rssMB: []float64{120},
		lookupMs: []float64{0.2, 0.3, 5}, requestMs: []float64{25}, createN: 500, createSecs: 10}
	var s strings.Builder
	b.catalogueTargets(func(name string, got, want float64, less bool, unit string) {
		s.WriteString(name + " " + verdict(got, want, less) + "\n")
	})
	for _, want := range []string{
		"100000 tasks: mount ready < 3 s **no**", "100000 tasks: RSS < 150 MB (when ready, and after the lookups and creations) yes",
		"100000 tasks: output lookup p50 < 1 ms warm (its task's file list loaded) yes", "100000 tasks: request -> SUCCEEDED p50 < 30 ms (2 variants) yes",
		"100000 tasks: creation >= 100 tasks/s with 8 writers **no**",
	} {
		if !strings.Contains(s.String(), want) {
			t.Errorf("catalogue targets lack %q:\n%s", want, s.String())
		}
	}
}

func TestSummariseGets(t *testing.T) {
	mk := func(key string, n int64) *s3Get { g := &s3Get{key: key}; g.bytes.Store(n); return g }
	sizes := map[string]int64{"media/vod/a.ts": 100, "media/vod/b.ts": 100}
	// a.ts fetched whole once; b.ts fetched in two windows that overlap
	// by 20 bytes: one object fetched more than once.
	st := summariseGets([]*s3Get{mk("media/vod/a.ts", 100), mk("media/vod/b.ts", 60), mk("media/vod/b.ts", 60)}, sizes, 200)
	if st.gets != 3 || st.bytes != 220 || st.refetched != 1 {
		t.Fatalf("%+v", st)
	}
	if got := st.String(); !strings.Contains(got, "fetched 1.10x the bytes read; 1 objects fetched more than once") {
		t.Fatalf("String() = %q", got)
	}
	// Negative control: windows that tile each object exactly refetch nothing.
	st = summariseGets([]*s3Get{mk("media/vod/a.ts", 50), mk("media/vod/a.ts", 50), mk("media/vod/b.ts", 100)}, sizes, 200)
	if st.refetched != 0 || st.bytes != 200 {
		t.Fatalf("%+v", st)
	}
}

func TestSeqTableShowsSpread(t *testing.T) {
	b := newBench(&config{Runs: 3, Readers: 16})
	b.report.seq = []*row{
		{name: rawName, cold: []float64{1000, 900, 1100}, warm: []float64{2000, 2000, 2000}},
		{name: "mpcfs AES-128-CBC output", cold: []float64{850, 790, 910}, warm: []float64{5000, 4000, 6000}},
	}
	var s strings.Builder
	b.seqTable(&s)
	if !strings.Contains(s.String(), "| mpcfs AES-128-CBC output | 850 (790-910) | 0.85 | 5000 (4000-6000) | 2.50 |") {
		t.Errorf("seq table without the runs' spread:\n%s", s.String())
	}
}

// TestCatalogueMountFailure: a store too big to mount is reported as
// such, with the daemon's own account, and no other catalogue target is
// claimed.
func TestCatalogueMountFailure(t *testing.T) {
	log := t.TempDir() + "/d.log"
	os.WriteFile(log, []byte("mpcfs: x task store: skipping tasks/1.json: deadline\nmpcfs: x task store: skipping tasks/2.json: deadline\nmpcfs: reading the task store: listing: deadline\n"), 0o600)
	if got := daemonLogSummary(log); got != `the daemon skipped 2 task records, then: "mpcfs: reading the task store: listing: deadline"` {
		t.Fatalf("summary %q", got)
	}
	b := newBench(&config{Runs: 1, CatalogueSegs: 20})
	b.report.cat = &catalogueResult{tasks: 100000, writers: 8, readySecs: []float64{121}, mountFail: "exited | after 121 s"}
	var s strings.Builder
	b.catalogueTable(&s)
	if !strings.Contains(s.String(), "| mount ready | **did not mount** | exited / after 121 s |") || strings.Contains(s.String(), "RSS when ready") {
		t.Fatalf("table:\n%s", s.String())
	}
	var checks []string
	b.catalogueTargets(func(name string, got, want float64, less bool, unit string) {
		checks = append(checks, name+" "+verdict(got, want, less))
	})
	if len(checks) != 1 || checks[0] != "100000 tasks: mount ready < 3 s **no**" {
		t.Fatalf("checks %v", checks)
	}
}
