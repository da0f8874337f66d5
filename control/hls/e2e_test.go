package hls

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
)

// TestFFmpegPlaysRewritten is the end-to-end check: real ffmpeg output is
// encrypted piece by piece (AES-128-CBC, PKCS#7, one piece per segment or
// init section), the playlist is rewritten, and ffmpeg playing it over HTTP
// must decode exactly the frames it decodes from the clear source. A key in
// the wrong place (or a missing METHOD=NONE) makes ffmpeg decrypt a piece
// with the wrong key, which changes or loses frames. HLS_E2E_DIR=dir keeps
// the files for a look.
func TestFFmpegPlaysRewritten(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping ffmpeg end-to-end test")
	}
	testutil.NeedCmd(t, "ffmpeg")
	dir := t.TempDir()
	if d := os.Getenv("HLS_E2E_DIR"); d != "" {
		dir = d
	}
	genSources(t, dir)
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".key") {
			key, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path.Clean(r.URL.Path))))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			testutil.ServeKey(w, r, key)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ka := &KeyTag{Method: "AES-128", URI: "ka.key"}
	kb := &KeyTag{Method: "AES-128", URI: "../keys/kb%20x.key", IV: "0x0f0e0d0c0b0a09080706050403020100"}
	pattern := func(n int) []*KeyTag { // clear, ka, kb, ka, ...
		ks := make([]*KeyTag, n)
		for i := range ks {
			ks[i] = []*KeyTag{nil, ka, kb, ka}[i%4]
		}
		return ks
	}
	all := func(k *KeyTag) func(int) []*KeyTag {
		return func(n int) []*KeyTag { return allKeys(n, k) }
	}
	for i, c := range []struct {
		name, playlist string
		segKeys        func(int) []*KeyTag
		mapKey         *KeyTag
	}{
		{"ts files, mixed keys", "ts/index.m3u8", pattern, nil},
		{"fmp4 two maps, clear inits", "combo.m3u8", all(ka), nil},
		{"fmp4 two maps, mixed keys", "combo.m3u8", pattern, nil},
		{"fmp4 two maps, encrypted inits", "combo.m3u8", all(ka), kb},
		{"single-file ts", "single/ts.m3u8", pattern, nil},
		{"single-file fmp4, clear init", "single/fmp4.m3u8", all(kb), nil},
		{"single-file fmp4, encrypted init", "single/fmp4.m3u8", pattern, kb},
		{"single-file i-frames with gaps", "iframes/index.m3u8", all(ka), nil},
	} {
		i, c := i, c
		t.Run(c.name, func(t *testing.T) {
			src := testutil.ReadFile(t, filepath.Join(dir, c.playlist))
			p := mustParse(t, src)
			mapKeys := allKeys(len(p.Maps), c.mapKey)
			enc := fmt.Sprintf("enc/%d/%s", i, c.playlist)
			encryptCopy(t, dir, c.playlist, enc, c.segKeys(len(p.Segments)), mapKeys)
			want := framemd5(t, srv.URL+"/"+c.playlist)
			if got := framemd5(t, srv.URL+"/"+enc); got != want {
				t.Errorf("ffmpeg decodes the encrypted rewrite differently:\n%s", diffHead(got, want))
			}
		})
	}
}

func allKeys(n int, k *KeyTag) []*KeyTag {
	ks := make([]*KeyTag, n)
	for i := range ks {
		ks[i] = k
	}
	return ks
}

// genSources makes the sources (same commands as testdata/README.md, shorter).
func genSources(t *testing.T, dir string) {
	v := "-f lavfi -i testsrc=size=160x90:rate=25:duration=4 -f lavfi -i sine=frequency=440:duration=4"
	enc := "-c:v libx264 -g 25 -c:a aac -b:a 32k -f hls -hls_time 1 -hls_playlist_type vod"
	for _, args := range []string{
		v + " " + enc + " -hls_segment_filename ts/seg%d.ts ts/index.m3u8",
		v + " " + enc + " -hls_segment_type fmp4 -hls_segment_filename fm1/seg%d.m4s fm1/index.m3u8",
		v + " " + enc + " -hls_segment_type fmp4 -hls_segment_filename fm2/seg%d.m4s fm2/index.m3u8",
		v + " " + enc + " -hls_flags single_file single/ts.m3u8",
		v + " " + enc + " -hls_flags single_file -hls_segment_type fmp4 single/fmp4.m3u8",
		v + " -map 0:v -c:v libx264 -g 25 -f hls -hls_time 1 -hls_playlist_type vod -hls_flags iframes_only+single_file iframes/index.m3u8",
	} {
		fields := strings.Fields(args)
		os.MkdirAll(filepath.Join(dir, filepath.Dir(fields[len(fields)-1])), 0o755)
		cmd := exec.Command("ffmpeg", append([]string{"-y", "-v", "error"}, fields...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %s: %v\n%s", args, err, out)
		}
	}
	writeFile(t, filepath.Join(dir, "combo.m3u8"), comboPlaylist(t, dir))
}

// comboPlaylist splices fm1 and fm2 with a discontinuity: two EXT-X-MAPs.
func comboPlaylist(t *testing.T, dir string) []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n")
	for i, sub := range []string{"fm1", "fm2"} {
		p := mustParse(t, testutil.ReadFile(t, filepath.Join(dir, sub, "index.m3u8")))
		if i > 0 {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s/%s\"\n", sub, p.Maps[0].URI)
		for _, s := range p.Segments {
			fmt.Fprintf(&b, "#EXTINF:%f,\n%s/%s\n", s.Duration, sub, s.URI)
		}
	}
	b.WriteString("#EXT-X-ENDLIST\n")
	return b.Bytes()
}

// piece is one init section or segment: a byte range of a file, or the
// whole file (rng nil), to be encrypted with key/iv (key nil: clear).
type piece struct {
	file    string
	rng     *ByteRange
	key, iv []byte
	out     **ByteRange // where the piece's new range goes
}

// encryptCopy writes under dir/dst the playlist dir/src rewritten, the
// media it references encrypted as asked, and the keys.
func encryptCopy(t *testing.T, dir, src, dst string, segKeys, mapKeys []*KeyTag) {
	data := testutil.ReadFile(t, filepath.Join(dir, src))
	p := mustParse(t, data)
	outs := make([]SegmentOut, len(p.Segments))
	maps := make([]MapOut, len(p.Maps))
	var pieces []piece
	for j, m := range p.Maps {
		maps[j].Key = mapKeys[j]
		pieces = append(pieces, newPiece(t, dir, src, dst, m.URI, m.ByteRange, mapKeys[j], 0, &maps[j].ByteRange))
	}
	for i, s := range p.Segments {
		outs[i].Key = segKeys[i]
		pieces = append(pieces, newPiece(t, dir, src, dst, s.URI, s.ByteRange, segKeys[i], s.SeqNo, &outs[i].ByteRange))
	}
	writePieces(t, dir, src, dst, pieces)
	out, err := RewriteMedia(data, p, outs, maps)
	if err != nil {
		t.Fatal(err)
	}
	checkKeepsLines(t, data, out)
	checkKeys(t, out, outs, maps, len(p.Maps))
	writeFile(t, filepath.Join(dir, dst), out)
}

// newPiece derives the key (written next to the output playlist) and IV.
func newPiece(t *testing.T, dir, src, dst, uri string, r *ByteRange, k *KeyTag, seq int64, out **ByteRange) piece {
	file, err := ResolveURI(src, uri)
	if err != nil {
		t.Fatal(err)
	}
	pc := piece{file: file, rng: r, out: out}
	if k == nil {
		return pc
	}
	keyFile, err := ResolveURI(dst, k.URI)
	if err != nil {
		t.Fatal(err)
	}
	pc.key = []byte(fmt.Sprintf("%-16.16s", k.URI))
	writeFile(t, filepath.Join(dir, keyFile), pc.key)
	pc.iv = make([]byte, 16)
	if k.IV != "" {
		pc.iv, _ = hex.DecodeString(k.IV[2:])
	} else {
		binary.BigEndian.PutUint64(pc.iv[8:], uint64(seq))
	}
	return pc
}

// writePieces writes each referenced file under the output directory:
// pieces in offset order, each encrypted on its own, gaps copied.
func writePieces(t *testing.T, dir, src, dst string, pieces []piece) {
	byFile := map[string][]piece{}
	for _, pc := range pieces {
		byFile[pc.file] = append(byFile[pc.file], pc)
	}
	for file, ps := range byFile {
		in := testutil.ReadFile(t, filepath.Join(dir, file))
		sort.SliceStable(ps, func(a, b int) bool { return off(ps[a]) < off(ps[b]) })
		var outb []byte
		var pos int64
		for _, pc := range ps {
			r := ByteRange{int64(len(in)), 0}
			if pc.rng != nil {
				r = *pc.rng
			}
			outb = append(outb, in[pos:r.Off]...) // gap between ranges
			start := int64(len(outb))
			outb = append(outb, seal(in[r.Off:r.Off+r.Len], pc.key, pc.iv)...)
			if pc.rng != nil {
				*pc.out = &ByteRange{int64(len(outb)) - start, start}
			}
			pos = r.Off + r.Len
		}
		outb = append(outb, in[pos:]...)
		rel := strings.TrimPrefix(file, path.Dir(src)+"/")
		writeFile(t, filepath.Join(dir, path.Dir(dst), rel), outb)
	}
}

func off(pc piece) int64 {
	if pc.rng == nil {
		return 0
	}
	return pc.rng.Off
}

// seal is AES-128-CBC with PKCS#7 padding, as HLS AES-128 requires.
func seal(plain, key, iv []byte) []byte {
	if key == nil {
		return plain
	}
	n := 16 - len(plain)%16
	buf := append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(n)}, n)...)
	blk, _ := aes.NewCipher(key)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(buf, buf)
	return buf
}

// framemd5 decodes url with ffmpeg; a few frames would prove nothing.
func framemd5(t *testing.T, url string) string {
	t.Helper()
	out, err := sample.FrameMD5(url)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") < 50 {
		t.Fatalf("ffmpeg decoded almost nothing from %s:\n%s", url, out)
	}
	return out
}

func diffHead(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("first difference at line %d (of %d vs %d):\n got %s\nwant %s", i+1, len(g), len(w), g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines vs %d", len(g), len(w))
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
