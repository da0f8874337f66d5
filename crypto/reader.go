package crypto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Chunking of the read-ahead producer. Bound per Reader: chunkQueue
// chunks queued, one being made, and cur and prev held by the reader.
const (
	chunkSize  = 512 << 10
	chunkQueue = 2
	// skipAhead: a forward jump this small continues the stream instead of
	// seeking (the kernel's read-ahead does not always arrive in order).
	skipAhead = 2 << 20
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize+blockSize); return &b }}

// chunk is ciphertext at part-relative output offset off.
type chunk struct {
	off  int64
	data []byte
	buf  *[]byte // pooled backing buffer
	err  error
}

func (c *chunk) contains(pos int64) bool {
	return c.data != nil && pos >= c.off && pos < c.off+int64(len(c.data))
}

func (c *chunk) end() int64 { return c.off + int64(len(c.data)) }

func (c *chunk) free() {
	if c.buf != nil {
		bufPool.Put(c.buf)
	}
	*c = chunk{}
}

// Reader reads a File for one open file handle; it is safe for concurrent
// use, serializing reads (they share the stream).
type Reader struct {
	f      *File
	ctx    context.Context // lives until Close: the producer's requests
	cancel context.CancelFunc

	mu        sync.Mutex
	part      int
	cur, prev chunk
	idle      *cursor // positioned at cur.end() while no producer runs
	prod      *producer
}

// NewReader returns a Reader; Close it to stop its read-ahead.
func (f *File) NewReader() *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	return &Reader{f: f, ctx: ctx, cancel: cancel, part: -1}
}

// Close stops the read-ahead and frees the buffers.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reset()
	r.cancel()
	return nil
}

// ReadAt reads len(p) bytes of ciphertext at off, with io.ReaderAt's
// contract: a short read only at the end of the File, with io.EOF.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) && off+int64(n) < r.f.size {
		pos := off + int64(n)
		idx := r.f.partAt(pos)
		fp := r.f.parts[idx]
		want := min(int64(len(p)-n), fp.outOff+fp.outSize-pos)
		k, err := r.readPart(ctx, idx, p[n:n+int(want)], pos-fp.outOff)
		n += k
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readPart fills p from part idx at part-relative offset off.
func (r *Reader) readPart(ctx context.Context, idx int, p []byte, off int64) (int, error) {
	if idx != r.part {
		r.reset()
		r.part = idx
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if c := r.find(pos); c != nil {
			n += copy(p[n:], c.data[pos-c.off:])
			continue
		}
		if err := r.fetch(ctx, pos, int64(len(p)-n)); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (r *Reader) find(pos int64) *chunk {
	if r.cur.contains(pos) {
		return &r.cur
	}
	if r.prev.contains(pos) {
		return &r.prev
	}
	return nil
}

// fetch makes cur hold pos: from the stream when the read continues it,
// else by a seek.
func (r *Reader) fetch(ctx context.Context, pos, want int64) error {
	if r.prod != nil && pos >= r.cur.end() && pos < r.cur.end()+skipAhead {
		return r.receive(ctx, pos)
	}
	if r.idle != nil && pos == r.cur.end() { // a second sequential read: read ahead
		r.prod = startProducer(r.ctx, r.idle)
		r.idle = nil
		return r.receive(ctx, pos)
	}
	return r.seek(ctx, pos, want)
}

// receive takes chunks from the producer until cur holds pos.
func (r *Reader) receive(ctx context.Context, pos int64) error {
	for {
		select {
		case c, ok := <-r.prod.ch:
			if !ok {
				r.stop()
				return errors.New("read-ahead ended before the requested offset")
			}
			if c.err != nil {
				c.free()
				r.stop()
				return c.err
			}
			r.rotate(c)
			if r.cur.contains(pos) {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// seek produces the ciphertext at pos synchronously, starting at the
// nearest checkpoint (CBC) or block (CTR, clear), fetching only the
// plaintext the request needs. The cursor is kept in case reading goes on.
func (r *Reader) seek(ctx context.Context, pos, want int64) error {
	r.stop()
	fp := r.f.parts[r.part]
	start, chain := fp.start(pos)
	target := pos - pos%blockSize
	need := min(alignUp(pos+want)-target, chunkSize)
	c := newCursor(ctx, fp, start, chain, max(target+need-start, blockSize))
	buf := bufPool.Get().(*[]byte)
	for c.pos < target { // CBC: re-encrypt from the checkpoint
		if _, err := c.next(*buf, int(min(chunkSize, target-c.pos))); err != nil {
			bufPool.Put(buf)
			c.closeSrc()
			return err
		}
	}
	out, err := c.next(*buf, int(need))
	c.closeSrc() // its window belongs to this request's context
	if err != nil {
		bufPool.Put(buf)
		return err
	}
	r.rotate(chunk{off: target, data: out, buf: buf})
	c.window = firstWindow
	r.idle = c
	return nil
}

func alignUp(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

func (r *Reader) rotate(c chunk) {
	r.prev.free()
	r.prev = r.cur
	r.cur = c
}

// stop ends the producer and forgets the idle cursor.
func (r *Reader) stop() {
	if r.prod != nil {
		r.prod.stop()
		r.prod = nil
	}
	if r.idle != nil {
		r.idle.closeSrc()
		r.idle = nil
	}
}

// reset also drops the held chunks (another part, or Close).
func (r *Reader) reset() {
	r.stop()
	r.cur.free()
	r.prev.free()
}

// producer encrypts ahead of a sequential reader.
type producer struct {
	ch     chan chunk
	cancel context.CancelFunc
	done   chan struct{}
}

func startProducer(parent context.Context, c *cursor) *producer {
	ctx, cancel := context.WithCancel(parent)
	c.ctx = ctx
	p := &producer{ch: make(chan chunk, chunkQueue), cancel: cancel, done: make(chan struct{})}
	go p.run(ctx, c)
	return p
}

func (p *producer) run(ctx context.Context, c *cursor) {
	defer close(p.done)
	defer close(p.ch)
	defer c.closeSrc()
	for c.pos < c.fp.outSize {
		buf := bufPool.Get().(*[]byte)
		off := c.pos
		out, err := c.next(*buf, chunkSize)
		select {
		case p.ch <- chunk{off: off, data: out, buf: buf, err: err}:
		case <-ctx.Done():
			bufPool.Put(buf)
			return
		}
		if err != nil {
			return
		}
	}
}

// stop cancels the producer and waits for it, recycling queued chunks.
func (p *producer) stop() {
	p.cancel()
	for c := range p.ch {
		c.free()
	}
	<-p.done
}
