package crypto

import (
	"context"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"math/rand"
	"testing"
)

// The Std* benchmarks are the baseline: the Go standard library's CBC and
// CTR on the same 1 MiB buffer, with no I/O. The File* benchmarks read a
// File over an in-memory source through one Reader in 128 KiB requests, as
// the kernel does; compare their MB/s to the baseline's.

const benchBuf = 1 << 20

func BenchmarkStdlibCBC(b *testing.B) {
	block, _ := aes.NewCipher(testKey)
	buf := make([]byte, benchBuf)
	b.SetBytes(benchBuf)
	for i := 0; i < b.N; i++ {
		stdcipher.NewCBCEncrypter(block, testIV).CryptBlocks(buf, buf)
	}
}

func BenchmarkStdlibCTR(b *testing.B) {
	block, _ := aes.NewCipher(testKey)
	buf := make([]byte, benchBuf)
	b.SetBytes(benchBuf)
	for i := 0; i < b.N; i++ {
		stdcipher.NewCTR(block, testIV).XORKeyStream(buf, buf)
	}
}

func benchSequential(b *testing.B, alg Algorithm) {
	src := &memSource{data: randBytes(rand.New(rand.NewSource(1)), 8<<20)}
	f := newTestFile(b, Part{Src: src.open, PlainSize: int64(len(src.data)), Alg: alg, Key: testKey, IV: testIV})
	buf := make([]byte, 128<<10)
	ctx := context.Background()
	b.SetBytes(f.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd := f.NewReader()
		for off := int64(0); off < f.Size(); off += int64(len(buf)) {
			if _, err := rd.ReadAt(ctx, buf, off); err != nil && off+int64(len(buf)) < f.Size() {
				b.Fatal(err)
			}
		}
		rd.Close()
	}
}

func BenchmarkFileClearSequential(b *testing.B)  { benchSequential(b, "") }
func BenchmarkFileCBCSequential(b *testing.B)    { benchSequential(b, AES128CBC) }
func BenchmarkFileCTRSequential(b *testing.B)    { benchSequential(b, AES128CTR) }
func BenchmarkFileSM4CBCSequential(b *testing.B) { benchSequential(b, SM4CBC) }

// benchRandom reads 64 KiB at random offsets of a part that has been read
// once (CBC checkpoints known), as a seeking player does.
func benchRandom(b *testing.B, alg Algorithm) {
	src := &memSource{data: randBytes(rand.New(rand.NewSource(1)), 8<<20)}
	f := newTestFile(b, Part{Src: src.open, PlainSize: int64(len(src.data)), Alg: alg, Key: testKey, IV: testIV})
	readAll(b, f)
	rd := f.NewReader()
	defer rd.Close()
	r := rand.New(rand.NewSource(2))
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rd.ReadAt(context.Background(), buf, r.Int63n(f.Size()-int64(len(buf)))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileCBCRandom64K(b *testing.B) { benchRandom(b, AES128CBC) }
func BenchmarkFileCTRRandom64K(b *testing.B) { benchRandom(b, AES128CTR) }
