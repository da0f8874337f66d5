package control

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// planStore is a local store with bucket "media" holding files (name ->
// content) and an empty bucket "public".
func planStore(t *testing.T, files map[string]string) *store.Local {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, "media", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "public"), 0o755)
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func planRecord(input string, alg crypto.Algorithm) *record {
	return &record{
		TaskView:  TaskView{Input: Location{Bucket: "media", Object: input}, Output: Location{Bucket: "public", Object: "out"}},
		Algorithm: alg,
		KeyURL:    "https://keys.example/k",
		Nonce:     make([]byte, 16),
	}
}

const threeSegments = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n" +
	"#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n#EXTINF:2,\nc.ts\n#EXT-X-ENDLIST\n"

func ladderFiles() map[string]string {
	return map[string]string{
		"vod/master.m3u8":    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nlow/index.m3u8\n",
		"vod/low/index.m3u8": threeSegments,
		"vod/low/a.ts":       strings.Repeat("a", 1000),
		"vod/low/b.ts":       strings.Repeat("b", 32), // a multiple of 16: a whole padding block
		"vod/low/c.ts":       strings.Repeat("c", 1),
	}
}

func filesByName(p *Plan) map[string]OutFile {
	m := map[string]OutFile{}
	for _, f := range p.Files {
		m[f.Name] = f
	}
	return m
}

// TestPlanCBCLadder: a master and its variant give the master byte for
// byte, the variant with a key tag, and one whole encrypted part per
// segment with the exact padded size and the media sequence number as
// IV; names keep their place relative to the input's folder.
func TestPlanCBCLadder(t *testing.T) {
	st := planStore(t, ladderFiles())
	plan, terr := buildPlan(context.Background(), st, planRecord("vod/master.m3u8", crypto.AES128CBC), planReads)
	if terr != nil {
		t.Fatal(terr)
	}
	files := filesByName(plan)
	if len(files) != 5 {
		t.Fatalf("%d output files, want 5 (master, variant, 3 segments): %v", len(files), plan.Files)
	}
	if m := files["master.m3u8"]; string(m.Playlist) != ladderFiles()["vod/master.m3u8"] {
		t.Fatalf("master changed:\n%s", m.Playlist)
	}
	v := files["low/index.m3u8"]
	if !bytes.Contains(v.Playlist, []byte(`#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k"`)) || v.Size != int64(len(v.Playlist)) {
		t.Fatalf("variant has no AES-128 key tag or a wrong size:\n%s", v.Playlist)
	}
	for name, plain := range map[string]int64{"low/a.ts": 1000, "low/b.ts": 32, "low/c.ts": 1} {
		f, ok := files[name]
		if !ok || len(f.Parts) != 1 || !f.Parts[0].Encrypt || f.Parts[0].Len != plain {
			t.Fatalf("%s: %+v, want one encrypted whole part of %d bytes", name, f, plain)
		}
		if want := crypto.AES128CBC.EncryptedSize(plain); f.Size != want {
			t.Errorf("%s: size %d, want %d", name, f.Size, want)
		}
	}
	if iv := files["low/b.ts"].Parts[0].IV; iv[15] != 8 { // media sequence 7 + 1
		t.Errorf("b.ts IV %x, want the media sequence number 8", iv)
	}
}

// TestPlanCountsProgress: every segment taken into a plan counts in
// mpcfs_planned_objects_total, the progress metric of long planning.
func TestPlanCountsProgress(t *testing.T) {
	st := planStore(t, ladderFiles())
	before := promtest.ToFloat64(metrics.PlannedObjects)
	if _, terr := buildPlan(context.Background(), st, planRecord("vod/master.m3u8", crypto.AES128CBC), planReads); terr != nil {
		t.Fatal(terr)
	}
	if got := promtest.ToFloat64(metrics.PlannedObjects) - before; got != 3 {
		t.Fatalf("planning 3 segments counted %v objects", got)
	}
}

// TestPlanFileNameRenamesTop: output.file_name names the top playlist and
// nothing else.
func TestPlanFileNameRenamesTop(t *testing.T) {
	st := planStore(t, ladderFiles())
	rec := planRecord("vod/master.m3u8", crypto.AES128CBC)
	rec.Output.FileName = "index.m3u8"
	plan, terr := buildPlan(context.Background(), st, rec, planReads)
	if terr != nil {
		t.Fatal(terr)
	}
	files := filesByName(plan)
	if _, ok := files["index.m3u8"]; !ok {
		t.Fatalf("no index.m3u8 among %v", plan.Files)
	}
	if _, ok := files["master.m3u8"]; ok {
		t.Fatal("master.m3u8 kept its name besides file_name")
	}
	if _, ok := files["low/index.m3u8"]; !ok {
		t.Fatal("the variant lost its name")
	}
}

// TestPlanCTRCountersDistinct: CTR gives every segment its own counter
// block, far enough apart that keystreams never overlap.
func TestPlanCTRCountersDistinct(t *testing.T) {
	st := planStore(t, ladderFiles())
	plan, terr := buildPlan(context.Background(), st, planRecord("vod/low/index.m3u8", crypto.AES128CTR), planReads)
	if terr != nil {
		t.Fatal(terr)
	}
	seen := map[string]string{}
	for _, f := range plan.Files {
		if len(f.Parts) == 0 {
			continue
		}
		iv := string(f.Parts[0].IV)
		if other, dup := seen[iv]; dup {
			t.Fatalf("%s and %s share the counter block %x", f.Name, other, iv)
		}
		seen[iv] = f.Name
		if f.Size != f.Parts[0].Len {
			t.Errorf("%s: CTR changed the size %d -> %d", f.Name, f.Parts[0].Len, f.Size)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("%d segments with counters, want 3", len(seen))
	}
}

// TestPlanPreviewStaysClear: segments starting before preview_duration
// are clear parts; the one starting exactly at it is encrypted.
func TestPlanPreviewStaysClear(t *testing.T) {
	st := planStore(t, ladderFiles())
	rec := planRecord("vod/low/index.m3u8", crypto.AES128CBC)
	rec.PreviewDuration = 4 // a.ts starts at 0, b.ts at 4
	plan, terr := buildPlan(context.Background(), st, rec, planReads)
	if terr != nil {
		t.Fatal(terr)
	}
	files := filesByName(plan)
	if files["a.ts"].Parts[0].Encrypt || files["a.ts"].Size != 1000 {
		t.Errorf("a.ts (starts at 0 < 4 s) is not clear: %+v", files["a.ts"])
	}
	if !files["b.ts"].Parts[0].Encrypt {
		t.Errorf("b.ts (starts at 4 s) is clear")
	}
}

// TestPlanFailures: each broken input fails with its MPC code and names
// what is wrong.
func TestPlanFailures(t *testing.T) {
	for _, c := range []struct {
		name, input string
		files       map[string]string
		code, names string
	}{
		{"missing segment", "p.m3u8", map[string]string{"p.m3u8": threeSegments, "a.ts": "x", "b.ts": "x"}, CodeInputNotExist, "c.ts"},
		{"leaves the folder", "d/p.m3u8", map[string]string{"d/p.m3u8": "#EXTM3U\n#EXTINF:4,\n../x.ts\n#EXT-X-ENDLIST\n", "x.ts": "x"}, CodeInputFormat, "../x.ts"},
		{"live playlist", "p.m3u8", map[string]string{"p.m3u8": "#EXTM3U\n#EXTINF:4,\na.ts\n", "a.ts": "x"}, CodeInputFormat, "p.m3u8"},
		{"already encrypted", "p.m3u8", map[string]string{"p.m3u8": "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n", "a.ts": "x"}, CodeInputFormat, "already encrypted"},
		{"master naming a master", "m.m3u8", map[string]string{"m.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nn.m3u8\n", "n.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nm.m3u8\n"}, CodeInputFormat, "master"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, terr := buildPlan(context.Background(), planStore(t, c.files), planRecord(c.input, crypto.AES128CBC), planReads)
			if terr == nil {
				t.Fatal("planned; want a failure")
			}
			if terr.code != c.code || !strings.Contains(terr.msg, c.names) {
				t.Fatalf("got %v, want %s naming %q", terr, c.code, c.names)
			}
		})
	}
}

// planReads is the default number of reads a planning makes at once.
var planReads = tuning.Default().PlanReadsAtOnce
