package crypto

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// windowReader reads one part's plaintext sequentially through ranged
// reads of growing windows, as rclone's chunkedreader does: the cipher
// (cursor) asks it for bytes and never sees a request. The first window
// is whatever the caller sets (a seek: just its request); each next one
// is twice the last, at least FirstWindow and at most MaxWindow, all
// capped at the end of the part. Few requests for a long sequential read,
// no unbounded GET for a short one.
type windowReader struct {
	ctx  context.Context // the windows' lifetime
	src  RangeSource
	size int64 // plaintext bytes in the part
	part int   // the part's index, for errors

	rc   io.ReadCloser // the open window, or nil
	pos  int64         // plaintext offset of the next byte
	end  int64         // end of the open window
	next int64         // size of the next window
}

// reset points w at plaintext offset pos of part idx (src, size bytes),
// closing any open window; the next window is FirstWindow.
func (w *windowReader) reset(ctx context.Context, idx int, src RangeSource, size, pos int64) {
	w.close()
	*w = windowReader{ctx: ctx, src: src, size: size, part: idx, pos: pos, next: tun().FirstWindow}
}

// setNext sets the size of the next window opened.
func (w *windowReader) setNext(n int64) { w.next = n }

// readFull reads len(p) plaintext bytes at w.pos, opening windows as
// needed. A source that ends early is an error, never padding.
func (w *windowReader) readFull(p []byte) error {
	for len(p) > 0 {
		if w.rc == nil || w.pos >= w.end {
			if err := w.open(); err != nil {
				return err
			}
		}
		k := min(int64(len(p)), w.end-w.pos)
		if _, err := io.ReadFull(w.rc, p[:k]); err != nil {
			w.close()
			return w.readErr(err, k)
		}
		w.pos += k
		p = p[k:]
	}
	return nil
}

func (w *windowReader) readErr(err error, k int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("part %d: source ended early reading plaintext [%d, %d) of %d bytes: %w",
			w.part, w.pos, w.pos+k, w.size, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("part %d: reading plaintext at %d: %w", w.part, w.pos, err)
}

// open opens the next window at w.pos and grows the one after.
func (w *windowReader) open() error {
	w.close()
	n := min(w.next, w.size-w.pos)
	rc, err := w.src(w.ctx, w.pos, n)
	if err == nil && rc == nil {
		err = errors.New("source returned no reader")
	}
	if err != nil {
		return fmt.Errorf("part %d: opening plaintext [%d, %d): %w", w.part, w.pos, w.pos+n, err)
	}
	t := tun()
	w.rc, w.end = rc, w.pos+n
	w.next = min(max(w.next*2, t.FirstWindow), t.MaxWindow)
	return nil
}

// close closes the open window, if any.
func (w *windowReader) close() {
	if w.rc != nil {
		w.rc.Close()
		w.rc = nil
	}
}
