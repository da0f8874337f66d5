package crypto

import (
	"context"
	stdcipher "crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Read-ahead windows: a sequential reader's first ranged GET covers 1 MiB,
// each next one twice as much, up to 16 MiB. A small random read never
// fetches more than it needs (rounded to the cipher block and checkpoint).
const (
	firstWindow = 1 << 20
	maxWindow   = 16 << 20
)

// cursor encrypts one part sequentially from a block-aligned position,
// pulling plaintext through ranged reads of growing windows.
type cursor struct {
	fp     *filePart
	ctx    context.Context // for opening windows
	pos    int64           // output offset of the next byte (16-aligned)
	chain  [blockSize]byte // CBC: the previous ciphertext block
	src    io.ReadCloser
	srcPos int64 // plaintext offset src is at
	srcEnd int64 // end of src's window
	window int64 // size of the next window
}

func newCursor(ctx context.Context, fp *filePart, pos int64, chain [blockSize]byte, window int64) *cursor {
	return &cursor{fp: fp, ctx: ctx, pos: pos, chain: chain, srcPos: pos, window: window}
}

// next encrypts the next at most max bytes (a multiple of 16) into buf,
// which must have room for max+16 bytes (the CBC padding block), and
// returns the ciphertext. At the end of the part it returns io.EOF.
func (c *cursor) next(buf []byte, max int) ([]byte, error) {
	fp := c.fp
	if c.pos >= fp.outSize {
		return nil, io.EOF
	}
	n, final := int64(max), false
	if rest := fp.PlainSize - c.pos; rest <= n {
		n, final = rest, true
	}
	plain := buf[:n]
	if err := c.fill(plain); err != nil {
		return nil, err
	}
	out := c.encrypt(buf, plain, final)
	c.pos += int64(len(out))
	return out, nil
}

// fill reads len(p) plaintext bytes at c.pos, opening windows as needed.
func (c *cursor) fill(p []byte) error {
	for len(p) > 0 {
		if c.src == nil || c.srcPos >= c.srcEnd {
			if err := c.openWindow(); err != nil {
				return err
			}
		}
		k := min(int64(len(p)), c.srcEnd-c.srcPos)
		if _, err := io.ReadFull(c.src, p[:k]); err != nil {
			c.closeSrc()
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("source ended early: reading %d bytes at %d of %d: %w", k, c.srcPos, c.fp.PlainSize, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("reading source at %d: %w", c.srcPos, err)
		}
		c.srcPos += k
		p = p[k:]
	}
	return nil
}

func (c *cursor) openWindow() error {
	c.closeSrc()
	n := min(c.window, c.fp.PlainSize-c.srcPos)
	src, err := c.fp.Src(c.ctx, c.srcPos, n)
	if err != nil {
		return fmt.Errorf("opening source at %d: %w", c.srcPos, err)
	}
	c.src, c.srcEnd = src, c.srcPos+n
	c.window = min(c.window*2, maxWindow)
	return nil
}

func (c *cursor) closeSrc() {
	if c.src != nil {
		c.src.Close()
		c.src = nil
	}
}

// encrypt turns plaintext (a prefix of buf) into ciphertext in place.
func (c *cursor) encrypt(buf, plain []byte, final bool) []byte {
	fp := c.fp
	switch {
	case fp.Alg == "":
		return plain
	case fp.Alg.cbc():
		out := plain
		if final {
			pad := blockSize - len(plain)%blockSize
			out = buf[:len(plain)+pad]
			for i := len(plain); i < len(out); i++ {
				out[i] = byte(pad)
			}
		}
		if len(out) > 0 {
			stdcipher.NewCBCEncrypter(fp.block, c.chain[:]).CryptBlocks(out, out)
			c.chain = [blockSize]byte(out[len(out)-blockSize:])
			fp.record(c.pos, out)
		}
		return out
	default:
		stdcipher.NewCTR(fp.block, fp.ctrBlock(c.pos/blockSize)).XORKeyStream(plain, plain)
		return plain
	}
}
