package crypto

import (
	"bytes"
	"context"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// stdlibEncrypt is the whole-buffer encryption of one part with the Go
// standard library (PKCS#7-padded CBC, or CTR over the 128-bit counter):
// an implementation independent of cursors, checkpoints and read-ahead.
func stdlibEncrypt(alg Algorithm, key, iv, plain []byte) []byte {
	block, _ := aes.NewCipher(key)
	switch alg {
	case AES128CBC:
		pad := 16 - len(plain)%16
		out := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
		stdcipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
		return out
	case AES128CTR:
		out := make([]byte, len(plain))
		stdcipher.NewCTR(block, iv).XORKeyStream(out, plain)
		return out
	}
	return plain
}

// FuzzReadAt drives the range/offset math: a File of up to three parts
// (clear, CBC or CTR, sizes from the input, IVs near counter wrap-around)
// read through one Reader at a sequence of (offset, length) pairs from the
// input, each compared with the standard library's whole-file output.
// Reads beyond the end must follow io.ReaderAt (short read with io.EOF).
func FuzzReadAt(f *testing.F) {
	f.Add([]byte{1, 0, 40, 2, 1, 3, 0}, []byte{0, 0, 0, 10, 0, 0, 0, 0, 200, 0})
	f.Add([]byte{2, 255, 255, 0, 0}, []byte{0, 15, 0, 17, 255, 255, 255, 1, 0})
	f.Add([]byte{1, 0, 0, 1, 0, 16, 2, 3, 0}, []byte{0, 0, 0, 1, 0, 0, 0, 40, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, layout, reads []byte) {
		file, want := fuzzFile(layout)
		rd := file.NewReader()
		defer rd.Close()
		for len(reads) >= 5 {
			off := int64(binary.BigEndian.Uint32(reads)) % (int64(len(want)) + 64)
			n := int(reads[4])*37 + 1
			reads = reads[5:]
			fuzzCheckRead(t, rd, want, off, n)
		}
	})
}

// fuzzFile builds a File from layout: per part 3 bytes (algorithm, size
// high, size low), sizes up to ~200 KiB so CBC checkpoints (64 KiB) are
// crossed. It returns the File and its expected bytes.
func fuzzFile(layout []byte) (*File, []byte) {
	var parts []Part
	var want []byte
	for i := 0; i+3 <= len(layout) && len(parts) < 3; i += 3 {
		alg := []Algorithm{"", AES128CBC, AES128CTR}[int(layout[i])%3]
		size := (int(layout[i+1])<<8 | int(layout[i+2])) * 3
		plain := make([]byte, size)
		for j := range plain {
			plain[j] = byte(j*31 + i)
		}
		iv := bytes.Repeat([]byte{0xff}, 16) // CTR: the counter wraps at once
		iv[0] = byte(i)
		src := &memSource{data: plain, plain: true}
		parts = append(parts, Part{Src: src.open, PlainSize: int64(size), Alg: alg, Key: testKey, IV: iv})
		want = append(want, stdlibEncrypt(alg, testKey, iv, plain)...)
	}
	file, err := NewFile(parts)
	if err != nil {
		panic(err)
	}
	if file.Size() != int64(len(want)) {
		panic("File.Size disagrees with the standard library's output size")
	}
	return file, want
}

func fuzzCheckRead(t *testing.T, rd *Reader, want []byte, off int64, n int) {
	got := make([]byte, n)
	k, err := rd.ReadAt(context.Background(), got, off)
	end := off // nothing to read at or past the end
	if off < int64(len(want)) {
		end = min(off+int64(n), int64(len(want)))
	}
	if int64(k) != end-off {
		t.Fatalf("ReadAt(%d bytes at %d) of %d: got %d bytes, %v", n, off, len(want), k, err)
	}
	if short := int64(k) < int64(n); short != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
		t.Fatalf("ReadAt(%d bytes at %d) of %d: %d bytes, error %v", n, off, len(want), k, err)
	}
	if k > 0 && !bytes.Equal(got[:k], want[off:end]) {
		t.Fatalf("ReadAt(%d bytes at %d) of %d: wrong bytes", n, off, len(want))
	}
}
