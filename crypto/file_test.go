package crypto

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
)

// memSource serves a byte slice as ranged reads, counting bytes served.
type memSource struct {
	data   []byte
	served atomic.Int64
	opens  atomic.Int64
}

func (m *memSource) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if off < 0 || off+n > int64(len(m.data)) {
		return nil, errors.New("range outside source")
	}
	m.opens.Add(1)
	m.served.Add(n)
	return io.NopCloser(bytes.NewReader(m.data[off : off+n])), nil
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

var (
	testKey = []byte("0123456789abcdef")
	testIV  = []byte("fedcba9876543210")
)

// openssl encrypts with the openssl command line, the reference.
func openssl(t *testing.T, cipher string, key, iv, plain []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl missing in CI")
		}
		t.Skip("openssl missing")
	}
	cmd := exec.Command("openssl", "enc", "-"+cipher, "-K", hex.EncodeToString(key), "-iv", hex.EncodeToString(iv))
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v", cipher, err)
	}
	return out
}

var opensslNames = map[Algorithm]string{AES128CBC: "aes-128-cbc", AES128CTR: "aes-128-ctr", SM4CBC: "sm4-cbc"}

func newTestFile(t testing.TB, parts ...Part) *File {
	t.Helper()
	f, err := NewFile(parts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readAll(t testing.TB, f *File) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMatchesOpenSSL(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, alg := range []Algorithm{AES128CBC, AES128CTR, SM4CBC} {
		for _, size := range []int{0, 1, 15, 16, 17, 4095, 65536, 65537, 3<<20 + 5} {
			src := &memSource{data: randBytes(r, size)}
			f := newTestFile(t, Part{Src: src.open, PlainSize: int64(size), Alg: alg, Key: testKey, IV: testIV})
			want := openssl(t, opensslNames[alg], testKey, testIV, src.data)
			if f.Size() != int64(len(want)) {
				t.Fatalf("%s size %d: Size() = %d, openssl wrote %d", alg, size, f.Size(), len(want))
			}
			if got := readAll(t, f); !bytes.Equal(got, want) {
				t.Fatalf("%s size %d: ciphertext differs from openssl", alg, size)
			}
		}
	}
}

// TestCTRCounterWraps: the counter is 128-bit, as openssl's.
func TestCTRCounterWraps(t *testing.T) {
	iv, _ := hex.DecodeString("fffffffffffffffffffffffffffffffe")
	src := &memSource{data: randBytes(rand.New(rand.NewSource(2)), 200000)}
	f := newTestFile(t, Part{Src: src.open, PlainSize: 200000, Alg: AES128CTR, Key: testKey, IV: iv})
	want := openssl(t, "aes-128-ctr", testKey, iv, src.data)
	if got := readAll(t, f); !bytes.Equal(got, want) {
		t.Fatal("ciphertext across the 128-bit counter wrap differs from openssl")
	}
	r := f.NewReader()
	defer r.Close()
	got := make([]byte, 100)
	if _, err := r.ReadAt(context.Background(), got, 150001); err != nil || !bytes.Equal(got, want[150001:150101]) {
		t.Fatalf("random read after the wrap: %v", err)
	}
}

// mixedFile is a clear part, a CBC part and a CTR part, as a single-file
// byte-range output with an init section has.
func mixedFile(t testing.TB, r *rand.Rand) (*File, []byte) {
	var parts []Part
	var want []byte
	for i, p := range []struct {
		alg  Algorithm
		size int
	}{{"", 1000}, {AES128CBC, 300000}, {AES128CTR, 250001}, {SM4CBC, 70000}, {"", 17}} {
		src := &memSource{data: randBytes(r, p.size)}
		iv := append([]byte(nil), testIV...)
		iv[0] = byte(i)
		parts = append(parts, Part{Src: src.open, PlainSize: int64(p.size), Alg: p.alg, Key: testKey, IV: iv})
		if p.alg == "" {
			want = append(want, src.data...)
		} else {
			want = append(want, openssl(t.(*testing.T), opensslNames[p.alg], testKey, iv, src.data)...)
		}
	}
	return newTestFile(t, parts...), want
}

func TestRandomAccess(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	f, want := mixedFile(t, r)
	if f.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", f.Size(), len(want))
	}
	rd := f.NewReader()
	defer rd.Close()
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		off := r.Int63n(int64(len(want)))
		n := 1 + r.Intn(200000)
		got := make([]byte, n)
		k, err := rd.ReadAt(ctx, got, off)
		end := min(off+int64(n), int64(len(want)))
		if k != int(end-off) || (end < off+int64(n)) != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", n, off, k, err)
		}
		if !bytes.Equal(got[:k], want[off:end]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", n, off)
		}
	}
	if k, err := rd.ReadAt(ctx, make([]byte, 10), f.Size()); k != 0 || err != io.EOF {
		t.Fatalf("read at end = %d, %v", k, err)
	}
}

// TestSequentialReadAhead reads like the kernel: increasing offsets,
// sometimes out of order within the read-ahead.
func TestSequentialReadAhead(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	src := &memSource{data: randBytes(r, 20<<20+7)}
	f := newTestFile(t, Part{Src: src.open, PlainSize: int64(len(src.data)), Alg: AES128CBC, Key: testKey, IV: testIV})
	want := openssl(t, "aes-128-cbc", testKey, testIV, src.data)
	rd := f.NewReader()
	defer rd.Close()
	const req = 128 << 10
	// In order at first, then in swapped pairs, as concurrent kernel
	// read-ahead requests can arrive.
	offsets := []int64{0, req}
	for off := int64(2 * req); off < f.Size(); off += 2 * req {
		offsets = append(offsets, off+req, off)
	}
	for _, o := range offsets {
		{
			if o >= f.Size() {
				continue
			}
			got := make([]byte, min(req, f.Size()-o))
			if _, err := rd.ReadAt(context.Background(), got, o); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[o:o+int64(len(got))]) {
				t.Fatalf("wrong bytes at %d", o)
			}
		}
	}
	if served := src.served.Load(); served > int64(len(src.data))*11/10 {
		t.Fatalf("read %d source bytes for a %d-byte sequential read", served, len(src.data))
	}
	if opens := src.opens.Load(); opens > 8 {
		t.Fatalf("%d ranged reads for one sequential read; windows should grow", opens)
	}
}

// TestCheckpointsBoundRereads: once a CBC part has been read through, a
// random read near its end re-encrypts at most one checkpoint interval.
func TestCheckpointsBoundRereads(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	src := &memSource{data: randBytes(r, 8<<20)}
	f := newTestFile(t, Part{Src: src.open, PlainSize: int64(len(src.data)), Alg: AES128CBC, Key: testKey, IV: testIV})
	want := readAll(t, f)
	rd := f.NewReader()
	defer rd.Close()
	for i := 0; i < 20; i++ {
		before := src.served.Load()
		off := int64(len(src.data)) - 1 - r.Int63n(4<<20)
		got := make([]byte, 4096)
		k, err := rd.ReadAt(context.Background(), got, off)
		if err != nil && err != io.EOF || !bytes.Equal(got[:k], want[off:off+int64(k)]) {
			t.Fatalf("read at %d: %v", off, err)
		}
		if read := src.served.Load() - before; read > checkpointEvery+4096+2*blockSize {
			t.Fatalf("a 4 KiB read at %d fetched %d plaintext bytes; checkpoints should bound it to ~%d", off, read, checkpointEvery+4096)
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	f, want := mixedFile(t, r)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rr := rand.New(rand.NewSource(seed))
			rd := f.NewReader()
			defer rd.Close()
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

// failingSource fails or ends early after limit bytes.
type failingSource struct {
	data  []byte
	limit int64
	err   error // nil: a short read (the object shrank)
}

func (s *failingSource) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	end := min(off+n, s.limit)
	if off >= s.limit && s.err != nil {
		return nil, s.err
	}
	var rd io.Reader = bytes.NewReader(s.data[off:max(off, end)])
	if s.err != nil {
		rd = io.MultiReader(rd, errReader{s.err})
	}
	return io.NopCloser(rd), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSourceErrors(t *testing.T) {
	data := randBytes(rand.New(rand.NewSource(7)), 3<<20)
	boom := errors.New("connection reset")
	for _, s := range []*failingSource{{data: data, limit: 1 << 20, err: boom}, {data: data, limit: 2<<20 + 3}} {
		for _, alg := range []Algorithm{"", AES128CBC, AES128CTR} {
			f := newTestFile(t, Part{Src: s.open, PlainSize: int64(len(data)), Alg: alg, Key: testKey, IV: testIV})
			var buf bytes.Buffer
			_, err := f.WriteTo(context.Background(), &buf)
			if err == nil {
				t.Fatalf("%s: no error from a failing source", alg)
			}
			if s.err != nil && !errors.Is(err, boom) {
				t.Fatalf("%s: error %v does not wrap the source's", alg, err)
			}
			if s.err == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: short source gave %v", alg, err)
			}
		}
	}
}

func TestBadParts(t *testing.T) {
	src := &memSource{data: make([]byte, 10)}
	for _, p := range []Part{
		{Src: src.open, PlainSize: 10, Alg: AES128CBC, Key: []byte("short"), IV: testIV},
		{Src: src.open, PlainSize: 10, Alg: AES128CBC, Key: testKey, IV: []byte("short")},
		{Src: src.open, PlainSize: 10, Alg: "AES-256-GCM", Key: testKey, IV: testIV},
		{PlainSize: 10},
	} {
		if _, err := NewFile([]Part{p}); err == nil {
			t.Errorf("NewFile accepted %+v", p.Alg)
		} else if bytes.Contains([]byte(err.Error()), testKey) {
			t.Errorf("error holds the key: %v", err)
		}
	}
}
