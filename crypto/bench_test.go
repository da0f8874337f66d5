package crypto

import (
	"context"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"math/rand"
	"testing"

	"github.com/emmansun/gmsm/sm4"
)

// The Stdlib* benchmarks are the baseline: plain crypto/cipher CBC and CTR
// (and gmsm's SM4 CBC) on one 1 MiB buffer, no I/O. The File* benchmarks
// read a File over an in-memory source through one Reader in 128 KiB
// ReadAt calls, as the kernel does; compare their MB/s with the baseline.

const (
	benchBuf  = 1 << 20
	benchFile = 8 << 20
	benchRead = 128 << 10
)

func BenchmarkStdlibCBC(b *testing.B) {
	block, _ := aes.NewCipher(testKey)
	benchBlockMode(b, func() stdcipher.BlockMode { return stdcipher.NewCBCEncrypter(block, testIV) })
}

// BenchmarkAsmCBC is BenchmarkStdlibCBC through the AES-128-CBC parts'
// block (newCBCBlock: the AES-NI loop on amd64, cbcasm_amd64.s).
func BenchmarkAsmCBC(b *testing.B) {
	block, _ := newCBCBlock(testKey)
	benchBlockMode(b, func() stdcipher.BlockMode { return stdcipher.NewCBCEncrypter(block, testIV) })
}

func BenchmarkStdlibCTR(b *testing.B) {
	block, _ := aes.NewCipher(testKey)
	buf := make([]byte, benchBuf)
	b.SetBytes(benchBuf)
	for b.Loop() {
		stdcipher.NewCTR(block, testIV).XORKeyStream(buf, buf)
	}
}

// BenchmarkStdlibSM4CBC is the baseline of BenchmarkSM4CBC: CBC
// encryption is serial, and gmsm's SM4 block is what bounds it.
func BenchmarkStdlibSM4CBC(b *testing.B) {
	block, _ := sm4.NewCipher(testKey)
	benchBlockMode(b, func() stdcipher.BlockMode { return stdcipher.NewCBCEncrypter(block, testIV) })
}

func benchBlockMode(b *testing.B, mode func() stdcipher.BlockMode) {
	buf := make([]byte, benchBuf)
	b.SetBytes(benchBuf)
	for b.Loop() {
		mode().CryptBlocks(buf, buf)
	}
}

func benchFileOf(b *testing.B, alg Algorithm) *File {
	src := &memSource{data: randBytes(rand.New(rand.NewSource(1)), benchFile), plain: true}
	return newTestFile(b, Part{Src: src.open, PlainSize: benchFile, Alg: alg, Key: testKey, IV: testIV})
}

// benchSequential opens a Reader per pass and reads the File through.
func benchSequential(b *testing.B, alg Algorithm) {
	f := benchFileOf(b, alg)
	buf := make([]byte, benchRead)
	ctx := context.Background()
	b.SetBytes(f.Size())
	for b.Loop() {
		rd := f.NewReader()
		for off := int64(0); off < f.Size(); off += benchRead {
			if _, err := rd.ReadAt(ctx, buf, off); err != nil && off+benchRead < f.Size() {
				b.Fatal(err)
			}
		}
		rd.Close()
	}
}

func BenchmarkFileClearSequential(b *testing.B) { benchSequential(b, "") }
func BenchmarkFileCBCSequential(b *testing.B)   { benchSequential(b, AES128CBC) }
func BenchmarkFileCTRSequential(b *testing.B)   { benchSequential(b, AES128CTR) }

// BenchmarkSM4CBC is BenchmarkFileCBCSequential with SM4.
func BenchmarkSM4CBC(b *testing.B) { benchSequential(b, SM4CBC) }

// benchRandom reads 64 KiB at random offsets of a part that has been read
// once (its CBC checkpoints known), as a seeking player does.
func benchRandom(b *testing.B, alg Algorithm) {
	f := benchFileOf(b, alg)
	writeAll(b, f)
	rd := f.NewReader()
	defer rd.Close()
	r := rand.New(rand.NewSource(2))
	buf := make([]byte, 64<<10)
	ctx := context.Background()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := rd.ReadAt(ctx, buf, r.Int63n(f.Size()-int64(len(buf)))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileCBCRandom64K(b *testing.B) { benchRandom(b, AES128CBC) }
func BenchmarkFileCTRRandom64K(b *testing.B) { benchRandom(b, AES128CTR) }
