package crypto

import (
	"encoding/binary"
	"sort"
)

// Offset arithmetic, all of it, in one place (as gocryptfs's
// contentenc/offsets.go): plaintext and ciphertext sizes, blocks, where
// a File offset falls among its parts, CBC checkpoint intervals, CTR
// counters, and how far a request's chunk reaches. offsets_test.go
// tables every function.
//
// Offsets are of three kinds, and names say which:
//   - File offset (off, pos in Reader): a byte of the whole output;
//   - part-relative offset (rel): a byte of one part's ciphertext, which
//     for the bytes before a CBC part's padding block is also the offset
//     of the same plaintext byte;
//   - plaintext offset: a byte of the part's source.

// blockSize is the block size of both AES and SM4.
const blockSize = 16

// blockStart is the start of the block holding n.
func blockStart(n int64) int64 { return n - n%blockSize }

// alignUp rounds n up to a multiple of the block size.
func alignUp(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// paddedSize is the ciphertext size of n plaintext bytes under CBC with
// PKCS#7, which always adds 1..16 bytes (a whole block when n is a
// multiple of 16).
func paddedSize(n int64) int64 { return n + blockSize - n%blockSize }

// locate returns the part holding File offset off and off relative to
// that part. Parts of size 0 hold nothing; off == f.size gives
// len(f.parts).
func (f *File) locate(off int64) (idx int, rel int64) {
	idx = sort.Search(len(f.parts), func(i int) bool { return f.parts[i].outOff+f.parts[i].outSize > off })
	if idx < len(f.parts) {
		rel = off - f.parts[idx].outOff
	}
	return idx, rel
}

// requestEnd is where the chunk serving a request for want bytes at rel
// ends in a part of outSize ciphertext bytes: the request's end rounded up
// to a block, never past the part.
func requestEnd(rel, want, outSize int64) int64 {
	return min(alignUp(rel+want), outSize)
}

// unasked is how many bytes of a chunk [chunkOff, chunkOff+chunkLen) lie
// outside the request [pos, pos+want): made only because chunks start and
// end at blocks (or a CBC chain starts at a checkpoint).
func unasked(chunkOff, chunkLen, pos, want int64) int64 {
	return max(pos-chunkOff, 0) + max(chunkOff+chunkLen-(pos+want), 0)
}

// checkpointFloor returns the index k and offset k*every of the last CBC
// checkpoint interval boundary at or before rel.
func checkpointFloor(rel, every int64) (k, at int64) {
	k = rel / every
	return k, k * every
}

// ctrCounter is the CTR counter block of block i of a part whose counter
// starts at iv: iv + i mod 2^128, carrying from the low 64 bits into the
// high ones as openssl does.
func ctrCounter(iv [blockSize]byte, i int64) [blockSize]byte {
	hi := binary.BigEndian.Uint64(iv[:8])
	lo := binary.BigEndian.Uint64(iv[8:])
	sum := lo + uint64(i)
	if sum < lo {
		hi++
	}
	var ctr [blockSize]byte
	binary.BigEndian.PutUint64(ctr[:8], hi)
	binary.BigEndian.PutUint64(ctr[8:], sum)
	return ctr
}
