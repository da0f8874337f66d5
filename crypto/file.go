package crypto

import (
	"context"
	stdcipher "crypto/cipher"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// RangeSource opens plaintext bytes [off, off+n) of a part, offsets
// relative to the part's start: one ranged GET, or a local file read. It
// may fail; its errors are returned to the reader.
type RangeSource func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// Part is one piece of an output file. Alg == "" copies it clear. Key and
// IV are 16 bytes for an encrypted part; for CTR the IV is the initial
// 128-bit big-endian counter block and block i uses IV+i (mod 2^128).
type Part struct {
	Src       RangeSource
	PlainSize int64
	Alg       Algorithm
	Key, IV   []byte
	// Xform, with Alg "", encrypts parts of the plaintext in place and
	// keeps its size (Common Encryption of the samples of an mdat).
	Xform Transform
}

// Transform encrypts a part's plaintext in place without changing its
// size, at any offset: Common Encryption, where only sample data is
// encrypted, by sample and subsample.
type Transform interface {
	// Stream returns a stream that encrypts the part's plaintext from
	// part-relative offset pos on. It may read the part's source (a
	// chain that starts before pos) and so can fail.
	Stream(ctx context.Context, pos int64) (TransformStream, error)
}

// Cutter is an optional interface of a Transform: Cut returns how many of
// the n bytes from part-relative pos a chunk should end with (at least 1
// when n is at least 32), so that a chunk ends where the Transform's
// stream needs nothing of the next one (not inside a CBC block).
type Cutter interface {
	Cut(ctx context.Context, pos, n int64) int64
}

// TransformStream encrypts consecutive plaintext: each Apply continues
// where the previous one ended (or at the stream's start).
type TransformStream interface {
	Apply(ctx context.Context, buf []byte) error
}

// Format prints a Part without its key or IV, whatever the verb (%v, %+v,
// %#v, %x...): parts end up in log lines and test failures.
func (p Part) Format(s fmt.State, verb rune) {
	fmt.Fprintf(s, "crypto.Part{Alg: %q, PlainSize: %d, Key: [%d bytes redacted], IV: [%d bytes]}",
		string(p.Alg), p.PlainSize, len(p.Key), len(p.IV))
}

// File is the random-access ciphertext of a concatenation of parts. One
// File is shared by every reader of an output, concurrently; it holds the
// CBC checkpoints they all use.
type File struct {
	parts []*filePart
	size  int64
	warm  warmSlot     // a stream started ahead of the next reader (Warm)
	open  atomic.Int32 // Readers of NewReader not yet closed
}

// filePart is a validated Part laid out in its File. It keeps the key only
// as the cipher's key schedule, never as printable bytes.
type filePart struct {
	src       RangeSource
	plainSize int64
	alg       Algorithm
	block     stdcipher.Block // nil for a clear part
	iv        [blockSize]byte // CBC: chain value at 0; CTR: counter of block 0
	cps       *checkpoints    // CBC only
	xform     Transform       // Common Encryption of a clear part (Alg "")
	outOff    int64           // where the part starts in the File
	outSize   int64
}

// NewFile checks the parts (sizes, sources, algorithms, key and IV
// lengths) and lays them out; the File's size is then exact.
func NewFile(parts []Part) (*File, error) {
	f := &File{}
	for i, p := range parts {
		fp, err := newFilePart(p, f.size)
		if err != nil {
			return nil, fmt.Errorf("part %d: %w", i, err)
		}
		f.parts = append(f.parts, fp)
		f.size += fp.outSize
	}
	return f, nil
}

func newFilePart(p Part, outOff int64) (*filePart, error) {
	if p.PlainSize < 0 || p.Src == nil {
		return nil, errors.New("a part needs a source and a size >= 0")
	}
	fp := &filePart{src: p.Src, plainSize: p.PlainSize, alg: p.Alg, outOff: outOff, outSize: p.PlainSize, xform: p.Xform}
	if p.Alg == "" {
		return fp, nil
	}
	block, err := p.Alg.newBlock(p.Key)
	if err != nil {
		return nil, err
	}
	if len(p.IV) != blockSize {
		return nil, fmt.Errorf("IV must be %d bytes, got %d", blockSize, len(p.IV))
	}
	fp.block, fp.iv, fp.outSize = block, [blockSize]byte(p.IV), p.Alg.EncryptedSize(p.PlainSize)
	if p.Alg.cbc() {
		fp.cps = newCheckpoints(fp.iv, tun().CheckpointEvery)
	}
	return fp, nil
}

// Size is the exact size of the output, known before any byte is read.
func (f *File) Size() int64 { return f.size }

// start returns where a cursor must begin to produce part-relative output
// offset pos (16-aligned): for CBC the checkpoint at or before it, with
// its chain value.
func (fp *filePart) start(pos int64) (int64, [blockSize]byte) {
	if fp.alg.cbc() {
		return fp.cps.at(pos)
	}
	return pos, fp.iv
}

// WriteTo writes the whole output to w, encrypting in the caller's
// goroutine (no read-ahead: tests and small files).
func (f *File) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	c := newCursor(ctx, f, 0, 0)
	defer c.close()
	buf := getBuf()
	defer buf.unref()
	var total int64
	for {
		_, out, err := c.next(buf.b)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(out)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}
