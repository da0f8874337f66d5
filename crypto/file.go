package crypto

import (
	"context"
	stdcipher "crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// RangeSource opens plaintext bytes [off, off+n) of a part, offsets
// relative to the part's start: one ranged GET, or a local file read.
type RangeSource func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// Part is one piece of an output file. Alg == "" copies it clear. Key and
// IV are 16 bytes for an encrypted part; for CTR the IV is the initial
// 128-bit big-endian counter block and block i uses IV+i (mod 2^128).
type Part struct {
	Src       RangeSource
	PlainSize int64
	Alg       Algorithm
	Key, IV   []byte
}

// checkpointEvery is the CBC checkpoint spacing: the most a random read
// re-encrypts once the part has been read through.
const checkpointEvery = 64 << 10

// File is the random-access ciphertext of a concatenation of parts. One
// File is shared by every reader of an output; it holds the CBC checkpoints.
type File struct {
	parts []*filePart
	size  int64
}

type filePart struct {
	Part
	block   stdcipher.Block
	outOff  int64 // where the part starts in the File
	outSize int64

	mu  sync.Mutex
	cps map[int64][blockSize]byte // CBC chain value at plaintext offset k*checkpointEvery
}

// NewFile checks the parts and lays them out.
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
	fp := &filePart{Part: p, outOff: outOff, outSize: p.PlainSize}
	if p.PlainSize < 0 || p.Src == nil {
		return nil, errors.New("a part needs a source and a size >= 0")
	}
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
	fp.block, fp.outSize = block, p.Alg.EncryptedSize(p.PlainSize)
	if p.Alg.cbc() {
		fp.cps = map[int64][blockSize]byte{0: [blockSize]byte(p.IV)}
	}
	return fp, nil
}

// Size is the exact size of the output, known before any byte is read.
func (f *File) Size() int64 { return f.size }

// partAt returns the index of the part holding output offset off.
func (f *File) partAt(off int64) int {
	return sort.Search(len(f.parts), func(i int) bool { return f.parts[i].outOff+f.parts[i].outSize > off })
}

// checkpoint returns the highest known CBC checkpoint at or before pos.
func (fp *filePart) checkpoint(pos int64) (int64, [blockSize]byte) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for k := pos / checkpointEvery; ; k-- {
		if cv, ok := fp.cps[k]; ok {
			return k * checkpointEvery, cv
		}
	}
}

// record stores the chain values at the checkpoint boundaries inside the
// ciphertext ct, which starts at plaintext offset pos.
func (fp *filePart) record(pos int64, ct []byte) {
	first := (pos/checkpointEvery + 1) * checkpointEvery
	end := pos + int64(len(ct))
	if first > end || first >= fp.PlainSize {
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for b := first; b <= end && b < fp.PlainSize; b += checkpointEvery {
		fp.cps[b/checkpointEvery] = [blockSize]byte(ct[b-pos-blockSize : b-pos])
	}
}

// start returns where a cursor must begin to produce output offset pos
// (part-relative): 16-aligned, and for CBC at a checkpoint.
func (fp *filePart) start(pos int64) (int64, [blockSize]byte) {
	if fp.Alg.cbc() {
		return fp.checkpoint(pos)
	}
	return pos - pos%blockSize, [blockSize]byte{}
}

// ctrBlock is the counter block for block index i of the part.
func (fp *filePart) ctrBlock(i int64) []byte {
	hi := binary.BigEndian.Uint64(fp.IV[:8])
	lo := binary.BigEndian.Uint64(fp.IV[8:])
	nlo := lo + uint64(i)
	if nlo < lo {
		hi++ // carry into the high half: a 128-bit counter
	}
	ctr := make([]byte, blockSize)
	binary.BigEndian.PutUint64(ctr[:8], hi)
	binary.BigEndian.PutUint64(ctr[8:], nlo)
	return ctr
}

// WriteTo writes the whole output (tests, small files).
func (f *File) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	r := f.NewReader()
	defer r.Close()
	buf := make([]byte, 1<<20)
	var total int64
	for total < f.size {
		n, err := r.ReadAt(ctx, buf, total)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && total == f.size) {
			return total, err
		}
	}
	return total, nil
}
