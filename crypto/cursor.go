package crypto

import (
	"context"
	stdcipher "crypto/cipher"
	"fmt"
	"io"
	"sync/atomic"
)

// cursor encrypts a File sequentially from a 16-aligned position, part
// after part. Plaintext comes from its windowReader (window.go); the
// cursor only knows blocks, chains and counters. It is used by one
// goroutine at a time.
type cursor struct {
	f      *File
	ctx    context.Context // the source windows' lifetime
	cancel context.CancelFunc
	idx    int       // the part
	fp     *filePart // nil past the last part
	pos    int64     // part-relative output offset of the next byte
	chain  [blockSize]byte
	in     windowReader // the part's plaintext, at pos
	lanes  bool         // encrypt AES-128-CBC through the lane engine (producers)
	// patient: the chunks are made ahead of a reader (a warm stream), so
	// the engine may hold them for company until wanted says a reader
	// waits (laneJob).
	patient bool
	wanted  *atomic.Bool
	xs      TransformStream // a transform part's stream, made at its first chunk
	job     laneJob         // this cursor's chunk in the engine, reused
}

// newCursor returns a cursor that can produce part idx from its
// part-relative offset rel on: it starts at the block holding rel, or for
// CBC at the checkpoint at or before it (advance to rel with skipTo).
func newCursor(parent context.Context, f *File, idx int, rel int64) *cursor {
	ctx, cancel := context.WithCancel(parent)
	c := &cursor{f: f, ctx: ctx, cancel: cancel}
	c.enter(idx)
	if c.fp != nil {
		c.pos, c.chain = c.fp.start(blockStart(rel))
		c.in.reset(c.ctx, idx, c.fp.src, c.fp.plainSize, c.pos)
	}
	return c
}

// enter moves to the start of part idx. The window size carries over: a
// stream going on into the next part (a CENC segment's mdat after its
// moof) is as sequential as it was.
func (c *cursor) enter(idx int) {
	window := max(c.in.next, tun().FirstWindow)
	c.idx, c.fp, c.pos = idx, nil, 0
	c.in.close()
	c.xs = nil
	if idx < len(c.f.parts) {
		c.fp = c.f.parts[idx]
		c.chain = c.fp.iv
		c.in.reset(c.ctx, idx, c.fp.src, c.fp.plainSize, 0)
		c.in.setNext(window)
	}
}

// setWindow sets the size of the next source window.
func (c *cursor) setWindow(n int64) { c.in.setNext(n) }

// usesLanes reports whether c's next chunk goes to the lane engine
// (approximately: it may cross into a part that does not).
func (c *cursor) usesLanes() bool {
	return c.lanes && c.fp != nil && laneKey(c.fp.block) != nil
}

// fileOff is the File offset of the next byte.
func (c *cursor) fileOff() int64 {
	if c.fp == nil {
		return c.f.size
	}
	return c.fp.outOff + c.pos
}

// next encrypts the next chunk, at most len(buf) bytes (a multiple of 16),
// into buf and returns its File offset. A chunk never spans two parts. At
// the end of the File it returns io.EOF.
func (c *cursor) next(buf []byte) (int64, []byte, error) {
	return c.nextChunk(buf, true)
}

// nextChunk is next; cut lets a Transform's Cutter end the chunk early
// (streams), which chunkAt does not want: its chunk must reach the end of
// the request, or the Reader would take the rest for a sequential read.
func (c *cursor) nextChunk(buf []byte, cut bool) (int64, []byte, error) {
	for c.fp != nil && c.pos >= c.fp.outSize {
		c.enter(c.idx + 1)
	}
	if c.fp == nil {
		return 0, nil, io.EOF
	}
	off := c.fileOff()
	out := buf[:min(int64(len(buf)), c.fp.outSize-c.pos)]
	if cutter, ok := c.fp.xform.(Cutter); ok && cut {
		out = out[:cutter.Cut(c.ctx, c.pos, int64(len(out)))]
	}
	if err := c.produce(out); err != nil {
		return 0, nil, err // never half-encrypted bytes
	}
	return off, out, nil
}

// skipTo encrypts and discards up to File offset target (CBC: from a
// checkpoint, recording the ones it crosses), moving across parts. target
// is at a block of its part and before that part's padding block, so only
// the parts left whole are padded.
func (c *cursor) skipTo(target int64, buf []byte) error {
	for c.fp != nil && c.fileOff() < target {
		if c.pos >= c.fp.outSize {
			c.enter(c.idx + 1)
			continue
		}
		n := min(int64(len(buf)), target-c.fileOff(), c.fp.outSize-c.pos)
		if cut, ok := c.fp.xform.(Cutter); ok && c.fileOff()+n < target {
			n = cut.Cut(c.ctx, c.pos, n)
		}
		if err := c.produce(buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

// chunkAt moves to the block holding File offset pos and produces the
// chunk from there to the end of the request, pos+want, at most one
// buffer and within one part.
func (c *cursor) chunkAt(pos, want int64, buf []byte) (int64, []byte, error) {
	idx, rel := c.f.locate(pos)
	fp := c.f.parts[idx]
	start := blockStart(rel)
	if err := c.skipTo(fp.outOff+start, buf); err != nil {
		return 0, nil, err
	}
	end := requestEnd(rel, want, fp.outSize)
	return c.nextChunk(buf[:min(end-start, int64(len(buf)))], false)
}

// produce turns the plaintext at c.pos into the ciphertext out, in place.
// out ends before the part's end or exactly at it (then it holds the CBC
// padding).
func (c *cursor) produce(out []byte) error {
	nPlain := min(int64(len(out)), c.fp.plainSize-c.pos)
	if err := c.in.readFull(out[:nPlain]); err != nil {
		return err
	}
	if c.fp.xform != nil {
		if err := c.transform(out); err != nil {
			return err
		}
	} else {
		c.encrypt(out, int(nPlain))
	}
	c.pos += int64(len(out))
	return nil
}

// transform encrypts the plaintext out at c.pos with the part's
// Transform, starting its stream there if this is the cursor's first
// chunk of the part.
func (c *cursor) transform(out []byte) error {
	if c.xs == nil {
		xs, err := c.fp.xform.Stream(c.ctx, c.pos)
		if err != nil {
			return fmt.Errorf("part %d: %w", c.idx, err)
		}
		c.xs = xs
	}
	if err := c.xs.Apply(c.ctx, out); err != nil {
		c.xs = nil
		return fmt.Errorf("part %d: %w", c.idx, err)
	}
	return nil
}

// encrypt encrypts out in place; out[:nPlain] is plaintext, the rest is
// the PKCS#7 padding to write.
func (c *cursor) encrypt(out []byte, nPlain int) {
	fp := c.fp
	switch {
	case fp.block == nil: // clear
	case fp.alg.cbc():
		pad := byte(len(out) - nPlain)
		for i := nPlain; i < len(out); i++ {
			out[i] = pad
		}
		if rk := laneKey(fp.block); rk != nil && c.lanes {
			c.job.rk, c.job.chain, c.job.buf = rk, c.chain, out
			c.job.patient, c.job.wanted = c.patient, c.wanted
			encryptLanes(&c.job)
		} else {
			stdcipher.NewCBCEncrypter(fp.block, c.chain[:]).CryptBlocks(out, out)
		}
		fp.cps.record(c.pos, out[:blockStart(int64(nPlain))])
		c.chain = [blockSize]byte(out[len(out)-blockSize:])
	default:
		ctr := ctrCounter(fp.iv, c.pos/blockSize)
		stdcipher.NewCTR(fp.block, ctr[:]).XORKeyStream(out, out)
	}
}

// close releases the open window and the cursor's context.
func (c *cursor) close() {
	c.in.close()
	c.cancel()
}
