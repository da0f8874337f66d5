package crypto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mpcfs/mpcfs/internal/testutil"
)

var (
	testKey = []byte("0123456789abcdef")
	testIV  = []byte("fedcba9876543210")
)

var allAlgs = []Algorithm{AES128CBC, AES128CTR, SM4CBC}

var opensslNames = map[Algorithm]string{AES128CBC: "aes-128-cbc", AES128CTR: "aes-128-ctr", SM4CBC: "sm4-cbc"}

// memSource serves a byte slice as ranged reads. It counts the plaintext
// bytes actually read (not just requested) and records each window.
type memSource struct {
	data  []byte
	read  atomic.Int64
	mu    sync.Mutex
	wins  [][2]int64 // (off, n) of each open
	plain bool       // benchmarks: no counting
}

func (m *memSource) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return nil, errors.New("range outside source")
	}
	rd := bytes.NewReader(m.data[off : off+n])
	if m.plain {
		return io.NopCloser(rd), nil
	}
	m.mu.Lock()
	m.wins = append(m.wins, [2]int64{off, n})
	m.mu.Unlock()
	return io.NopCloser(&countingReader{r: rd, n: &m.read}), nil
}

func (m *memSource) windows() [][2]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][2]int64(nil), m.wins...)
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// openssl encrypts with the openssl command line: the independent
// reference.
func openssl(t testing.TB, alg Algorithm, key, iv, plain []byte) []byte {
	t.Helper()
	return testutil.OpenSSL(t, false, opensslNames[alg], key, iv, plain)
}

// reference is the expected output of one part.
func reference(t testing.TB, alg Algorithm, key, iv, plain []byte) []byte {
	if alg == "" {
		return plain
	}
	return openssl(t, alg, key, iv, plain)
}

func newTestFile(t testing.TB, parts ...Part) *File {
	t.Helper()
	f, err := NewFile(parts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// onePart is a File of one part of random plaintext, with its source.
func onePart(t testing.TB, r *rand.Rand, alg Algorithm, size int, iv []byte) (*File, *memSource) {
	src := &memSource{data: randBytes(r, size)}
	return newTestFile(t, Part{Src: src.open, PlainSize: int64(size), Alg: alg, Key: testKey, IV: iv}), src
}

func writeAll(t testing.TB, f *File) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readSeq reads the File through one Reader in req-sized ReadAt calls.
func readSeq(t testing.TB, f *File, req int) []byte {
	t.Helper()
	rd := f.NewReader()
	defer rd.Close()
	out := make([]byte, 0, f.Size())
	buf := make([]byte, req)
	for off := int64(0); ; off += int64(req) {
		n, err := rd.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
}

// checkRead reads n bytes at off and compares with want, the whole
// expected File, including io.ReaderAt's end-of-file behaviour.
func checkRead(t testing.TB, rd *Reader, want []byte, off int64, n int) {
	t.Helper()
	got := make([]byte, n)
	k, err := rd.ReadAt(context.Background(), got, off)
	end := min(off+int64(n), int64(len(want)))
	if off >= int64(len(want)) {
		end = off
	}
	short := end-off < int64(n)
	if int64(k) != end-off || short != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
		t.Fatalf("ReadAt(len %d, off %d) of %d = %d, %v", n, off, len(want), k, err)
	}
	if !bytes.Equal(got[:k], want[off:end]) {
		t.Fatalf("ReadAt(len %d, off %d): wrong bytes", n, off)
	}
}
