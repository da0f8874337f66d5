package fs_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/control/hls"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// The shape tests take every playlist shape ffmpeg makes (plus the joins
// it cannot make by itself) through a real mount: upload, a task through
// control/encryptions, then each segment or byte range of the output is
// decrypted by openssl and compared with the source bytes, init sections
// must be byte-identical, and for AES-128-CBC ffmpeg must decode the
// mounted output to the source's framemd5. ffmpeg cannot decrypt
// METHOD=AES-128-CTR or SM4-CBC, so those are checked byte for byte only.

// shapeSet makes every shape once per test, under dir.
func shapeSet(t *testing.T, dir string) map[string]*sample.Shape {
	t.Helper()
	need(t, "ffmpeg (apt-get install ffmpeg)", haveCmd("ffmpeg"))
	need(t, "openssl", haveCmd("openssl"))
	makers := map[string]func(string) (*sample.Shape, error){
		"fmp4":        func(d string) (*sample.Shape, error) { return sample.MakeFMP4(d, 4) },
		"single-ts":   func(d string) (*sample.Shape, error) { return sample.MakeSingleFile(d, 4, false) },
		"single-fmp4": func(d string) (*sample.Shape, error) { return sample.MakeSingleFile(d, 4, true) },
		"renditions":  func(d string) (*sample.Shape, error) { return sample.MakeRenditions(d, 4) },
		"disc-ts":     func(d string) (*sample.Shape, error) { return sample.MakeDiscontinuity(d, 2, false) },
		"multimap":    func(d string) (*sample.Shape, error) { return sample.MakeDiscontinuity(d, 2, true) },
	}
	set := map[string]*sample.Shape{}
	for name, mk := range makers {
		s, err := mk(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		set[name] = s
	}
	return set
}

// shapeRequest is a request over media/<input>; alg "" leaves algorithm
// out (AES-128-CTR by default). extra is merged into "encryption".
func shapeRequest(alg string, s secret, input, outObject string, extra map[string]any) map[string]any {
	enc := map[string]string{"key": base64.StdEncoding.EncodeToString(s.key), "url": s.keyFile}
	if alg != "" {
		enc["algorithm"] = alg
	}
	encryption := map[string]any{"hls_encrypt": enc}
	for k, v := range extra {
		encryption[k] = v
	}
	return map[string]any{
		"input":      map[string]string{"bucket": "media", "location": "region1", "object": input},
		"output":     map[string]string{"bucket": "public", "location": "region1", "object": outObject},
		"encryption": encryption,
	}
}

// runShape creates a task and waits for it to succeed.
func (f *fixture) runShape(name string, req map[string]any) {
	f.t.Helper()
	id := f.create(name+".json", req)
	if v := f.wait(id); v.Status != control.Succeeded {
		f.t.Fatalf("task %s (%s): %s: %s", id, name, v.Status, v.Description)
	}
}

// TestShapes runs every shape against a real MinIO, one mount for all.
func TestShapes(t *testing.T) {
	needFUSE(t)
	srcDir := t.TempDir()
	set := shapeSet(t, srcDir)
	ladderDir, l := ladder(t)
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.MakeBucket(t, "public")
	upload(t, srv.Store(), "media", "shapes/", srcDir)
	upload(t, srv.Store(), "media", "ladder/", ladderDir)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	outRoot := f.path("buckets", "public")

	t.Run("ladder AES-128-CTR by default", func(t *testing.T) {
		f.t = t
		f.runShape("ctr", shapeRequest("", s, "ladder/master.m3u8", "enc/ctr", nil))
		ivs := map[string]string{}
		for _, v := range l.Variants {
			checkMediaBytes(t, ladderDir, filepath.Join(outRoot, "enc", "ctr"), v, "AES-128-CTR", s, ivs)
		}
		if len(ivs) < 8 {
			t.Fatalf("only %d CTR segments checked", len(ivs))
		}
	})
	t.Run("ladder SM4CBC", func(t *testing.T) {
		f.t = t
		f.runShape("sm4", shapeRequest("SM4CBC", s, "ladder/master.m3u8", "enc/sm4", nil))
		for _, v := range l.Variants {
			checkMediaBytes(t, ladderDir, filepath.Join(outRoot, "enc", "sm4"), v, "SM4-CBC", s, nil)
		}
	})
	for _, name := range []string{"fmp4", "multimap", "disc-ts", "single-ts", "single-fmp4", "renditions"} {
		t.Run(name+" AES-128-CBC", func(t *testing.T) {
			f.t = t
			f.runShape(name, shapeRequest("AES-128-CBC", s, "shapes/"+name+"/"+set[name].Top, "enc/"+name, nil))
			checkShape(t, filepath.Join(srcDir, name), filepath.Join(outRoot, "enc", name), set[name], "AES-128", s)
			if name == "renditions" {
				checkIFrameCopies(t, filepath.Join(outRoot, "enc", name))
			}
		})
	}
	for _, name := range []string{"multimap", "single-fmp4", "renditions"} {
		t.Run(name+" AES-128-CTR", func(t *testing.T) {
			f.t = t
			f.runShape(name+"-ctr", shapeRequest("AES-128-CTR", s, "shapes/"+name+"/"+set[name].Top, "enc/"+name+"-ctr", nil))
			ivs := map[string]string{}
			for _, m := range set[name].Media {
				checkMediaBytes(t, filepath.Join(srcDir, name), filepath.Join(outRoot, "enc", name+"-ctr"), m, "AES-128-CTR", s, ivs)
			}
		})
	}
	t.Run("single-ts with I-frame ranges inside the video ranges", func(t *testing.T) {
		f.t = t
		testSingleFileIFrames(t, f, srv.Store(), filepath.Join(srcDir, "single-ts"), s)
	})
	t.Run("preview_duration", func(t *testing.T) {
		f.t = t
		testPreview(t, f, ladderDir, l, s)
	})
	t.Run("bad playlists fail", func(t *testing.T) {
		f.t = t
		testBadPlaylists(t, f, srv.Store(), s)
	})
	t.Run("new source and task, no stale cache", func(t *testing.T) {
		f.t = t
		testNoStaleCache(t, f, srv.Store(), ladderDir, s)
	})
}

// TestShapesOnLocalStore: single-file fMP4 under SM4CBC and the fMP4 with
// two maps under the default algorithm, on the local-directory store.
func TestShapesOnLocalStore(t *testing.T) {
	needFUSE(t)
	srcDir := t.TempDir()
	shapeSet(t, srcDir)
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "shapes/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	s := newSecret(t)
	out := f.path("buckets", "public", "enc")
	f.runShape("sm4", shapeRequest("SM4CBC", s, "shapes/single-fmp4/index.m3u8", "enc/sm4", nil))
	checkMediaBytes(t, filepath.Join(srcDir, "single-fmp4"), filepath.Join(out, "sm4"), "index.m3u8", "SM4-CBC", s, nil)
	f.runShape("ctr", shapeRequest("", s, "shapes/multimap/index.m3u8", "enc/ctr", nil))
	checkMediaBytes(t, filepath.Join(srcDir, "multimap"), filepath.Join(out, "ctr"), "index.m3u8", "AES-128-CTR", s, map[string]string{})
}

// checkShape checks every media playlist's bytes, the master (if any)
// byte for byte, and that ffmpeg decodes the output like the source.
func checkShape(t *testing.T, srcDir, outDir string, sh *sample.Shape, method string, s secret) {
	t.Helper()
	for _, m := range sh.Media {
		checkMediaBytes(t, srcDir, outDir, m, method, s, nil)
	}
	if len(sh.Media) > 1 || sh.Media[0] != sh.Top {
		src, _ := os.ReadFile(filepath.Join(srcDir, sh.Top))
		out, err := os.ReadFile(filepath.Join(outDir, sh.Top))
		if err != nil || !bytes.Equal(src, out) {
			t.Fatalf("master playlist %s not served byte for byte (%v):\n%s", sh.Top, err, out)
		}
	}
	if !byteRanges(t, filepath.Join(srcDir, sh.Top)) {
		checkPlaysSameFrames(t, filepath.Join(srcDir, sh.Top), filepath.Join(outDir, sh.Top), 100)
	} else {
		checkPlaysOverHTTP(t, srcDir, outDir, sh.Top, s, 100)
	}
	// ffmpeg ignores EXT-X-I-FRAME-STREAM-INF: play each I-frame
	// playlist by itself (a few frames each).
	for _, m := range sh.Media {
		if strings.Contains(m, "iframes") {
			checkPlaysOverHTTP(t, srcDir, outDir, m, s, 4)
		}
	}
}

// checkPlaysOverHTTP plays a playlist of the output through an HTTP
// server in front of the mount. ffmpeg reading a local file seeks into it
// through its crypto layer, which takes the ciphertext block before a
// range as the range's IV (one CBC chain per file): wrong for
// EXT-X-BYTERANGE segments, which RFC 8216 encrypts one by one. Players
// reach byte ranges by ranged HTTP requests.
func checkPlaysOverHTTP(t *testing.T, srcDir, outDir, rel string, s secret, minFrames int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == s.keyFile {
			testutil.ServeKey(w, r, s.key)
			return
		}
		http.FileServer(http.Dir(outDir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	checkPlaysSameFrames(t, filepath.Join(srcDir, rel), srv.URL+"/"+rel, minFrames)
}

// checkPlaysSameFrames is checkPlays with one decoding thread: ffmpeg 5.1
// decodes a stream whose init section changes (two EXT-X-MAPs) with
// frame threads nondeterministically, even from the clear source.
func checkPlaysSameFrames(t *testing.T, src, out string, minFrames int) {
	t.Helper()
	want, err := sample.FrameMD5(src, "-threads", "1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := sample.FrameMD5(out, "-threads", "1", "-allowed_extensions", "ALL")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("ffmpeg decodes %s to other frames than the source", out)
	}
	if frames := len(segmentsOf([]byte(want))); frames < minFrames {
		t.Fatalf("framemd5 has %d frames, too few to mean anything (want >= %d):\n%s", frames, minFrames, want)
	}
}

// byteRanges reports whether a media playlist has EXT-X-BYTERANGE segments.
func byteRanges(t *testing.T, name string) bool {
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(data, []byte("#EXT-X-BYTERANGE:"))
}

// keyInForce is the EXT-X-KEY in force for a segment: "" method means none.
type keyInForce struct{ method, iv, uri string }

var (
	reMethod = regexp.MustCompile(`METHOD=([A-Z0-9-]+)`)
	reIV     = regexp.MustCompile(`,IV=0[xX]([0-9a-fA-F]{32})`)
	reURI    = regexp.MustCompile(`URI="([^"]*)"`)
)

// segmentKeys scans a media playlist and returns the key in force at each
// segment URI line, in order.
func segmentKeys(pl []byte) []keyInForce {
	var keys []keyInForce
	cur := keyInForce{}
	for _, l := range strings.Split(string(pl), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "#EXT-X-KEY:"):
			cur = keyInForce{}
			if m := reMethod.FindStringSubmatch(l); m != nil && m[1] != "NONE" {
				cur.method = m[1]
			}
			if m := reIV.FindStringSubmatch(l); m != nil {
				cur.iv = strings.ToLower(m[1])
			}
			if m := reURI.FindStringSubmatch(l); m != nil {
				cur.uri = m[1]
			}
		case l != "" && !strings.HasPrefix(l, "#"):
			keys = append(keys, cur)
		}
	}
	return keys
}

var opensslCipher = map[string]string{"AES-128": "aes-128-cbc", "AES-128-CTR": "aes-128-ctr", "SM4-CBC": "sm4-cbc"}

// checkMediaBytes checks one media playlist of a task's output against
// its source: every line kept (byte ranges aside), every segment under a
// key of the expected method and URI, decrypted by openssl to the source
// bytes (whole file or byte range), exact sizes, clear init sections. ivs,
// when not nil, collects CTR counter blocks across calls: a counter block
// used for two different pieces of plaintext fails the test.
func checkMediaBytes(t *testing.T, srcDir, outDir, rel, method string, s secret, ivs map[string]string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(srcDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(outDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	// I-frame playlists pointing into segments that another playlist
	// encrypts whole name copies of them: "seg0.ts" -> "seg0.iframes.ts".
	keepsEveryLine(t, rel, dropRanges(src), bytes.ReplaceAll(dropRanges(out), []byte(".iframes."), []byte(".")))
	sp, err := hls.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	op, err := hls.Parse(out)
	if err != nil {
		t.Fatalf("%s: output playlist does not parse: %v\n%s", rel, err, out)
	}
	if len(op.Segments) != len(sp.Segments) || len(op.Maps) != len(sp.Maps) {
		t.Fatalf("%s: %d segments and %d maps, source has %d and %d", rel, len(op.Segments), len(op.Maps), len(sp.Segments), len(sp.Maps))
	}
	files := &fileCache{t: t}
	dir := path.Dir(rel)
	for i, m := range sp.Maps {
		plain := files.piece(filepath.Join(srcDir, dir, m.URI), m.ByteRange)
		if got := files.piece(filepath.Join(outDir, dir, op.Maps[i].URI), op.Maps[i].ByteRange); !bytes.Equal(got, plain) {
			t.Fatalf("%s: init section %d (%s) is not the clear source", rel, i, m.URI)
		}
	}
	keys := segmentKeys(out)
	for i, seg := range sp.Segments {
		k := keys[i]
		if k.method != method || k.uri != s.keyFile {
			t.Fatalf("%s: segment %d (%s) under key %+v, want METHOD=%s,URI=%q", rel, i, seg.URI, k, method, s.keyFile)
		}
		plain := files.piece(filepath.Join(srcDir, dir, seg.URI), seg.ByteRange)
		ct := files.piece(filepath.Join(outDir, dir, op.Segments[i].URI), op.Segments[i].ByteRange)
		checkPiece(t, rel, i, op.Segments[i].SeqNo, k, s.key, plain, ct)
		if ivs != nil {
			where := path.Join(dir, seg.URI) + rangeString(seg.ByteRange)
			if prev, ok := ivs[k.iv]; ok && prev != where {
				t.Fatalf("CTR counter block %s used for %s and %s", k.iv, prev, where)
			}
			ivs[k.iv] = where
		}
	}
}

// checkPiece decrypts one segment (or range) with openssl.
func checkPiece(t *testing.T, rel string, i int, seqNo int64, k keyInForce, key, plain, ct []byte) {
	t.Helper()
	iv, _ := hex.DecodeString(k.iv)
	switch {
	case k.method == "AES-128-CTR" && len(iv) != 16:
		t.Fatalf("%s: CTR segment %d without its own IV", rel, i)
	case len(iv) == 0:
		iv = seqIV(int(seqNo))
	}
	wantSize := len(plain)
	if k.method != "AES-128-CTR" {
		wantSize += 16 - len(plain)%16
	}
	if len(ct) != wantSize {
		t.Fatalf("%s: segment %d is %d bytes, want %d", rel, i, len(ct), wantSize)
	}
	if got := opensslDecrypt(t, opensslCipher[k.method], key, iv, ct); !bytes.Equal(got, plain) {
		t.Fatalf("%s: segment %d: openssl %s decrypts it to other bytes than the source", rel, i, opensslCipher[k.method])
	}
}

// fileCache reads each file once (a single-file output is read whole,
// then sliced) and checks its size is what stat said before the read.
type fileCache struct {
	t     *testing.T
	files map[string][]byte
}

func (c *fileCache) piece(name string, br *hls.ByteRange) []byte {
	c.t.Helper()
	data, ok := c.files[name]
	if !ok {
		st, err := os.Stat(name)
		if err != nil {
			c.t.Fatal(err)
		}
		if data, err = os.ReadFile(name); err != nil {
			c.t.Fatal(err)
		}
		if int64(len(data)) != st.Size() {
			c.t.Fatalf("%s: stat says %d bytes, reading gives %d", name, st.Size(), len(data))
		}
		if c.files == nil {
			c.files = map[string][]byte{}
		}
		c.files[name] = data
	}
	if br == nil {
		return data
	}
	if br.Off+br.Len > int64(len(data)) {
		c.t.Fatalf("%s: range %d@%d past its end (%d bytes)", name, br.Len, br.Off, len(data))
	}
	return data[br.Off : br.Off+br.Len]
}

func rangeString(br *hls.ByteRange) string {
	if br == nil {
		return ""
	}
	return "@" + strings.Join([]string{itoa(br.Off), itoa(br.Len)}, ":")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// dropRanges removes what a byte-range rewrite may change, for
// keepsEveryLine: EXT-X-BYTERANGE lines and EXT-X-MAP lines with a range.
func dropRanges(pl []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(pl), "\n") {
		if strings.HasPrefix(l, "#EXT-X-BYTERANGE:") || strings.HasPrefix(l, "#EXT-X-MAP:") && strings.Contains(l, "BYTERANGE=") {
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

// testPreview: with preview_duration 4 the 2-second segments starting at 0
// and 2 stay clear (no key before them), the one starting at 4 and later
// ones are encrypted, and ffmpeg decodes the whole stream to the source's
// frames. The request also carries multidrm, which is validated and kept
// but changes nothing.
func testPreview(t *testing.T, f *fixture, srcDir string, l *sample.Ladder, s secret) {
	drm := map[string]any{"emi": 16418, "streaming_mode": "HLS", "drm_list": []string{"PLAYREADY"}, "encrypt_audio": 1}
	f.runShape("preview", shapeRequest("AES-128-CBC", s, "ladder/master.m3u8", "enc/preview",
		map[string]any{"preview_duration": 4, "multidrm": drm}))
	outDir := f.path("buckets", "public", "enc", "preview")
	for _, v := range l.Variants {
		src, _ := os.ReadFile(filepath.Join(srcDir, v))
		out, err := os.ReadFile(filepath.Join(outDir, v))
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := hls.Parse(src)
		keys := segmentKeys(out)
		clear := 0
		for i, seg := range sp.Segments {
			plain, _ := os.ReadFile(filepath.Join(srcDir, path.Dir(v), seg.URI))
			got, err := os.ReadFile(filepath.Join(outDir, path.Dir(v), seg.URI))
			if err != nil {
				t.Fatal(err)
			}
			if seg.Start < 4 {
				clear++
				if keys[i].method != "" || !bytes.Equal(got, plain) {
					t.Fatalf("%s: segment %d starts at %gs, before the preview end, but is not clear (key %+v)", v, i, seg.Start, keys[i])
				}
				continue
			}
			if keys[i].method != "AES-128" {
				t.Fatalf("%s: segment %d starts at %gs, after the preview, but has key %+v", v, i, seg.Start, keys[i])
			}
			checkPiece(t, v, i, seg.SeqNo, keys[i], s.key, plain, got)
		}
		if clear != 2 || clear == len(sp.Segments) {
			t.Fatalf("%s: %d clear segments of %d, want 2 (0-2s, 2-4s)", v, clear, len(sp.Segments))
		}
	}
	checkPlays(t, filepath.Join(srcDir, l.Master), filepath.Join(outDir, l.Master))
}

// testBadPlaylists: URIs leaving the input folder, absolute URLs and live
// playlists make the task FAILED with MPC.10066 and the reason.
func testBadPlaylists(t *testing.T, f *fixture, st store.Store, s secret) {
	const head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
	cases := []struct {
		name, playlist, want string
		more                 map[string]string
	}{
		{"escape", head + "#EXTINF:2,\n../shapes/disc-ts/a/seg0.ts\n#EXT-X-ENDLIST\n", "outside the input folder", nil},
		{"rooted", head + "#EXTINF:2,\n/shapes/disc-ts/a/seg0.ts\n#EXT-X-ENDLIST\n", "/shapes/disc-ts/a/seg0.ts", nil},
		{"http", head + "#EXTINF:2,\nhttp://example.com/seg0.ts\n#EXT-X-ENDLIST\n", "http://example.com/seg0.ts", nil},
		{"master-escape", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n../ladder/v0/index.m3u8\n", "outside the input folder", nil},
		{"live", head + "#EXTINF:2,\nseg.ts\n", "live", nil},
		{"missing", head + "#EXTINF:2,\nnope.ts\n#EXT-X-ENDLIST\n", "nope.ts", nil},
		// Two media playlists, one using a segment whole, the other a
		// byte range of it (I-frame playlists get a copy instead).
		{"whole-and-range", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n" +
			"#EXT-X-STREAM-INF:BANDWIDTH=100\nr.m3u8\n", "used both as a whole segment and by EXT-X-BYTERANGE", map[string]string{
			"v.m3u8": head + "#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n",
			"r.m3u8": head + "#EXTINF:2,\n#EXT-X-BYTERANGE:10@0\nseg.ts\n#EXT-X-ENDLIST\n"}},
	}
	for _, c := range cases {
		if err := st.Put(t.Context(), "media", "bad/"+c.name+"/index.m3u8", []byte(c.playlist)); err != nil {
			t.Fatal(err)
		}
		if c.more == nil {
			c.more = map[string]string{}
		}
		c.more["seg.ts"] = "not really a segment"
		for name, data := range c.more {
			if err := st.Put(t.Context(), "media", "bad/"+c.name+"/"+name, []byte(data)); err != nil {
				t.Fatal(err)
			}
		}
		id := f.create("bad-"+c.name+".json", shapeRequest("AES-128-CBC", s, "bad/"+c.name+"/index.m3u8", "enc/bad-"+c.name, nil))
		v := f.wait(id)
		t.Logf("%s: %s", c.name, v.Description)
		if v.Status != control.Failed || !strings.HasPrefix(v.Description, "MPC.10") || !strings.Contains(v.Description, c.want) {
			t.Errorf("%s: task %s %s %q, want FAILED naming %q", c.name, id, v.Status, v.Description, c.want)
		}
		if _, err := os.Stat(f.path("buckets", "public", "enc", "bad-"+c.name)); !os.IsNotExist(err) {
			t.Errorf("%s: a FAILED task shows outputs (%v)", c.name, err)
		}
	}
}

// testNoStaleCache: outputs keep their page cache across opens, so a
// re-uploaded source with a new task over the same output path must get a
// new inode and serve the new ciphertext, never the cached old one. The
// plain object under buckets/ likewise changes inode with its ETag.
func testNoStaleCache(t *testing.T, f *fixture, st store.Store, ladderDir string, s secret) {
	const seg = "v1/seg000.ts"
	orig, _ := os.ReadFile(filepath.Join(ladderDir, seg))
	upload(t, st, "media", "cache/", ladderDir)
	out := f.path("buckets", "public", "enc", "cache", seg)
	obj := f.path("buckets", "media", "cache", seg)
	f.runShape("cache1", shapeRequest("AES-128-CBC", s, "cache/master.m3u8", "enc/cache", nil))
	ino1, ct1 := readWithIno(t, out)
	objIno1, objData := readWithIno(t, obj)
	if !bytes.Equal(objData, orig) || !bytes.Equal(opensslDecrypt(t, "aes-128-cbc", s.key, seqIV(0), ct1), orig) {
		t.Fatal("first task's output (or the object) does not match the source")
	}
	readWithIno(t, out) // a second open: served from the kept page cache

	changed := bytes.Repeat([]byte{0x47}, len(orig)+1000) // new size and bytes
	if err := st.Put(t.Context(), "media", "cache/"+seg, changed); err != nil {
		t.Fatal(err)
	}
	// No pause: the new task usually lands in the same second as the
	// first, and must still win (control orders tasks by creation instant).
	f.runShape("cache2", shapeRequest("AES-128-CBC", s, "cache/master.m3u8", "enc/cache", nil))
	ino2, ct2 := readWithIno(t, out)
	if ino2 == ino1 {
		t.Errorf("output inode %d unchanged after a new task over a changed source", ino1)
	}
	if got := opensslDecrypt(t, "aes-128-cbc", s.key, seqIV(0), ct2); !bytes.Equal(got, changed) {
		t.Fatalf("after re-upload and a new task the output decrypts to %d bytes, not the new %d-byte source (stale cache?)", len(got), len(changed))
	}
	objIno2, objData2 := readEventually(t, obj, changed)
	if objIno2 == objIno1 || !bytes.Equal(objData2, changed) {
		t.Fatalf("object %s: inode %d -> %d, new content %v", seg, objIno1, objIno2, bytes.Equal(objData2, changed))
	}
}

// readWithIno opens, stats and reads a file through the mount.
func readWithIno(t *testing.T, name string) (uint64, []byte) {
	t.Helper()
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	if _, err := data.ReadFrom(fh); err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino, data.Bytes()
}

// readEventually reads a store object through the mount until it shows
// want: the kernel may trust a name (and so the old version's node) for
// the entry timeout (1 s), and reading that node fails with EIO once the
// object has changed: never bytes of the other version.
func readEventually(t *testing.T, name string, want []byte) (uint64, []byte) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		data, err := os.ReadFile(name)
		if err == nil && bytes.Equal(data, want) || time.Now().After(deadline) {
			return readWithIno(t, name)
		}
	}
}

// checkIFrameCopies: the Apple-style I-frame playlist (ranges inside the
// video segments, which video/index.m3u8 encrypts whole) names copies of
// the segments, listed next to them; ffmpeg's own I-frame file keeps its
// name, its ranges encrypted in place.
func checkIFrameCopies(t *testing.T, outDir string) {
	t.Helper()
	apple, err := os.ReadFile(filepath.Join(outDir, "video", "iframes.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	own, _ := os.ReadFile(filepath.Join(outDir, "iframes", "index.m3u8"))
	if got := segmentsOf(apple); len(got) == 0 || got[0] != "seg0.iframes.ts" {
		t.Errorf("Apple-style I-frame playlist names %v, want the copies seg0.iframes.ts, ...", got)
	}
	if got := segmentsOf(own); len(got) == 0 || got[0] != "index.ts" {
		t.Errorf("ffmpeg's I-frame playlist names %v, want its own index.ts", got)
	}
	names, err := os.ReadDir(filepath.Join(outDir, "video"))
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	for _, e := range names {
		list = append(list, e.Name())
	}
	if !strings.Contains(strings.Join(list, " "), "seg0.iframes.ts") {
		t.Errorf("video/ lists %v, without the I-frame copies", list)
	}
}

// testSingleFileIFrames: an I-frame playlist whose ranges lie inside the
// ranges the video playlist uses in the same single file (Apple's
// single-file layout) is served from a copy, index.iframes.ts, with each
// I-frame range encrypted on its own; the video ranges stay as they were.
func testSingleFileIFrames(t *testing.T, f *fixture, st store.Store, dir string, s secret) {
	src, err := os.ReadFile(filepath.Join(dir, "index.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := hls.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n")
	for _, seg := range sp.Segments {
		fmt.Fprintf(&b, "#EXTINF:1,\n#EXT-X-BYTERANGE:%d@%d\nindex.ts\n", min(seg.ByteRange.Len, 188*20), seg.ByteRange.Off)
	}
	b.WriteString("#EXT-X-ENDLIST\n")
	iframes := []byte(b.String())
	master := []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nindex.m3u8\n" +
		`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=10000,URI="iframes.m3u8"` + "\n")
	work := t.TempDir()
	for name, data := range map[string][]byte{"master.m3u8": master, "iframes.m3u8": iframes, "index.m3u8": src} {
		if err := st.Put(t.Context(), "media", "shapes/single-ts/"+name, data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "index.ts"), filepath.Join(work, "index.ts")); err != nil {
		t.Fatal(err)
	}
	f.runShape("single-iframes", shapeRequest("AES-128-CBC", s, "shapes/single-ts/master.m3u8", "enc/single-iframes", nil))
	out := f.path("buckets", "public", "enc", "single-iframes")
	checkMediaBytes(t, work, out, "index.m3u8", "AES-128", s, nil)
	checkMediaBytes(t, work, out, "iframes.m3u8", "AES-128", s, nil)
	pl, _ := os.ReadFile(filepath.Join(out, "iframes.m3u8"))
	if got := segmentsOf(pl); len(got) != len(sp.Segments) || got[0] != "index.iframes.ts" {
		t.Fatalf("I-frame playlist names %v, want the copy index.iframes.ts", got)
	}
}
