package crypto

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/tuning"
)

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"": AES128CTR, "AES-128-CTR": AES128CTR, "AES-128-CBC": AES128CBC, "SM4CBC": SM4CBC} {
		if got, err := ParseAlgorithm(in); got != want || err != nil {
			t.Errorf("ParseAlgorithm(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"aes-128-cbc", "SM4-CBC", "AES-128", "AES-256-GCM"} {
		if _, err := ParseAlgorithm(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseAlgorithm(%q): error %v should name the value", in, err)
		}
	}
}

func TestHLSMethodAndSize(t *testing.T) {
	for alg, method := range map[Algorithm]string{AES128CBC: "AES-128", AES128CTR: "AES-128-CTR", SM4CBC: "SM4-CBC"} {
		if got := alg.HLSMethod(); got != method {
			t.Errorf("%s.HLSMethod() = %q, want %q", alg, got, method)
		}
	}
	for n, want := range map[int64]int64{0: 16, 1: 16, 15: 16, 16: 32, 17: 32, 65536: 65552} {
		for _, alg := range []Algorithm{AES128CBC, SM4CBC} {
			if got := alg.EncryptedSize(n); got != want {
				t.Errorf("%s.EncryptedSize(%d) = %d, want %d", alg, n, got, want)
			}
		}
		if got := AES128CTR.EncryptedSize(n); got != n {
			t.Errorf("CTR EncryptedSize(%d) = %d", n, got)
		}
	}
}

// TestMatchesOpenSSL compares whole outputs, written at once and read
// sequentially through a Reader (the read-ahead path), with openssl's.
func TestMatchesOpenSSL(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, alg := range allAlgs {
		for _, size := range []int{0, 1, 15, 16, 17, 4095, 65536, 65537, 3<<20 + 5} {
			f, src := onePart(t, r, alg, size, testIV)
			want := openssl(t, alg, testKey, testIV, src.data)
			if f.Size() != int64(len(want)) || alg.EncryptedSize(int64(size)) != int64(len(want)) {
				t.Fatalf("%s size %d: Size() = %d, openssl wrote %d", alg, size, f.Size(), len(want))
			}
			if got := writeAll(t, f); !bytes.Equal(got, want) {
				t.Fatalf("%s size %d: WriteTo differs from openssl", alg, size)
			}
			if got := readSeq(t, f, 128<<10); !bytes.Equal(got, want) {
				t.Fatalf("%s size %d: sequential reads differ from openssl", alg, size)
			}
		}
	}
}

// TestCTRCounterWraps: the counter is 128 bits, as openssl's: it carries
// from the low 64 bits into the high ones, and wraps at 2^128.
func TestCTRCounterWraps(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, ivHex := range []string{"fffffffffffffffffffffffffffffffe", "0123456789abcdefffffffffffffff00"} {
		iv, _ := hex.DecodeString(ivHex)
		f, src := onePart(t, r, AES128CTR, 200003, iv)
		want := openssl(t, AES128CTR, testKey, iv, src.data)
		if got := writeAll(t, f); !bytes.Equal(got, want) {
			t.Fatalf("IV %s: ciphertext across the counter carry differs from openssl", ivHex)
		}
		rd := f.NewReader()
		for i := 0; i < 100; i++ {
			checkRead(t, rd, want, r.Int63n(f.Size()), 1+r.Intn(5000))
		}
		rd.Close()
	}
}

// mixedFile is a single-file byte-range output: clear parts (an init
// section), parts of each algorithm with their own IVs, sizes that are and
// are not multiples of 16 and of the checkpoint spacing, an empty part.
func mixedFile(t testing.TB, r *rand.Rand) (*File, []byte) {
	var parts []Part
	var want []byte
	for i, p := range []struct {
		alg  Algorithm
		size int
	}{{"", 1000}, {AES128CBC, 300000}, {AES128CTR, 250001}, {SM4CBC, 70000}, {AES128CBC, 0},
		{"", 17}, {AES128CBC, 2 * checkpointEvery}, {AES128CTR, 0}, {AES128CTR, 16}, {"", 5}} {
		src := &memSource{data: randBytes(r, p.size)}
		iv := append([]byte(nil), testIV...)
		iv[0] = byte(i)
		parts = append(parts, Part{Src: src.open, PlainSize: int64(p.size), Alg: p.alg, Key: testKey, IV: iv})
		want = append(want, reference(t, p.alg, testKey, iv, src.data)...)
	}
	return newTestFile(t, parts...), want
}

func TestRandomAccessOnePart(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for _, alg := range allAlgs {
		for _, size := range []int{300001, 3 * checkpointEvery} {
			f, src := onePart(t, r, alg, size, testIV)
			want := openssl(t, alg, testKey, testIV, src.data)
			shared := f.NewReader()
			for i := 0; i < 200; i++ {
				off, n := r.Int63n(f.Size()+20), 1+r.Intn(100000)
				checkRead(t, shared, want, off, n)
				fresh := f.NewReader() // no stream, maybe no checkpoints yet
				checkRead(t, fresh, want, off, n)
				fresh.Close()
			}
			shared.Close()
		}
	}
}

func TestRandomAccessMixedParts(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	f, want := mixedFile(t, r)
	if f.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", f.Size(), len(want))
	}
	rd := f.NewReader()
	defer rd.Close()
	for i := 0; i < 1000; i++ {
		checkRead(t, rd, want, r.Int63n(int64(len(want))), 1+r.Intn(200000))
	}
	// Every part boundary, a few bytes either side, from a fresh reader.
	var bounds []int64
	for _, fp := range f.parts {
		bounds = append(bounds, fp.outOff)
	}
	for _, b := range bounds {
		for _, d := range []int64{-17, -1, 0, 1, 16} {
			if off := b + d; off >= 0 && off < f.Size() {
				fresh := f.NewReader()
				checkRead(t, fresh, want, off, 40)
				fresh.Close()
			}
		}
	}
	if got := readSeq(t, f, 4096); !bytes.Equal(got, want) {
		t.Fatal("sequential 4 KiB reads across parts differ")
	}
	if got := writeAll(t, f); !bytes.Equal(got, want) {
		t.Fatal("WriteTo across parts differs")
	}
}

// TestPaddingBlockFirst: the last block of a CBC part whose size is a
// multiple of 16 is padding only; reading it first must not stop at the
// plaintext's end.
func TestPaddingBlockFirst(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for _, alg := range []Algorithm{AES128CBC, SM4CBC} {
		for _, size := range []int{16, 4096, 2 * checkpointEvery, 3<<20 + 16} {
			f, src := onePart(t, r, alg, size, testIV)
			want := openssl(t, alg, testKey, testIV, src.data)
			for _, n := range []int{16, 1, 32} {
				rd := f.NewReader()
				checkRead(t, rd, want, int64(size), n)
				checkRead(t, rd, want, max(0, int64(size)-int64(n)), n)
				rd.Close()
			}
		}
	}
}

func TestReadPastEnd(t *testing.T) {
	f, src := onePart(t, rand.New(rand.NewSource(6)), AES128CBC, 1000, testIV)
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	rd := f.NewReader()
	defer rd.Close()
	ctx := context.Background()
	for _, off := range []int64{f.Size(), f.Size() + 1, f.Size() + 1<<20} {
		for _, n := range []int{0, 1, 100} {
			if k, err := rd.ReadAt(ctx, make([]byte, n), off); k != 0 || err != io.EOF {
				t.Errorf("ReadAt(len %d, off %d) = %d, %v; want 0, io.EOF", n, off, k, err)
			}
		}
	}
	checkRead(t, rd, want, f.Size()-10, 100) // short, with io.EOF
	checkRead(t, rd, want, 0, int(f.Size())) // exactly all: no EOF
	if _, err := rd.ReadAt(ctx, make([]byte, 1), -1); err == nil || err == io.EOF {
		t.Errorf("negative offset: %v", err)
	}
	if k, err := rd.ReadAt(ctx, nil, 5); k != 0 || err != nil {
		t.Errorf("empty read inside = %d, %v", k, err)
	}
}

// TestSequentialReadAhead reads like the kernel: 128 KiB at increasing
// offsets, sometimes swapped pairs. The first window is the first request;
// once the read-ahead starts every next one is 16 MiB (fewer GETs), and
// each plaintext byte is read once.
// TestSequentialReadAhead: a read from the start streams at once with the
// largest windows; one that starts elsewhere fetches just its request, then
// streams once the next read follows it. Both read each byte once, even
// with requests arriving slightly out of order (kernel read-ahead).
func TestSequentialReadAhead(t *testing.T) {
	for _, tc := range []struct {
		alg   Algorithm
		start int64
	}{{AES128CBC, 0}, {AES128CTR, 3 << 20}} { // CTR: no chain to walk to start
		start := tc.start
		r := rand.New(rand.NewSource(7))
		f, src := onePart(t, r, tc.alg, 40<<20+7, testIV)
		want := openssl(t, tc.alg, testKey, testIV, src.data)
		rd := f.NewReader()
		const req = 128 << 10
		offsets := []int64{start, start + req}
		for off := start + 2*req; off < f.Size(); off += 2 * req {
			offsets = append(offsets, off+req, off)
		}
		for _, o := range offsets {
			if o < f.Size() {
				checkRead(t, rd, want, o, req)
			}
		}
		rd.Close()
		firstWin := int64(req)
		if start == 0 {
			firstWin = maxWindow
		}
		checkStreamWindows(t, src, start, firstWin)
	}
}

// checkStreamWindows checks that src was read once from start to its end:
// a first window of first bytes, then windows of maxWindow.
func checkStreamWindows(t *testing.T, src *memSource, start, first int64) {
	t.Helper()
	if read, n := src.read.Load(), int64(len(src.data))-start; read != n {
		t.Errorf("read %d plaintext bytes for a %d-byte sequential read", read, n)
	}
	wins := src.windows()
	wantWin := first
	pos := start
	for i, w := range wins {
		if w[0] != pos || w[1] != min(wantWin, int64(len(src.data))-pos) {
			t.Fatalf("window %d = [%d, +%d); want [%d, +%d) (all: %v)", i, w[0], w[1], pos, wantWin, wins)
		}
		pos += w[1]
		wantWin = maxWindow
	}
	if pos != int64(len(src.data)) {
		t.Fatalf("windows end at %d of %d", pos, len(src.data))
	}
}

// TestSmallReadOpensBoundedWindow: one small read never asks for the whole
// of a large object.
func TestSmallReadOpensBoundedWindow(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	for _, alg := range []Algorithm{"", AES128CTR} {
		f, src := onePart(t, r, alg, 64<<20, testIV)
		rd := f.NewReader()
		if _, err := rd.ReadAt(context.Background(), make([]byte, 4096), 10<<20); err != nil {
			t.Fatal(err)
		}
		rd.Close()
		if w := src.windows(); len(w) != 1 || w[0][0] != 10<<20 || w[0][1] != 4096 {
			t.Errorf("%q: a 4 KiB read opened %v, want one 4 KiB window at 10 MiB", alg, w)
		}
		if read := src.read.Load(); read > 4096+blockSize {
			t.Errorf("%q: a 4 KiB read read %d bytes", alg, read)
		}
	}
}

// multiPart is a File of large parts of every algorithm, with sources.
func multiPart(t *testing.T, r *rand.Rand) (*File, []byte, []*memSource) {
	var parts []Part
	var srcs []*memSource
	var want []byte
	for i, size := range []int{700000, 3<<20 + 1, 1, 0, 2 << 20, 999999, 300000} {
		alg := []Algorithm{AES128CBC, AES128CTR, SM4CBC, ""}[i%4]
		src := &memSource{data: randBytes(r, size)}
		srcs = append(srcs, src)
		parts = append(parts, Part{Src: src.open, PlainSize: int64(size), Alg: alg, Key: testKey, IV: testIV})
		want = append(want, reference(t, alg, testKey, testIV, src.data)...)
	}
	return newTestFile(t, parts...), want, srcs
}

// TestSequentialAcrossParts: one Reader reading a multi-part File through
// keeps streaming from part to part: every plaintext byte read once.
func TestSequentialAcrossParts(t *testing.T) {
	f, want, srcs := multiPart(t, rand.New(rand.NewSource(9)))
	if got := readSeq(t, f, 128<<10); !bytes.Equal(got, want) {
		t.Fatal("sequential read across parts differs")
	}
	for i, src := range srcs {
		if read := src.read.Load(); read != int64(len(src.data)) {
			t.Errorf("part %d: read %d plaintext bytes of %d", i, read, len(src.data))
		}
	}
}

// TestNearSequential reads forward with random sizes and short gaps (the
// stream continues: no plaintext byte is fetched twice), then with small
// steps back as well (correct bytes, whatever path).
func TestNearSequential(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	for _, back := range []bool{false, true} {
		f, want, srcs := multiPart(t, r)
		rd := f.NewReader()
		for off := int64(0); off < f.Size(); {
			n := 1 + r.Intn(200000)
			checkRead(t, rd, want, off, n)
			off += int64(n)
			switch k := r.Intn(10); {
			case k < 3:
				off += r.Int63n(idleSkip)
			case k == 3 && back:
				off -= r.Int63n(int64(n) + 100000)
			}
			off = max(off, 0)
		}
		rd.Close()
		if back {
			continue
		}
		for i, src := range srcs {
			var end int64
			for _, w := range src.windows() {
				if w[0] < end {
					t.Fatalf("part %d: window %v reads again before %d", i, w, end)
				}
				end = w[0] + w[1]
			}
		}
	}
}

// TestOutOfOrderRequests: the kernel's read-ahead requests, served by
// several goroutines, arrive out of order: each 1 MiB request here comes
// after the one past it. They are all served from the one stream, every
// plaintext byte read once, one window per 16 MiB; and chunks wholly
// served are let go.
func TestOutOfOrderRequests(t *testing.T) {
	for _, alg := range allAlgs {
		f, src := onePart(t, rand.New(rand.NewSource(17)), alg, 20<<20+3, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		const req = 1 << 20
		checkRead(t, rd, want, 0, req)
		for off := int64(req); off < f.Size(); off += 2 * req {
			checkRead(t, rd, want, off+req, req)
			checkRead(t, rd, want, off, req)
		}
		if n := len(rd.held); n > 2 {
			t.Errorf("%s: %d chunks held after every byte was served", alg, n)
		}
		rd.Close()
		checkStreamWindows(t, src, 0, maxWindow)
	}
}

// TestRandomReadsHoldOneChunk: chunks made for random reads (which start
// at a block or checkpoint before the request and end at a block after it)
// go once the request is served: only the newest is held.
func TestRandomReadsHoldOneChunk(t *testing.T) {
	r := rand.New(rand.NewSource(18))
	for _, alg := range allAlgs {
		f, src := onePart(t, r, alg, 8<<20, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		prev := int64(-1 << 30)
		for range 40 {
			// Far from the last read, so no read continues the previous
			// one (that would start the read-ahead, a stream's chunks).
			off := r.Int63n(f.Size() - 100000)
			for off > prev-(1<<20) && off < prev+(1<<20) {
				off = r.Int63n(f.Size() - 100000)
			}
			checkRead(t, rd, want, off, 1+r.Intn(100000))
			prev = off
		}
		if n := len(rd.held); n != 1 {
			t.Errorf("%s: %d chunks held after random reads, want 1", alg, n)
		}
		rd.Close()
	}
}

// TestIdleStreamSkips: after a seek, reads a little further on continue
// the same stream (nothing fetched twice): its first window is the first
// request, the next one covers the rest of a small part and reaches into
// the next part's first window.
func TestIdleStreamSkips(t *testing.T) {
	r := rand.New(rand.NewSource(16))
	for _, alg := range allAlgs {
		a := &memSource{data: randBytes(r, 300000)}
		b := &memSource{data: randBytes(r, 3<<20)}
		f := newTestFile(t, Part{Src: a.open, PlainSize: 300000, Alg: alg, Key: testKey, IV: testIV},
			Part{Src: b.open, PlainSize: 3 << 20, Alg: alg, Key: testKey, IV: testIV})
		want := append(openssl(t, alg, testKey, testIV, a.data), openssl(t, alg, testKey, testIV, b.data)...)
		rd := f.NewReader()
		// The first read is not at 0: a read at 0 streams at once.
		for _, read := range [][2]int64{{16, 4080}, {100000, 4096}, {200000, 5000}, {f.parts[1].outOff + 1000, 4096}, {f.parts[1].outOff + 200000, 100}} {
			checkRead(t, rd, want, read[0], int(read[1]))
		}
		rd.Close()
		wa, wb := a.windows(), b.windows()
		if len(wa) != 2 || wa[0][0]+wa[0][1] != 4096 || wa[1][0] != 4096 || len(wb) != 1 {
			t.Errorf("%s: windows %v and %v, want one to 4096, then the rest of part a, and one in part b", alg, wa, wb)
		}
	}
}

// TestCheckpointsBoundRereads: the first read deep into a CBC part
// encrypts the prefix once; later reads there, by any reader, start at a
// checkpoint and read at most 64 KiB more than they return.
func TestCheckpointsBoundRereads(t *testing.T) {
	r := rand.New(rand.NewSource(10))
	for _, alg := range []Algorithm{AES128CBC, SM4CBC} {
		size := 8 << 20
		f, src := onePart(t, r, alg, size, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		const req = 4096
		first := f.Size() - 5000 // a never-read part: the prefix is encrypted once
		rd := f.NewReader()
		checkRead(t, rd, want, first, req)
		rd.Close()
		if read := src.read.Load(); read < first {
			t.Fatalf("%s: the first read at %d read only %d bytes: how?", alg, first, read)
		}
		for i := 0; i < 50; i++ {
			rd := f.NewReader() // a new reader: checkpoints are the File's
			before := src.read.Load()
			off := f.Size() - 1 - r.Int63n(f.Size()/2)
			if i%5 == 0 {
				off = f.Size() - 1 - r.Int63n(200) // the tail, padding included
			}
			checkRead(t, rd, want, off, req)
			rd.Close()
			if read := src.read.Load() - before; read > checkpointEvery+req+blockSize {
				t.Fatalf("%s: a %d-byte read at %d read %d plaintext bytes; checkpoints bound it to %d",
					alg, req, off, read, checkpointEvery+req+blockSize)
			}
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	f, want := mixedFile(t, r)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rr := rand.New(rand.NewSource(seed))
			rd := f.NewReader()
			defer rd.Close()
			if seed%2 == 0 { // half read through, the others jump around
				if got := readSeq(t, f, 64<<10); !bytes.Equal(got, want) {
					t.Errorf("reader %d: sequential read differs", seed)
				}
			}
			for i := 0; i < 50; i++ {
				off := rr.Int63n(f.Size())
				got := make([]byte, 1+rr.Intn(300000))
				k, err := rd.ReadAt(context.Background(), got, off)
				if err != nil && err != io.EOF || !bytes.Equal(got[:k], want[off:off+int64(k)]) {
					t.Errorf("reader %d: read at %d: %v", seed, off, err)
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
}

// TestConcurrentReadsOneReader: a Reader shared by goroutines (the kernel
// can issue reads of one handle in parallel) serializes them correctly.
func TestConcurrentReadsOneReader(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	f, src := onePart(t, r, AES128CBC, 5<<20, testIV)
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	rd := f.NewReader()
	defer rd.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(g) * 128 << 10; off < f.Size(); off += 4 * 128 << 10 {
				got := make([]byte, 128<<10)
				k, err := rd.ReadAt(context.Background(), got, off)
				if err != nil && err != io.EOF || !bytes.Equal(got[:k], want[off:off+int64(k)]) {
					t.Errorf("read at %d: %v", off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// failingSource serves data but breaks at byte limit: with err (a network
// failure) or, when err is nil, by ending early (the object shrank).
type failingSource struct {
	data  []byte
	limit int64
	err   error
}

func (s *failingSource) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if off >= s.limit && s.err != nil {
		return nil, s.err
	}
	var rd io.Reader = bytes.NewReader(s.data[off:max(off, min(off+n, s.limit))])
	if s.err != nil {
		rd = io.MultiReader(rd, errReader{s.err})
	}
	return io.NopCloser(rd), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSourceErrors(t *testing.T) {
	data := randBytes(rand.New(rand.NewSource(13)), 3<<20)
	boom := errors.New("connection reset")
	for _, s := range []*failingSource{
		{data: data, limit: 1<<20 + 5, err: boom}, // fails mid-way
		{data: data, limit: 2<<20 + 3},            // returns short data
		{data: data, limit: 0, err: boom},         // cannot open
	} {
		wantErr := boom
		if s.err == nil {
			wantErr = io.ErrUnexpectedEOF
		}
		for _, alg := range []Algorithm{"", AES128CBC, AES128CTR, SM4CBC} {
			f := newTestFile(t, Part{Src: s.open, PlainSize: int64(len(data)), Alg: alg, Key: testKey, IV: testIV})
			want := reference(t, alg, testKey, testIV, data)
			var buf bytes.Buffer
			if _, err := f.WriteTo(context.Background(), &buf); !errors.Is(err, wantErr) {
				t.Errorf("%q limit %d: WriteTo error %v, want %v", alg, s.limit, err, wantErr)
			}
			checkFailingReads(t, f, want, s.limit, wantErr)
		}
	}
}

// checkFailingReads: sequential and random reads over a broken source
// return the error, and only correct bytes before it.
func checkFailingReads(t *testing.T, f *File, want []byte, limit int64, wantErr error) {
	t.Helper()
	ctx := context.Background()
	rd := f.NewReader()
	defer rd.Close()
	buf := make([]byte, 128<<10)
	var err error
	var off int64
	for ; err == nil; off += int64(len(buf)) {
		var k int
		k, err = rd.ReadAt(ctx, buf, off)
		if !bytes.Equal(buf[:k], want[off:off+int64(k)]) {
			t.Fatalf("sequential read at %d returned wrong bytes with %v", off, err)
		}
	}
	if failed := off - int64(len(buf)); !errors.Is(err, wantErr) || failed > limit {
		t.Errorf("sequential reads: error %v at %d, want %v by %d", err, failed, wantErr, limit)
	}
	fresh := f.NewReader()
	defer fresh.Close()
	deep := int64(len(want)) - 1000
	if k, err := fresh.ReadAt(ctx, buf, deep); !errors.Is(err, wantErr) || !bytes.Equal(buf[:k], want[deep:deep+int64(k)]) {
		t.Errorf("read at %d past the break: %d, %v; want %v", deep, k, err, wantErr)
	}
}

// TestCloseStopsReadAhead: Close ends the producer goroutine, and reads
// after Close fail.
func TestCloseStopsReadAhead(t *testing.T) {
	f, _ := onePart(t, rand.New(rand.NewSource(14)), AES128CBC, 16<<20, testIV)
	base := runtime.NumGoroutine()
	var readers []*Reader
	for i := 0; i < 8; i++ {
		rd := f.NewReader()
		for off := int64(0); off < 3*128<<10; off += 128 << 10 {
			if _, err := rd.ReadAt(context.Background(), make([]byte, 128<<10), off); err != nil {
				t.Fatal(err)
			}
		}
		readers = append(readers, rd)
	}
	if n := runtime.NumGoroutine(); n < base+8 {
		t.Fatalf("%d goroutines, want producers running (base %d)", n, base)
	}
	for _, rd := range readers {
		rd.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, want %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := readers[0].ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

// blockingSource hands out readers that block until their context ends,
// like a stalled connection.
func blockingSource(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	return io.NopCloser(ctxReader{ctx}), nil
}

type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// TestCanceledRequest: a read stuck on the source returns when its request
// is canceled, and Close unblocks a stuck read.
func TestCanceledRequest(t *testing.T) {
	f := newTestFile(t, Part{Src: blockingSource, PlainSize: 1 << 20, Alg: AES128CBC, Key: testKey, IV: testIV})
	rd := f.NewReader()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := rd.ReadAt(ctx, make([]byte, 100), 5000); !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("canceled read: %v", err)
	}
	done := make(chan error)
	go func() {
		_, err := rd.ReadAt(context.Background(), make([]byte, 100), 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	rd.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read interrupted by Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock a stuck read")
	}
}

func TestBadParts(t *testing.T) {
	src := &memSource{data: make([]byte, 10)}
	for _, p := range []Part{
		{Src: src.open, PlainSize: 10, Alg: AES128CBC, Key: []byte("short"), IV: testIV},
		{Src: src.open, PlainSize: 10, Alg: AES128CTR, Key: testKey, IV: []byte("short")},
		{Src: src.open, PlainSize: 10, Alg: "AES-256-GCM", Key: testKey, IV: testIV},
		{Src: src.open, PlainSize: -1},
		{PlainSize: 10},
	} {
		if _, err := NewFile([]Part{p}); err == nil {
			t.Errorf("NewFile accepted %v", p)
		} else if strings.Contains(err.Error(), string(testKey)) || strings.Contains(err.Error(), hex.EncodeToString(testKey)) {
			t.Errorf("error holds the key: %v", err)
		}
	}
}

// TestPartFormatHidesKey: no fmt verb prints a Part's key.
func TestPartFormatHidesKey(t *testing.T) {
	p := Part{PlainSize: 10, Alg: AES128CBC, Key: testKey, IV: testIV}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		for _, arg := range []any{p, &p, []Part{p}} {
			s := fmt.Sprintf(verb, arg)
			for _, leak := range []string{string(testKey), hex.EncodeToString(testKey), strings.ToUpper(hex.EncodeToString(testKey)), fmt.Sprint(testKey[:4])[1:8]} {
				if strings.Contains(s, leak) {
					t.Errorf("Sprintf(%q, %T) = %s: shows the key", verb, arg, s)
				}
			}
		}
	}
}

// catPattern is the order in which the FUSE daemon receives a cold `cat`
// (128 KiB reads) of a file with the mount's 1 MiB read-ahead: 256 KiB at
// 0, 512 KiB at 256 KiB, then 1 MiB requests at 768 KiB + k MiB, which do
// not fall on chunk boundaries. Two are often in flight, and go-fuse
// serves each in its own goroutine, so now and then the later one is
// served first: every late-th pair here is swapped.
func catPattern(size int64, late int) [][2]int64 {
	reqs := [][2]int64{{0, 256 << 10}, {256 << 10, 512 << 10}}
	for off := int64(768 << 10); off < size; off += 1 << 20 {
		reqs = append(reqs, [2]int64{off, 1 << 20})
	}
	for i := 3; i+1 < len(reqs); i += late {
		reqs[i], reqs[i+1] = reqs[i+1], reqs[i]
	}
	return reqs
}

// TestCatPatternFetchesOnce: the kernel's requests for a 128 KiB reader,
// some arriving late, are served from one stream: every plaintext byte is
// fetched once, in the stream's windows, with no seek back (bench: cat
// re-fetched 1.14x the bytes it read, a segment in 1 MiB GETs going
// backwards, and at 20 ms a round trip each).
func TestCatPatternFetchesOnce(t *testing.T) {
	for _, alg := range []Algorithm{AES128CBC, AES128CTR} {
		f, src := onePart(t, rand.New(rand.NewSource(31)), alg, 10<<20+5000, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		for _, q := range catPattern(f.Size(), 3) {
			checkRead(t, rd, want, q[0], int(q[1]))
		}
		rd.Close()
		checkStreamWindows(t, src, 0, maxWindow)
	}
}

// TestLateRequestLeavesStream: a request behind the read-ahead stream whose
// chunk is gone (here one chunk is held at most, so every late request
// finds its chunks gone) is answered with a read of its own, and the
// stream goes on where it was: what is fetched beyond the file is the
// late requests' own bytes, not the stream restarted from each of them.
func TestLateRequestLeavesStream(t *testing.T) {
	withTuning(t, func(tu *tuning.Tuning) { tu.MaxHeldChunks = 1 })
	for _, alg := range []Algorithm{AES128CBC, AES128CTR} {
		f, src := onePart(t, rand.New(rand.NewSource(32)), alg, 10<<20+5000, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		reqs := catPattern(f.Size(), 3)
		for _, q := range reqs {
			checkRead(t, rd, want, q[0], int(q[1]))
		}
		rd.Close()
		late := 0
		for i := 1; i < len(reqs); i++ {
			if reqs[i][0] < reqs[i-1][0] {
				late++
			}
		}
		// Each late 1 MiB request is read from the CBC checkpoint (or
		// block) before it, with one ranged read however many chunks it
		// spans (each a round trip at real S3 latency).
		bound := int64(late) * (1<<20 + checkpointEvery + blockSize)
		if extra := src.read.Load() - int64(len(src.data)); extra > bound {
			t.Errorf("%s: %d bytes fetched beyond the file for %d late requests (bound %d): %v", alg, extra, late, bound, src.windows())
		}
		if wins := src.windows(); len(wins) > 1+late {
			t.Errorf("%s: %d ranged reads for one stream and %d late requests, want one each: %v", alg, len(wins), late, wins)
		}
	}
}

// TestFarAheadRequestKeepsStream: with several read-ahead requests in
// flight (a 128 KiB reader's kernel has four 1 MiB requests out at once
// when the daemon is slow to answer), the newest may be served first,
// three requests past the stream's end. It must not restart the stream
// there (one ranged request more, a round trip at real S3 latency) nor
// leave the requests between to be read aside: every plaintext byte
// fetched once, in the stream's windows (bench at 20 ms: a cat fetched
// 1.12x the bytes it read, a late segment in 1 MiB GETs each waiting a
// round trip).
func TestFarAheadRequestKeepsStream(t *testing.T) {
	for _, alg := range []Algorithm{AES128CBC, AES128CTR} {
		f, src := onePart(t, rand.New(rand.NewSource(33)), alg, 12<<20+5000, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		reqs := catPattern(f.Size(), len(catPattern(f.Size(), 1))) // in order
		// From the fourth on, in groups of four, the last of each group first.
		for i := 3; i+3 < len(reqs); i += 4 {
			g := reqs[i : i+4]
			g[0], g[1], g[2], g[3] = g[3], g[0], g[1], g[2]
		}
		for _, q := range reqs {
			checkRead(t, rd, want, q[0], int(q[1]))
		}
		rd.Close()
		checkStreamWindows(t, src, 0, maxWindow)
	}
}
