package fs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/control/dash"
	"github.com/mpcfs/mpcfs/control/hls"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// TestMultiDRM takes DASH (cenc and cbcs) and fMP4 HLS through a real
// mount over MinIO with multidrm requests: for every output segment
// ffmpeg decrypts init+segment with the key to the source's frames (a
// wrong key does not); the MPD keeps the source's every element and adds
// ContentProtection; random preads equal a sequential read; and the
// vendor's own example request on MPEG-TS input still makes AES-128 HLS,
// saying why multidrm was not applied.
func TestMultiDRM(t *testing.T) {
	needFUSE(t)
	need(t, "ffmpeg (apt-get install ffmpeg)", haveCmd("ffmpeg"))
	srcDir := t.TempDir()
	d, err := sample.MakeDASH(filepath.Join(srcDir, "dash"), 3, false)
	if err != nil {
		t.Fatal(err)
	}
	fmp4, err := sample.MakeFMP4(filepath.Join(srcDir, "fmp4"), 3)
	if err != nil {
		t.Fatal(err)
	}
	single, err := sample.MakeDASHSingleFile(filepath.Join(srcDir, "single"), 3)
	if err != nil {
		t.Fatal(err)
	}
	dtl, err := sample.MakeDASH(filepath.Join(srcDir, "timeline"), 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sample.MakeSingleFile(filepath.Join(srcDir, "sfhls"), 3, true); err != nil {
		t.Fatal(err)
	}
	ladderDir, _ := ladder(t)
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.MakeBucket(t, "public")
	upload(t, srv.Store(), "media", "src/", srcDir)
	upload(t, srv.Store(), "media", "ladder/", ladderDir)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	wrong := bytes.Repeat([]byte{0x5a}, 16)

	for _, tc := range []struct {
		name   string
		emi    int
		scheme string
	}{{"cenc", 16420, "cenc"}, {"cbcs", 16418, "cbcs"}} {
		t.Run("DASH "+tc.name, func(t *testing.T) {
			f.t = t
			drm := map[string]any{"emi": tc.emi, "content_id": "movie-" + tc.name, "streaming_mode": "DASH",
				"drm_list": []string{"WIDEVINE", "PLAYREADY", "CHINA_DRM", "CLEARKEY"}, "encrypt_audio": 1}
			req := shapeRequest("", s, "src/dash/manifest.mpd", "drm/"+tc.name, map[string]any{"multidrm": drm})
			id := f.create("dash-"+tc.name+".json", req)
			v := f.wait(id)
			if v.Status != control.Succeeded {
				t.Fatalf("task: %s: %s", v.Status, v.Description)
			}
			kid, _ := cenc.KIDFromContentID("movie-" + tc.name)
			if v.KID != cenc.UUIDString(kid) {
				t.Fatalf("task kid %q, want %q (derived from content_id)", v.KID, cenc.UUIDString(kid))
			}
			raw, _ := os.ReadFile(f.path("control", "tasks", id+".json"))
			if bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(s.key))) || bytes.Contains(raw, []byte(hex.EncodeToString(s.key))) {
				t.Fatal("the task file shows the key")
			}
			out := f.path("buckets", "public", "drm", tc.name)
			checkMPD(t, filepath.Join(srcDir, "dash", d.MPD), filepath.Join(out, d.MPD), tc.scheme, v.KID)
			for _, r := range d.Reps {
				for i, seg := range r.Segments {
					checkCENCSegment(t, filepath.Join(srcDir, "dash"), out, r.Init, seg, s.key, i == 0, wrong)
				}
			}
			checkPreads(t, filepath.Join(out, d.Reps[0].Segments[1]))
		})
	}

	t.Run("DASH single file cbcs", func(t *testing.T) {
		f.t = t
		drm := map[string]any{"emi": 16418, "streaming_mode": "DASH", "drm_list": []string{"PLAYREADY", "CLEARKEY"}}
		f.runShape("single", shapeRequest("", s, "src/single/manifest.mpd", "drm/single", map[string]any{"multidrm": drm}))
		out := f.path("buckets", "public", "drm", "single")
		srcMPD, _ := dash.Parse(testutil.ReadFile(t, filepath.Join(srcDir, "single", single.MPD)))
		outMPD, err := dash.Parse(testutil.ReadFile(t, filepath.Join(out, single.MPD)))
		if err != nil {
			t.Fatal(err)
		}
		srcReps, _ := srcMPD.Representations(func(string) bool { return true })
		outReps, _ := outMPD.Representations(func(string) bool { return true })
		for i, sr := range srcReps {
			or := outReps[i]
			srcFile := testutil.ReadFile(t, filepath.Join(srcDir, "single", sr.File))
			outFile := testutil.ReadFile(t, filepath.Join(out, or.File))
			cut := func(b []byte, r *dash.RangeAttr) []byte { return b[r.First : r.Last+1] }
			for j := 1; j < len(sr.Ranges); j++ {
				if sr.Ranges[j].Attr == "indexRange" {
					if string(cut(outFile, or.Ranges[j])[4:8]) != "sidx" {
						t.Fatalf("rep %s: indexRange %d-%d is not a sidx", or.ID, or.Ranges[j].First, or.Ranges[j].Last)
					}
					continue
				}
				audio := false
				if ct, _ := sr.AS.Get("contentType"); ct == "audio" {
					audio = true
				}
				var negative []byte
				if j == 1 && !audio {
					negative = wrong
				}
				checkDecryptsTo(t, fmt.Sprintf("rep %s range %s", or.ID, or.Ranges[j].Attr),
					cut(srcFile, sr.Ranges[0]), cut(srcFile, sr.Ranges[j]),
					cut(outFile, or.Ranges[0]), cut(outFile, or.Ranges[j]), s.key, negative)
				// encrypt_audio absent (0): audio stays clear
				if j == 1 && audio && !bytes.Equal(cut(srcFile, sr.Ranges[j]), cut(outFile, or.Ranges[j])) {
					t.Fatalf("rep %s: audio changed though encrypt_audio is 0", or.ID)
				}
			}
			// The whole file, decrypted by mp4ff (which also reads every
			// sidx), plays as the source file does.
			checkWholeFileDecrypts(t, filepath.Join(srcDir, "single", sr.File), outFile, s.key)
		}
		checkPreads(t, filepath.Join(out, outReps[0].File))
	})

	t.Run("fMP4 HLS cenc", func(t *testing.T) {
		f.t = t
		drm := map[string]any{"streaming_mode": "HLS", "drm_list": []string{"WIDEVINE", "PLAYREADY", "CLEARKEY"}}
		f.runShape("hls-cenc", shapeRequest("AES-128-CBC", s, "src/fmp4/index.m3u8", "drm/hls", map[string]any{"multidrm": drm}))
		out := f.path("buckets", "public", "drm", "hls")
		srcPl, _ := os.ReadFile(filepath.Join(srcDir, "fmp4", fmp4.Top))
		pl, err := os.ReadFile(filepath.Join(out, fmp4.Top))
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var rest []string
		for _, l := range strings.Split(string(pl), "\n") {
			if strings.HasPrefix(l, "#EXT-X-KEY:") {
				keys = append(keys, l)
				continue
			}
			rest = append(rest, l)
		}
		if strings.Join(rest, "\n") != string(srcPl) {
			t.Fatalf("playlist changed beyond the EXT-X-KEY lines:\n%s", pl)
		}
		if len(keys) != 3 {
			t.Fatalf("%d EXT-X-KEY lines, want one per DRM:\n%s", len(keys), pl)
		}
		for i, format := range []string{"urn:uuid:" + cenc.WidevineSystemID, "com.microsoft.playready", "identity"} {
			if !strings.Contains(keys[i], "METHOD=SAMPLE-AES-CTR,") || !strings.Contains(keys[i], `KEYFORMAT="`+format+`"`) || !strings.Contains(keys[i], "KEYID=0x") {
				t.Fatalf("EXT-X-KEY %d: %s", i, keys[i])
			}
		}
		p, _ := hls.Parse(srcPl)
		for i, seg := range p.Segments {
			checkCENCSegment(t, filepath.Join(srcDir, "fmp4"), out, p.Maps[0].URI, seg.URI, s.key, i == 0, wrong)
		}
	})

	t.Run("DASH SegmentTimeline cenc, encrypt_audio 0", func(t *testing.T) {
		f.t = t
		drm := map[string]any{"streaming_mode": "DASH", "drm_list": []string{"WIDEVINE"}}
		f.runShape("timeline", shapeRequest("", s, "src/timeline/manifest.mpd", "drm/timeline", map[string]any{"multidrm": drm}))
		out := f.path("buckets", "public", "drm", "timeline")
		mpd := testutil.ReadFile(t, filepath.Join(out, dtl.MPD))
		if !bytes.Contains(mpd, []byte("<SegmentTimeline")) || bytes.Count(mpd, []byte("<ContentProtection ")) != 2 {
			t.Fatalf("want a SegmentTimeline and 2 ContentProtection (video only):\n%s", mpd)
		}
		for _, r := range dtl.Reps {
			for i, seg := range r.Segments {
				if !r.Video {
					if !bytes.Equal(testutil.ReadFile(t, filepath.Join(srcDir, "timeline", seg)), testutil.ReadFile(t, filepath.Join(out, seg))) {
						t.Fatalf("audio segment %s changed though encrypt_audio is absent", seg)
					}
					continue
				}
				checkCENCSegment(t, filepath.Join(srcDir, "timeline"), out, r.Init, seg, s.key, i == 0, wrong)
			}
		}
	})

	t.Run("single-file fMP4 HLS cenc", func(t *testing.T) {
		f.t = t
		drm := map[string]any{"streaming_mode": "HLS", "drm_list": []string{"PLAYREADY", "CLEARKEY"}, "encrypt_audio": 1}
		f.runShape("sf-hls", shapeRequest("", s, "src/sfhls/index.m3u8", "drm/sfhls", map[string]any{"multidrm": drm}))
		out := f.path("buckets", "public", "drm", "sfhls")
		srcPl, _ := hls.Parse(testutil.ReadFile(t, filepath.Join(srcDir, "sfhls", "index.m3u8")))
		outData := testutil.ReadFile(t, filepath.Join(out, "index.m3u8"))
		outPl, err := hls.Parse(outData)
		if err == nil && strings.Count(string(outData), "#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,") != 2 {
			err = fmt.Errorf("want 2 EXT-X-KEY lines")
		}
		if err != nil {
			t.Fatalf("%v:\n%s", err, outData)
		}
		srcFile := testutil.ReadFile(t, filepath.Join(srcDir, "sfhls", srcPl.Maps[0].URI))
		outFile := testutil.ReadFile(t, filepath.Join(out, outPl.Maps[0].URI))
		cut := func(b []byte, r *hls.ByteRange) []byte { return b[r.Off : r.Off+r.Len] }
		for i := range srcPl.Segments {
			var negative []byte
			if i == 0 {
				negative = wrong
			}
			checkDecryptsTo(t, fmt.Sprintf("segment %d (its new range)", i),
				cut(srcFile, srcPl.Maps[0].ByteRange), cut(srcFile, srcPl.Segments[i].ByteRange),
				cut(outFile, outPl.Maps[0].ByteRange), cut(outFile, outPl.Segments[i].ByteRange), s.key, negative)
		}
	})

	t.Run("bad multidrm inputs FAIL with the reason", func(t *testing.T) {
		f.t = t
		ctx := context.Background()
		srv.Store().Put(ctx, "media", "bad/broken.mpd", []byte("<MPD><Period>"))
		srv.Store().Put(ctx, "media", "bad/missing.mpd", []byte(`<MPD type="static" mediaPresentationDuration="PT2S"><Period><AdaptationSet>`+
			`<Representation id="v"><SegmentTemplate duration="1" initialization="i.mp4" media="s$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>`))
		dashDRM := map[string]any{"multidrm": map[string]any{"streaming_mode": "DASH", "drm_list": []string{"WIDEVINE"}}}
		for _, c := range []struct {
			name, input string
			extra       map[string]any
			want        string
		}{
			{"mode", "src/dash/manifest.mpd", map[string]any{"multidrm": map[string]any{"streaming_mode": "HLS", "drm_list": []string{"WIDEVINE"}}}, "streaming_mode"},
			{"no-multidrm", "src/dash/manifest.mpd", nil, "needs encryption.multidrm"},
			{"broken", "bad/broken.mpd", dashDRM, "ends inside an element"},
			{"missing", "bad/missing.mpd", dashDRM, "s1.m4s"},
		} {
			id := f.create("bad-"+c.name+".json", shapeRequest("", s, c.input, "drm/bad-"+c.name, c.extra))
			v := f.wait(id)
			if v.Status != control.Failed || !strings.HasPrefix(v.Description, control.CodeInputFormat) || !strings.Contains(v.Description, c.want) {
				t.Errorf("%s: %s %q, want FAILED %s naming %q", c.name, v.Status, v.Description, control.CodeInputFormat, c.want)
			}
		}
	})

	t.Run("vendor example on MPEG-TS", func(t *testing.T) {
		f.t = t
		drm := map[string]any{"emi": 16420, "streaming_mode": "HLS", "drm_list": []string{"PLAYREADY"}}
		req := shapeRequest("AES-128-CBC", s, "ladder/master.m3u8", "drm/ts", map[string]any{"multidrm": drm})
		id := f.create("ts.json", req)
		v := f.wait(id)
		if v.Status != control.Succeeded || !strings.Contains(v.Description, "multidrm was not applied") ||
			!strings.Contains(v.Description, "MPEG-TS") {
			t.Fatalf("task %s: %s", v.Status, v.Description)
		}
		pl, _ := os.ReadFile(f.path("buckets", "public", "drm", "ts", "v0", "index.m3u8"))
		if !strings.Contains(string(pl), "METHOD=AES-128,") {
			t.Fatalf("TS output is not AES-128 HLS:\n%s", pl)
		}
		checkPlays(t, filepath.Join(ladderDir, "master.m3u8"), f.path("buckets", "public", "drm", "ts", "master.m3u8"))
	})
}

// checkCENCSegment decrypts output init+segment with ffmpeg and compares
// its frames with the source's; negative: with a wrong key they differ.
func checkCENCSegment(t *testing.T, srcDir, outDir, init, seg string, key []byte, negative bool, wrong []byte) {
	t.Helper()
	srcInit, srcSeg := testutil.ReadFile(t, filepath.Join(srcDir, init)), testutil.ReadFile(t, filepath.Join(srcDir, seg))
	outInit, outSeg := testutil.ReadFile(t, filepath.Join(outDir, init)), testutil.ReadFile(t, filepath.Join(outDir, seg))
	if bytes.Equal(bytes.Join([][]byte{srcInit, srcSeg}, nil), bytes.Join([][]byte{outInit, outSeg}, nil)) {
		t.Fatalf("%s: output equals the source", seg)
	}
	if !negative {
		wrong = nil
	}
	checkDecryptsTo(t, seg, srcInit, srcSeg, outInit, outSeg, key, wrong)
}

// checkDecryptsTo checks that ffmpeg decrypts the output init section
// and one fragment with key to the frames of the source's; with wrong
// (when not nil) it must not.
func checkDecryptsTo(t *testing.T, what string, srcInit, srcFrag, outInit, outFrag, key, wrong []byte) {
	t.Helper()
	work := t.TempDir()
	write := func(name string, parts ...[]byte) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src, out := write("src.mp4", srcInit, srcFrag), write("out.mp4", outInit, outFrag)
	want, err := sample.FrameMD5(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sample.FrameMD5(out, "-decryption_key", hex.EncodeToString(key))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s: ffmpeg decrypts to other frames than the source's", what)
	}
	if wrong != nil {
		if bad, _ := sample.FrameMD5(out, "-decryption_key", hex.EncodeToString(wrong)); bad == want {
			t.Fatalf("%s: a wrong key decrypts to the source's frames", what)
		}
	}
}

// checkWholeFileDecrypts decrypts a whole single-file output with mp4ff
// and checks ffmpeg decodes it to the source file's frames; the sidx
// sizes must add up to the file.
func checkWholeFileDecrypts(t *testing.T, srcPath string, out []byte, key []byte) {
	t.Helper()
	f, err := mp4.DecodeFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var sidxTotal, segTotal uint64
	for _, seg := range f.Segments {
		for _, sx := range seg.Sidxs {
			for _, r := range sx.SidxRefs {
				sidxTotal += uint64(r.ReferencedSize)
			}
			segTotal += seg.Size() - sx.Size()
		}
	}
	if sidxTotal == 0 || sidxTotal != segTotal {
		t.Fatalf("sidx references add up to %d bytes, the fragments are %d", sidxTotal, segTotal)
	}
	di, err := mp4.DecryptInit(f.Init)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range f.Segments {
		if err := mp4.DecryptSegment(seg, di, key); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "clear.mp4")
	var buf bytes.Buffer
	if err := f.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, buf.Bytes(), 0o644)
	want, err := sample.FrameMD5(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sample.FrameMD5(p)
	if err != nil || got != want {
		t.Fatalf("%s: mp4ff-decrypted output decodes to other frames (%v)", srcPath, err)
	}
}

// checkPreads: random preads of a fresh CENC output through the mount
// equal the same bytes of a whole sequential read.
func checkPreads(t *testing.T, p string) {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	type read struct {
		off int64
		b   []byte
	}
	var reads []read
	for i := 0; i < 40; i++ {
		off := rand.Int63n(st.Size())
		b := make([]byte, min(int64(1+rand.Intn(20000)), st.Size()-off))
		if _, err := fh.ReadAt(b, off); err != nil {
			t.Fatalf("pread %d@%d: %v", len(b), off, err)
		}
		reads = append(reads, read{off, b})
	}
	whole := testutil.ReadFile(t, p)
	if int64(len(whole)) != st.Size() {
		t.Fatalf("read %d bytes, stat says %d", len(whole), st.Size())
	}
	for _, r := range reads {
		if !bytes.Equal(r.b, whole[r.off:r.off+int64(len(r.b))]) {
			t.Fatalf("pread %d@%d differs from the sequential read", len(r.b), r.off)
		}
	}
}

// checkMPD: the output MPD is the source's with ContentProtection
// elements (and their namespaces) added to each AdaptationSet: one
// mp4protection with the KID, one per DRM with a pssh.
func checkMPD(t *testing.T, srcPath, outPath, scheme, kid string) {
	t.Helper()
	src, err := dash.Parse(testutil.ReadFile(t, srcPath))
	if err != nil {
		t.Fatal(err)
	}
	outData := testutil.ReadFile(t, outPath)
	out, err := dash.Parse(outData)
	if err != nil {
		t.Fatalf("output MPD: %v", err)
	}
	var sets int
	for _, p := range out.Root.Children("Period") {
		for _, as := range p.Children("AdaptationSet") {
			cps := as.Children("ContentProtection")
			if len(cps) != 5 {
				t.Fatalf("AdaptationSet has %d ContentProtection, want 5:\n%s", len(cps), outData)
			}
			if v, _ := cps[0].Get("value"); v != scheme {
				t.Fatalf("mp4protection value %q, want %q", v, scheme)
			}
			var gotKID string
			for _, a := range cps[0].Attr {
				if a.Name.Space == "cenc" && a.Name.Local == "default_KID" {
					gotKID = a.Value
				}
			}
			if gotKID != kid {
				t.Fatalf("cenc:default_KID %q, want %q", gotKID, kid)
			}
			sets++
			// Drop what was added: the rest must be the source.
			var kept []any
			for _, k := range as.Kids {
				if n, ok := k.(*dash.Node); ok && n.Name.Local == "ContentProtection" {
					continue
				}
				kept = append(kept, k)
			}
			as.Kids = kept
		}
	}
	if sets != 2 {
		t.Fatalf("%d AdaptationSets protected, want 2 (video, and audio with encrypt_audio 1)", sets)
	}
	var attrs []xml.Attr
	for _, a := range out.Root.Attr {
		if a.Name.Space == "xmlns" && (a.Name.Local == "cenc" || a.Name.Local == "mspr" || a.Name.Local == "clearkey") {
			continue
		}
		attrs = append(attrs, a)
	}
	out.Root.Attr = attrs
	// The indentation the insertion added is whitespace: compare with
	// runs of whitespace folded.
	norm := func(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
	if norm(out.Bytes()) != norm(src.Bytes()) {
		t.Fatalf("output MPD differs from the source beyond ContentProtection:\n%s", out.Bytes())
	}
	if !bytes.Contains(src.Bytes(), []byte("xsi:schemaLocation=")) {
		t.Fatal("the source MPD lost its prefixed attributes in the round trip")
	}
}
