package cenc

import (
	"bytes"
	"context"
	stdcipher "crypto/cipher"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
)

// need is the one rule for missing tools (internal/testutil).
var need = testutil.Need

func needFFmpeg(t testing.TB) {
	_, err := exec.LookPath("ffmpeg")
	need(t, "ffmpeg", err == nil)
}

// noisyDASH makes a DASH set of 720p H.264 at 20 Mb/s (noise keeps x264
// at the bitrate, so segment sizes are like real ones), seconds long in
// segSeconds segments, one key frame per segment; it returns its folder.
func noisyDASH(tb testing.TB, seconds, segSeconds int) string {
	tb.Helper()
	needFFmpeg(tb)
	dir := tb.TempDir()
	cmd := exec.Command("ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25,noise=alls=40:allf=t",
		"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "20M", "-maxrate", "20M", "-bufsize", "40M",
		"-g", strconv.Itoa(25*segSeconds), "-pix_fmt", "yuv420p", "-f", "dash", "-seg_duration", strconv.Itoa(segSeconds), "manifest.mpd")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("ffmpeg: %v: %s", err, out)
	}
	return dir
}

var (
	dashOnce  sync.Once
	dashDir   string
	dashMedia *sample.DASH
	dashErr   error
)

// dashSample is DASH media made once for the package's tests.
func dashSample(t *testing.T) (string, *sample.DASH) {
	needFFmpeg(t)
	dashOnce.Do(func() {
		dashDir, dashErr = os.MkdirTemp("", "mpcfs-cenc-")
		if dashErr == nil {
			dashMedia, dashErr = sample.MakeDASH(dashDir, 3, false)
		}
	})
	if dashErr != nil {
		t.Fatal(dashErr)
	}
	return dashDir, dashMedia
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dashDir != "" {
		os.RemoveAll(dashDir)
	}
	os.Exit(code)
}

var testKey = []byte("0123456789abcdef")

func testConfig(scheme Scheme, audio bool) *Config {
	kid, _ := KIDFromContentID("movie-42")
	return &Config{Scheme: scheme, KID: kid, Key: testKey, ConstantIV: []byte("fedcba9876543210"),
		DRMs: []string{Widevine, PlayReady, ChinaDRM, ClearKey}, ContentID: "movie-42",
		LicenseURL: "https://license.example.com/a?b=1&c=2", EncryptAudio: audio}
}

// fileSource reads a local file as a RangeSource.
func fileSource(path string) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(f, off, n), f}, nil
	}
}

// protectSegment plans and serves one segment, returning the output
// File and the layout.
func protectSegment(t *testing.T, path string, in *Init, cfg *Config, nextIV *uint64) (*crypto.File, *Layout) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Scan(data, in, cfg, nextIV)
	if err != nil {
		t.Fatalf("scan %s: %v", path, err)
	}
	parts, err := Parts(l, fileSource(path), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := crypto.NewFile(parts)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != l.Size {
		t.Fatalf("file size %d, layout %d", f.Size(), l.Size)
	}
	return f, l
}

func readAll(t *testing.T, f *crypto.File) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != f.Size() {
		t.Fatalf("read %d bytes of %d", buf.Len(), f.Size())
	}
	return buf.Bytes()
}

// frameMD5 decodes init+segment with ffmpeg (with a decryption key when
// key is not nil) and returns the per-frame hashes.
func frameMD5(t *testing.T, dir string, initData, seg []byte, key []byte) (string, error) {
	t.Helper()
	p := filepath.Join(dir, "joined.mp4")
	if err := os.WriteFile(p, append(append([]byte{}, initData...), seg...), 0o644); err != nil {
		t.Fatal(err)
	}
	var opts []string
	if key != nil {
		opts = []string{"-decryption_key", hex.EncodeToString(key)}
	}
	return sample.FrameMD5(p, opts...)
}

// TestSegmentsDecryptToSourceFrames: for every representation and every
// segment, ffmpeg decrypts init+segment to the source's frames with the
// key; without it (or with a wrong one) it does not.
func TestSegmentsDecryptToSourceFrames(t *testing.T) {
	dir, d := dashSample(t)
	for _, scheme := range []Scheme{CENC, CBCS} {
		t.Run(string(scheme), func(t *testing.T) {
			cfg := testConfig(scheme, true)
			psshs, err := cfg.PsshBoxes()
			if err != nil {
				t.Fatal(err)
			}
			nextIV := uint64(1) << 40
			work := t.TempDir()
			for _, r := range d.Reps {
				srcInit, in := protectedInit(t, filepath.Join(dir, r.Init), cfg, psshs)
				for i, s := range r.Segments {
					f, _ := protectSegment(t, filepath.Join(dir, s), in, cfg, &nextIV)
					out := readAll(t, f)
					src, _ := os.ReadFile(filepath.Join(dir, s))
					want, err := frameMD5(t, work, srcInit, src, nil)
					if err != nil {
						t.Fatal(err)
					}
					got, err := frameMD5(t, work, in.Data, out, testKey)
					if err != nil {
						t.Fatalf("rep %s segment %s: %v", r.ID, s, err)
					}
					if got != want {
						t.Fatalf("rep %s segment %s: decrypted frames differ from the source's", r.ID, s)
					}
					if i == 0 { // negative controls, once per representation
						wrong, _ := frameMD5(t, work, in.Data, out, []byte("XXXXXXXXXXXXXXXX"))
						if wrong == want {
							t.Fatalf("rep %s: a wrong key gives the source's frames", r.ID)
						}
						none, _ := frameMD5(t, work, in.Data, out, nil)
						if none == want {
							t.Fatalf("rep %s: no key gives the source's frames", r.ID)
						}
					}
				}
			}
		})
	}
}

// TestRandomReads: any byte range of a protected segment equals the same
// bytes of a whole sequential read.
func TestRandomReads(t *testing.T) {
	dir, d := dashSample(t)
	for _, scheme := range []Scheme{CENC, CBCS} {
		cfg := testConfig(scheme, true)
		for _, r := range d.Reps {
			_, in := protectedInit(t, filepath.Join(dir, r.Init), cfg, nil)
			var iv uint64
			f, _ := protectSegment(t, filepath.Join(dir, r.Segments[0]), in, cfg, &iv)
			whole := readAll(t, f)
			rng := rand.New(rand.NewSource(int64(len(whole))))
			for i := 0; i < 200; i++ {
				off := rng.Int63n(int64(len(whole)))
				n := 1 + rng.Intn(min(64<<10, len(whole)-int(off)))
				if i%4 == 0 {
					n = 1 + rng.Intn(40)
					n = min(n, len(whole)-int(off))
				}
				rd := f.NewReader()
				p := make([]byte, n)
				k, err := rd.ReadAt(context.Background(), p, off)
				rd.Close()
				if err != nil && err != io.EOF || k != n {
					t.Fatalf("%s rep %s: read %d at %d: %d, %v", scheme, r.ID, n, off, k, err)
				}
				if !bytes.Equal(p, whole[off:off+int64(n)]) {
					t.Fatalf("%s rep %s: read %d at %d differs from the sequential read", scheme, r.ID, n, off)
				}
			}
		}
	}
}

// TestBoxes checks the protection boxes: schm, tenc, pssh SystemIDs and
// payloads; senc sample counts and IVs, saio pointing at senc, trun data
// offsets at the samples.
func TestBoxes(t *testing.T) {
	dir, d := dashSample(t)
	for _, scheme := range []Scheme{CENC, CBCS} {
		cfg := testConfig(scheme, true)
		psshs, _ := cfg.PsshBoxes()
		r := d.Reps[0]
		_, in := protectedInit(t, filepath.Join(dir, r.Init), cfg, psshs)
		initFile, err := mp4.DecodeFile(bytes.NewReader(in.Data))
		if err != nil {
			t.Fatal(err)
		}
		stsd := initFile.Moov.Trak.Mdia.Minf.Stbl.Stsd
		enc, ok := stsd.Children[0].(*mp4.VisualSampleEntryBox)
		if !ok || enc.Type() != "encv" || enc.Sinf == nil {
			t.Fatalf("%s: sample entry is not encv with sinf", scheme)
		}
		if enc.Sinf.Schm.SchemeType != string(scheme) || enc.Sinf.Frma.DataFormat != "avc1" {
			t.Fatalf("%s: schm %q frma %q", scheme, enc.Sinf.Schm.SchemeType, enc.Sinf.Frma.DataFormat)
		}
		tenc := enc.Sinf.Schi.Tenc
		if tenc.DefaultKID.String() != UUIDString(cfg.KID) {
			t.Fatalf("tenc KID %s, want %s", tenc.DefaultKID, UUIDString(cfg.KID))
		}
		if scheme == CBCS && (tenc.DefaultCryptByteBlock != 1 || tenc.DefaultSkipByteBlock != 9 || !bytes.Equal(tenc.DefaultConstantIV, cfg.ConstantIV)) {
			t.Fatalf("cbcs tenc pattern %d:%d", tenc.DefaultCryptByteBlock, tenc.DefaultSkipByteBlock)
		}
		if scheme == CENC && tenc.DefaultPerSampleIVSize != 8 {
			t.Fatalf("cenc tenc IV size %d", tenc.DefaultPerSampleIVSize)
		}
		var ids []string
		for _, p := range initFile.Moov.Psshs {
			ids = append(ids, p.SystemID.String())
		}
		want := []string{WidevineSystemID, PlayReadySystemID, ChinaDRMSystemID, CommonSystemID}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Fatalf("pssh SystemIDs %v, want %v", ids, want)
		}
		pro := string(initFile.Moov.Psshs[1].Data)
		if !strings.Contains(utf16le(pro), "LA_URL>https://license.example.com/a?b=1&amp;c=2</LA_URL>") {
			t.Fatalf("PlayReady object has no LA_URL: %q", utf16le(pro))
		}
		if !bytes.Contains(initFile.Moov.Psshs[0].Data, []byte("movie-42")) || !bytes.Contains(initFile.Moov.Psshs[0].Data, cfg.KID[:]) {
			t.Fatal("Widevine pssh lacks the KID or content_id")
		}

		var iv uint64 = 7
		f, _ := protectSegment(t, filepath.Join(dir, r.Segments[1]), in, cfg, &iv)
		out := readAll(t, f)
		seg, err := mp4.DecodeFile(bytes.NewReader(append(append([]byte{}, in.Data...), out...)))
		if err != nil {
			t.Fatal(err)
		}
		frag := seg.Segments[0].Fragments[0]
		traf := frag.Moof.Traf
		var senc *mp4.SencBox
		var saio *mp4.SaioBox
		for _, c := range traf.Children {
			switch b := c.(type) {
			case *mp4.SencBox:
				senc = b
			case *mp4.SaioBox:
				saio = b
			}
		}
		if senc == nil || saio == nil {
			t.Fatalf("%s: traf lacks senc or saio", scheme)
		}
		n := int(traf.Trun.SampleCount())
		if int(senc.SampleCount) != n {
			t.Fatalf("senc has %d samples, trun %d", senc.SampleCount, n)
		}
		moofStart := int64(frag.Moof.StartPos) - int64(len(in.Data))
		sencPos := bytes.Index(out[moofStart:], []byte("senc")) - 4
		if int64(saio.Offset[0]) != int64(sencPos)+16 {
			t.Fatalf("saio offset %d, senc data at %d", saio.Offset[0], sencPos+16)
		}
		dataStart := moofStart + int64(frag.Moof.Size()) + 8
		if moofStart+int64(traf.Trun.DataOffset) != dataStart {
			t.Fatalf("trun data offset %d points at %d, mdat data at %d", traf.Trun.DataOffset, moofStart+int64(traf.Trun.DataOffset), dataStart)
		}
		if scheme == CENC {
			ivs := map[string]bool{}
			for _, v := range senc.IVs {
				ivs[hex.EncodeToString(v)] = true
			}
			if len(ivs) != n || !ivs["0000000000000007"] {
				t.Fatalf("cenc IVs are not one per sample from the counter: %d distinct of %d", len(ivs), n)
			}
			for _, s := range senc.SubSamples {
				for _, ss := range s {
					if ss.BytesOfProtectedData%16 != 0 {
						t.Fatalf("cenc subsample protects %d bytes, not a multiple of 16", ss.BytesOfProtectedData)
					}
				}
			}
		}
	}
}

func utf16le(s string) string {
	var b strings.Builder
	for i := 0; i+1 < len(s); i += 2 {
		b.WriteRune(rune(uint16(s[i]) | uint16(s[i+1])<<8))
	}
	return b.String()
}

func TestKIDFromContentID(t *testing.T) {
	a, _ := KIDFromContentID("x")
	b, _ := KIDFromContentID("x")
	c, _ := KIDFromContentID("y")
	r1, _ := KIDFromContentID("")
	r2, _ := KIDFromContentID("")
	if a != b || a == c || r1 == r2 {
		t.Fatal("KIDs: same content_id must give the same KID, others differ")
	}
}

// TestClearLead: with a clear lead, fragments starting before it keep
// their samples clear (ffmpeg decodes them without a key, and the mdat is
// the source's), name the clear sample entry the init now has second, and
// later fragments are encrypted as usual.
func TestClearLead(t *testing.T) {
	dir, d := dashSample(t)
	cfg := testConfig(CENC, true)
	cfg.ClearLead = 1.5
	work := t.TempDir()
	for _, r := range d.Reps {
		srcInit, in := protectedInit(t, filepath.Join(dir, r.Init), cfg, nil)
		initFile, err := mp4.DecodeFile(bytes.NewReader(in.Data))
		if err != nil {
			t.Fatal(err)
		}
		stsd := initFile.Moov.Trak.Mdia.Minf.Stbl.Stsd
		if len(stsd.Children) != 2 || !strings.HasPrefix(stsd.Children[0].Type(), "enc") || strings.HasPrefix(stsd.Children[1].Type(), "enc") {
			t.Fatalf("rep %s: stsd entries %d, want the protected then the clear one", r.ID, len(stsd.Children))
		}
		var iv uint64
		for i, s := range r.Segments {
			f, l := protectSegment(t, filepath.Join(dir, s), in, cfg, &iv)
			out := readAll(t, f)
			src, _ := os.ReadFile(filepath.Join(dir, s))
			want, _ := frameMD5(t, work, srcInit, src, nil)
			clearLead := i < 2 // 1-second segments starting at 0 and 1
			var moof *BoxLayout
			for j := range l.Boxes {
				if l.Boxes[j].Type == "moof" {
					moof = &l.Boxes[j]
				}
			}
			if moof.Trafs[0].ClearLead != clearLead {
				t.Fatalf("rep %s segment %d: clear lead %v, want %v", r.ID, i, moof.Trafs[0].ClearLead, clearLead)
			}
			if clearLead {
				if !bytes.HasSuffix(out, src[len(src)-1000:]) {
					t.Fatalf("rep %s segment %d: clear-lead samples changed", r.ID, i)
				}
				if got, err := frameMD5(t, work, in.Data, out, nil); err != nil || got != want {
					t.Fatalf("rep %s segment %d: the clear lead does not decode without a key (%v)", r.ID, i, err)
				}
				continue
			}
			if got, err := frameMD5(t, work, in.Data, out, testKey); err != nil || got != want {
				t.Fatalf("rep %s segment %d: does not decrypt after the lead (%v)", r.ID, i, err)
			}
			if none, _ := frameMD5(t, work, in.Data, out, nil); none == want {
				t.Fatalf("rep %s segment %d: decodes without a key after the lead", r.ID, i)
			}
		}
	}
}

// TestSM4S: emi 16422's sm4s output, decrypted by a plain reference
// (mp4ff reads the output's senc and samples; gmsm's SM4 in CBC mode undoes
// the 1:9 pattern from each subsample's start with the constant IV, audio
// every whole block), decodes to the source's frames; with a wrong key it
// does not. No player or ffmpeg decrypts SM4.
func TestSM4S(t *testing.T) {
	dir, d := dashSample(t)
	cfg := testConfig(SM4S, true)
	work := t.TempDir()
	for _, r := range d.Reps {
		srcInit, in := protectedInit(t, filepath.Join(dir, r.Init), cfg, nil)
		var iv uint64
		for i, s := range r.Segments {
			f, l := protectSegment(t, filepath.Join(dir, s), in, cfg, &iv)
			out := readAll(t, f)
			src, _ := os.ReadFile(filepath.Join(dir, s))
			want, _ := frameMD5(t, work, srcInit, src, nil)
			keys := [][]byte{testKey, []byte("XXXXXXXXXXXXXXXX")}
			if mdat := l.Boxes[len(l.Boxes)-1].Size; bytes.Equal(out[len(out)-int(mdat):], src[len(src)-int(mdat):]) {
				// Samples shorter than a block: nothing to encrypt, so
				// no negative control.
				keys = keys[:1]
			}
			for _, key := range keys {
				clear := sm4sDecrypt(t, in.Data, out, key, cfg.ConstantIV)
				got, _ := frameMD5(t, work, srcInit, clear, nil)
				if right := bytes.Equal(key, testKey); right != (got == want) {
					t.Fatalf("rep %s segment %d: with the %s key the frames are %v the source's", r.ID, i,
						map[bool]string{true: "right", false: "wrong"}[right], map[bool]string{true: "", false: "not"}[got == want])
				}
			}
		}
	}
}

// sm4sDecrypt undoes sm4s on a segment, returning it with clear samples.
func sm4sDecrypt(t *testing.T, initData, seg, key, iv []byte) []byte {
	t.Helper()
	f, err := mp4.DecodeFile(bytes.NewReader(append(append([]byte{}, initData...), seg...)))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := SM4S.Block(key)
	trex := f.Init.Moov.Mvex.Trex
	for _, frag := range f.Segments[0].Fragments {
		traf := frag.Moof.Traf
		if _, parsed := traf.ContainsSencBox(); !parsed {
			if err := traf.ParseReadSenc(0, frag.Moof.StartPos); err != nil {
				t.Fatal(err)
			}
		}
		samples, err := frag.GetFullSamples(trex)
		if err != nil {
			t.Fatal(err)
		}
		if int(traf.Senc.SampleCount) != len(samples) {
			t.Fatalf("senc has %d samples of %d", traf.Senc.SampleCount, len(samples))
		}
		for j, smp := range samples {
			var ranges [][2]int // protected runs, and whether patterned
			pattern := len(traf.Senc.SubSamples) > 0
			if pattern {
				pos := 0
				for _, ss := range traf.Senc.SubSamples[j] {
					pos += int(ss.BytesOfClearData)
					ranges = append(ranges, [2]int{pos, pos + int(ss.BytesOfProtectedData)})
					pos += int(ss.BytesOfProtectedData)
				}
			} else {
				ranges = [][2]int{{0, len(smp.Data)}}
			}
			for _, rg := range ranges {
				data := smp.Data[rg[0]:rg[1]]
				dec := stdcipher.NewCBCDecrypter(block, iv)
				for k := 0; (k+1)*16 <= len(data); k++ {
					if !pattern || k%10 == 0 {
						dec.CryptBlocks(data[16*k:16*k+16], data[16*k:16*k+16])
					}
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := f.Segments[0].Encode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCBCSCheckpoints: in large I-frame subsamples (720p at 20 Mb/s),
// reads at random offsets of a cbcs output equal a sequential read, and
// once a sequential read has been through, a read inside a long
// subsample re-reads at most a 64 KiB window of source before it (the
// chain checkpoint), not the subsample from its start.
func TestCBCSCheckpoints(t *testing.T) {
	dir := noisyDASH(t, 2, 2)
	cfg := testConfig(CBCS, true)
	_, in := protectedInit(t, filepath.Join(dir, "init-stream0.m4s"), cfg, nil)
	p := filepath.Join(dir, "chunk-stream0-00001.m4s")
	data, _ := os.ReadFile(p)
	var iv uint64
	l, err := Scan(data, in, cfg, &iv)
	if err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	src := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		read.Add(n)
		return fileSource(p)(ctx, off, n)
	}
	parts, _ := Parts(l, src, cfg)
	f, _ := crypto.NewFile(parts)
	whole := readAll(t, f)
	rng := rand.New(rand.NewSource(7))
	var worst int64
	for i := 0; i < 100; i++ {
		off := rng.Int63n(int64(len(whole)) - 1000)
		rd := f.NewReader()
		buf := make([]byte, 1000)
		before := read.Load()
		if _, err := rd.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
		rd.Close()
		worst = max(worst, read.Load()-before)
		if !bytes.Equal(buf, whole[off:off+1000]) {
			t.Fatalf("read at %d differs from the sequential read", off)
		}
	}
	if worst > 64<<10+2000+16 {
		t.Fatalf("a random read fetched %d bytes of source: checkpoints unused", worst)
	}
	t.Logf("worst source bytes for a 1000-byte read: %d", worst)
}

// protectedInit reads the source init segment at path and protects it
// with cfg, failing the test on either; it returns both.
func protectedInit(t testing.TB, path string, cfg *Config, psshs []Pssh) ([]byte, *Init) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ProtectInit(src, cfg, psshs)
	if err != nil {
		t.Fatal(err)
	}
	return src, in
}
